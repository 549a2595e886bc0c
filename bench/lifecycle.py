"""Work-order lifecycles, persisted after every step: cityloop vs the reference way.

    .venv/bin/python -m bench.lifecycle [--sqlite] [--pg [URL]] [--n N] [--n50 N] [--profile]

With neither --sqlite nor --pg both backends run (PostgreSQL at the default URL, skipped
with a note when it does not answer). Prints tables; asserts nothing about speed. See
bench/README.md for how to read the output.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlmodel import Session, select

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
UNITS = ["clean-east", "clean-west", "market-huaqiao", "market-xinhe", "market-dongcheng", "ads-team",
         "roads", "gas-office", "green-team", "dispatch-desk"]
SCENARIOS = (0, 1, 50)  # reject loops per lifecycle
FIRST_LAST = 5          # loops compared at the start and the end of the 50-loop scenario

# Targets are printed beside the results, never asserted.
TARGET_RATIO_LCS = 3.0        # cityloop lifecycles/s >= 3x reference (0 loops, SQLite)
TARGET_ABS_LCS = 300.0        # cityloop >= 300 lifecycles/s (0 loops, SQLite)
TARGET_RATIO_STEP_50 = 5.0    # at 50 loops, cityloop >= 5x faster per step than reference

PHOTO = "a" * 64
RECTIFY = {"action": "fixed", "after_photos": [PHOTO]}
REJECT = {"decision": "reject", "reason": "again"}
APPROVE = {"decision": "approve"}


def pin_to_one_core() -> str:
    allowed = sorted(os.sched_getaffinity(0))
    cpu = 0 if 0 in allowed else allowed[0]
    os.sched_setaffinity(0, {cpu})
    return (f"benchmark process pinned to CPU {cpu} with os.sched_setaffinity (was allowed {len(allowed)} "
            f"CPU(s)); a PostgreSQL server runs in its own processes and is NOT pinned")


# ---- lifecycle plan and measurements ---------------------------------------------------------

@dataclass(frozen=True)
class PlannedStep:
    kind: str       # rectify | review
    task: str       # BPMN id of the user task
    form: dict
    loop: int       # 0-based review round this step belongs to


def plan(loops: int) -> list[PlannedStep]:
    steps = []
    for k in range(loops):
        steps += [PlannedStep("rectify", "Task_rectify", RECTIFY, k), PlannedStep("review", "Task_review", REJECT, k)]
    steps += [PlannedStep("rectify", "Task_rectify", RECTIFY, loops), PlannedStep("review", "Task_review", APPROVE, loops)]
    return steps


@dataclass
class Step:
    kind: str          # start | rectify | review
    loop: int          # -1 for start
    seconds: float
    lookup: float = 0.0  # part of `seconds` spent finding the task (cityloop: TaskIndex.for_actor)


@dataclass
class Lifecycle:
    steps: list[Step]
    seconds: float
    end_bytes: int
    bytes_after_loop: dict[int, int] = field(default_factory=dict)


class CityloopSide:
    """(a) cityloop through its public API: report, for_actor, complete."""
    name = "cityloop"

    def __init__(self, url: str, clock):
        from engine.domain.models import Unit
        from engine.runtime.errors import Actor
        from engine.system import build
        self.clock = clock
        self.engine = build(url, clock=clock)
        with Session(self.engine.db) as s:
            for code in UNITS:
                s.add(Unit(code=code, name=code, name_zh=code, kind="cleaning" if code.startswith("clean") else "office",
                           leader_id=f"leader.{code}"))
            s.commit()
        self.reporter = Actor("d1", {"dispatcher"})
        self.actors = {"rectify": Actor("w1", {"unit:clean-east"}), "review": Actor("r1", {"reviewer"})}

    def _bytes(self, instance_id: int) -> int:
        from engine.db.models import Instance
        with Session(self.engine.db) as s:
            return len(s.exec(select(Instance.workflow).where(Instance.id == instance_id)).one())

    def lifecycle(self, loops: int, track_bytes: bool = False) -> Lifecycle:
        from engine.domain import workorders
        pc = time.perf_counter
        steps: list[Step] = []
        by_loop: dict[int, int] = {}
        untimed = 0.0  # byte tracking, kept out of the lifecycle time
        self.clock.advance(seconds=1)
        begin = pc()
        order = workorders.report(self.engine, self.reporter, source="citizen", category="exposed_garbage",
                                  area="dongcheng", description="bags by the bins")
        steps.append(Step("start", -1, pc() - begin))
        result = None
        for p in plan(loops):
            self.clock.advance(seconds=1)
            actor = self.actors[p.kind]
            t0 = pc()
            tasks = self.engine.tasks.for_actor(actor, business_key=order.number)
            t1 = pc()
            if len(tasks) != 1 or tasks[0]["name"] != p.task:
                raise RuntimeError(f"cityloop: expected one open {p.task}, got {[t['name'] for t in tasks]}")
            result = self.engine.complete(tasks[0]["id"], actor, p.form)
            t2 = pc()
            steps.append(Step(p.kind, p.loop, t2 - t0, t1 - t0))
            if track_bytes and p.kind == "review":
                by_loop[p.loop] = self._bytes(order.instance_id)
                untimed += pc() - t2
        total = pc() - begin - untimed
        if result is None or result["state"] != "completed":
            raise RuntimeError(f"cityloop: lifecycle did not complete: {result}")
        return Lifecycle(steps, total, self._bytes(order.instance_id), by_loop)


class ReferenceSide:
    """(b) stock serializer, spec inside, one JSON row per instance (bench/reference.py)."""
    name = "reference"

    def __init__(self, db, spec, subprocess_specs, clock):
        from bench.reference import ReferenceStore
        self.clock = clock
        self.store = ReferenceStore(db, spec, subprocess_specs, clock)
        self.counter = 0

    def lifecycle(self, loops: int, track_bytes: bool = False) -> Lifecycle:
        pc = time.perf_counter
        self.counter += 1
        steps: list[Step] = []
        by_loop: dict[int, int] = {}
        self.clock.advance(seconds=1)
        begin = pc()
        data = {"order_id": self.counter, "category": "exposed_garbage", "area": "dongcheng", "source": "citizen",
                "description": "bags by the bins", "reported_at": self.clock().isoformat()}
        row_id, size = self.store.start(data)
        steps.append(Step("start", -1, pc() - begin))
        done = False
        for p in plan(loops):
            self.clock.advance(seconds=1)
            t0 = pc()
            done, size = self.store.complete(row_id, p.task, p.form)
            steps.append(Step(p.kind, p.loop, pc() - t0))
            if track_bytes and p.kind == "review":
                by_loop[p.loop] = size
        total = pc() - begin
        if not done:
            raise RuntimeError("reference: lifecycle did not complete")
        return Lifecycle(steps, total, size, by_loop)


# ---- backends ----------------------------------------------------------------------------------

def pg_reachable(url: str) -> str | None:
    """None if the server answers, else the reason."""
    from engine.db.session import normalize_url
    try:
        eng = create_engine(normalize_url(url), connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # any failure means "skip PostgreSQL"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def reset_pg(url: str) -> str:
    from engine.db.session import normalize_url
    url = normalize_url(url)
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
        version = conn.execute(text("show server_version")).scalar()
    eng.dispose()
    return version


@dataclass
class Backend:
    label: str
    url: str
    cleanup: object = None  # temp dir to remove
    detail: str = ""


def make_backend(kind: str, pg_url: str | None) -> Backend:
    if kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="cityloop-bench-")
        return Backend("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", tmp,
                       f"SQLite {sqlite3.sqlite_version}, new file in {tmp} (WAL, synchronous=NORMAL)")
    version = reset_pg(pg_url)
    return Backend("postgres", pg_url, None, f"PostgreSQL {version} at {pg_url} (schema public dropped and recreated)")


def spec_of(engine):
    with Session(engine.db) as s:
        found = engine.definitions.latest_process(s, "work_order")  # a Definition, or an (id, version) row
        definition_id = found.id if hasattr(found, "id") else found[0]
        return engine.definitions.spec(s, definition_id)


# ---- running -------------------------------------------------------------------------------------

@dataclass
class Result:
    backend: str
    loops: int
    side: str
    runs: list[Lifecycle]
    error: str | None = None


def run_memory(spec, subprocess_specs, n: int, n50: int, warmup: int) -> dict:
    """(loops, mode) -> seconds per lifecycle, no database at all."""
    from bench.reference import memory_lifecycle
    from engine.clock import ManualClock
    clock = ManualClock(START)
    data = {"order_id": 1, "category": "exposed_garbage", "area": "dongcheng", "source": "citizen",
            "description": "bags by the bins", "reported_at": START.isoformat()}
    modes = ("run", "cityloop", "reference")
    out = {}
    for loops in SCENARIOS:
        steps = [(p.task, p.form) for p in plan(loops)]
        count = n50 if loops >= 50 else n
        for mode in modes:
            for _ in range(warmup if loops < 50 else 0):
                memory_lifecycle(spec, subprocess_specs, clock, data, steps, mode)
        totals = dict.fromkeys(modes, 0.0)
        for _ in range(count):
            for mode in modes:
                totals[mode] += memory_lifecycle(spec, subprocess_specs, clock, data, steps, mode)
        for mode in modes:
            out[(loops, mode)] = (totals[mode] / count, len(steps) + 1)
    return out


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def run_backend(backend: Backend, n: int, n50: int, warmup: int, log) -> tuple[list[Result], tuple]:
    """Both sides on one database. A side that raises is reported as FAILED; the other goes on."""
    from engine.clock import ManualClock
    clock = ManualClock(START)
    city = CityloopSide(backend.url, clock)
    spec, subprocess_specs = spec_of(city.engine)
    ref = ReferenceSide(city.engine.db, spec, subprocess_specs, clock)
    sides = (city, ref)
    failed: dict[str, str] = {}
    results = []

    def attempt(side, loops, phase="", **kw):
        try:
            return side.lifecycle(loops, **kw)
        except Exception as exc:  # a broken side must not hide the other's numbers
            failed[side.name] = _why(exc)
            log(f"  {backend.label}: {side.name} FAILED ({phase or f'{loops}-loop scenario'}): {failed[side.name]}")
            return None

    try:
        for side in sides:  # caches, compiled SQL, parsed forms
            for _ in range(warmup):
                if side.name not in failed:
                    attempt(side, 1, "warm-up, 1-loop lifecycle")
        for loops in SCENARIOS:
            count = n50 if loops >= 50 else n
            runs = {side.name: [] for side in sides}
            started = time.perf_counter()
            for _ in range(count):  # alternate so drift and noise hit both sides alike
                for side in sides:
                    if side.name not in failed:
                        lc = attempt(side, loops, track_bytes=loops >= 50)
                        if lc is not None:
                            runs[side.name].append(lc)
            log(f"  {backend.label}: {loops} loops x {count} lifecycles per side in {time.perf_counter() - started:.1f} s")
            results += [Result(backend.label, loops, side.name, runs[side.name], failed.get(side.name))
                        for side in sides]
    finally:
        city.engine.db.dispose()
    return results, (spec, subprocess_specs)


# ---- statistics and printing ---------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))  # nearest rank
    return s[k]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


@dataclass
class Stats:
    n: int
    steps: int
    lcs: float
    mean_ms: float
    p50: float
    p95: float
    bytes: float


def stats(r: Result) -> Stats:
    steps = [s.seconds * 1000 for lc in r.runs for s in lc.steps]
    return Stats(len(r.runs), len(r.runs[0].steps), len(r.runs) / sum(lc.seconds for lc in r.runs),
                 mean(steps), pct(steps, 0.50), pct(steps, 0.95), mean(lc.end_bytes for lc in r.runs))


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    if not rows:
        return "(nothing to compare)"
    right = right if right is not None else set(range(1, len(headers)))
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda row: "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                for i, (c, w) in enumerate(zip(row, widths)))
    line = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), line, *[fmt(r) for r in rows]])


def status(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def report_memory(mem: dict, out) -> None:
    out("\n== In memory, no database: the floor under each storage layer (same spec, engine, stub operations) ==")
    out("run = SpiffWorkflow only, object kept in memory; cityloop/reference = + that serializer's dump/load around")
    out("every step (cityloop also compacts). 'vs run' < 0: compaction makes the engine's own work cheaper than")
    out("carrying the full history, as 'run' does.")
    rows = []
    for loops in SCENARIOS:
        base = mem[(loops, "run")][0]
        for mode in ("run", "cityloop", "reference"):
            secs, steps = mem[(loops, mode)]
            rows.append([f"{loops} loops" if mode == "run" else "", mode, f"{1 / secs:.1f}", f"{secs * 1000 / steps:.3f}",
                         f"{(secs - base) * 1000 / steps:.3f}" if mode != "run" else "-"])
    out(table(["scenario", "mode", "lc/s", "ms/step", "vs run ms/step"], rows, right={2, 3, 4}))


def report(results: list[Result], out) -> None:
    by = {(r.backend, r.loops, r.side): r for r in results}
    backends = list(dict.fromkeys(r.backend for r in results))

    out("\n== Lifecycles persisted after every step ==")
    out("steps/lc = start + user-task completions; 'step ms' = one step end to end (cityloop: task lookup + complete;")
    out("reference: load + complete + dump + update); bytes = stored workflow text at the end of a lifecycle.")
    rows = []
    for b in backends:
        for loops in SCENARIOS:
            c, f = by.get((b, loops, "cityloop")), by.get((b, loops, "reference"))
            got = {}
            for name, r in (("cityloop", c), ("reference", f)):
                lead = [b if name == "cityloop" else "", f"{loops} loops" if name == "cityloop" else ""]
                if r is None:
                    continue
                if not r.runs:
                    rows.append(lead + [name, 0, "-", "FAILED", "-", "-", "-", "-"])
                    continue
                st = got[name] = stats(r)
                rows.append(lead + [name, st.n, st.steps, f"{st.lcs:.1f}", f"{st.mean_ms:.2f}", f"{st.p50:.2f}",
                                    f"{st.p95:.2f}", f"{st.bytes:.0f}"])
            if len(got) == 2:
                sc, sf = got["cityloop"], got["reference"]
                rows.append(["", "", "ratio c/r", "", "", f"{sc.lcs / sf.lcs:.2f}x", f"{sc.mean_ms / sf.mean_ms:.2f}x",
                             f"{sc.p50 / sf.p50:.2f}x", f"{sc.p95 / sf.p95:.2f}x", f"{sc.bytes / sf.bytes:.2f}x"])
    out(table(["backend", "scenario", "impl", "n", "steps/lc", "lc/s", "mean step ms", "p50 ms", "p95 ms",
               "bytes/inst"], rows, right={3, 4, 5, 6, 7, 8, 9}))
    errors = {(r.backend, r.side): r.error for r in results if r.error}
    for (b, side), why in errors.items():
        out(f"FAILED: {b} / {side}: {why}")
    by = {k: r for k, r in by.items() if r.runs}  # comparisons below need both sides

    out("\n== Mean ms by step kind, 0 loops (cityloop 'lookup' = TaskIndex.for_actor, included in its step) ==")
    rows = []
    for b in backends:
        c, f = by.get((b, 0, "cityloop")), by.get((b, 0, "reference"))
        if c is None or f is None:
            continue
        for kind in ("start", "rectify", "review"):
            cs = [s for lc in c.runs for s in lc.steps if s.kind == kind]
            fs = [s for lc in f.runs for s in lc.steps if s.kind == kind]
            cm, fm = mean(s.seconds * 1000 for s in cs), mean(s.seconds * 1000 for s in fs)
            look = mean(s.lookup * 1000 for s in cs)
            rows.append([b, kind, f"{cm:.2f}", f"{look:.2f}" if kind != "start" else "-", f"{fm:.2f}", f"{cm / fm:.2f}x"])
    out(table(["backend", "step", "cityloop ms", "of which lookup", "reference ms", "ratio c/r"], rows))

    out(f"\n== Step cost vs history, 50 loops: loops 1-{FIRST_LAST} vs {50 - FIRST_LAST + 1}-50 "
        f"(rectify + reject-review steps only) ==")
    rows = []
    for b in backends:
        for side in ("cityloop", "reference"):
            r = by.get((b, 50, side))
            if r is None:
                continue
            first = [s.seconds * 1000 for lc in r.runs for s in lc.steps if 0 <= s.loop < FIRST_LAST]
            last = [s.seconds * 1000 for lc in r.runs for s in lc.steps if 50 - FIRST_LAST <= s.loop < 50]
            b1 = mean(lc.bytes_after_loop.get(0, 0) for lc in r.runs)
            b50 = mean(lc.bytes_after_loop.get(49, 0) for lc in r.runs)
            rows.append([b, side, f"{mean(first):.2f}", f"{mean(last):.2f}", f"{mean(last) / mean(first):.2f}x",
                         f"{b1:.0f}", f"{b50:.0f}"])
    out(table(["backend", "impl", "first 5 ms/step", "last 5 ms/step", "growth", "bytes after loop 1",
               "bytes after loop 50"], rows))

    out("\n== Targets (printed, not asserted) ==")
    rows = []
    c, f = by.get(("sqlite", 0, "cityloop")), by.get(("sqlite", 0, "reference"))
    if c and f:
        sc, sf = stats(c), stats(f)
        rows.append([f"SQLite, 0 loops: cityloop lc/s >= {TARGET_RATIO_LCS:g}x reference", f"{sc.lcs / sf.lcs:.2f}x",
                     status(sc.lcs / sf.lcs >= TARGET_RATIO_LCS)])
        rows.append([f"SQLite, 0 loops: cityloop >= {TARGET_ABS_LCS:g} lifecycles/s", f"{sc.lcs:.1f}/s",
                     status(sc.lcs >= TARGET_ABS_LCS)])
        no_lookup = len(c.runs) / sum(lc.seconds - sum(st.lookup for st in lc.steps) for lc in c.runs)
        rows.append(["  (info) same, without the task lookups", f"{no_lookup:.1f}/s", "-"])
    else:
        rows.append(["SQLite targets", "not run", "-"])
    for b in backends:
        c, f = by.get((b, 50, "cityloop")), by.get((b, 50, "reference"))
        if c and f:
            sc, sf = stats(c), stats(f)
            speed = sf.mean_ms / sc.mean_ms
            rows.append([f"{b}, 50 loops: cityloop >= {TARGET_RATIO_STEP_50:g}x faster per step", f"{speed:.2f}x",
                         status(speed >= TARGET_RATIO_STEP_50)])
    out(table(["target", "measured", "status"], rows, right={1}))


# ---- profile ---------------------------------------------------------------------------------------

def profile_cityloop(n: int, warmup: int, out) -> None:
    """cProfile of cityloop's 0-loop lifecycle on a fresh SQLite file, plus SQL statement counts."""
    from engine.clock import ManualClock
    backend = make_backend("sqlite", None)
    clock = ManualClock(START)
    city = CityloopSide(backend.url, clock)
    spec, subprocess_specs = spec_of(city.engine)
    ref = ReferenceSide(city.engine.db, spec, subprocess_specs, clock)
    try:
        for _ in range(warmup):
            city.lifecycle(0)
            ref.lifecycle(0)
        statement_trace(city, ref, out)
        phase_breakdown(city, n, out)

        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.enable()
        for _ in range(n):
            city.lifecycle(0)
        prof.disable()
        elapsed = time.perf_counter() - started
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf)
        st.sort_stats("cumulative").print_stats(25)
        st.sort_stats("tottime").print_stats(15)
        txt = buf.getvalue()
        site = str(Path(sqlite3.__file__).parent)
        for prefix in sorted({p for p in sys.path if p and "site-packages" in p}, key=len, reverse=True):
            txt = txt.replace(prefix + "/", "")
        txt = txt.replace(str(Path.cwd()) + "/", "").replace(site + "/", "")
        out(f"\n== cProfile: cityloop, 0 loops, SQLite, {n} lifecycles "
            f"({n / elapsed:.1f} lc/s under the profiler) ==")
        out(txt.rstrip())
    finally:
        city.engine.db.dispose()
        shutil.rmtree(backend.cleanup, ignore_errors=True)


