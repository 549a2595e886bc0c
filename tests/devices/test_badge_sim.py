"""`cityloop badge-sim`: a crew of simulated badges on the fake BlueZ that a real scanner sees
walk in, with the clone's relay and the replayed frame at the depot and the genuine cloned
badge far away; keys come from the database (--crew) or a file (--keys).

No test here reads the wall clock: the simulator mints the tokens of a moment the test chose
(`--at`, or a ManualClock in process), and the scans last until what they wait for was heard,
not a fixed time. (The first version scanned the depot for 4 s, then elsewhere for 1.5 s,
with badges on the wall clock: when a 30 s token step fell between the two scans, the depot
had heard only the old token of the cloned badge and the far scan only the new one.)"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from devices import token
from devices.scanner import BadgeScanner
from devices.sim import CrewWalkIn
from engine.clock import ManualClock
from tests.devices.conftest import KEY
from tests.district import seed
from tests.waiting import until

# One second before a token step (08:00:00 UTC is a multiple of 30 s): the phase that made
# the wall-clock version fail, chosen on purpose.
T = datetime(2026, 3, 2, 7, 59, 59, tzinfo=timezone.utc)
Heard = dict[str, set[bytes]]

pytestmark = pytest.mark.slow     # the badge simulator process scanned over D-Bus


def _scan_both(done: Callable[[Heard, Heard], bool], timeout: float = 60.0) -> tuple[Heard, Heard]:
    """Scan the depot (hci0) and elsewhere (hci1) at the same time until `done(depot, far)`."""
    depot: Heard = {}
    far: Heard = {}

    async def main():
        stop = asyncio.Event()
        scanners = [BadgeScanner(lambda s, into=into: into.setdefault(s.badge_id, set()).add(s.data),
                                 adapter=adapter, check_every=0.2)
                    for adapter, into in (("hci0", depot), ("hci1", far))]
        tasks = [asyncio.create_task(s.run(stop)) for s in scanners]
        try:
            await until(lambda: done(depot, far), timeout, what="the badges to be heard")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    asyncio.run(main())
    return depot, far


def test_badge_sim_walks_a_crew_in_with_a_clone_and_a_replay(bus, system, db_url):
    seed(system, cleaners=6)
    assert token.counter_at(T + timedelta(seconds=1)) == token.counter_at(T) + 1, "T is 1 s before a step"
    sim = subprocess.Popen([sys.executable, "-m", "engine.cli", "--db", db_url, "badge-sim", "--crew", "crew-e1",
                            "--bus-address", bus.address, "--walk-in", "1", "--duration", "300",
                            "--at", T.isoformat()],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    expected = {"B0000", "B0001", "B0002", "B0003", "B0004"}

    def heard(depot: Heard, far: Heard) -> bool:
        assert sim.poll() is None, "the simulator stopped early"
        return set(depot) >= expected and "B0003" in far

    try:
        depot, far = _scan_both(heard)
    finally:
        sim.send_signal(signal.SIGINT)
        out = sim.communicate(timeout=30)[0]
    assert sim.returncode == 0 and "Traceback" not in out, out
    assert "crew of 6: 3 walk in, 3 stay away (cloned: B0003, replayed: B0004)" in out, out
    assert f"badges advertise the tokens of {T.isoformat()}, a fixed moment" in out, out
    assert "simulator stopped" in out
    assert set(depot) == expected, "B0005 stays away, unheard"
    assert set(far) == {"B0003"}, "the genuine cloned badge is far away"
    genuine = token.mint("B0003", KEY, T)
    assert far["B0003"] == {genuine} and depot["B0003"] == {genuine}, \
        "the relay at the depot re-broadcasts the genuine badge's frame"
    for badge in ("B0000", "B0001", "B0002"):
        assert depot[badge] == {token.mint(badge, KEY, T)}, badge
        assert token.verify(token.mint(badge, KEY, T), T, key=KEY).ok
    [replay] = depot["B0004"]
    assert replay == token.mint("B0004", KEY, T - timedelta(days=1))
    assert token.decode(replay).counter == token.counter_at(T) - token.EPOCH_STEPS, "yesterday's counter"
    assert token.verify(replay, T, key=KEY).reason == token.OUTSIDE_WINDOW


def test_the_relay_follows_the_genuine_badge_across_a_token_step(fake):
    """With a ManualClock 1 s before a step: the relay at the depot and the genuine badge far
    away advertise the same token before the step and the same new one after it; the
    replayed frame stays yesterday's."""
    fake.add_adapter("hci1")
    clock = ManualClock(T)
    badges = [(f"B{i:04d}", KEY) for i in range(3)]
    scenario = CrewWalkIn(fake, badges, absent=2, walk_in=0, clock=clock)
    assert (scenario.plan.cloned, scenario.plan.replayed) == ("B0001", "B0002")
    scenario.attacks()                                   # the relay, the far badge and the replay
    before, after = (token.mint("B0001", KEY, clock() + timedelta(seconds=s)) for s in (0, 1))
    moved = []

    def heard(depot: Heard, far: Heard) -> bool:
        if not moved and before in depot.get("B0001", ()) and before in far.get("B0001", ()):
            clock.advance(seconds=1)                     # the step falls while both are scanning
            moved.append(True)
        return bool(moved) and after in depot.get("B0001", ()) and after in far.get("B0001", ())

    depot, far = _scan_both(heard)
    assert depot["B0001"] == far["B0001"] == {before, after}
    assert [token.decode(f).counter for f in sorted(depot["B0001"], key=lambda f: token.decode(f).counter)] == \
        [token.counter_at(T), token.counter_at(T) + 1]
    assert depot["B0002"] == {token.mint("B0002", KEY, T - timedelta(days=1))}
    assert set(depot) == {"B0001", "B0002"} and set(far) == {"B0001"}


def test_badge_sim_from_a_keys_file_without_a_database(bus, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"Z1": "ab" * 32, "Z2": "cd" * 32}))
    done = subprocess.run([sys.executable, "-m", "engine.cli", "badge-sim", "--keys", str(keys), "--absent", "0",
                           "--bus-address", bus.address, "--walk-in", "0.2", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Z1: walks in" in done.stdout and "Z2: walks in" in done.stdout
    assert "fixed moment" not in done.stdout, "the wall clock unless --at is given"
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "badge-sim", "--keys", str(tmp_path / "missing.json")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("error (") and "Traceback" not in bad.stderr
    naive = subprocess.run([sys.executable, "-m", "engine.cli", "badge-sim", "--keys", str(keys),
                            "--at", "2026-03-02T08:00:00"], capture_output=True, text=True, timeout=60)
    assert naive.returncode == 2 and "with an offset" in naive.stderr and "Traceback" not in naive.stderr
