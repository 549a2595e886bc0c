"""Database round trips per lifecycle step for bench.lifecycle on PostgreSQL, counted on the wire.

An untimed pass after the timed ones: the cityloop side is built again on the (wiped) main
database, reached through bench/pgwire.py's proxy, and runs 0-loop lifecycles (report,
rectify, review) with the tally read between steps. Kept out of the timed runs because the
proxy's threads would share the benchmark's pinned core."""
from __future__ import annotations

from bench.pgwire import WireProxy, figures
from bench.scenarios import START, CityloopSide, plan, reset_pg

__all__ = ["report_round_trips"]


def report_round_trips(pg_url: str, out, n: int = 50, warmup: int = 5) -> None:
    from engine.clock import ManualClock
    reset_pg(pg_url)
    with WireProxy(pg_url) as proxy:
        side = CityloopSide(proxy.url, ManualClock(START))
        try:
            for _ in range(warmup):
                side.lifecycle(1)
            totals: dict[str, list] = {"start": [], "rectify": [], "rectify lookup": [], "review": [],
                                       "review lookup": []}
            for _ in range(n):
                side.clock.advance(seconds=1)
                before = proxy.tally.snapshot()
                order = side.report()
                totals["start"].append((before, proxy.tally.snapshot()))
                for p in plan(0):
                    side.clock.advance(seconds=1)
                    actor = side.actors[p.kind]
                    t0 = proxy.tally.snapshot()
                    (task,) = side.engine.tasks.for_actor(actor, business_key=order.number)
                    t1 = proxy.tally.snapshot()
                    side.engine.complete(task["id"], actor, p.form)
                    t2 = proxy.tally.snapshot()
                    totals[f"{p.kind} lookup"].append((t0, t1))
                    totals[p.kind].append((t0, t2))
        finally:
            side.engine.db.dispose()
        errors = proxy.errors
    out("\n== Database round trips per step, PostgreSQL, cityloop, 0 loops (counted on the wire by bench/pgwire.py,"
        f" untimed pass of {n} lifecycles)")
    out(f"{'step':16} {'round trips':>11} {'statements':>10} {'parses':>6}")
    for kind, pairs in totals.items():
        sums = {"round_trips": 0.0, "statements": 0.0, "parses": 0.0}
        for a, b in pairs:
            for k, v in figures(a, b, 1).items():
                sums[k] += v
        label = "  of it, lookup" if kind.endswith("lookup") else kind
        out(f"{label:16} {sums['round_trips'] / n:11.2f} {sums['statements'] / n:10.2f} {sums['parses'] / n:6.2f}")
    out("(rectify and review include their task lookup, engine.tasks.for_actor, shown on the row below each)")
    if errors:
        out(f"  pgwire proxy errors: {errors[:3]}")
