"""AI-camera detections over HTTP: threshold, de-duplication by radius and window, new orders."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from engine.domain.intake import haversine_m
from engine.domain.models import WorkOrder
from engine.domain.records import Attachment, WorkOrderAttachment
from tests.api.conftest import bearer

URL = "/api/v1/camera/detections"
BASE = (31.2100, 121.4100)
M_LAT = 1 / 111_195  # degrees of latitude per metre


@pytest.fixture
def camera(client, tokens):
    """A paired camera system's token."""
    r = client.post("/api/v1/devices", json={"name": "Junction cameras", "kind": "camera"},
                    headers=bearer(tokens["admin"])).json()
    paired = client.post("/api/v1/auth/pair", json={"device_id": r["id"], "code": r["pairing_code"]})
    return bearer(paired.json()["access_token"])


def _detect(client, headers, clock, *, north_m=0.0, east_m=0.0, hours=0.0, **over):
    lat = BASE[0] + north_m * M_LAT
    lon = BASE[1] + east_m * M_LAT / 0.8557  # cos(31.21 deg)
    body = {"camera_id": "cam-07", "category": "exposed_garbage", "confidence": 0.9,
            "time": (clock() + timedelta(hours=hours)).isoformat(), "lat": lat, "lon": lon, **over}
    return client.post(URL, json=body, headers=headers)


def _orders(system) -> list[WorkOrder]:
    with Session(system.db) as s:
        return list(s.exec(select(WorkOrder).order_by(WorkOrder.id)))


def test_repeated_detections_attach_to_one_open_order(client, system, clock, camera):
    first = _detect(client, camera, clock)
    assert first.status_code == 201, first.text
    assert first.json()["outcome"] == "created"
    order_id = first.json()["work_order_id"]
    clock.advance(hours=1)
    second = _detect(client, camera, clock, north_m=20, camera_id="cam-08").json()
    clock.advance(hours=1)
    third = _detect(client, camera, clock, east_m=30).json()
    assert [second["outcome"], third["outcome"]] == ["attached", "attached"]
    assert second["work_order_id"] == third["work_order_id"] == order_id
    assert 15 < second["distance_m"] < 25 and 25 < third["distance_m"] < 35
    far = _detect(client, camera, clock, north_m=500).json()
    assert far["outcome"] == "created" and far["work_order_id"] != order_id
    orders = _orders(system)
    assert len(orders) == 2 and {o.source for o in orders} == {"camera"}
    assert all(o.unit_code == "dispatch-desk" for o in orders)   # no address code nearby: the dispatch desk

    rows = client.get(URL, params={"work_order": order_id}, headers=camera).json()
    assert len(rows) == 3 and sorted(r["duplicate"] for r in rows) == [False, True, True]
    assert {r["camera_id"] for r in rows} == {"cam-07", "cam-08"}
    number = orders[0].number
    assert len(client.get(URL, params={"work_order": number}, headers=camera).json()) == 3
    events = [e for e in system.audit(business_key=number) if e["kind"] == "camera_detection"]
    assert [e["detail"]["duplicate"] for e in events] == [False, True, True]


def test_low_confidence_is_recorded_without_an_order(client, system, clock, camera):
    r = _detect(client, camera, clock, confidence=0.59)
    assert r.status_code == 201 and r.json()["outcome"] == "below_threshold"
    assert r.json()["work_order_id"] is None and r.json()["threshold"] == 0.6
    assert _orders(system) == []
    assert len(client.get(URL, headers=camera).json()) == 1


