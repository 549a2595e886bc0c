"""Scenario runners for the lifecycle benchmark: the lifecycle plan, the two sides (cityloop
and the reference way), the backends they run on, and the loop that runs both on one database."""
from __future__ import annotations

import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlmodel import Session, select

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
UNITS = ["clean-east", "clean-west", "market-huaqiao", "market-xinhe", "market-dongcheng", "ads-team",
         "roads", "gas-office", "green-team", "dispatch-desk"]
SCENARIOS = (0, 1, 50)  # reject loops per lifecycle

PHOTO = "a" * 64
RECTIFY = {"action": "fixed", "after_photos": [PHOTO]}
REJECT = {"decision": "reject", "reason": "again"}
APPROVE = {"decision": "approve"}


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
    steps += [PlannedStep("rectify", "Task_rectify", RECTIFY, loops),
              PlannedStep("review", "Task_review", APPROVE, loops)]
    return steps


def lifecycles_for(loops: int, n: int, n50: int) -> int:
    """How many lifecycles a scenario measures: n, or n50 for the 50-loop scenario."""
    return n50 if loops >= 50 else n


def order_data(order_id: int, reported_at: datetime) -> dict:
    """The workflow data a reference (or in-memory) instance starts from."""
    return {"order_id": order_id, "category": "exposed_garbage", "area": "dongcheng", "source": "citizen",
            "description": "bags by the bins", "reported_at": reported_at.isoformat()}


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
                s.add(Unit(code=code, name=code, name_zh=code,
                           kind="cleaning" if code.startswith("clean") else "office", leader_id=f"leader.{code}"))
            s.commit()
        self.reporter = Actor("d1", {"dispatcher"})
        self.actors = {"rectify": Actor("w1", {"unit:clean-east"}), "review": Actor("r1", {"reviewer"})}

    def report(self):
        """The start step: a citizen report, as the dispatcher files it."""
        from engine.domain import workorders
        return workorders.report(self.engine, self.reporter, source="citizen", category="exposed_garbage",
                                 area="dongcheng", description="bags by the bins")

    def _bytes(self, instance_id: int) -> int:
        """The stored workflow's size, read as the engine reads (engine.reading: no transaction). A
        Session's read would end in a ROLLBACK, and psycopg forgets the connection's prepared
        statements on a ROLLBACK: the timed steps would then parse every statement again, as
        the server (which rolls nothing back on the step path; bench.server_cpu's parses) does not."""
        from engine.db.models import Instance
        with self.engine.reading() as conn:
            return len(conn.execute(select(Instance.workflow).where(Instance.id == instance_id)).scalar_one())

    def lifecycle(self, loops: int, track_bytes: bool = False) -> Lifecycle:
        pc = time.perf_counter
        steps: list[Step] = []
        by_loop: dict[int, int] = {}
        untimed = 0.0  # byte tracking, kept out of the lifecycle time
        self.clock.advance(seconds=1)
        begin = pc()
        order = self.report()
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


INLINE = Path(__file__).with_name("work_order_inline.bpmn")


class InlineSide(CityloopSide):
    """(c) cityloop with the rectify/review loop drawn inside work_order, as it was before the
    loop became the called `rectification` process (bench/work_order_inline.bpmn, deployed as a
    newer work_order version on its own database): the yardstick for the call activity's cost."""
    name = "cityloop-inline"

    def __init__(self, url: str, clock):
        from engine.runtime.errors import Actor
        super().__init__(url, clock)
        self.engine.deploy([("work_order.bpmn", INLINE.read_text())], Actor("bench"))


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
        row_id, size = self.store.start(order_data(self.counter, self.clock()))
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


def twin_pg_url(url: str, suffix: str) -> str:
    """A database beside `url`'s (`<name>_<suffix>`), created if missing."""
    from sqlalchemy.engine import make_url

    from engine.db.session import normalize_url
    main = make_url(normalize_url(url))
    name = f"{main.database}_{suffix}"
    eng = create_engine(main, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        if conn.execute(text("select 1 from pg_database where datname = :n"), {"n": name}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return main.set(database=name).render_as_string(hide_password=False)


@dataclass
class Backend:
    label: str
    url: str
    cleanup: object = None  # temp dir to remove
    detail: str = ""
    inline_url: str = ""    # the inline side's own database
    ref_url: str = ""       # the reference side's own database


def make_backend(kind: str, pg_url: str | None) -> Backend:
    if kind == "sqlite":
        tmp = tempfile.mkdtemp(prefix="cityloop-bench-")
        return Backend("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", tmp,
                       f"SQLite {sqlite3.sqlite_version}, a new file per side in {tmp} (WAL, synchronous=NORMAL)",
                       f"sqlite:///{Path(tmp) / 'inline.db'}", f"sqlite:///{Path(tmp) / 'reference.db'}")
    version = reset_pg(pg_url)
    inline, ref = twin_pg_url(pg_url, "inline"), twin_pg_url(pg_url, "reference")
    reset_pg(inline)
    reset_pg(ref)
    return Backend("postgres", pg_url, None, f"PostgreSQL {version} at {pg_url}, with _inline and _reference twins "
                                             "for those sides (schema public dropped and recreated)", inline, ref)


def spec_of(engine):
    with Session(engine.db) as s:
        found = engine.definitions.latest_process(s, "work_order")  # a Definition, or an (id, version) row
        definition_id = found.id if hasattr(found, "id") else found[0]
        return engine.definitions.spec(s, definition_id)


def make_sides(backend: Backend) -> tuple[CityloopSide, InlineSide, ReferenceSide, tuple]:
    """The three sides, each on its own database (so one side's writes do not slow another's
    commits), on one clock; the reference starts from cityloop's parsed spec. Returns
    (cityloop, inline, reference, (spec, subprocess_specs))."""
    from engine.clock import ManualClock
    from engine.db.session import make_engine
    clock = ManualClock(START)
    city = CityloopSide(backend.url, clock)
    inline = InlineSide(backend.inline_url, clock)
    spec, subprocess_specs = spec_of(city.engine)
    ref = ReferenceSide(make_engine(backend.ref_url), spec, subprocess_specs, clock)
    return city, inline, ref, (spec, subprocess_specs)


# ---- running -------------------------------------------------------------------------------------

@dataclass
class Result:
    backend: str
    loops: int
    side: str
    runs: list[Lifecycle]
    error: str | None = None


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def run_backend(backend: Backend, n: int, n50: int, warmup: int, log) -> tuple[list[Result], tuple]:
    """Both sides on one database. A side that raises is reported as FAILED; the other goes on."""
    city, inline, ref, spec = make_sides(backend)
    sides = (city, inline, ref)
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
            count = lifecycles_for(loops, n, n50)
            runs = {side.name: [] for side in sides}
            started = time.perf_counter()
            for _ in range(count):  # alternate so drift and noise hit both sides alike
                for side in sides:
                    if side.name not in failed:
                        lc = attempt(side, loops, track_bytes=loops >= 50)
                        if lc is not None:
                            runs[side.name].append(lc)
            log(f"  {backend.label}: {loops} loops x {count} lifecycles per side "
                f"in {time.perf_counter() - started:.1f} s")
            results += [Result(backend.label, loops, side.name, runs[side.name], failed.get(side.name))
                        for side in sides]
    finally:
        city.engine.db.dispose()
        inline.engine.db.dispose()
        ref.store.db.dispose()
    return results, spec
