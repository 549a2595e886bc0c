"""Work-order lifecycles, persisted after every step: cityloop vs the reference way.

    .venv/bin/python -m bench.lifecycle [--sqlite] [--pg [URL]] [--n N] [--n50 N] [--profile]

With neither --sqlite nor --pg both backends run (PostgreSQL at the default URL, skipped
with a note when it does not answer). Prints tables; asserts nothing about speed. See
bench/README.md for how to read the output.

This module is the command line. The scenario runners are in bench/scenarios.py, the tables in
bench/tables.py, the in-memory floor and --profile in bench/profiling.py.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import sys

from bench.lifecycle_wire import report_round_trips
from bench.profiling import profile_cityloop, run_memory
from bench.scenarios import Result, make_backend, pg_reachable, run_backend
from bench.tables import report, report_memory

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def pin_to_one_core() -> str:
    allowed = sorted(os.sched_getaffinity(0))
    cpu = 0 if 0 in allowed else allowed[0]
    os.sched_setaffinity(0, {cpu})
    return (f"benchmark process pinned to CPU {cpu} with os.sched_setaffinity (was allowed {len(allowed)} "
            f"CPU(s)); a PostgreSQL server runs in its own processes and is NOT pinned")


def versions() -> str:
    from importlib.metadata import version
    return (f"Python {platform.python_version()}, SpiffWorkflow {version('SpiffWorkflow')}, "
            f"SQLAlchemy {version('SQLAlchemy')}, sqlmodel {version('sqlmodel')}, psycopg {version('psycopg')}, "
            f"SQLite {sqlite3.sqlite_version}")


def git_state() -> str:
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
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
                    help="also profile cityloop's 0-loop lifecycle on each backend: statements, wall and CPU per "
                         "phase, cProfile (top 25 cumulative)")
    ap.add_argument("--profile-only", action="store_true", help="only the profile")
    ap.add_argument("--no-memory", action="store_true", help="skip the in-memory floor (no database) table")
    ap.add_argument("--no-wire", action="store_true",
                    help="skip the untimed pass counting database round trips per step on PostgreSQL")
    args = ap.parse_args(argv)

    def out(s: str = "") -> None:
        print(s, flush=True)

    out("cityloop lifecycle benchmark")
    out(f"  {pin_to_one_core()}")
    out(f"  {versions()}")
    out(f"  {git_state()}")
    out("  cityloop  = engine.system.build(): WorkOrder row, DMN dispatch, domain operations, form validation,")
    out("              open-task/group side tables, audit log, spec by reference + compacted history")
    out("  reference = stock BpmnWorkflowSerializer (CAMUNDA_CONFIG + converters for cityloop specs), spec inside,")
    out("              whole JSON in one row, same parsed spec and SafeScriptEngine, stub operations, no side tables")

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
    if args.profile_only:
        for kind in kinds:
            profile_cityloop(max(args.n, 100), args.warmup, out, kind, pg_url)
        return 0

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
    if "postgres" in kinds and pg_url and not args.no_wire:
        report_round_trips(pg_url, out)
    if spec is not None and not args.no_memory:
        report_memory(run_memory(*spec, args.n, args.n50, args.warmup), out)
    if args.profile:
        for kind in kinds:
            profile_cityloop(max(args.n, 100), args.warmup, out, kind, pg_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
