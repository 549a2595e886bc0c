"""A tablet's check_in op with the badge's frame: the server verifies it as it does a
gateway's. A genuine frame counts (verified by the server, whatever the tablet said); a
replayed, forged or cloned one is flagged, kept for the shift, never counted present, and
answered as a "badge_flagged" conflict with a message in English and Chinese; a frame of
another badge, or one that is not well formed, is invalid. Over the in-process app."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from devices import token
from engine.domain import attendance
from engine.domain.models import Attendance, BadgeSighting
from sync.server.models import SyncConflict
from tests.api.conftest import app, bearer, client, tokens  # noqa: F401  (fixtures)
from tests.sync.syncing import PUSH, batch, op

KEY = bytes(16)                      # tests/district.py gives every badge the key 00 * 16
DEPOT = (31.2000, 121.4000)
ELSEWHERE = (31.2600, 121.4700)      # about 9 km away


@pytest.fixture
def shift(system, clock):
    return attendance.plan_shift(system, "crew-e1", clock() + timedelta(minutes=30))


@pytest.fixture
def sup(tokens):  # noqa: F811
    return bearer(tokens["supervisor"])


def check_in(shift, badge: str, at, *, frame_of: str | None = None, key: bytes = KEY, minted_at=None,
             place=DEPOT, verified=False, **frame_extra) -> dict:
    data = token.mint(frame_of or badge, key, minted_at or at).hex()
    frame = {"company_id": token.COMPANY_ID, "data": data, "rssi": -61,
             "lat": place[0] if place else None, "lon": place[1] if place else None, **frame_extra}
    return op("check_in", at, {"shift_id": shift.id, "badge_id": badge, "seen_at": at.isoformat(),
                               "verified": verified, "source": "tablet", "frame": frame})


def push(client, headers, *ops_, device="tab-depot"):  # noqa: F811
    r = client.post(PUSH, headers=headers, json=batch(*ops_, device=device))
    assert r.status_code == 200, r.text
    return r.json()["verdicts"]


def status(system, shift, cleaner: str) -> tuple[str, str | None]:
    with system.transaction(write=False) as s:
        a = s.exec(select(Attendance).where(Attendance.shift_id == shift.id, Attendance.cleaner_id == cleaner)).one()
        return a.status, a.source


def flagged(system, shift) -> list[tuple[str, str]]:
    with system.transaction(write=False) as s:
        return sorted((b.badge_id, b.reason) for b in s.exec(select(BadgeSighting).where(
            BadgeSighting.shift_id == shift.id, BadgeSighting.verdict == "flagged")))


def test_a_genuine_frame_is_verified_by_the_server_and_counts_present(client, system, shift, sup, clock):  # noqa: F811
    now = clock()
    o = check_in(shift, "B0001", now, verified=False)     # the tablet's own word does not matter with a frame
    [v] = push(client, sup, o)
    assert (v["verdict"], v["result"]["status"]) == ("applied", "present"), v
    assert v["result"]["frame"] == "checked by the server"
    assert status(system, shift, "cl001") == ("present", "tablet:tab-depot"), "not the supervisor's word ('manual')"
    [again] = push(client, sup, o)
    assert (again["verdict"], again["original"]) == ("duplicate", "applied")
    # without a frame it stays as before: the supervisor's word
    plain = op("check_in", now, {"shift_id": shift.id, "badge_id": "B0002", "seen_at": now.isoformat(),
                                 "verified": True})
    assert push(client, sup, plain)[0]["verdict"] == "applied"
    assert status(system, shift, "cl002") == ("present", "manual")


def test_replayed_and_forged_frames_are_flagged_never_counted(client, system, shift, sup, clock):  # noqa: F811
    now = clock()
    replay = check_in(shift, "B0003", now, minted_at=now - timedelta(days=1), verified=True)
    forged = check_in(shift, "B0004", now, key=b"\x01" * 16, verified=True)
    v = push(client, sup, replay, forged)
    assert [(x["verdict"], x["reason"], x["code"]) for x in v] == [("conflict", "badge_flagged", 409)] * 2
    assert "replayed" in v[0]["message"] and "not counted present" in v[0]["message"]
    assert "重放" in v[0]["message_zh"] and "不计为到岗" in v[0]["message_zh"]
    assert "forged" in v[1]["message"] and "伪造" in v[1]["message_zh"]
    assert status(system, shift, "cl003")[0] == "expected" and status(system, shift, "cl004")[0] == "expected"
    assert flagged(system, shift) == [("B0003", "replay"), ("B0004", "forged")]
    with system.transaction(write=False) as s:
        kept = s.exec(select(SyncConflict).where(SyncConflict.reason == "badge_flagged")).all()
    assert sorted(c.op_id for c in kept) == sorted([replay["op_id"], forged["op_id"]]), "kept for a supervisor"
    assert '"flag": "replay"' in next(c.server_side for c in kept if c.op_id == replay["op_id"])
    # sent again: the stored verdict, nothing judged twice
    assert [x["verdict"] for x in push(client, sup, replay)] == ["duplicate"]
    assert len(flagged(system, shift)) == 2


def test_a_token_heard_at_two_places_is_a_clone_and_withdrawn(client, system, shift, sup, clock):  # noqa: F811
    now = clock()
    [first] = push(client, sup, check_in(shift, "B0005", now))
    assert first["verdict"] == "applied" and status(system, shift, "cl005")[0] == "present"
    # the same token, heard 20 s later by another tablet 9 km away
    later = now + timedelta(seconds=20)
    [copy] = push(client, sup, check_in(shift, "B0005", later, minted_at=now, place=ELSEWHERE), device="tab-far")
    assert (copy["verdict"], copy["reason"]) == ("conflict", "badge_flagged")
    assert "cloned" in copy["message"] and "m away" in copy["message"] and "克隆" in copy["message_zh"]
    assert status(system, shift, "cl005")[0] == "expected", "a cloned badge is not counted present on any token"
    assert flagged(system, shift) == [("B0005", "clone"), ("B0005", "clone")]
    # heard again by the first tablet: the frame it gave before is now known cloned, and still not counted
    [again] = push(client, sup, check_in(shift, "B0005", later, minted_at=now))
    assert (again["verdict"], again["reason"]) == ("conflict", "badge_flagged") and "cloned" in again["message"]
    assert status(system, shift, "cl005")[0] == "expected"


def test_a_frame_of_another_badge_or_a_malformed_frame_is_invalid(client, system, shift, sup, clock):  # noqa: F811
    now = clock()
    other = check_in(shift, "B0006", now, frame_of="B0007")
    garbage = check_in(shift, "B0008", now)
    garbage["payload"]["frame"]["data"] = "00" * 20
    upper = check_in(shift, "B0009", now)
    upper["payload"]["frame"]["data"] = upper["payload"]["frame"]["data"].upper()
    too_long = check_in(shift, "B0009", now)
    too_long["payload"]["frame"]["data"] = "ab" * 33
    company = check_in(shift, "B0009", now, company_id=70000)
    half_place = check_in(shift, "B0009", now, lon=None)
    v = push(client, sup, other, garbage, upper, too_long, company, half_place)
    assert [x["verdict"] for x in v] == ["invalid"] * 6, v
    assert "another badge" in v[0]["message"] and "不符" in v[0]["message_zh"]
    assert list(v[0]["errors"]) == ["payload.frame"] and list(v[1]["errors"]) == ["payload.frame"]
    assert "cannot be read" in v[1]["message"]
    assert list(v[2]["errors"]) == ["payload.frame.data"] and list(v[3]["errors"]) == ["payload.frame.data"]
    assert list(v[4]["errors"]) == ["payload.frame.company_id"]
    assert "both lat and lon" in v[5]["errors"]["payload.frame"]
    assert status(system, shift, "cl006")[0] == "expected" and status(system, shift, "cl008")[0] == "expected"
