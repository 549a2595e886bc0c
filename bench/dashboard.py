"""The work-order dashboard on a district-sized table: ms per `metrics.work_orders` call, with the
median and p90 hours to close computed by the database (now) and by loading every closed order
into Python (before, issue 14). Prints figures, asserts nothing.

    .venv/bin/python -m bench.dashboard [--orders 125000] [--runs 5] [--sqlite | --pg URL]

The orders are bulk-inserted by bench.scale_data (about 80% of them closed, over the last year)
into a new SQLite file and into a PostgreSQL database `<name>_dashboard` beside the given one
(its schema dropped and recreated). The period is the whole year, as a dispatcher's widest view.
"Before" is the same `work_orders` call with `metrics.close_times` swapped for the former Python
computation (kept below), so the two differ only in that part; both answers are compared."""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from bench.scale_data import build_district
from bench.scenarios import pg_reachable, reset_pg, twin_pg_url
from engine.clock import from_db
from engine.db.session import make_engine
from engine.domain import metrics
from engine.domain.attendance import DISTRICT_TZ
from engine.domain.models import WorkOrder

__all__ = ["main", "python_close_times"]

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def python_close_times(session: Session, start: datetime, end: datetime, unit: str | None = None):
    """The former computation: every closed order of the period loaded, spans, days and
    percentiles in Python."""
    W = WorkOrder
    spans: list[float] = []
    per_day: dict[str, list[float]] = {}
    where = [W.state == "closed", W.closed_at >= start, W.closed_at < end]
    if unit is not None:
        where.append(W.unit_code == unit)
    for reported_at, closed_at in session.exec(select(W.reported_at, W.closed_at).where(*where)):
        closed_local = from_db(closed_at)
        span = (closed_local - from_db(reported_at)).total_seconds() / 3600
        spans.append(span)
        per_day.setdefault(closed_local.astimezone(DISTRICT_TZ).date().isoformat(), []).append(span)

    def figures(v):
        return metrics.CloseTimes(len(v), metrics.percentile(v, 0.5), metrics.percentile(v, 0.9))
    return figures(spans), {d: figures(v) for d, v in sorted(per_day.items())}


def _time(db, runs: int, call) -> tuple[str, object]:
    """'wall ms (this process's CPU ms)', medians of `runs` calls after one warm-up call."""
    wall, cpu, answer = [], [], None
    for _ in range(runs + 1):
        with Session(db) as s:
            t0, c0 = time.perf_counter(), time.process_time()
            answer = call(s)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    return f"{statistics.median(wall[1:]):6.0f} ms ({statistics.median(cpu[1:]):4.0f} CPU)", answer


def run(label: str, url: str, orders: int, runs: int) -> None:
    build_district(url, orders=orders, points=0, now=NOW, progress=lambda _: None)
    db = make_engine(url)
    start, end = NOW - timedelta(days=366), NOW + timedelta(minutes=1)
    try:
        with Session(db) as s:
            closed = s.exec(select(func.count()).select_from(WorkOrder).where(
                WorkOrder.state == "closed", WorkOrder.closed_at >= start, WorkOrder.closed_at < end)).one()
        print(f"{label}: {orders:,} orders, {closed:,} closed in the period")
        for unit in (None, "clean-east"):
            def board(s, unit=unit):
                return metrics.work_orders(s, start, end, NOW, unit)
            after, new = _time(db, runs, board)
            part, _ = _time(db, runs, lambda s, unit=unit: metrics.close_times(s, start, end, unit))
            original = metrics.close_times
            metrics.close_times = python_close_times    # type: ignore[assignment]
            try:
                before, old = _time(db, runs, board)
            finally:
                metrics.close_times = original
            assert isinstance(new, dict)
            print(f"  unit={unit or 'all'} ({new['closed']:,} closed, {len(new['by_day'])} days)  work_orders: "
                  f"before {before}, now {after}; close_times alone {part}; same answer: {old == new}")
    finally:
        db.dispose()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=125_000, help="orders to insert (about 80%% closed)")
    ap.add_argument("--runs", type=int, default=5, help="timed calls each way (median printed)")
    ap.add_argument("--sqlite", action="store_true", help="SQLite only")
    ap.add_argument("--pg", default=None, help=f"PostgreSQL URL (default {DEFAULT_PG}; its _dashboard twin is used)")
    args = ap.parse_args(argv)
    print(f"bench.dashboard: median of {args.runs} calls (wall, and this process's CPU: the database's too on "
          f"SQLite, not on PostgreSQL), period = the year up to {NOW:%Y-%m-%d}, zone {DISTRICT_TZ}")
    tmp = tempfile.mkdtemp(prefix="cityloop-dashboard-")
    try:
        run("SQLite", f"sqlite:///{Path(tmp) / 'dashboard.db'}", args.orders, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.sqlite:
        base = args.pg or DEFAULT_PG
        why = pg_reachable(base)
        if why:
            print(f"PostgreSQL at {base} not reachable ({why}); skipped")
        else:
            url = twin_pg_url(base, "dashboard")
            reset_pg(url)
            run("PostgreSQL", url, args.orders, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
