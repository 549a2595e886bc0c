"""The protocol decoder: clear refusals, a canonical body hash, and fuzzing (Hypothesis) of
the decoder and of the HTTP endpoints: whatever a device sends is a 4xx or a well-formed
answer, never a 500."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync import protocol
from sync.protocol import (
    MAX_OPS,
    InvalidOp,
    Op,
    ProtocolError,
    body_hash,
    decode_cursor,
    decode_pull,
    decode_push,
    encode_cursor,
)
from sync.server.ops import needed_photos
from tests.api.conftest import app, bearer, client, tokens  # noqa: F401  (fixtures)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def good_op(**over) -> dict:
    return {"op_id": str(uuid.uuid4()), "kind": "comment", "payload": {"work_order": "WO-1", "text": "hi"},
            "device_time": T0.isoformat(), **over}


def raw(message) -> bytes:
    return json.dumps(message).encode()


def test_a_good_batch_decodes_and_a_bad_op_is_only_that_op():
    batch = decode_push(raw({"protocol": 1, "device": "tab-1", "sent_at": T0.isoformat(),
                             "ops": [good_op(), good_op(kind="teleport"), good_op(payload={"text": 5})]}))
    first, second, third = batch.ops
    assert isinstance(first, Op) and first.device_time == T0 and batch.device == "tab-1"
    assert isinstance(second, InvalidOp) and "kind" in second.errors and second.op_id is not None
    assert isinstance(third, InvalidOp) and "payload.work_order" in third.errors and "payload.text" in third.errors


@pytest.mark.parametrize("body, status, code", [
    (b"", 400, "bad_json"), (b"\xff\xfe", 400, "bad_json"), (b"[1, 2]", 400, "bad_message"),
    (b'{"ops": []}', 400, "no_version"), (b'{"protocol": 9, "ops": []}', 400, "upgrade_required"),
    (b'{"protocol": "1", "ops": []}', 400, "upgrade_required"),
    (b'{"protocol": 1, "protocol": 1, "ops": []}', 400, "bad_json"),
    (b'{"protocol": 1, "ops": [NaN]}', 400, "bad_json"),
    (b'{"protocol": 1, "ops": {}}', 400, "bad_message"),
    (b'{"protocol": 1, "ops": [], "extra": 1}', 400, "bad_message"),
    (b'{"protocol": 1, "ops": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "too_deep"),
    (raw({"protocol": 1, "ops": [good_op() for _ in range(MAX_OPS + 1)]}), 413, "too_many_ops"),
    (b'{"protocol": 1, "ops": ["' + b"x" * (protocol.MAX_PUSH_BYTES + 1) + b'"]}', 413, "too_large"),
])
def test_unreadable_batches_are_refused_with_a_clear_message(body, status, code):
    with pytest.raises(ProtocolError) as exc:
        decode_push(body)
    assert (exc.value.status, exc.value.code) == (status, code)
    assert str(exc.value) and exc.value.message_zh


def test_unknown_version_says_to_upgrade():
    with pytest.raises(ProtocolError, match="upgrade the field app"):
        decode_push(raw({"protocol": 0, "ops": []}))
    with pytest.raises(ProtocolError, match="upgrade the server"):
        decode_pull(raw({"protocol": 2}))


def test_body_hash_is_canonical():
    o = good_op(gps={"lat": 31.2, "lon": 121.4}, device_time="2026-03-02T16:00:00+08:00")
    a = decode_push(raw({"protocol": 1, "ops": [o]})).ops[0]
    same = dict(reversed(list({**o, "device_time": T0.isoformat()}.items())))
    b = decode_push(raw({"protocol": 1, "ops": [same]})).ops[0]
    other = decode_push(raw({"protocol": 1, "ops": [{**o, "payload": {"work_order": "WO-1", "text": "hi!"}}]})).ops[0]
    assert body_hash(a) == body_hash(b) != body_hash(other)
    assert len(body_hash(a)) == 64


def test_op_rules():
    naive = decode_push(raw({"protocol": 1, "ops": [good_op(device_time="2026-03-02T08:00:00")]})).ops[0]
    assert "offset" in naive.errors["device_time"]
    no_version = decode_push(raw({"protocol": 1,
                                  "ops": [good_op(kind="complete_task", task_id="t", payload={})]})).ops[0]
    assert "based_on_version" in next(iter(no_version.errors.values()))
    bad_sha = decode_push(raw({"protocol": 1, "ops": [good_op(kind="attach", attachments=["ab"],
                                                              payload={"work_order": "WO-1"})]})).ops[0]
    assert "sha256" in bad_sha.errors["attachments"]
    far = decode_push(raw({"protocol": 1, "ops": [good_op(gps={"lat": 91, "lon": 0})]})).ops[0]
    assert "gps.lat" in far.errors
    nul = decode_push(raw({"protocol": 1, "ops": [good_op(payload={"work_order": "WO-1", "text": "a\x00b"})]})).ops[0]
    assert "NUL" in next(iter(nul.errors.values()))
    odd_task = decode_push(raw({"protocol": 1, "ops": [good_op(task_id="t\x00; drop")]})).ops[0]
    assert "task_id" in odd_task.errors


def test_cursor_round_trip_and_forgeries():
    assert decode_cursor(encode_cursor(42)) == 42 and decode_cursor(None) is None
    for bad in ("", "c2.e30", "c1.", "c1.bm90IGpzb24", "c1." + "A" * 300, encode_cursor(1)[:-3]):
        with pytest.raises(ProtocolError):
            decode_cursor(bad)


# ---- fuzzing ----------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25)
op_like = st.fixed_dictionaries({}, optional={
    "op_id": st.uuids().map(str) | st.text(max_size=40), "kind": st.sampled_from(protocol.KINDS) | st.text(max_size=10),
    "task_id": st.none() | st.text(max_size=40), "based_on_version": json_values,
    "payload": st.dictionaries(st.sampled_from(["work_order", "text", "shift_id", "badge_id", "seen_at", "verified",
                                                "kind", "action"]), json_values, max_size=5) | json_values,
    "device_time": st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat) | json_values,
    "gps": json_values, "attachments": json_values})
batches = st.fixed_dictionaries({"protocol": st.just(1) | json_values,
                                 "ops": st.lists(op_like | json_values, max_size=4) | json_values},
                                optional={"device": json_values, "sent_at": json_values})


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_decoder_takes_any_bytes(data):
    try:
        batch = decode_push(data)
    except ProtocolError as exc:
        assert 400 <= exc.status < 500 and str(exc)
        return
    assert all(isinstance(o, (Op, InvalidOp)) for o in batch.ops)


@settings(max_examples=400, deadline=None)
@given(batches)
def test_decoder_takes_any_json(message):
    try:
        batch = decode_push(raw(message))
    except ProtocolError as exc:
        assert 400 <= exc.status < 500
        return
    for o in batch.ops:
        if isinstance(o, Op):
            assert body_hash(o) == body_hash(Op.model_validate(o.body()))  # stored bodies read back the same
        else:
            assert o.errors


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=batches.map(raw) | st.binary(max_size=200), pull_body=json_values.map(raw) | st.binary(max_size=100))
def test_endpoints_answer_anything_with_a_4xx_or_verdicts(client, tokens, body, pull_body):  # noqa: F811
    headers = {**bearer(tokens["unit_worker"]), "content-type": "application/json"}
    r = client.post("/sync/v1/push", content=body, headers=headers)
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        for v in r.json()["verdicts"]:
            assert v["verdict"] in protocol.VERDICTS and v["code"] in (200, 202, 403, 404, 409, 422)
    else:
        assert 400 <= r.status_code < 500 and r.json()["error"] and r.json()["message"]
    r = client.post("/sync/v1/pull", content=pull_body, headers=headers)
    assert r.status_code < 500, r.text
    assert r.status_code == 200 or r.json()["error"]


def test_skew_threshold_is_a_setting(setenv):
    from sync.server.ops import skew_limit, timing_of
    o = decode_push(raw({"protocol": 1, "ops": [good_op()]})).ops[0]
    assert skew_limit() == timedelta(minutes=5)
    assert timing_of(o, None, T0 + timedelta(minutes=4)).flagged is False
    assert timing_of(o, None, T0 + timedelta(minutes=6)).flagged is True
    assert timing_of(o, None, T0 + timedelta(minutes=6), timedelta(minutes=10)).flagged is False
    setenv(CITYLOOP_SYNC_SKEW_SECONDS="600")
    assert timing_of(o, None, T0 + timedelta(minutes=6)).flagged is False


def test_inspect_household_and_badge_frame_payloads_are_checked_strictly():
    def ops(kind, payload):
        return protocol.decode_op({"op_id": str(uuid.uuid4()), "kind": kind, "payload": payload,
                                   "device_time": "2026-03-02T08:00:00+08:00"})

    good = ops("inspect_household", {"household_id": 7, "data": {"hose_ok": "ok", "photos": ["ab" * 32]}})
    assert isinstance(good, protocol.Op)
    assert needed_photos(good) == ["ab" * 32], "photos in the form's file fields are waited for"
    for payload, field in [({"household_id": 0, "data": {}}, "payload.household_id"),
                           ({"household_id": 7}, "payload.data"),
                           ({"household_id": 7, "data": []}, "payload.data"),
                           ({"household_id": 7, "data": {f"f{i}": i for i in range(protocol.MAX_FORM_FIELDS + 1)}},
                            "payload.data"),
                           ({"household_id": 7, "data": {}, "task_id": "x"}, "payload.task_id")]:
        bad = ops("inspect_household", payload)
        assert isinstance(bad, protocol.InvalidOp) and field in bad.errors, (payload, bad)
    check = {"shift_id": 1, "badge_id": "B0001", "seen_at": "2026-03-02T08:00:00+08:00", "verified": False}
    frame = {"company_id": 0xFFFF, "data": "0a" * 24, "rssi": -70, "lat": 31.2, "lon": 121.4}
    assert isinstance(ops("check_in", {**check, "frame": frame}), protocol.Op)
    assert isinstance(ops("check_in", check), protocol.Op), "the frame is optional"
    for change, field in [({"company_id": -1}, "company_id"), ({"data": ""}, "data"), ({"data": "0a" * 33}, "data"),
                          ({"data": "0A"}, "data"), ({"data": "0g"}, "data"), ({"data": "abc"}, "data"),
                          ({"rssi": 30}, "rssi"), ({"lat": None}, "frame"), ({"extra": 1}, "extra")]:
        bad = ops("check_in", {**check, "frame": {**frame, **change}})
        assert isinstance(bad, protocol.InvalidOp), change
        assert f"payload.frame.{field}" in bad.errors or field == "frame" and "payload.frame" in bad.errors, bad
