"""Work orders over HTTP: the whole loop, filters and pagination, the unit's object rule,
comments, photo uploads and bad input."""
from __future__ import annotations

import hashlib
import os

import pytest
from sqlmodel import Session, func, select

from engine.auth import service
from engine.domain.models import Staff
from engine.domain.records import Attachment
from engine.storage import AttachmentStore
from tests.api.conftest import ACCOUNTS, bearer, token_for

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(64)
JPEG = b"\xff\xd8\xff\xe0" + os.urandom(64)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + os.urandom(32)


@pytest.fixture(autouse=True)
def attachments(app, tmp_path):
    store = app.state.attachments = AttachmentStore(tmp_path / "attachments")
    return store


def advance(clock, system, tokens, **delta) -> None:
    """Move the clock and re-issue the (30-minute) access tokens on it."""
    clock.advance(**delta)
    with system.transaction() as s:
        tokens.update({role: service.issue_token(s, s.get(Staff, sid), system.clock())
                       for role, (sid, _) in ACCOUNTS.items()})


def report(client, tokens, category="exposed_garbage", area="dongcheng", **extra) -> dict:
    r = client.post("/api/v1/work-orders", json={"category": category, "area": area, **extra},
                    headers=bearer(tokens["dispatcher"]))
    assert r.status_code == 201, r.text
    return r.json()


