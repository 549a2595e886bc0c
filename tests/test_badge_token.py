"""The badge token codec (devices/token.py): format, keys, verification, and two properties
checked with Hypothesis: decoding any bytes raises nothing but TokenError, and every token a
badge mints verifies within the skew window and never outside it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import token

KEY = bytes(range(32))
T0 = datetime(2026, 3, 2, 5, 59, 40, tzinfo=timezone.utc)
IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,9}", fullmatch=True)
TIMES = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31),
                     timezones=st.just(timezone.utc))


def test_frame_layout_fits_a_legacy_advertisement_and_round_trips():
    payload = token.mint("BDG00001", KEY, T0)
    assert len(payload) == 14 + 8 <= token.MAX_PAYLOAD
    assert len(token.mint("A" * token.ID_MAX, KEY, T0)) == token.MAX_PAYLOAD
    f = token.decode(payload)
    assert (f.version, f.badge_id, f.counter, f.legacy) == (1, "BDG00001", token.counter_at(T0), False)
    assert payload[0] == 1 and payload[1] == 8 and payload[2:10] == b"BDG00001"
    assert int.from_bytes(payload[10:14], "big") == int(T0.timestamp()) // token.STEP_SECONDS
    assert f.mac == payload[-8:] and f.token == f"BDG00001/{f.counter}/{f.mac.hex()}"
    assert token.COMPANY_ID == 0xFFFF and token.IBEACON_COMPANY_ID == 0x004C


def test_long_or_odd_badge_ids_are_refused_with_a_clear_message():
    for bad in ("B" * (token.ID_MAX + 1), "", "-lead", "with space", "中文"):
        with pytest.raises(token.TokenError, match="1 to 10 characters"):
            token.mint(bad, KEY, T0)
    with pytest.raises(token.TokenError):
        token.mint("B1", KEY, datetime(2026, 3, 2))      # naive time


def test_verification_outcomes():
    payload = token.mint("B1", KEY, T0)
    assert token.verify(payload, T0, key=KEY).ok
    assert token.verify(payload, T0 + timedelta(seconds=75), key=KEY).ok                 # +2 steps
    late = token.verify(payload, T0 + timedelta(seconds=85), key=KEY)                   # +3 steps
    assert (late.ok, late.reason, late.drift) == (False, token.OUTSIDE_WINDOW, -3) and "window" in late.message
    assert token.verify(payload, T0 + timedelta(days=1), key=KEY).reason == token.OUTSIDE_WINDOW
    assert token.verify(payload, T0 + timedelta(minutes=5), key=KEY, skew_steps=10).ok  # configurable
    assert token.verify(payload, T0, key=b"other key").reason == token.FORGED
    tampered = payload[:2] + b"B2" + payload[4:]
    assert token.verify(tampered, T0, key=KEY).reason == token.FORGED
    moved = payload[:-12] + (token.counter_at(T0) + 1).to_bytes(4, "big") + payload[-8:]
    assert token.verify(moved, T0, key=KEY).reason == token.FORGED
    back = token.verify(payload, T0, key=KEY, last_counter=token.counter_at(T0) + 1)
    assert back.reason == token.COUNTER_BACK and "went back" in back.message
    assert token.verify(payload, T0, key=KEY, last_counter=token.counter_at(T0)).ok     # same token again
    assert token.verify(b"\x00junk", T0, key=KEY).reason == token.INVALID
    assert token.verify(payload, T0).reason == token.NO_KEY
    assert token.verify(payload, datetime(2026, 3, 2), key=KEY).reason == token.INVALID   # naive time: no raise
    assert "已验证" in token.verify(payload, T0, key=KEY).message


def test_epoch_keys_verify_only_their_day_and_never_reveal_the_master_key():
    epoch = token.epoch_at(T0)
    start, end = token.epoch_bounds(epoch)
    assert start <= T0 < end and end - start == timedelta(days=1)
    today = {epoch: token.derive_epoch_key(KEY, epoch)}
    assert today[epoch] != KEY and len(today[epoch]) == 32
    assert token.verify(token.mint("B1", KEY, T0), T0, epoch_keys=today).ok
    tomorrow = T0 + timedelta(days=1)
    assert token.verify(token.mint("B1", KEY, tomorrow), tomorrow, epoch_keys=today).reason == token.NO_KEY
    assert token.derive_epoch_key(KEY, epoch) != token.derive_epoch_key(KEY, epoch + 1)
    # a frame minted at 23:59:50 and seen at 00:00:10 crosses the day: it needs yesterday's key
    edge = end - timedelta(seconds=10)
    both = {**today, epoch + 1: token.derive_epoch_key(KEY, epoch + 1)}
    assert token.verify(token.mint("B1", KEY, edge), edge + timedelta(seconds=20), epoch_keys=both).ok


def test_ibeacon_legacy_frames():
    uuid = UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
    payload = token.ibeacon(uuid, 7, 42, -59)
    assert len(payload) == 23 and payload[:2] == b"\x02\x15"
    f = token.decode(payload, token.IBEACON_COMPANY_ID)
    assert f.legacy and (f.uuid, f.major, f.minor, f.tx_power) == (uuid, 7, 42, -59)
    assert f.badge_id == token.legacy_id(uuid, 7, 42) == f"ibeacon:{uuid}/7/42"
    v = token.verify(payload, T0, key=KEY, company_id=token.IBEACON_COMPANY_ID)
    assert (v.ok, v.reason) == (False, token.LEGACY) and "unverified" in v.message
    with pytest.raises(token.TokenError):
        token.decode(payload)                                # not under our company id
    with pytest.raises(token.TokenError):
        token.ibeacon(uuid, 70000, 1)


def test_two_places_far_apart_are_seen_by_the_clone_watch():
    assert 6900 < token.distance_m(31.2, 121.4, 31.26, 121.42) < 7000
    f = token.decode(token.mint("B1", KEY, T0))
    watch = token.CloneWatch(threshold_m=1000)
    assert watch.seen(f, token.Place(31.2, 121.4, T0, "depot")) is None
    assert watch.seen(f, token.Place(31.2001, 121.4001, T0, "depot-2")) is None          # ~14 m: same place
    far = watch.seen(f, token.Place(31.26, 121.42, T0, "elsewhere"))
    assert far is not None and far.source == "depot"


@settings(max_examples=2000, deadline=None)
@given(payload=st.binary(max_size=40), company=st.sampled_from([token.COMPANY_ID, token.IBEACON_COMPANY_ID, 0, 0x1234]))
def test_decoding_any_bytes_raises_only_token_error(payload, company):
    try:
        frame = token.decode(payload, company)
    except token.TokenError:
        return
    assert isinstance(frame, token.Frame)
    assert token.verify(payload, T0, key=KEY, company_id=company).reason in (token.LEGACY, token.FORGED,
                                                                            token.OUTSIDE_WINDOW, token.OK)


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from([b"\x01", b"\x01\x05B0001", b"\x02\x15"]), rest=st.binary(max_size=30))
def test_decoding_near_misses_raises_only_token_error(prefix, rest):
    for company in (token.COMPANY_ID, token.IBEACON_COMPANY_ID):
        try:
            token.decode(prefix + rest, company)
        except token.TokenError:
            pass


@settings(max_examples=500, deadline=None)
@given(badge=IDS, key=st.binary(min_size=16, max_size=32), minted=TIMES,
       offset=st.integers(min_value=-600, max_value=600), skew=st.integers(min_value=0, max_value=6))
def test_minted_tokens_verify_within_the_window_and_never_outside(badge, key, minted, offset, skew):
    payload = token.mint(badge, key, minted)
    seen = minted + timedelta(seconds=offset)
    steps = token.counter_at(seen) - token.counter_at(minted)
    v = token.verify(payload, seen, key=key, skew_steps=skew)
    assert v.ok == (abs(steps) <= skew), (steps, v)
    if not v.ok:
        assert v.reason == token.OUTSIDE_WINDOW
    epoch = token.epoch_at(minted)
    by_epoch = token.verify(payload, seen, epoch_keys={epoch: token.derive_epoch_key(key, epoch)}, skew_steps=skew)
    assert by_epoch.ok == v.ok
    other = token.verify(payload, seen, key=key + b"x", skew_steps=skew)
    assert other.reason == token.FORGED
