"""The in-memory floor (no database at all) and the --profile diagnostics of the lifecycle
benchmark: SQL statement trace, wall time per engine phase, and cProfile."""
from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from sqlalchemy import event

from bench.scenarios import (
    SCENARIOS,
    START,
    CityloopSide,
    ReferenceSide,
    lifecycles_for,
    make_backend,
    make_sides,
    order_data,
    plan,
)
from bench.tables import table

# ---- in memory, no database -------------------------------------------------------------------------

def run_memory(spec, subprocess_specs, n: int, n50: int, warmup: int) -> dict:
    """(loops, mode) -> seconds per lifecycle, no database at all."""
    from bench.reference import memory_lifecycle
    from engine.clock import ManualClock
    clock = ManualClock(START)
    data = order_data(1, START)
    modes = ("run", "cityloop", "reference")
    out = {}
    for loops in SCENARIOS:
        steps = [(p.task, p.form) for p in plan(loops)]
        count = lifecycles_for(loops, n, n50)
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


# ---- profile ---------------------------------------------------------------------------------------

def profile_cityloop(n: int, warmup: int, out, kind: str = "sqlite", pg_url: str | None = None) -> None:
    """cProfile of cityloop's 0-loop lifecycle on a fresh SQLite file or the (wiped) PostgreSQL
    database, plus SQL statement counts and the time per phase."""
    backend = make_backend(kind, pg_url)
    city, _inline, ref, _ = make_sides(backend)
    try:
        for _ in range(warmup):
            city.lifecycle(0)
            ref.lifecycle(0)
        statement_trace(city, ref, out)
        phase_breakdown(city, n, out, backend.label)

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
        out(f"\n== cProfile: cityloop, 0 loops, {backend.label}, {n} lifecycles "
            f"({n / elapsed:.1f} lc/s under the profiler) ==")
        out(txt.rstrip())
    finally:
        city.engine.db.dispose()
        if backend.cleanup:
            shutil.rmtree(backend.cleanup, ignore_errors=True)


def statement_trace(city: CityloopSide, ref: ReferenceSide, out) -> None:
    """Every SQL statement of one 0-loop lifecycle per side, step by step (untimed)."""
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
        order = phase("cityloop", "start: workorders.report", city.report)
        for p in plan(0):
            actor = city.actors[p.kind]
            tasks = phase("cityloop", f"{p.kind}: tasks.for_actor",
                          lambda actor=actor: city.engine.tasks.for_actor(actor, business_key=order.number))
            phase("cityloop", f"{p.kind}: complete",
                  lambda actor=actor, tasks=tasks, p=p: city.engine.complete(tasks[0]["id"], actor, p.form))
        data = order_data(0, START)
        row_id, _ = phase("reference", "start", lambda: ref.store.start(data))
        for p in plan(0):
            phase("reference", f"{p.kind}: complete", lambda p=p: ref.store.complete(row_id, p.task, p.form))
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


def phase_breakdown(city: CityloopSide, n: int, out, backend: str = "sqlite") -> None:
    """Wall and CPU time per engine phase (wrappers installed in this process only; files
    untouched). Wall minus CPU is mostly waiting on the database server."""
    import functools

    import engine.bpmn.serializer as ser
    import engine.bpmn.spiff as spiff
    import engine.db.direct as direct
    import engine.domain.workorders as wo
    import engine.runtime.case_engine as ce
    import engine.runtime.tasks as tk
    spent: dict[str, float] = {}
    cpu: dict[str, float] = {}
    calls: dict[str, int] = {}
    undo = []
    order = []

    def timer(fn, label):
        """fn, adding its wall time and call count to `label`."""
        @functools.wraps(fn)
        def timed(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
                cpu[label] = cpu.get(label, 0.0) + time.process_time() - c
                calls[label] = calls.get(label, 0) + 1
        return timed

    def wrap(owner, name, label):
        operations = owner is None  # operations: time what the registry hands out
        if operations:
            owner, name = type(city.engine.registry), "get"
        fn = getattr(owner, name, None)
        if fn is None:
            return
        if operations:
            def replacement(self, topic, _get=fn):
                return timer(_get(self, topic), label)
        else:
            replacement = timer(fn, label)
        order.append(label)
        undo.append((owner, name, fn))
        setattr(owner, name, replacement)

    for owner, name, label in [
            (wo, "report", "workorders.report (the start step)"),
            (ce.CaseEngine, "start", "  CaseEngine.start"),
            (tk.TaskIndex, "for_actor", "TaskIndex.for_actor (task lookup, rectify/review)"),
            (ce.CaseEngine, "complete", "CaseEngine.complete (rectify/review)"),
            (tk.TaskIndex, "authorized", "  TaskIndex.authorized"),
            (ce.CaseEngine, "_validated", "  CaseEngine._validated (form)"),
            (ce.CaseEngine, "load", "  CaseEngine.load (deserialize)"),
            (spiff, "engine_steps", "in start + complete: engine steps (incl. operations)"),
            (None, "operations", "    domain operations (dispatch, close_order, ...)"),
            (ser, "compact", "in start + complete: serializer.compact"),
            (ce.CaseEngine, "_save", "in start + complete: CaseEngine._save"),
            (ser, "dumps", "    serializer.dumps"),
            (tk.TaskIndex, "sync", "    TaskIndex.sync (side tables)"),
            (direct, "execute", "anywhere: a statement sent on its own (engine.db.direct.execute)"),
            (direct, "finish", "anywhere: a step's deferred writes + COMMIT (engine.db.direct.finish)")]:
        wrap(owner, name, label)
    try:
        began, began_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            city.lifecycle(0)
        elapsed, elapsed_cpu = time.perf_counter() - began, time.process_time() - began_cpu
    finally:
        for owner, name, fn in reversed(undo):
            setattr(owner, name, fn)
    out(f"\n== Where a cityloop 0-loop lifecycle spends its time ({backend}, {n} lifecycles, "
        f"{elapsed / n * 1000:.2f} ms each with timers on, of it {elapsed_cpu / n * 1000:.2f} ms this process's "
        "CPU) ==")
    out("indented rows are part of the nearest less-indented row above; 'in start + complete' rows are part of")
    out("both the start step and the completions (their ms/lc counts all three steps); 'anywhere' rows overlap the")
    out("others (they run inside them). cpu ms/lc is this process's CPU: the rest of a row's time is waiting, mostly")
    out("on the database server")
    rows = [[label, f"{calls[label] / n:g}", f"{spent[label] / calls[label] * 1000:.3f}",
             f"{spent[label] / n * 1000:.3f}", f"{cpu[label] / n * 1000:.3f}", f"{spent[label] / elapsed * 100:.0f}%"]
            for label in order if label in spent]
    out(table(["phase", "calls/lc", "ms/call", "ms/lc", "cpu ms/lc", "share"], rows))