def test_time_window_and_settings(client, system, clock, camera, setenv):
    first = _detect(client, camera, clock).json()
    clock.advance(hours=25)
    late = _detect(client, camera, clock, north_m=5).json()   # outside the 24 h window
    assert late["outcome"] == "created" and late["work_order_id"] != first["work_order_id"]
    old = _detect(client, camera, clock, hours=-24.5, north_m=5).json()   # uploaded late: within both windows
    assert old["outcome"] == "attached" and old["work_order_id"] in (first["work_order_id"], late["work_order_id"])
    setenv(CITYLOOP_CAMERA_RADIUS_M="10", CITYLOOP_CAMERA_MIN_CONFIDENCE="0.95")
    assert _detect(client, camera, clock, north_m=3).json()["outcome"] == "below_threshold"
    near = _detect(client, camera, clock, north_m=3, confidence=0.97, hours=-0.1).json()
    assert near["outcome"] == "attached" and near["work_order_id"] == late["work_order_id"]
    assert _detect(client, camera, clock, north_m=20, confidence=0.97, hours=-0.2).json()["outcome"] == "created"
    setenv(CITYLOOP_CAMERA_RADIUS_M=None, CITYLOOP_CAMERA_MIN_CONFIDENCE=None)   # the defaults: 50 m, 0.6
    assert _detect(client, camera, clock, north_m=40, hours=-0.3).json()["outcome"] == "attached"


def test_aliases_snapshots_replays_and_bad_input(client, system, clock, camera):
    sha = "cd" * 32
    with Session(system.db) as s:
        s.add(Attachment(sha256=sha, size=10, content_type="image/jpeg", created_at=clock(), created_by="cam"))
        s.commit()
    body = dict(category="garbage", snapshot_sha256=sha)
    first = _detect(client, camera, clock, **body)
    assert first.json()["outcome"] == "created"
    again = _detect(client, camera, clock, **body)
    assert again.json()["outcome"] == "replayed" and again.json()["detection_id"] == first.json()["detection_id"]
    with Session(system.db) as s:
        link = s.get(WorkOrderAttachment, (first.json()["work_order_id"], sha))
    assert link is not None and link.kind == "snapshot"
    assert len(_orders(system)) == 1
    for over, field in [({"snapshot_sha256": "ef" * 32}, "snapshot_sha256"), ({"category": "ufo"}, "category"),
                        ({"confidence": 1.5}, "confidence"), ({"time": "2026-03-02T08:00:00"}, "time"),
                        ({"time": "2030-01-01T00:00:00+00:00"}, "time"),
                        ({"time": "2026-01-01T00:00:00+00:00"}, "time"),
                        ({"time": "0001-01-01T00:00:00+14:00"}, "time"), ({"camera_id": "cam\x00"}, "camera_id"),
                        ({"lat": 91}, "lat")]:
        r = _detect(client, camera, clock, **over)
        assert r.status_code == 422 and field in r.json()["errors"], (over, r.text)
    assert len(_orders(system)) == 1
    assert client.get(URL, params={"work_order": "WO-nope"}, headers=camera).status_code == 404
    assert client.get(URL, params={"work_order": "9" * 30}, headers=camera).status_code == 404


def test_each_camera_system_lists_what_it_sent_and_admins_see_all(client, tokens, clock, camera):
    other = client.post("/api/v1/devices", json={"name": "Market cameras", "kind": "camera"},
                        headers=bearer(tokens["admin"])).json()
    market = bearer(client.post("/api/v1/auth/pair", json={"device_id": other["id"], "code": other["pairing_code"]})
                    .json()["access_token"])
    assert _detect(client, camera, clock).json()["outcome"] == "created"
    assert _detect(client, market, clock, camera_id="mkt-1", north_m=2000).json()["outcome"] == "created"
    mine, theirs = client.get(URL, headers=camera).json(), client.get(URL, headers=market).json()
    assert [r["camera_id"] for r in mine] == ["cam-07"] and [r["camera_id"] for r in theirs] == ["mkt-1"]
    assert theirs[0]["posted_by"] == other["id"] and mine[0]["posted_by"] != other["id"]
    everything = client.get(URL, headers=bearer(tokens["admin"])).json()
    assert sorted(r["camera_id"] for r in everything) == ["cam-07", "mkt-1"]


def test_only_cameras_and_admins(client, tokens, clock):
    assert _detect(client, bearer(tokens["dispatcher"]), clock).status_code == 403
    assert _detect(client, {}, clock).status_code == 401
    assert _detect(client, bearer(tokens["admin"]), clock).json()["outcome"] == "created"


def test_haversine():
    assert haversine_m(31.2, 121.4, 31.2, 121.4) == 0
    assert haversine_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-3)