def statement_trace(city: CityloopSide, ref: ReferenceSide, out) -> None:
    """Every SQL statement of one 0-loop lifecycle per side, step by step (untimed)."""
    from engine.domain import workorders
    seen: list[str] = []

    def record(conn, cursor, statement, *rest):
        seen.append(" ".join(statement.split()))

    phases: list[tuple[str, str, list[str]]] = []

    def phase(side: str, label: str, fn):
        seen.clear()
        value = fn()
        phases.append((side, label, list(seen)))
        return value

    event.listen(city.engine.db, "before_cursor_execute", record)
    try:
        order = phase("cityloop", "start: workorders.report", lambda: workorders.report(
            city.engine, city.reporter, source="citizen", category="exposed_garbage", area="dongcheng",
            description="bags by the bins"))
        for p in plan(0):
            actor = city.actors[p.kind]
            tasks = phase("cityloop", f"{p.kind}: tasks.for_actor",
                          lambda: city.engine.tasks.for_actor(actor, business_key=order.number))
            phase("cityloop", f"{p.kind}: complete", lambda: city.engine.complete(tasks[0]["id"], actor, p.form))
        data = {"order_id": 0, "category": "exposed_garbage", "area": "dongcheng", "source": "citizen",
                "description": "bags by the bins", "reported_at": START.isoformat()}
        row_id, _ = phase("reference", "start", lambda: ref.store.start(data))
        for p in plan(0):
            phase("reference", f"{p.kind}: complete", lambda: ref.store.complete(row_id, p.task, p.form))
    finally:
        event.remove(city.engine.db, "before_cursor_execute", record)
    totals = {}
    for side, _, stmts in phases:
        totals[side] = totals.get(side, 0) + len(stmts)
    out("\n== SQL statements of one 0-loop lifecycle (3 steps), as sent to the driver ==")
    out("  " + ", ".join(f"{side}: {count} ({count / 3:.1f} per step)" for side, count in totals.items()))
    for side, label, stmts in phases:
        out(f"  {side} / {label}: {len(stmts)}")
        for st in stmts:
            out(f"      {st[:110]}{'...' if len(st) > 110 else ''}")


