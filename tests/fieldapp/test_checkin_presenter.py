"""The supervisor's check-in, without Kivy: frames minted by devices.token are verified on
the tablet with the day's epoch keys (genuine, late, forged, replayed, cloned, unknown; no
keys -> unverified), confirm puts check_in ops with their frames in the outbox once; and the
keys themselves come from a real server over HTTP with the tablet's device token."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from devices import token
from devices.pairing import pair
from devices.scanner import Sighting
from fieldapp import i18n
from fieldapp.badgekeys import BadgeKeys, KeysUnavailable
from fieldapp.presenters.checkin import CheckinRoster, signal_level
from fieldapp.store import LocalStore
from sync.client import Outbox
from tests.api.conftest import app, bearer, tokens  # noqa: F401  (fixtures)

KEY_A, KEY_B, KEY_C, KEY_X = (bytes([n]) * 16 for n in (1, 2, 3, 9))
START = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)           # the shift starts
CREW = {"code": "crew-t", "roster": [{"id": "cl1", "name": "张三", "badge_id": "A1"},
                                     {"id": "cl2", "name": "李四", "badge_id": "B2"},
                                     {"id": "cl3", "name": "王五", "badge_id": "C3"},
                                     {"id": "cl4", "name": "赵六", "badge_id": None}],
        "shifts": [{"id": 7, "starts_at": START.isoformat(),
                    "grace_ends_at": (START + timedelta(minutes=15)).isoformat()}]}
MASTERS = {"A1": KEY_A, "B2": KEY_B, "C3": KEY_C}


def epoch_keys(at: datetime = START) -> dict[str, dict[int, bytes]]:
    e = token.epoch_at(at)
    return {b: {e: token.derive_epoch_key(k, e), e + 1: token.derive_epoch_key(k, e + 1)} for b, k in MASTERS.items()}


def seen(badge: str, at: datetime, key: bytes | None = None, addr: str = "", minted_at: datetime | None = None,
         rssi: int = -60) -> Sighting:
    data = token.mint(badge, key or MASTERS.get(badge, KEY_X), minted_at or at)
    return Sighting(badge, token.COMPANY_ID, data, rssi, at, addr or f"C0:00:00:00:00:{badge[-1]}0")


@pytest.fixture
def store(tmp_path):
    s = LocalStore(tmp_path / "field.db")
    yield s
    s.close()


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(str(tmp_path / "outbox.db"))
    yield box
    box.close()


def roster(store=None, keys=None, **kw) -> CheckinRoster:
    keys = epoch_keys() if keys is None else keys
    return CheckinRoster(CREW, CREW["shifts"][0], lambda b: keys.get(b, {}), store=store, **kw)


def by_badge(r: CheckinRoster, lang="en") -> dict[str, dict]:
    return {row["badge"]: row for row in r.rows(lang)}


def test_genuine_and_late_badges_are_verified_on_the_tablet():
    r = roster()
    assert r.add(seen("A1", START - timedelta(minutes=3), rssi=-71)) == "A1"
    r.add(seen("B2", START + timedelta(minutes=4)))
    rows = by_badge(r)
    assert rows["A1"]["status"] == "present" and rows["A1"]["status_text"] == "Present (verified)"
    assert rows["A1"]["rssi"] == -71 and rows["A1"]["rssi_text"] == "-71 dBm" and rows["A1"]["last_seen"]
    assert rows["B2"]["status"] == "late"
    assert rows["C3"]["status"] == "expected" and rows["C3"]["rssi"] is None
    assert by_badge(r, "zh")["B2"]["status_text"] == "迟到（已验证）"
    assert by_badge(r)["no badge"]["cleaner"] == "赵六"
    assert r.counts() == {"expected": 2, "unverified": 0, "late": 1, "present": 1, "flagged": 0, "roster": 4,
                          "here": 2, "flagged_badges": 0}
    assert r.flags() == []
    # a later verified sighting does not turn a present cleaner late
    r.add(seen("A1", START + timedelta(minutes=6)))
    assert by_badge(r)["A1"]["status"] == "present"


def test_forged_replayed_and_unknown_badges_are_flagged_with_a_reason_in_both_languages():
    r = roster()
    r.add(seen("A1", START, key=KEY_X))                                          # wrong key: forged
    r.add(seen("B2", START, minted_at=START - timedelta(days=1)))                # yesterday's frame
    r.add(seen("Z9", START, key=KEY_X))                                          # not on the roster
    rows = by_badge(r)
    assert rows["A1"]["status"] == rows["B2"]["status"] == "flagged"
    assert "Forged" in rows["A1"]["reason"] and "Replayed" in rows["B2"]["reason"]
    assert rows["A1"]["status_text"] == "Flagged: forged" and by_badge(r, "zh")["B2"]["status_text"] == "可疑：重放"
    flags = {f["badge"]: f for f in r.flags()}
    assert flags["A1"]["reasons"] == ["forged"] and flags["B2"]["reasons"] == ["replayed"]
    assert flags["Z9"]["reasons"] == ["unknown"] and flags["Z9"]["cleaner"] == ""
    assert [f["badge"] for f in r.flags()] == ["A1", "B2", "Z9"], "roster badges first"
    assert "伪造" in {f["badge"]: f for f in r.flags("zh")}["A1"]["text"]
    assert "未知工牌" in {f["badge"]: f for f in r.flags("zh")}["Z9"]["text"]
    assert r.counts()["flagged"] == 2 and r.counts()["flagged_badges"] == 3 and r.counts()["here"] == 0
    # a counter going back after a good frame is a replay too; the genuine frame still counts
    r.add(seen("C3", START))
    r.add(seen("C3", START + timedelta(seconds=40), minted_at=START - timedelta(seconds=token.STEP_SECONDS)))
    assert {f["badge"]: f for f in r.flags()}["C3"]["reasons"] == ["counter_back"]
    assert by_badge(r)["C3"]["status"] == "present"


def test_the_same_token_from_two_radio_addresses_is_a_clone_and_never_counted(outbox):
    r = roster()
    r.add(seen("A1", START, addr="C0:00:00:00:00:A1"))
    assert by_badge(r)["A1"]["status"] == "present"
    r.add(seen("A1", START + timedelta(seconds=1), addr="C0:00:00:00:00:EE"))    # a relay: same token
    row = by_badge(r)["A1"]
    assert row["status"] == "flagged" and "Cloned" in row["reason"] and "C0:00:00:00:00:EE" in row["reason"]
    r.add(seen("A1", START + timedelta(seconds=31), addr="C0:00:00:00:00:A1"))   # a fresh token: still cloned
    assert by_badge(r)["A1"]["status"] == "flagged"
    assert {f["badge"]: f for f in r.flags()}["A1"]["counted"] is False
    r.add(seen("B2", START))
    assert len(r.confirm(outbox)) == 1
    assert [op["payload"]["badge_id"] for op in outbox.unsettled()] == ["B2"]


def test_the_same_token_heard_again_far_away_is_a_clone():
    r = roster(place=(31.23, 121.47))
    r.add(seen("A1", START))
    r.place = (31.33, 121.47)        # the tablet is now about 11 km away: the same token again
    r.add(seen("A1", START + timedelta(seconds=5)))
    row = by_badge(r)["A1"]
    assert row["status"] == "flagged" and "m away" in row["reason"]


def test_without_keys_badges_are_unverified_never_verified():
    r = roster(keys={})
    r.add(seen("A1", START))
    r.add(seen("B2", START, key=KEY_X))          # a forgery cannot be told without the key
    rows = by_badge(r)
    assert rows["A1"]["status"] == rows["B2"]["status"] == "unverified"
    assert rows["A1"]["status_text"] == "Present (unverified)"
    # a frame from yesterday is out of its window, keys or not
    r.add(seen("C3", START, minted_at=START - timedelta(days=1)))
    assert by_badge(r)["C3"]["status"] == "flagged"


def test_confirm_puts_one_check_in_with_its_frame_per_counted_cleaner_once(store, outbox):
    r = roster(store=store, place=(31.2, 121.4))
    a1 = seen("A1", START - timedelta(minutes=1), rssi=-66)
    r.add(a1)
    r.add(seen("B2", START + timedelta(minutes=2)))
    r.add(seen("C3", START, minted_at=START - timedelta(days=1)))     # replayed: never confirmed
    ops = r.confirm(outbox)
    assert len(ops) == 2
    payloads = {op["payload"]["badge_id"]: op["payload"] for op in outbox.unsettled()}
    assert set(payloads) == {"A1", "B2"} and all(op["kind"] == "check_in" for op in outbox.unsettled())
    assert payloads["A1"] == {"shift_id": 7, "badge_id": "A1", "seen_at": a1.seen_at.isoformat(), "verified": True,
                              "source": "tablet", "frame": {"company_id": token.COMPANY_ID, "data": a1.data.hex(),
                                                            "rssi": -66, "lat": 31.2, "lon": 121.4}}
    assert token.verify(bytes.fromhex(payloads["B2"]["frame"]["data"]), START, key=KEY_B, skew_steps=10).ok
    assert r.confirm(outbox) == [], "pressed twice: no duplicate"
    # a new screen for the same shift (the app restarted) knows what was confirmed
    again = roster(store=store)
    again.add(a1)
    assert again.confirm(outbox) == [] and by_badge(again)["A1"]["confirmed"]
    assert len(outbox.unsettled()) == 2


def test_an_unverified_cleaner_confirmed_then_verified_is_sent_again_but_only_then(store, outbox):
    keys: dict = {}
    r = CheckinRoster(CREW, CREW["shifts"][0], lambda b: keys.get(b, {}), store=store)
    r.add(seen("A1", START - timedelta(minutes=2)))
    assert len(r.confirm(outbox)) == 1 and outbox.unsettled()[0]["payload"]["verified"] is False
    keys.update(epoch_keys())                     # the keys arrived
    r.add(seen("A1", START - timedelta(minutes=1)))
    assert len(r.confirm(outbox)) == 1 and outbox.unsettled()[1]["payload"]["verified"] is True
    assert r.confirm(outbox) == []


def test_signal_level_and_every_text_exists_in_both_languages():
    assert signal_level(None) == 0 and signal_level(-100) == 0 and signal_level(-40) == 1
    assert 0.4 < signal_level(-70) < 0.6
    r = roster()
    for s in (seen("A1", START, key=KEY_X), seen("Z9", START), seen("B2", START, minted_at=START - timedelta(days=1))):
        r.add(s)
    for lang in ("zh", "en"):
        r.rows(lang), r.flags(lang)
    assert not {k for k in i18n.missing() if k.startswith(("checkin.", "badgekeys."))}


# ---- the keys, from a real server ---------------------------------------------------------------------------
def test_badge_keys_are_fetched_with_the_device_token_kept_and_go_stale(app, tokens, store):  # noqa: F811
    from tests.devices.conftest import KEY, LiveServer
    live = LiveServer(app).start()
    try:
        admin = bearer(tokens["admin"])
        dev = httpx.post(f"{live.url}/api/v1/devices", json={"name": "Tab", "kind": "tablet", "owner_id": "super1"},
                         headers=admin, timeout=30).json()
        device_token = pair(live.url, dev["id"], dev["pairing_code"])
        server_day = datetime(2026, 3, 2, 5, 0, tzinfo=timezone.utc)      # tests/conftest START's day
        keys = BadgeKeys(store, clock=lambda: server_day)
        assert keys.state("crew-e1").status == "missing"
        assert "没有此班组的工牌密钥" in keys.state("crew-e1").text("zh")
        assert keys.fetch(live.url, device_token, "crew-e1") == 40
        state = keys.state("crew-e1", server_day)
        assert state.status == "ok" and state.usable and "Today's badge keys" in state.text("en")
        frame = token.mint("B0003", KEY, server_day)
        assert token.verify(frame, server_day, epoch_keys=keys.epoch_keys("crew-e1", "B0003")).ok
        assert keys.epoch_keys("crew-e1", "NOPE") == {}
        # two days on, without a fetch: stale, and frames of that day cannot be verified
        later = server_day + timedelta(days=2)
        assert keys.state("crew-e1", later).status == "stale"
        assert token.verify(token.mint("B0003", KEY, later), later,
                            epoch_keys=keys.epoch_keys("crew-e1", "B0003")).reason == token.NO_KEY
        # refused (not this supervisor's crew) and unreachable: typed, with a message; keys kept
        with pytest.raises(KeysUnavailable) as refused:
            keys.fetch(live.url, device_token, "crew-zz")
        assert "404" in refused.value.text("en") and "拒绝" in refused.value.text("zh")
    finally:
        live.stop()
    with pytest.raises(KeysUnavailable) as offline:
        keys.fetch(live.url, device_token, "crew-e1", timeout=2)
    assert "Cannot fetch" in offline.value.text("en")
    assert keys.state("crew-e1", server_day).status == "ok"


def test_badges_heard_outside_the_shifts_check_in_window_are_not_counted(outbox):
    r = roster()
    assert r.window(START) == "open" and r.window_text(START) == ""
    assert r.add(seen("A1", START - timedelta(hours=3))) is None                 # before it opens
    assert r.add(seen("B2", START + timedelta(minutes=16))) is None              # after the grace period
    assert r.outside == 2 and r.counts()["here"] == 0 and r.confirm(outbox) == []
    assert "opens at" in r.window_text(START - timedelta(hours=3), "en")
    assert "已于" in r.window_text(START + timedelta(minutes=16), "zh")
    r.add(seen("B2", START + timedelta(minutes=15)))                             # the last moment: late
    assert by_badge(r)["B2"]["status"] == "late"