def tasks_of(client, token, **params) -> list[dict]:
    r = client.get("/api/v1/tasks", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def only_task(client, token, number, name=None) -> dict:
    found = [t for t in tasks_of(client, token, business_key=number) if name is None or t["name"] == name]
    assert len(found) == 1, found
    return found[0]


def upload(client, token, number, data=PNG, kind="after", ctype="image/png", name="photo.png"):
    return client.post(f"/api/v1/work-orders/{number}/attachments", files={"file": (name, data, ctype)},
                       data={"kind": kind}, headers=bearer(token))


def complete(client, token, task_id, data, **extra):
    return client.post(f"/api/v1/tasks/{task_id}/complete", json={"data": data, **extra}, headers=bearer(token))


def test_the_whole_loop_over_http(client, tokens, clock, system):
    order = report(client, tokens, description="bags by the bins", address_code="DC01-001")
    number = order["number"]
    assert (order["state"], order["unit_code"], order["source"]) == ("at_unit", "clean-east", "patrol")
    assert (order["lat"], order["lon"]) == (31.2, 121.4), "located from its address code"
    listed = client.get("/api/v1/work-orders", headers=bearer(tokens["unit_worker"])).json()
    assert [o["number"] for o in listed["items"]] == [number]

    for loop, verdict in enumerate(({"decision": "reject", "reason": "still dirty"}, {"decision": "approve"})):
        advance(clock, system, tokens, hours=1)
        worker = tokens["unit_worker"]
        photo = upload(client, worker, number, PNG + bytes([loop]))
        assert photo.status_code == 201, photo.text
        task = only_task(client, worker, number)
        assert task["name"] == "Task_rectify" and task["form"]["id"] == "wo_rectify"
        r = complete(client, worker, task["id"], {"action": "fixed", "after_photos": [photo.json()["sha256"]],
                                                  "note": f"swept, try {loop}"})
        assert r.status_code == 200, r.text
        assert client.get(f"/api/v1/work-orders/{number}", headers=bearer(worker)).json()["state"] == "in_review"
        advance(clock, system, tokens, minutes=30)
        review = only_task(client, tokens["reviewer"], number)
        assert review["form"]["id"] == "wo_review"
        r = complete(client, tokens["reviewer"], review["id"], verdict)
        assert r.status_code == 200, r.text

    assert r.json()["state"] == "completed"
    detail = client.get(f"/api/v1/work-orders/{number}", headers=bearer(tokens["dispatcher"])).json()
    assert (detail["state"], detail["reject_count"], detail["overdue"]) == ("closed", 1, False)
    assert detail["process"]["state"] == "completed" and detail["process"]["open_tasks"] == []
    timeline = detail["timeline"]
    rejected = [e for e in timeline if e["kind"] == "rejected"]
    assert len(rejected) == 1
    assert (rejected[0]["actor"], rejected[0]["reason"]) == ("reviewer1", "still dirty")
    assert rejected[0]["at"].startswith("2026-03-02T01:30")
    kinds = [(e["kind"], e["actor"]) for e in timeline]
    assert kinds[0] == ("instance_started", "dispatcher1")
    assert ("dispatched", "dispatcher1") in kinds and ("closed", "reviewer1") in kinds
    assert kinds.count(("task_completed", "worker.clean-east.1")) == 2
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    after = [a for a in detail["attachments"] if a["kind"] == "after"]
    assert len(after) == 2 and all(a["content_type"] == "image/png" for a in after)
    got = client.get(after[0]["url"], headers=bearer(tokens["unit_worker"]))
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert hashlib.sha256(got.content).hexdigest() == after[0]["sha256"]


def test_an_open_order_shows_where_it_stands(client, tokens):
    number = report(client, tokens, category="road_damage", area="xinhe")["number"]
    detail = client.get(f"/api/v1/work-orders/{number}", headers=bearer(tokens["reviewer"])).json()
    assert (detail["unit_code"], detail["priority"]) == ("roads", "urgent")
    process = detail["process"]
    assert process["process_key"] == "work_order" and process["state"] == "running"
    assert "Task_rectify" in [p["element"] for p in process["position"]]
    assert process["open_tasks"][0]["groups"] == ["unit:roads"]
    assert process["next_timer_at"] is not None


def test_filters_and_pagination(client, tokens, clock, system):
    made = []
    for _i, (category, area) in enumerate([("exposed_garbage", "dongcheng"), ("exposed_garbage", "xinhe"),
                                          ("road_damage", "xinhe"), ("tree_fallen", "huaqiao"),
                                          ("exposed_garbage", "dongcheng")]):
        made.append(report(client, tokens, category=category, area=area)["number"])
        advance(clock, system, tokens, hours=1)

    def numbers(**params):
        r = client.get("/api/v1/work-orders", params=params, headers=bearer(tokens["admin"]))
        assert r.status_code == 200, r.text
        return [o["number"] for o in r.json()["items"]], r.json()["total"]

    assert numbers() == (made[::-1], 5), "newest first"
    assert numbers(category="exposed_garbage")[1] == 3
    assert numbers(unit="clean-west") == ([made[1]], 1)
    assert numbers(area="xinhe", category="road_damage") == ([made[2]], 1)
    assert numbers(state="at_unit")[1] == 5 and numbers(state="closed") == ([], 0)
    assert numbers(reported_from="2026-03-02T01:00:00Z", reported_to="2026-03-02T03:00:00+00:00")[0] == made[1:3][::-1]
    assert numbers(reported_from="2026-03-02T03:00:00")[0] == made[3:][::-1], "naive times are UTC"
    page = client.get("/api/v1/work-orders", params={"limit": 2, "offset": 2}, headers=bearer(tokens["admin"])).json()
    assert ([o["number"] for o in page["items"]], page["total"], page["limit"], page["offset"]) == \
        (made[::-1][2:4], 5, 2, 2)
    assert numbers(offset=10) == ([], 5)

    # tree_fallen has a 6 h SLA, road_damage 4 h: past them, both are overdue before any timer fires
    advance(clock, system, tokens, hours=2)  # 07:00: road_damage (02:00 + 4 h) is late, the tree (03:00 + 6 h) not
    assert set(numbers(overdue=True)[0]) == {made[2]}
    advance(clock, system, tokens, hours=3)
    assert set(numbers(overdue=True)[0]) == {made[2], made[3]}
    system.fire_due_timers()
    assert set(numbers(overdue=True)[0]) == {made[2], made[3]}
    assert numbers(overdue=False)[1] == 3

    for bad in ({"state": "lost"}, {"category": "aliens"}, {"limit": 0}, {"limit": 501}, {"offset": -1},
                {"reported_from": "yesterday"}, {"overdue": "maybe"}):
        r = client.get("/api/v1/work-orders", params=bad, headers=bearer(tokens["admin"]))
        assert r.status_code == 422 and next(iter(bad)) in r.json()["errors"], (bad, r.text)


def test_a_unit_sees_only_its_own_orders(client, tokens, system):
    east = report(client, tokens)["number"]
    west = report(client, tokens, area="xinhe")["number"]
    worker, leader = bearer(tokens["unit_worker"]), bearer(tokens["unit_leader"])
    west_worker = bearer(token_for(system, "worker.clean-west.1", "unit_worker", "clean-west"))
    photo = upload(client, tokens["unit_worker"], east).json()["sha256"]
    for who in (worker, leader):
        assert [o["number"] for o in client.get("/api/v1/work-orders", headers=who).json()["items"]] == [east]
        assert client.get(f"/api/v1/work-orders/{west}", headers=who).status_code == 404
    r = client.get("/api/v1/work-orders", params={"unit": "clean-west"}, headers=worker).json()
    assert r["items"] == [] and r["total"] == 0, "asking for another unit shows nothing"
    assert [o["number"] for o in client.get("/api/v1/work-orders", headers=west_worker).json()["items"]] == [west]
    r = client.get(f"/api/v1/work-orders/{east}", headers=west_worker)
    assert r.status_code == 404 and r.json() == {"error": "not_found", "message": f"no work order {east!r}"}, \
        "the same answer as for an order that does not exist"
    assert client.post(f"/api/v1/work-orders/{east}/comments", json={"text": "hi"},
                       headers=west_worker).status_code == 404
    assert upload(client, token_for(system, "worker.clean-west.1", "unit_worker", "clean-west"),
                  east).status_code == 404
    assert client.get(f"/api/v1/attachments/{photo}", headers=west_worker).status_code == 404
    assert client.get(f"/api/v1/attachments/{photo}", headers=worker).status_code == 200
    assert client.get(f"/api/v1/attachments/{photo}", headers=bearer(tokens["reviewer"])).status_code == 200
    assert tasks_of(client, token_for(system, "worker.clean-west.1", "unit_worker", "clean-west"),
                    business_key=east) == []
    for role in ("dispatcher", "reviewer", "admin"):
        assert client.get("/api/v1/work-orders", headers=bearer(tokens[role])).json()["total"] == 2


def test_comments_show_in_detail_and_timeline(client, tokens):
    number = report(client, tokens)["number"]
    r = client.post(f"/api/v1/work-orders/{number}/comments", json={"text": "called the contractor"},
                    headers=bearer(tokens["unit_leader"]))
    assert r.status_code == 201 and r.json()["author"] == "leader.clean-east"
    detail = client.get(f"/api/v1/work-orders/{number}", headers=bearer(tokens["dispatcher"])).json()
    assert [(c["author"], c["text"]) for c in detail["comments"]] == [("leader.clean-east", "called the contractor")]
    assert [e["actor"] for e in detail["timeline"] if e["kind"] == "commented"] == ["leader.clean-east"]
    for bad in ({"text": ""}, {"text": "   "}, {"text": 5}, {"text": "x" * 4001}, {"note": "x"}, {}):
        r = client.post(f"/api/v1/work-orders/{number}/comments", json=bad, headers=bearer(tokens["reviewer"]))
        assert r.status_code == 422 and r.json()["message"], (bad, r.text)
    assert client.post("/api/v1/work-orders/nope/comments", json={"text": "hello"},
                       headers=bearer(tokens["reviewer"])).status_code == 404


def test_uploads_are_checked_and_stored_once(client, tokens, system, attachments):
    number = report(client, tokens)["number"]
    worker = tokens["unit_worker"]
    first = upload(client, worker, number, JPEG, kind="evidence", ctype="image/jpeg", name="a.jpg")
    again = upload(client, worker, number, JPEG, kind="evidence", ctype="image/jpeg", name="b.jpg")
    assert first.status_code == again.status_code == 201
    sha = first.json()["sha256"]
    assert again.json()["sha256"] == sha == hashlib.sha256(JPEG).hexdigest()
    other = report(client, tokens)["number"]
    assert upload(client, worker, other, JPEG, ctype="application/octet-stream").json()["sha256"] == sha
    with Session(system.db) as s:
        assert s.exec(select(func.count()).select_from(Attachment)).one() == 1
    stored = [p for p in attachments.blobs.root.rglob("*") if p.is_file()]
    assert stored == [attachments.blobs.root / sha[:2] / sha[2:4] / sha] and stored[0].read_bytes() == JPEG
    assert upload(client, worker, number, WEBP, ctype="image/webp").json()["content_type"] == "image/webp"

    text = upload(client, worker, number, b"GIF89a not allowed", ctype="image/png")
    assert text.status_code == 415 and "magic bytes" in text.json()["message"]
    liar = upload(client, worker, number, JPEG, ctype="image/png")
    assert liar.status_code == 415 and "image/jpeg" in liar.json()["message"]
    big = upload(client, worker, number, PNG + b"\x00" * (10 * 1024 * 1024))
    assert big.status_code == 413 and "at most" in big.json()["message"]
    assert upload(client, worker, number, b"").status_code == 422
    assert upload(client, worker, number, kind="selfie").status_code == 422
    r = client.post(f"/api/v1/work-orders/{number}/attachments", json={"file": "x"}, headers=bearer(worker))
    assert r.status_code == 422 and "file" in r.json()["errors"]
    detail = client.get(f"/api/v1/work-orders/{number}", headers=bearer(worker)).json()
    assert sorted(a["content_type"] for a in detail["attachments"]) == ["image/jpeg", "image/webp"]
    for missing in ("0" * 64, "../../etc/passwd", "x" * 300):
        assert client.get(f"/api/v1/attachments/{missing}", headers=bearer(worker)).status_code == 404


def test_bad_reports_get_clear_4xx(client, tokens):
    headers = bearer(tokens["dispatcher"])
    r = client.post("/api/v1/work-orders", content=b'{"category": ',
                    headers={**headers, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["message"]
    cases = [({"category": 5, "area": "x"}, "category"), ({"category": "aliens", "area": "x"}, "category"),
             ({"category": "other"}, "area"), ({"category": "other", "area": ""}, "area"),
             ({"category": "other", "area": "x", "lat": "north", "lon": 1}, "lat"),
             ({"category": "other", "area": "x", "lat": 91, "lon": 1}, "lat"),
             ({"category": "other", "area": "x", "colour": "red"}, "colour"),
             ({"category": "other", "area": "x", "address_code": "NOWHERE"}, "address_code"),
             ({"category": "other", "area": "x", "source": "camera"}, "source")]
    for body, field in cases:
        r = client.post("/api/v1/work-orders", json=body, headers=headers)
        assert r.status_code == 422 and field in r.json().get("errors", {}), (body, r.text)
    r = client.post("/api/v1/work-orders", json={"category": "other", "area": "x", "lat": 31.2}, headers=headers)
    assert r.status_code == 422 and "lat and lon together" in r.text
    r = client.post("/api/v1/work-orders", json=[1, 2], headers=headers)
    assert r.status_code == 422
    assert client.get("/api/v1/work-orders/WO-none", headers=headers).status_code == 404
    assert client.get("/api/v1/work-orders", headers=headers).json()["total"] == 0, "nothing partially written"
    assert client.post("/api/v1/work-orders", json={"category": "other", "area": "x"},
                       headers=bearer(tokens["unit_worker"])).status_code == 403


def test_overdue_order_is_flagged_in_detail(client, tokens, clock, system):
    number = report(client, tokens, category="road_damage", area="xinhe")["number"]
    advance(clock, system, tokens, hours=4, minutes=1)
    detail = client.get(f"/api/v1/work-orders/{number}", headers=bearer(tokens["dispatcher"])).json()
    assert detail["overdue"] is True and detail["state"] == "at_unit"


def test_the_store_writes_atomically_and_by_content(tmp_path, system):
    from engine.storage import FileBlobs, StoreError, TooLarge, UnsupportedType, sniff
    store = AttachmentStore(tmp_path / "blobs", max_bytes=1024)
    with system.transaction() as s:
        sha = store.put(PNG, "image/png", "tester", s, system.clock())
        assert store.put(PNG, None, "someone else", s, system.clock()) == sha
    assert store.exists(sha) and not store.exists("f" * 64) and not store.exists("../x")
    with store.open(sha) as f:
        assert f.read() == PNG
    files = [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert files == [sha], "no temp files left behind"
    with pytest.raises(KeyError):
        store.open("f" * 64)
    with pytest.raises(StoreError):
        store.open("../../etc/passwd")
    with pytest.raises(TooLarge):
        store.check(PNG + b"\x00" * 1024, "image/png")
    with pytest.raises(UnsupportedType):
        store.check(b"<svg onload=alert(1)>", "image/svg+xml")
    assert [sniff(x) for x in (PNG, JPEG, WEBP, b"RIFF\x00\x00\x00\x00WAVE")] == \
        ["image/png", "image/jpeg", "image/webp", None]
    assert isinstance(store.blobs, FileBlobs)
    with Session(system.db) as s:
        row = s.get(Attachment, sha)
        assert (row.size, row.content_type, row.created_by) == (len(PNG), "image/png", "tester")