def phase_breakdown(city: CityloopSide, n: int, out) -> None:
    """Wall time per engine phase (wrappers installed in this process only; files untouched)."""
    import functools

    from SpiffWorkflow.bpmn import BpmnWorkflow

    import engine.bpmn.serializer as ser
    import engine.domain.workorders as wo
    import engine.runtime.case_engine as ce
    import engine.runtime.tasks as tk

    spent: dict[str, float] = {}
    calls: dict[str, int] = {}
    undo = []

    order = []

    def wrap(owner, name, label):
        if owner is None:  # operations: time what the registry hands out
            registry = type(city.engine.registry)
            get = getattr(registry, "get", None)
            if get is None:
                return

            def timed_get(self, topic, _get=get):
                op = _get(self, topic)

                def timed_op(*a, **k):
                    t = time.perf_counter()
                    try:
                        return op(*a, **k)
                    finally:
                        spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
                        calls[label] = calls.get(label, 0) + 1
                return timed_op
            undo.append((registry, "get", get))
            registry.get = timed_get
            order.append(label)
            return
        fn = getattr(owner, name, None)
        if fn is None:
            return
        order.append(label)

        @functools.wraps(fn)
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
                calls[label] = calls.get(label, 0) + 1
        undo.append((owner, name, fn))
        setattr(owner, name, timed)

    for owner, name, label in [
            (wo, "report", "workorders.report (the start step)"),
            (ce.CaseEngine, "start", "  CaseEngine.start"),
            (tk.TaskIndex, "for_actor", "TaskIndex.for_actor (task lookup, rectify/review)"),
            (ce.CaseEngine, "complete", "CaseEngine.complete (rectify/review)"),
            (tk.TaskIndex, "authorized", "  TaskIndex.authorized"),
            (ce.CaseEngine, "_validated", "  CaseEngine._validated (form)"),
            (ce.CaseEngine, "load", "  CaseEngine.load (deserialize)"),
            (BpmnWorkflow, "do_engine_steps", "in start + complete: do_engine_steps (incl. operations)"),
            (None, "operations", "    domain operations (dispatch, close_order, ...)"),
            (ser, "compact", "in start + complete: serializer.compact"),
            (ce.CaseEngine, "_save", "in start + complete: CaseEngine._save"),
            (ser, "dumps", "    serializer.dumps"),
            (tk.TaskIndex, "sync", "    TaskIndex.sync (side tables)")]:
        wrap(owner, name, label)
    try:
        began = time.perf_counter()
        for _ in range(n):
            city.lifecycle(0)
        elapsed = time.perf_counter() - began
    finally:
        for owner, name, fn in reversed(undo):
            setattr(owner, name, fn)
    out(f"\n== Where a cityloop 0-loop lifecycle spends its time (SQLite, {n} lifecycles, "
        f"{elapsed / n * 1000:.2f} ms each with timers on) ==")
    out("indented rows are part of the nearest less-indented row above; 'in start + complete' rows are part of")
    out("both the start step and the completions (their ms/lc counts all three steps)")
    rows = [[label, f"{calls[label] / n:g}", f"{spent[label] / calls[label] * 1000:.3f}", f"{spent[label] / n * 1000:.3f}",
             f"{spent[label] / elapsed * 100:.0f}%"] for label in order if label in spent]
    out(table(["phase", "calls/lc", "ms/call", "ms/lc", "share"], rows))


