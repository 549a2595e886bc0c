"""The supervisor's check-in screen in the real app: unmodified bleak on the fake BlueZ
(a private dbus-daemon, DBUS_SYSTEM_BUS_ADDRESS set before the app's loop opens its bus)
hears a crew with a clone among them; the roster fills in live, the clone is flagged,
confirm puts check_in ops with their frames in the outbox for the genuine ones only. With
no Bluetooth at all the screen says so and keeps working."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from devices import token
from devices.sim import address_for, relay, rotating
from fieldapp.badgekeys import BadgeKeys
from fieldapp.store import LocalStore
from sync.client import Outbox
from tests.api.conftest import app, tokens  # noqa: F401  (fixtures: the server app)
from tests.devices.conftest import KEY, bearer, bus, fake, live_tokens, now_clock, plan_shift, server  # noqa: F401

MASTERS = {f"B000{i}": bytes([i]) * 16 for i in range(1, 6)}
NAMES = {"B0001": "张伟", "B0002": "王芳", "B0003": "李娜", "B0004": "刘洋", "B0005": "陈静"}


def crews(now: datetime) -> list[dict]:
    start = now + timedelta(minutes=10)
    return [
        {"code": "crew-a", "contract_code": "C-1", "muster_point": "East depot", "shift_start": "06:00",
         "grace_minutes": 15,
         "roster": [{"id": f"cl{b[-1]}", "name": NAMES[b], "badge_id": b} for b in MASTERS],
         "shifts": [{"id": 41, "starts_at": start.isoformat(),
                     "grace_ends_at": (start + timedelta(minutes=15)).isoformat()}]},
        {"code": "crew-b", "contract_code": "C-1", "muster_point": "West depot", "shift_start": "07:00",
         "grace_minutes": 15, "roster": [{"id": "cl9", "name": "周杰", "badge_id": "B0009"}],
         "shifts": [{"id": 42, "starts_at": (start + timedelta(hours=3)).isoformat(),    # not open yet
                     "grace_ends_at": (start + timedelta(hours=3, minutes=15)).isoformat()}]},
    ]


def tablet_with_crews(data_dir, keys: bool = True) -> datetime:
    """The tablet's files as a sync and a key fetch would have left them."""
    now = datetime.now(timezone.utc)
    data_dir.mkdir(parents=True, exist_ok=True)
    box = Outbox(str(data_dir / "outbox.db"))
    box.apply_pull({"cursor": "c1", "crews": crews(now), "tasks": [], "removed": []})
    box.close()
    if keys:
        store = LocalStore(data_dir / "field.db")
        e = token.epoch_at(now)
        BadgeKeys(store).keep("crew-a", {"skew_steps": token.SKEW_STEPS, "keys": [
            {"badge_id": b, "epoch": ep, "key": token.derive_epoch_key(k, ep).hex()}
            for b, k in MASTERS.items() for ep in (e, e + 1)]})
        store.close()
    return now


def rows(screen) -> dict[str, dict]:
    return {r["badge"]: r for r in screen.ids.roster.data}


def visible_rows(d) -> dict[str, str]:
    """badge -> status text, read off the row widgets the RecycleView shows."""
    from fieldapp.ui.screens.checkin import CheckinRow
    return {w.badge: w.status_text for w in d.walk(d.screen.ids.roster) if isinstance(w, CheckinRow)}


