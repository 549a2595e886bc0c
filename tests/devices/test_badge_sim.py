"""`cityloop badge-sim`: a crew of simulated badges on the fake BlueZ that a real scanner sees
walk in, with the clone's relay and the replayed frame at the depot and the genuine cloned
badge far away; keys come from the database (--crew) or a file (--keys)."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from devices import token
from devices.scanner import BadgeScanner
from tests.devices.conftest import KEY
from tests.district import seed

pytestmark = pytest.mark.slow     # the badge simulator process scanned over D-Bus


def _scan(adapter: str, seconds: float, found: dict) -> None:
    async def main():
        stop = asyncio.Event()
        scanner = BadgeScanner(lambda s: found.setdefault(s.badge_id, set()).add(s.data), adapter=adapter,
                               check_every=0.2)
        task = asyncio.create_task(scanner.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task
    asyncio.run(main())


def test_badge_sim_walks_a_crew_in_with_a_clone_and_a_replay(bus, system, db_url):
    seed(system, cleaners=6)
    sim = subprocess.Popen([sys.executable, "-m", "engine.cli", "--db", db_url, "badge-sim", "--crew", "crew-e1",
                            "--bus-address", bus.address, "--walk-in", "1", "--duration", "30"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        depot, far = {}, {}
        _scan("hci0", 4.0, depot)
        _scan("hci1", 1.5, far)
    finally:
        sim.send_signal(signal.SIGINT)
        out = sim.communicate(timeout=30)[0]
    assert sim.returncode == 0 and "Traceback" not in out, out
    assert "crew of 6: 3 walk in, 3 stay away (cloned: B0003, replayed: B0004)" in out, out
    assert "simulator stopped" in out
    assert set(depot) == {"B0000", "B0001", "B0002", "B0003", "B0004"}, "B0005 stays away, unheard"
    assert set(far) == {"B0003"}, "the genuine cloned badge is far away"
    assert far["B0003"] & depot["B0003"], "the relay at the depot re-broadcasts the genuine frames"
    now = token.counter_at(datetime.now(timezone.utc))
    replays = {token.decode(d).counter for d in depot["B0004"]}
    assert replays and all(now - c >= 2000 for c in replays), "yesterday's counter (2880 steps a day)"
    genuine = {token.decode(d).counter for d in depot["B0000"]}
    assert all(abs(now - c) <= 2 for c in genuine)
    assert all(token.verify(d, datetime.now(timezone.utc), key=KEY, skew_steps=3).ok for d in depot["B0000"])


def test_badge_sim_from_a_keys_file_without_a_database(bus, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"Z1": "ab" * 32, "Z2": "cd" * 32}))
    done = subprocess.run([sys.executable, "-m", "engine.cli", "badge-sim", "--keys", str(keys), "--absent", "0",
                           "--bus-address", bus.address, "--walk-in", "0.2", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Z1: walks in" in done.stdout and "Z2: walks in" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "badge-sim", "--keys", str(tmp_path / "missing.json")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("error (") and "Traceback" not in bad.stderr