# ---- main --------------------------------------------------------------------------------------------

def versions() -> str:
    from importlib.metadata import version
    return (f"Python {platform.python_version()}, SpiffWorkflow {version('SpiffWorkflow')}, "
            f"SQLAlchemy {version('SQLAlchemy')}, sqlmodel {version('sqlmodel')}, psycopg {version('psycopg')}, "
            f"SQLite {sqlite3.sqlite_version}")


def git_state() -> str:
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "engine", "workflows"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"code: git {head}" + (" + uncommitted changes in engine/ or workflows/" if dirty else " (clean)")
    except (OSError, subprocess.CalledProcessError):
        return "code: not a git checkout"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__.split("\n")[0])
    ap.add_argument("--sqlite", action="store_true", help="run on SQLite (a new file in a temp dir)")
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, metavar="URL",
                    help=f"run on PostgreSQL (default URL {DEFAULT_PG}); its public schema is DROPPED")
    ap.add_argument("--n", type=int, default=200, help="lifecycles per side for the 0- and 1-loop scenarios")
    ap.add_argument("--n50", type=int, default=5, help="lifecycles per side for the 50-loop scenario")
    ap.add_argument("--warmup", type=int, default=5, help="untimed 1-loop lifecycles per side per backend")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile cityloop's 0-loop lifecycle on SQLite (top 25 cumulative)")
    ap.add_argument("--profile-only", action="store_true", help="only the profile")
    ap.add_argument("--no-memory", action="store_true", help="skip the in-memory floor (no database) table")
    args = ap.parse_args(argv)

    out = lambda s="": print(s, flush=True)
    out("cityloop lifecycle benchmark")
    out(f"  {pin_to_one_core()}")
    out(f"  {versions()}")
    out(f"  {git_state()}")
    out("  cityloop  = engine.system.build(): WorkOrder row, DMN dispatch, domain operations, form validation,")
    out("              open-task/group side tables, audit log, spec by reference + compacted history")
    out("  reference = stock BpmnWorkflowSerializer (CAMUNDA_CONFIG + converters for cityloop specs), spec inside,")
    out("              whole JSON in one row, same parsed spec and SafeScriptEngine, stub operations, no side tables")

    if args.profile_only:
        profile_cityloop(max(args.n, 100), args.warmup, out)
        return 0

    kinds = []
    if args.sqlite or not args.pg:
        kinds.append("sqlite")
    pg_url = args.pg if args.pg else (DEFAULT_PG if not args.sqlite else None)
    if pg_url:
        why = pg_reachable(pg_url)
        if why is None:
            kinds.append("postgres")
        else:
            out(f"  NOTE: PostgreSQL at {pg_url} not reachable ({why}); skipping it")

    results: list[Result] = []
    spec = None
    for kind in kinds:
        backend = make_backend(kind, pg_url)
        out(f"  {backend.label}: {backend.detail}")
        try:
            res, spec = run_backend(backend, args.n, args.n50, args.warmup, out)
            results += res
        finally:
            if backend.cleanup:
                shutil.rmtree(backend.cleanup, ignore_errors=True)
    if results:
        report(results, out)
    else:
        out("\nNo backend ran; nothing to report.")
    if spec is not None and not args.no_memory:
        report_memory(run_memory(*spec, args.n, args.n50, args.warmup), out)
    if args.profile:
        profile_cityloop(max(args.n, 100), args.warmup, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
