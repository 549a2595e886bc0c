"""End to end for a cleaning supervisor: the real app (real window, touches) signed in against
the real server over HTTP, unmodified bleak hearing the fake BlueZ. The crew walks in with a
clone among them (a relay re-broadcasting a genuine badge's token) and a forgery; the roster
fills in live, the clone and the forgery are flagged, confirm saves check-ins with their badge
frames, a sync sends them, and the server, judging the frames itself, counts the genuine
cleaners present and nobody for the flagged badges."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from devices.pairing import pair, save_token
from devices.sim import address_for, relay, rotating
from fieldapp.store import LocalStore
from tests.api.conftest import app, tokens  # noqa: F401  (fixtures: the server app)
from tests.devices.conftest import KEY, bearer, bus, fake, live_tokens, now_clock, plan_shift, server  # noqa: F401


def roster(screen) -> dict[str, dict]:
    return {r["badge"]: r for r in screen.ids.roster.data}


@pytest.mark.slow
def test_a_supervisor_checks_in_a_crew_with_a_clone_and_the_server_counts_only_the_genuine(
        fake, server, live_tokens, start_app, field_data):  # noqa: F811
    server.start()
    admin, supervisor = bearer(live_tokens["admin"]), live_tokens["supervisor"]
    device = httpx.post(f"{server.url}/api/v1/devices", json={"name": "Tab", "kind": "tablet", "owner_id": "super1"},
                        headers=admin, timeout=30).json()
    shift = plan_shift(server.url, supervisor, datetime.now(timezone.utc) + timedelta(minutes=10))
    save_token(field_data / "device.token", pair(server.url, device["id"], device["pairing_code"]))
    store = LocalStore(field_data / "field.db")
    store.put("session", {"server": server.url, "device_id": device["id"],
                          "user": {"id": "super1", "role": "supervisor", "unit_code": None}})
    store.close()
    for badge, rssi in (("B0001", -52), ("B0002", -60)):
        fake.add_badge(address_for(badge), rotating(badge, KEY), rssi=rssi)
    genuine = rotating("B0003", KEY)
    fake.add_badge(address_for("B0003"), genuine, rssi=-58)
    fake.add_badge(address_for("B0003", "relay"), relay(genuine), rssi=-66)          # the clone
    fake.add_badge(address_for("B0004"), rotating("B0004", b"\x07" * 16), rssi=-70)  # a forgery (wrong key)

    d = start_app()
    d.until(lambda: d.app.signed_in and d.app.outbox.value("crews"), timeout=30, what="signed in, crews pulled")
    button = d.until(lambda: next((w for w in d.walk(d.app.root.ids.nav) if getattr(w, "screen_name", "") == "checkin"),
                                  None), what="the check-in button in the top bar")
    d.tap(button)
    screen = d.until(lambda: d.app.sm.current == "checkin" and d.screen, what="the check-in screen")
    assert screen.shift["id"] == shift["id"]
    d.until(lambda: screen.keys_text.startswith("已有今日工牌密钥"), what="the day's keys fetched")
    d.tap(screen.ids.scan)
    d.until(lambda: all(roster(screen).get(b, {}).get("status") == "present" for b in ("B0001", "B0002")),
            timeout=20, what="the genuine badges present")
    d.until(lambda: roster(screen)["B0003"]["status"] == "flagged" and roster(screen)["B0004"]["status"] == "flagged",
            timeout=20, what="the clone and the forgery flagged")
    d.screenshot("e2e-checkin-zh")
    d.tap(screen.ids.scan)
    d.tap(screen.ids.confirm)
    d.until(lambda: d.app.waiting == 2 or not d.app.outbox.unsettled(), what="two check-ins saved")
    sent = {op["payload"]["badge_id"]: op for op in (d.app.outbox.op(i)["op"] for i in d.app.outbox.op_ids())}
    assert set(sent) == {"B0001", "B0002"} and all(o["payload"]["frame"]["data"] for o in sent.values())
    d.app.request_sync()
    d.until(lambda: d.app.waiting == 0 and not d.app.syncer.busy, timeout=30, what="the check-ins sent")
    assert d.app.outbox.refused() == []

    r = httpx.get(f"{server.url}/api/v1/attendance/shifts/{shift['id']}/attendance", headers=bearer(supervisor),
                  timeout=30)
    assert r.status_code == 200, r.text
    by_cleaner = {row["cleaner_id"]: row for row in r.json()["rows"]}
    for cleaner in ("cl001", "cl002"):                  # verified by the server from the frames the tablet sent
        assert by_cleaner[cleaner]["status"] == "present", by_cleaner[cleaner]
        assert by_cleaner[cleaner]["source"].startswith("tablet:"), by_cleaner[cleaner]
    assert by_cleaner["cl003"]["status"] == by_cleaner["cl004"]["status"] == "expected"   # clone, forgery: nobody