def test_a_crew_with_a_clone_fills_the_roster_live_and_only_genuine_badges_are_confirmed(fake, start_app,  # noqa: F811
                                                                                        field_data):
    tablet_with_crews(field_data)
    for i, b in enumerate(("B0001", "B0002", "B0003")):
        fake.add_badge(address_for(b), rotating(b, MASTERS[b]), rssi=-52 - 9 * i)
    genuine = rotating("B0004", MASTERS["B0004"])
    fake.add_badge(address_for("B0004"), genuine, rssi=-70)                  # the badge ...
    fake.add_badge(address_for("B0004", "relay"), relay(genuine), rssi=-64)  # ... and a relay re-broadcasting it
    fake.add_badge(address_for("Z0099"), rotating("Z0099", b"\x07" * 16), rssi=-80)   # not this crew's

    d = start_app()
    screen = d.app.go("checkin")
    d.pump(2)
    assert screen.crew["code"] == "crew-a" and screen.shift["id"] == 41
    assert set(rows(screen)) == set(MASTERS) and all(r["status"] == "expected" for r in rows(screen).values())
    assert "已有今日工牌密钥" in screen.keys_text
    d.tap(screen.ids.scan)
    assert screen.scanning and d.by_text("停止扫描")
    d.until(lambda: screen.bt_state is not None and screen.bt_state.value == "available", what="scanning")
    assert screen.bt_text == "蓝牙：正在扫描"

    d.until(lambda: all(rows(screen)[b]["status"] == "present" for b in ("B0001", "B0002", "B0003")),
            what="the present badges")
    d.until(lambda: rows(screen)["B0004"]["status"] == "flagged", what="the clone flagged")
    d.until(lambda: {f["badge"] for f in screen.ids.flags.data} == {"B0004", "Z0099"}, what="both flags")
    assert rows(screen)["B0005"]["status"] == "expected"
    flags = {f["badge"]: f for f in screen.ids.flags.data}
    assert "克隆工牌" in flags["B0004"]["text"] and address_for("B0004", "relay") in flags["B0004"]["text"]
    assert "未知工牌" in flags["Z0099"]["text"] and flags["Z0099"]["cleaner"] == "名单外"
    assert rows(screen)["B0001"]["rssi_text"].endswith("dBm") and rows(screen)["B0001"]["signal"] > 0

    # a cleaner walking in now: from advertisement to the row turning present
    t0 = time.monotonic()
    fake.add_badge(address_for("B0005"), rotating("B0005", MASTERS["B0005"]), rssi=-58)
    d.until(lambda: rows(screen)["B0005"]["status"] == "present", what="B0005 present")
    seen_on_screen = time.monotonic() - t0
    processed = screen.row_changed_at["B0005"] - t0
    print(f"\nadvertisement -> roster row present: {seen_on_screen * 1000:.0f} ms on screen "
          f"({processed * 1000:.0f} ms to the UI thread's roster)")
    assert seen_on_screen < 5, "far slower than the 1 s target"
    d.pump(3)
    shown = visible_rows(d)
    assert shown["B0005"] == "已到（已验证）" and shown["B0004"] == "可疑：克隆", shown
    assert screen.counts_text == "已到 4/5"
    d.screenshot("checkin-zh")
    d.tap(d.app.root.ids.lang_button)
    assert screen.counts_text == "Here 4/5" and screen.bt_text == "Bluetooth: scanning"
    d.pump(3)
    assert visible_rows(d)["B0004"] == "Flagged: cloned"
    assert "Cloned" in {f["badge"]: f for f in screen.ids.flags.data}["B0004"]["text"]
    d.screenshot("checkin-en")

    # confirm: a check_in op with its frame per genuine cleaner, none for the clone
    d.tap(screen.ids.confirm)
    d.until(lambda: len(d.app.outbox.unsettled()) == 4 and not screen.confirming, what="four check-ins saved")
    ops = d.app.outbox.unsettled()
    by = {op["payload"]["badge_id"]: op["payload"] for op in ops}
    assert set(by) == {"B0001", "B0002", "B0003", "B0005"} and all(op["kind"] == "check_in" for op in ops)
    for badge, p in by.items():
        assert p["shift_id"] == 41 and p["verified"] is True and p["source"] == "tablet"
        assert p["frame"]["company_id"] == token.COMPANY_ID and isinstance(p["frame"]["rssi"], int)
        seen_at = datetime.fromisoformat(p["seen_at"])
        assert token.verify(bytes.fromhex(p["frame"]["data"]), seen_at, key=MASTERS[badge]).ok, badge
    assert "4 check-ins saved" in d.app.message
    d.until(lambda: d.app.waiting == 4, what="the top bar counts them")
    d.pump(2)
    assert rows(screen)["B0001"]["confirmed"]
    d.tap(screen.ids.confirm)        # pressed twice: nothing new
    assert len(d.app.outbox.unsettled()) == 4 and d.app.message == "No new check-ins to confirm"

    d.tap(screen.ids.scan)
    assert not screen.scanning and screen.bt_text == "Bluetooth: not scanning"
    # away to another screen and back: what was heard is still there
    d.app.go("settings")
    d.pump(2)
    d.tap(d.app.sm.get_screen("settings").ids.back)
    assert d.app.sm.current == "checkin" and rows(screen)["B0005"]["status"] == "present"
    assert rows(screen)["B0004"]["status"] == "flagged" and screen.counts_text == "Here 4/5"


