"""End to end, no radio: a crew of 20 on the fake BlueZ -> two `cityloop badge-gateway`
processes (unmodified bleak on the private bus) -> the real server over HTTP.

17 cleaners walk in wearing their badges. 3 stay away: the genuine badge of one is heard by a
second gateway ~8 km away while a relay at the depot re-broadcasts its frames (a clone); for
another, a frame recorded the day before is replayed at the depot. After the grace period the
shift shows 17 present (verified), 3 absent, the clone and the replay flagged and not counted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest

from devices.bluez.fake import FakeBluez
from devices.cli import DEPOT, ELSEWHERE
from devices.pairing import save_token
from devices.sim import CrewWalkIn, wait_for
from tests.devices.conftest import KEY, bearer, pair_gateway, plan_shift

pytestmark = pytest.mark.slow     # badges, gateways and a server end to end

A = "/api/v1/attendance"


@pytest.fixture
def radio(bus):
    with FakeBluez(bus.address, adapters=("hci0", "hci1"), advertise_every=0.25) as fake:
        yield fake


def _gateway(bus, url, token_file, buffer_dir, adapter, source, where) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "engine.cli", "badge-gateway", "--server", url, "--token-file", str(token_file),
           "--buffer", str(buffer_dir), "--adapter", adapter, "--source", source, "--lat", str(where[0]),
           "--lon", str(where[1]), "--window", "0.5", "--status-every", "2"]
    return subprocess.Popen(cmd, env=bus.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.getcwd())


def test_crew_of_20_through_two_gateways_to_the_server(bus, radio, server, live_tokens, system, tmp_path, now_clock):
    server.start()
    url, admin, sup = server.url, live_tokens["admin"], bearer(live_tokens["supervisor"])
    save_token(tmp_path / "depot.token", pair_gateway(url, admin, "East depot gateway"))
    save_token(tmp_path / "far.token", pair_gateway(url, admin, "North market gateway"))
    start = now_clock() + timedelta(minutes=10)   # grace ends before the 30-min tokens expire
    shift = plan_shift(url, live_tokens["supervisor"], start)

    scenario = CrewWalkIn(radio, [(f"B{i:04d}", KEY) for i in range(20)], absent=3, walk_in=2.0)
    assert (scenario.plan.cloned, scenario.plan.replayed) == ("B0017", "B0018")
    gateways = [_gateway(bus, url, tmp_path / "depot.token", tmp_path / "depot", "hci0", "east-depot", DEPOT),
                _gateway(bus, url, tmp_path / "far.token", tmp_path / "far", "hci1", "north-market", ELSEWHERE)]
    outputs = []
    try:
        scenario.start()

        def settled():
            att = httpx.get(f"{url}{A}/shifts/{shift['id']}/attendance", headers=sup, timeout=30).json()
            flags = httpx.get(f"{url}{A}/shifts/{shift['id']}/flags", headers=sup, timeout=30).json()
            present = sum(r["status"] == "present" for r in att["rows"])
            reasons = {(f["badge_id"], f["reason"]) for f in flags}
            return present >= 17 and {("B0017", "clone"), ("B0018", "replay")} <= reasons
        assert wait_for(settled, 90, every=0.5), "the crew did not come through"
        assert wait_for(lambda: all(g.poll() is None for g in gateways), 0.1)
    finally:
        scenario.stop()
        radio.clear()      # all at once: both gateways have heard the same tokens of the cloned badge
        for g in gateways:
            g.send_signal(signal.SIGINT)
        for g in gateways:
            try:
                outputs.append(g.communicate(timeout=30)[0])
            except subprocess.TimeoutExpired:
                g.kill()
                outputs.append(g.communicate()[0])
    for g, out in zip(gateways, outputs):
        assert g.returncode == 0 and "Traceback" not in out, out
        assert "Bluetooth scanning" in out and "stopped:" in out, out
    # the replay is refused on the spot; which gateway is told "clone" depends on which copy arrives second
    assert "flagged" in outputs[0] and "replay" in outputs[0], outputs[0]

    now_clock.set(start + timedelta(minutes=16))          # the grace period is over
    assert system.fire_due_timers() == 1
    att = httpx.get(f"{url}{A}/shifts/{shift['id']}/attendance", headers=sup, timeout=30).json()
    assert "rows" in att, att
    rows = {r["badge_id"] or r["cleaner_id"]: r for r in att["rows"]}
    status = {k: n for k, n in att["shift"]["counts"].items() if n and k != "roster"}
    assert status == {"present": 17, "absent": 3}, att["shift"]["counts"]
    by_cleaner = {r["cleaner_id"]: r["status"] for r in att["rows"]}
    assert [c for c, st in sorted(by_cleaner.items()) if st == "absent"] == ["cl017", "cl018", "cl019"]
    assert all(r["source"] == "east-depot" for r in att["rows"] if r["status"] == "present"), rows

    flags = httpx.get(f"{url}{A}/shifts/{shift['id']}/flags", headers=sup, timeout=30).json()
    clone = [f for f in flags if f["badge_id"] == "B0017"]
    replay = [f for f in flags if f["badge_id"] == "B0018"]
    assert clone and {f["reason"] for f in clone} == {"clone"}
    assert {f["source"] for f in clone} == {"east-depot", "north-market"}, "both places of the cloned token"
    assert replay and {f["reason"] for f in replay} == {"replay"} and {f["source"] for f in replay} == {"east-depot"}
    assert {f["badge_id"] for f in flags} == {"B0017", "B0018"}, "no genuine badge flagged"
