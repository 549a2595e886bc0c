"""Tasks over HTTP: my tasks with forms, per-field form errors, claim and release,
concurrent completion, reassignment, and who sees which task."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from engine.domain import gas
from engine.runtime.errors import Actor
from tests.api.conftest import bearer, token_for
from tests.api.test_workorders import attachments, complete, only_task, report, tasks_of, upload  # noqa: F401


def test_my_tasks_carry_their_form_and_paginate(client, tokens, clock):
    numbers = []
    for _ in range(3):
        numbers.append(report(client, tokens)["number"])
        clock.advance(minutes=1)
    worker = tokens["unit_worker"]
    page = client.get("/api/v1/tasks", params={"limit": 2}, headers=bearer(worker)).json()
    assert len(page["items"]) == 2 and page["has_more"] is True
    assert [t["business_key"] for t in page["items"]] == numbers[:2]
    task = page["items"][0]
    assert (task["name"], task["process_key"], task["groups"]) == ("Task_rectify", "work_order", ["unit:clean-east"])
    keys = [c.get("key") for c in task["form"]["components"]]
    assert {"action", "after_photos", "note", "reason"} <= set(keys)
    rest = client.get("/api/v1/tasks", params={"limit": 2, "offset": 2}, headers=bearer(worker)).json()
    assert [t["business_key"] for t in rest["items"]] == numbers[2:] and rest["has_more"] is False
    assert [t["business_key"] for t in tasks_of(client, worker, business_key=numbers[1])] == [numbers[1]]
    assert tasks_of(client, worker, process="gas_inspection") == []
    one = client.get(f"/api/v1/tasks/{task['id']}", headers=bearer(worker)).json()
    assert one["id"] == task["id"] and one["form"]["id"] == "wo_rectify"
    bare = client.get("/api/v1/tasks", params={"limit": 2, "forms": "false"}, headers=bearer(worker)).json()
    assert [t["form"] for t in bare["items"]] == [None, None], "left out when asked"
    assert [{**t, "form": None} for t in page["items"]] == bare["items"], "all else the same"
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -3}, {"limit": "many"}, {"forms": "perhaps"}):
        r = client.get("/api/v1/tasks", params=bad, headers=bearer(worker))
        assert r.status_code == 422 and next(iter(bad)) in r.json()["errors"]


def test_other_units_and_roles_do_not_see_the_task(client, tokens, system):
    number = report(client, tokens)["number"]
    task = only_task(client, tokens["unit_worker"], number)
    west = token_for(system, "worker.clean-west.1", "unit_worker", "clean-west")
    for token in (west, tokens["deliverer"], tokens["reviewer"], tokens["supervisor"]):
        assert tasks_of(client, token) == []
        assert client.get(f"/api/v1/tasks/{task['id']}", headers=bearer(token)).status_code == 404
    r = complete(client, west, task["id"], {"action": "fixed", "after_photos": ["ab" * 32]})
    assert r.status_code == 403 and r.json()["message"]
    assert client.post(f"/api/v1/tasks/{task['id']}/claim", headers=bearer(west)).status_code == 403
    assert only_task(client, tokens["unit_leader"], number)["id"] == task["id"], "the unit's leader sees it"
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=bearer(tokens["dispatcher"])).status_code == 200


def test_a_deliverer_sees_only_their_own_tasks(client, tokens, system):
    other = token_for(system, "deliverer2", "deliverer")
    gas.start_inspection(system, 1, "deliverer1", "delivery", Actor("deliverer1"))
    gas.start_inspection(system, 2, "deliverer2", "delivery", Actor("deliverer2"))
    mine = tasks_of(client, tokens["deliverer"])
    theirs = tasks_of(client, other)
    assert len(mine) == len(theirs) == 1 and mine[0]["assignee"] == "deliverer1"
    assert mine[0]["form"] is not None
    assert client.get(f"/api/v1/tasks/{theirs[0]['id']}", headers=bearer(tokens["deliverer"])).status_code == 404
    assert complete(client, tokens["deliverer"], theirs[0]["id"], {}).status_code == 403


def test_form_errors_come_back_per_field(client, tokens):
    number = report(client, tokens)["number"]
    worker = tokens["unit_worker"]
    task = only_task(client, worker, number)
    r = complete(client, worker, task["id"], {"action": "fixed"})
    assert r.status_code == 422 and r.json()["errors"]["after_photos"]["code"] == "required"
    assert r.json()["errors"]["after_photos"]["message_zh"]
    r = complete(client, worker, task["id"], {"action": "burn it", "note": 7})
    assert r.status_code == 422 and r.json()["errors"]["action"]["code"] == "choice"
    assert r.json()["errors"]["note"]["code"] == "type"
    r = complete(client, worker, task["id"], {"action": "fixed", "after_photos": ["not-a-hash"]})
    assert r.status_code == 422 and r.json()["errors"]["after_photos"]["code"] == "attachment"
    r = complete(client, worker, task["id"], {"action": "fixed", "after_photos": ["ab" * 32]})
    assert r.status_code == 422 and "upload it first" in r.json()["errors"]["after_photos"]["message"]
    r = complete(client, worker, task["id"], {"action": "not_ours", "reason": "x"})
    assert r.status_code == 422 and r.json()["errors"]["reason"]["code"] == "minLength"
    for body in ({"data": [1]}, {"data": "fixed"}, {"action": "fixed"}, {"data": {}, "expected_version": "new"}):
        r = client.post(f"/api/v1/tasks/{task['id']}/complete", json=body, headers=bearer(worker))
        assert r.status_code == 422 and r.json()["message"], (body, r.text)
    r = client.post(f"/api/v1/tasks/{task['id']}/complete", content=b"{oops", headers={
        **bearer(worker), "content-type": "application/json"})
    assert r.status_code == 422
    assert only_task(client, worker, number)["id"] == task["id"], "nothing moved"
    r = complete(client, worker, task["id"], {"action": "not_ours", "reason": "a road defect"})
    assert r.status_code == 200 and r.json()["position"][0]["element"] == "Task_reroute"


def test_stale_version_and_unknown_tasks(client, tokens):
    number = report(client, tokens)["number"]
    worker = tokens["unit_worker"]
    task = only_task(client, worker, number)
    r = complete(client, worker, task["id"], {"action": "not_ours", "reason": "not ours"}, expected_version=99)
    assert r.status_code == 409 and "version" in r.json()["message"]
    unknown = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/api/v1/tasks/{unknown}", headers=bearer(worker)).status_code == 404
    r = complete(client, worker, unknown, {})
    assert r.status_code == 409 and "not open" in r.json()["message"]
    assert client.post(f"/api/v1/tasks/{'x' * 300}/claim", headers=bearer(worker)).status_code == 409


def test_twenty_concurrent_completions_one_wins(client, tokens):
    number = report(client, tokens)["number"]
    worker = tokens["unit_worker"]
    task = only_task(client, worker, number)
    body = {"action": "not_ours", "reason": "belongs to roads"}
    gate = threading.Barrier(20)

    def attempt(_):
        gate.wait()
        return complete(client, worker, task["id"], body)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(attempt, range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [409] * 19, codes
    assert all(r.json()["message"] for r in results if r.status_code == 409)
    detail = client.get(f"/api/v1/work-orders/{number}", headers=bearer(tokens["dispatcher"])).json()
    assert [e["kind"] for e in detail["timeline"]].count("task_completed") == 1
    assert detail["state"] == "rerouting"


def test_claim_and_release(client, tokens):
    number = report(client, tokens)["number"]
    worker, leader = tokens["unit_worker"], tokens["unit_leader"]
    task = only_task(client, worker, number)
    r = client.post(f"/api/v1/tasks/{task['id']}/claim", headers=bearer(worker))
    assert r.status_code == 200 and r.json()["claimed_by"] == "worker.clean-east.1"
    assert tasks_of(client, leader) == [], "claimed: no longer open to the rest of the group"
    r = client.post(f"/api/v1/tasks/{task['id']}/claim", headers=bearer(leader))
    assert r.status_code == 409 and "claimed by worker.clean-east.1" in r.json()["message"]
    assert complete(client, leader, task["id"], {"action": "not_ours", "reason": "nope"}).status_code == 409
    assert client.post(f"/api/v1/tasks/{task['id']}/release", headers=bearer(leader)).status_code == 409
    r = client.post(f"/api/v1/tasks/{task['id']}/release", headers=bearer(worker))
    assert r.status_code == 200 and r.json()["claimed_by"] is None
    assert client.post(f"/api/v1/tasks/{task['id']}/release", headers=bearer(worker)).status_code == 409
    assert only_task(client, leader, number)["id"] == task["id"]
    kinds = [e["kind"] for e in client.get(f"/api/v1/work-orders/{number}", headers=bearer(leader)).json()["timeline"]]
    assert kinds.count("task_claimed") == 1 and kinds.count("task_released") == 1


def test_reassign(client, tokens, system):
    east = report(client, tokens)["number"]
    roads = report(client, tokens, category="road_damage", area="xinhe")["number"]
    worker, leader = tokens["unit_worker"], tokens["unit_leader"]
    token_for(system, "worker.clean-east.2", "unit_worker", "clean-east")
    token_for(system, "worker.roads.1", "unit_worker", "roads")
    task = only_task(client, worker, east)

    r = client.post(f"/api/v1/tasks/{task['id']}/reassign", json={"to": "worker.clean-east.2", "reason": "nearer"},
                    headers=bearer(leader))
    assert r.status_code == 200, r.text
    assert (r.json()["assignee"], r.json()["claimed_by"]) == ("worker.clean-east.2", "worker.clean-east.2")
    assert tasks_of(client, worker) == [], "no longer open to the rest of the unit"
    second = token_for(system, "worker.clean-east.2", "unit_worker", "clean-east")
    assert only_task(client, second, east)["id"] == task["id"]

    r = client.post(f"/api/v1/tasks/{task['id']}/reassign", json={"to": "worker.roads.1"}, headers=bearer(leader))
    assert r.status_code == 403 and "only to people of unit clean-east" in r.json()["message"]
    detail = client.get(f"/api/v1/work-orders/{roads}", headers=bearer(tokens["dispatcher"])).json()
    roads_task = detail["process"]["open_tasks"][0]
    r = client.post(f"/api/v1/tasks/{roads_task['id']}/reassign", json={"to": "worker.clean-east.2"},
                    headers=bearer(leader))
    assert r.status_code == 404, "another unit's task does not exist for this leader"
    for body, field in (({"to": "nobody"}, "to"), ({"to": "designer1"}, "to"), ({}, "to"),
                        ({"to": "worker.roads.1", "reason": 5}, "reason")):
        r = client.post(f"/api/v1/tasks/{task['id']}/reassign", json=body, headers=bearer(tokens["dispatcher"]))
        assert r.status_code == 422 and field in r.json()["errors"], (body, r.text)

    r = client.post(f"/api/v1/tasks/{task['id']}/reassign", json={"to": "leader.clean-east", "reason": "escalated"},
                    headers=bearer(tokens["dispatcher"]))
    assert r.status_code == 200
    assert tasks_of(client, second) == []
    photo = upload(client, leader, east).json()["sha256"]
    assert complete(client, leader, task["id"], {"action": "fixed", "after_photos": [photo]}).status_code == 200
    timeline = client.get(f"/api/v1/work-orders/{east}", headers=bearer(leader)).json()["timeline"]
    moves = [(e["actor"], e["detail"]["from"], e["detail"]["to"], e["reason"]) for e in timeline
             if e["kind"] == "task_reassigned"]
    assert moves == [("leader.clean-east", None, "worker.clean-east.2", "nearer"),
                     ("dispatcher1", "worker.clean-east.2", "leader.clean-east", "escalated")]
    r = client.post(f"/api/v1/tasks/{task['id']}/reassign", json={"to": "worker.clean-east.2"},
                    headers=bearer(tokens["dispatcher"]))
    assert r.status_code == 409, "completed tasks are not reassigned"
