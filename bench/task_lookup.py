"""Open-task lookups as the district's open tasks grow: engine.tasks.for_actor on SQLite and
PostgreSQL with 300, 3,000 and 30,000 open tasks.

    .venv/bin/python -m bench.task_lookup [--sqlite] [--pg [URL]] [--sizes 300,3000,30000] [--n 300]

Every step of a work order starts with one lookup: the person's open tasks of one order
(`business_key`), as the field app and the console ask before they complete a task, and the
lifecycle benchmark (bench.lifecycle) times it inside each step. There the district holds a
handful of open tasks; a real one holds thousands, most of them offered to a few big groups
(reviewers, each unit). Here the open tasks are bulk-inserted (three per order, each offered
to one of four groups, a quarter of them to the reviewers' group) and a reviewer looks up

- one order's tasks (`business_key`), the step's lookup;
- the first page of 100 of their inbox (`process_key` only): the task list screen.

Prints microseconds per lookup (mean over --n, after warming up) and the tasks found per
lookup. A table, not assertions. The PostgreSQL database is wiped first: never point --pg at
data you care about."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, insert, select, text

from bench.http_api import PG_DEFAULT, reset_pg
from engine.clock import to_db
from engine.db.models import Definition, Instance, OpenTask, TaskGroup
from engine.runtime.errors import Actor
from engine.system import build

__all__ = ["main"]

GROUPS = ("reviewer", "unit:clean-east", "unit:roads", "dispatcher")
REVIEWER = Actor("r1", {"reviewer"})
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def fill(engine, size: int) -> list[str]:
    """`size` open tasks, three per order, on one instance row; returns the orders' keys."""
    with engine.db.begin() as conn:
        conn.execute(text("DELETE FROM task_group"))
        conn.execute(text("DELETE FROM open_task"))
        definition_id = conn.execute(select(func.max(Definition.id)).where(Definition.kind == "bpmn",
                                                                           Definition.key == "work_order")).scalar_one()
        instance_id = conn.execute(insert(Instance).values(
            process_key="work_order", definition_id=definition_id, business_key="bench", state="running", version=1,
            workflow="{}", created_at=to_db(T0), updated_at=to_db(T0)).returning(Instance.id)).scalar_one()
        tasks, groups, keys = [], [], []
        for i in range(size):
            key = f"WO-LOOKUP-{i // 3:06d}"
            if i % 3 == 0:
                keys.append(key)
            task_id = str(uuid.UUID(int=i + 1))
            tasks.append({"id": task_id, "instance_id": instance_id, "process_key": "work_order",
                          "business_key": key, "name": "Task_review", "title": "Review",
                          "created_at": to_db(T0 + timedelta(seconds=i))})
            groups.append({"task_id": task_id, "group_name": GROUPS[i % len(GROUPS)]})
        for k in range(0, size, 5000):
            conn.execute(insert(OpenTask), tasks[k:k + 5000])
            conn.execute(insert(TaskGroup), groups[k:k + 5000])
    with engine.db.connect() as conn:       # fresh statistics, as autovacuum would have them
        conn.execute(text("ANALYZE open_task, task_group" if engine.db.dialect.name == "postgresql" else "ANALYZE"))
        conn.commit()
    return keys


def timed(n: int, lookup) -> tuple[float, float]:
    """(microseconds per lookup, tasks found per lookup)."""
    for i in range(20):
        lookup(i)
    found = 0
    began = time.perf_counter()
    for i in range(n):
        found += len(lookup(i))
    return (time.perf_counter() - began) / n * 1e6, found / n


def measure(url: str, sizes: list[int], n: int) -> list[tuple]:
    engine = build(url)
    rows = []
    try:
        for size in sizes:
            keys = fill(engine, size)
            by_key = timed(n, lambda i, keys=keys: engine.tasks.for_actor(
                REVIEWER, business_key=keys[(i * 7919) % len(keys)]))
            inbox = timed(max(10, n // 10), lambda i: engine.tasks.for_actor(REVIEWER, process_key="work_order",
                                                                            limit=100))
            rows.append((engine.db.dialect.name, size, *by_key, *inbox))
    finally:
        engine.db.dispose()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sqlite", action="store_true")
    p.add_argument("--pg", nargs="?", const=PG_DEFAULT)
    p.add_argument("--sizes", default="300,3000,30000", help="open tasks, comma-separated")
    p.add_argument("--n", type=int, default=300, help="lookups by order per size (the inbox: a tenth)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    if args.sqlite or not args.pg:
        rows += measure(f"sqlite:///{Path(tempfile.mkdtemp(prefix='cityloop-lookup-')) / 'lookup.db'}", sizes, args.n)
    if (args.pg or not args.sqlite) and reset_pg(args.pg or PG_DEFAULT):
        rows += measure(args.pg or PG_DEFAULT, sizes, args.n)
    print("\nOpen-task lookups by a reviewer (a quarter of the open tasks are offered to the reviewers)")
    print(f"{'backend':10} {'open tasks':>10} {'one order us':>13} {'found':>6} {'inbox page us':>14} {'found':>6}")
    for backend, size, key_us, key_found, inbox_us, inbox_found in rows:
        print(f"{backend:10} {size:10d} {key_us:13.0f} {key_found:6.2f} {inbox_us:14.0f} {inbox_found:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