def test_without_bluetooth_the_screen_says_so_and_keeps_working(start_app, field_data, monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    tablet_with_crews(field_data, keys=False)
    d = start_app()
    screen = d.app.go("checkin")
    d.pump(2)
    assert "没有此班组的工牌密钥" in screen.keys_text and screen.window_text == ""
    d.tap(screen.ids.scan)
    d.until(lambda: "蓝牙不可用" in screen.bt_text, what="the Bluetooth state")
    assert screen.bt_text == "蓝牙不可用：没有系统 D-Bus（自动重试中）" and not screen.bt_ok
    assert d.by_text(screen.bt_text) and screen.scanning
    d.screenshot("checkin-nobt-zh")
    # the rest of the screen still works: choose the other crew with touches
    d.tap(screen.ids.crew)
    options = d.until(lambda: [w for w in screen.ids.crew._dropdown.container.children if w.text == "crew-b"],
                      what="the crew list")
    d.tap(options[0])
    assert screen.crew["code"] == "crew-b" and set(rows(screen)) == {"B0009"} and not screen.scanning
    assert screen.window_text.startswith("此班次") and "起才能打卡" in screen.window_text
    assert screen.ids.window_line.opacity == 1
    d.tap(screen.ids.confirm)
    assert d.app.message == "没有新的打卡需要确认" and d.app.outbox.unsettled() == []
    d.tap(d.app.root.ids.lang_button)
    assert d.app.message == "No new check-ins to confirm", "the message follows the language"
    d.tap(screen.ids.scan)
    d.until(lambda: "Bluetooth unavailable" in screen.bt_text, what="the state in English")
    assert screen.bt_text == "Bluetooth unavailable: no system D-Bus (retrying)"
    d.screenshot("checkin-nobt-en")
    d.tap(screen.ids.back)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_crews_pulled_yet_is_explained(start_app, lang):
    d = start_app(lang=lang)
    screen = d.app.go("checkin")
    d.pump(2)
    assert screen.keys_text == {"zh": "没有班组：请先联网同步，下载您的班组和班次",
                                "en": "No crews: sync once online to get your crews and shifts"}[lang]
    assert screen.ids.scan.disabled and screen.ids.confirm.disabled and screen.ids.roster.data == []


def test_a_signed_in_tablet_pulls_its_crews_fetches_the_keys_and_verifies_badges_with_them(
        fake, server, live_tokens, start_app, field_data, monkeypatch):  # noqa: F811
    """Against the real server over HTTP: the sync pulls the supervisor's crews and shifts, the
    screen fetches the crew's keys with the device token, and badges are verified with them."""
    import httpx

    from devices.pairing import pair, save_token
    server.start()
    dev = httpx.post(f"{server.url}/api/v1/devices", json={"name": "Tab", "kind": "tablet", "owner_id": "super1"},
                     headers=bearer(live_tokens["admin"]), timeout=30).json()
    shift = plan_shift(server.url, live_tokens["supervisor"], datetime.now(timezone.utc) + timedelta(minutes=10))
    save_token(field_data / "device.token", pair(server.url, dev["id"], dev["pairing_code"]))
    store = LocalStore(field_data / "field.db")
    store.put("session", {"server": server.url, "device_id": dev["id"]})
    store.close()
    fake.add_badge(address_for("B0001"), rotating("B0001", KEY), rssi=-55)
    fake.add_badge(address_for("B0002"), rotating("B0002", KEY), rssi=-60)
    fake.add_badge(address_for("B0003"), rotating("B0003", b"\x05" * 16), rssi=-65)     # wrong key: forged

    d = start_app()
    d.until(lambda: d.app.outbox.value("crews"), what="the crews pulled")
    screen = d.app.go("checkin")
    assert screen.crew["code"] == "crew-e1" and screen.shift["id"] == shift["id"]
    d.until(lambda: screen.keys_text.startswith("已有今日工牌密钥"), what="the keys fetched")
    assert BadgeKeys(d.app.store).state("crew-e1").usable
    d.tap(screen.ids.scan)
    d.until(lambda: rows(screen)["B0001"]["status"] == rows(screen)["B0002"]["status"] == "present",
            what="verified with the fetched keys")
    d.until(lambda: rows(screen)["B0003"]["status"] == "flagged", what="the forgery flagged")
    assert "伪造" in {f["badge"]: f for f in screen.ids.flags.data}["B0003"]["text"]
    d.tap(screen.ids.scan)

    # keys lost and the server unreachable: told so; once a sync finds the server, fetched again
    from fieldapp.ui.screens import checkin
    monkeypatch.setattr(checkin, "KEY_RETRY_SECONDS", 0.0)
    d.app.store.put("badgekeys.crew-e1", None)
    server.stop()
    d.app.go("settings")
    d.app.go("checkin")
    d.until(lambda: d.app.message.startswith("无法下载工牌密钥"), what="the fetch failing")
    assert screen.keys_text.startswith("没有此班组的工牌密钥") and not screen.keys.state("crew-e1").usable
    server.start()
    d.app.syncer.sync_soon()
    d.until(lambda: screen.keys_text.startswith("已有今日工牌密钥"), what="the keys fetched after the sync")
