"""Badge token codec throughput (pure Python, one core): mints, decodes and verifications
per second, verifying with the master key (the server: derives the day's key each time)
and with a tablet's epoch keys. Then, unless --pure, sightings per second through
POST /api/v1/attendance/sightings (the app in-process, SQLite in a temporary directory):
a gateway pushes batches of frames of a 20-person crew for the first time (check-ins) and
again (already checked in). Prints tables; nothing is asserted.

    .venv/bin/python -m bench.badge_tokens [--n 20000] [--pure] [--batches 20] [--batch 500]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone

from bench.tables import table
from devices import token


def rate(fn, n: int) -> tuple[float, float]:
    """(operations per second, microseconds per operation), best of three runs."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return n / best, best / n * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="operations per run (default 20000)")
    ap.add_argument("--pure", action="store_true", help="only the codec, not the HTTP route")
    ap.add_argument("--batches", type=int, default=20, help="HTTP: batches per scenario (default 20)")
    ap.add_argument("--batch", type=int, default=500, help="HTTP: sightings per batch (default 500)")
    args = ap.parse_args(argv)
    n = args.n
    keys = {f"BDG{i:05d}": os.urandom(32) for i in range(500)}
    ids = list(keys)
    at = datetime(2026, 3, 2, 5, 58, 10, tzinfo=timezone.utc)
    frames = [token.mint(b, keys[b], at) for b in ids]
    epoch = token.epoch_at(at)
    epoch_keys = {b: {epoch: token.derive_epoch_key(keys[b], epoch)} for b in ids}
    forged = [f[:-1] + bytes([f[-1] ^ 1]) for f in frames]
    replayed = [token.mint(b, keys[b], at - timedelta(days=1)) for b in ids]
    m = len(ids)

    def mint(k):
        for i in range(k):
            b = ids[i % m]
            token.mint(b, keys[b], at)

    def decode(k):
        for i in range(k):
            token.decode(frames[i % m])

    def verify_master(k, payloads=frames):
        for i in range(k):
            token.verify(payloads[i % m], at, key=keys[ids[i % m]])

    def verify_epoch(k):
        for i in range(k):
            token.verify(frames[i % m], at, epoch_keys=epoch_keys[ids[i % m]])

    def invalid(k):
        junk = [os.urandom(i % 30) for i in range(64)]
        for i in range(k):
            token.verify(junk[i % 64], at, key=b"k")

    assert all(token.verify(f, at, key=keys[b]).ok for f, b in zip(frames, ids))
    rows = []
    for name, fn in [("mint (master key)", mint), ("decode", decode),
                     ("verify, master key (server)", verify_master),
                     ("verify, epoch key (tablet)", verify_epoch),
                     ("verify forged frame", lambda k: verify_master(k, forged)),
                     ("verify replayed frame", lambda k: verify_master(k, replayed)),
                     ("verify random bytes", invalid)]:
        ops, us = rate(fn, n)
        rows.append([name, f"{ops:,.0f}", f"{us:.1f}"])
    print(f"badge token codec, {n} operations per run, best of 3, {m} badges, payload {len(frames[0])} bytes")
    print(table(["operation", "per second", "us each"], rows))
    if not args.pure:
        with tempfile.TemporaryDirectory() as tmp:
            print()
            print(server(f"sqlite:///{tmp}/bench.db", args.batches, args.batch))
    return 0


def server(url: str, batches: int, size: int) -> str:
    """Sightings/s through the HTTP route, in-process (no network), one client."""
    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from engine.api.app import create_app
    from engine.auth import service
    from engine.clock import ManualClock
    from engine.domain import attendance, badges
    from engine.domain.models import Badge, Cleaner, Contract, Crew, Unit
    from engine.system import build

    start = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
    clock = ManualClock(start - timedelta(hours=2))
    engine = build(url, clock=clock)
    crews, key = batches, bytes(range(32))
    with Session(engine.db) as s:
        s.add(Unit(code="clean-east", name="e", name_zh="e", kind="cleaning"))
        s.flush()
        s.add(Contract(code="C-B", contractor="Bench", unit_code="clean-east"))
        s.flush()
        for c in range(crews):
            s.add(Crew(code=f"crew-{c:03d}", contract_code="C-B", muster_point="depot", shift_start="06:00"))
        s.flush()
        for i in range(crews * 20):
            s.add(Badge(id=f"B{i:05d}", secret=badges.seal(s, f"B{i:05d}", key)))
            s.add(Cleaner(id=f"cl{i:05d}", name=f"c{i}", crew_code=f"crew-{i // 20:03d}", badge_id=f"B{i:05d}"))
        device, code = service.create_device(s, "bench gateway", "gateway", None, "bench", clock())
        s.commit()
        gw = service.pair(s, device.id, code, clock())
        s.commit()
    for c in range(crews):
        attendance.plan_shift(engine, f"crew-{c:03d}", start)
    clock.set(start - timedelta(minutes=10))
    app = create_app(engine, scheduler=False)
    rows = []
    with TestClient(app) as client:
        head = {"Authorization": f"Bearer {gw}"}
        for label in ("first sightings (check-ins)", "the next minutes (already in)"):
            at = clock()
            bodies = []
            for b in range(batches):   # batch b: crew b's 20 badges, one token per 30 s step, oldest first
                steps = size // 20
                items = []
                for i in range(size):
                    bid, seen = f"B{b * 20 + i % 20:05d}", at + timedelta(seconds=30 * (i // 20 - steps))
                    items.append({"company_id": token.COMPANY_ID, "rssi": -60, "lat": 31.2, "lon": 121.4,
                                  "data": token.mint(bid, key, seen).hex(), "seen_at": seen.isoformat()})
                bodies.append({"source": "gw-depot", "items": items})
            t0, verdicts = time.perf_counter(), {}
            for body in bodies:
                r = client.post("/api/v1/attendance/sightings", json=body, headers=head)
                r.raise_for_status()
                for k in ("applied", "ignored", "flagged", "invalid"):
                    verdicts[k] = verdicts.get(k, 0) + r.json()[k]
            dt = time.perf_counter() - t0
            n = batches * size
            rows.append([label, str(n), f"{n / dt:,.0f}", f"{dt / batches * 1000:.0f}",
                         " ".join(f"{k}={v}" for k, v in verdicts.items() if v)])
            clock.set(at + timedelta(seconds=30 * (size // 20)))
    engine.db.dispose()
    return (f"POST /api/v1/attendance/sightings, in-process, {url.split(':')[0]}, {batches} batches of {size}\n"
            + table(["scenario", "sightings", "per second", "ms per batch", "verdicts"], rows))


if __name__ == "__main__":
    raise SystemExit(main())
