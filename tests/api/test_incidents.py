"""A designer's broken process never blames the caller: the step is parked as an incident
with what the caller sent, listed for administrators, and retried once the definition is
fixed (or resolved by hand)."""
from __future__ import annotations

from sqlmodel import Session

from engine.domain.models import WorkOrder
from engine.system import WORKFLOWS
from tests.api.conftest import bearer
from tests.district import PHOTO, REVIEWER, WORKER_EAST, only_task

WORK_ORDER = (WORKFLOWS / "bpmn" / "rectification.bpmn").read_text()   # the rectify/review loop
# Both deploy (nothing constant is wrong) and fail at run time (the name is never set).
BROKEN_SLA = WORK_ORDER.replace(">sla_due</bpmn:timeDate>", ">sla_due_typo</bpmn:timeDate>")
BROKEN_REVIEW = WORK_ORDER.replace('decision == "reject"', "decision == reject_typo")
NEAR = {"lat": "31.2003", "long": "121.4002"}


def _deploy(client, token, text: str) -> int:
    r = client.post("/api/v1/processes", files=[("files", ("rectification.bpmn", text.encode(), "application/xml"))],
                    headers=bearer(token))
    assert r.status_code == 201, r.text
    return r.json()["deployed"][0]["version"]


def _open_incidents(client, token) -> list[dict]:
    r = client.get("/api/v1/incidents", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_citizen_is_not_blamed_for_a_broken_process_and_the_report_runs_once_it_is_fixed(client, system, tokens):
    assert BROKEN_SLA != WORK_ORDER
    assert _deploy(client, tokens["designer"], BROKEN_SLA) == 2
    r = client.post("/open311/v2/requests.json", data={"service_code": "exposed_garbage", **NEAR,
                                                       "description": "bags by the bins"})
    assert r.status_code == 201, r.text
    assert "sla_due_typo" not in r.text and "expression" not in r.text, "no process internals for the public"
    (created,) = r.json()
    rid = created["service_request_id"]
    (status,) = client.get(f"/open311/v2/requests/{rid}.json").json()
    assert status["status"] == "open", "the report was kept"

    (incident,) = _open_incidents(client, tokens["admin"])
    assert (incident["step"], incident["element"], incident["version"]) == ("start", "Event_sla_due", 2)
    assert "sla_due_typo" in incident["message"]
    assert incident["submission"]["data"]["description"] == "bags by the bins"
    assert _open_incidents(client, tokens["designer"]) == [incident], "designers see them too"
    forbidden = client.post(f"/api/v1/incidents/{incident['id']}/retry", headers=bearer(tokens["designer"]))
    assert forbidden.status_code == 403

    again = client.post(f"/api/v1/incidents/{incident['id']}/retry", headers=bearer(tokens["admin"])).json()
    assert again["resolved_at"] is None and again["attempts"] == 2, "still broken: still open, counted"

    assert _deploy(client, tokens["designer"], WORK_ORDER) == 3
    done = client.post(f"/api/v1/incidents/{incident['id']}/retry", headers=bearer(tokens["admin"]))
    assert done.status_code == 200, done.text
    assert done.json()["resolution"] == "retried" and done.json()["resolved_by"] == "admin1"
    assert _open_incidents(client, tokens["admin"]) == []
    with Session(system.db) as s:
        order = s.get(WorkOrder, rid)
    assert (order.state, order.unit_code) == ("at_unit", "clean-east"), "dispatched on the fixed version"
    assert system.instance(order.instance_id)["version"] == 3
    assert only_task(system, WORKER_EAST, order.number)["name"] == "Task_rectify"
    twice = client.post(f"/api/v1/incidents/{incident['id']}/retry", headers=bearer(tokens["admin"]))
    assert twice.status_code == 409


def test_a_completion_the_process_cannot_take_is_accepted_kept_and_given_back(client, system, tokens):
    _deploy(client, tokens["designer"], BROKEN_REVIEW)
    created = client.post("/api/v1/work-orders", json={"category": "exposed_garbage", "area": "dongcheng"},
                          headers=bearer(tokens["dispatcher"]))
    number = created.json()["number"]
    system.complete(only_task(system, WORKER_EAST, number)["id"], WORKER_EAST,
                    {"action": "fixed", "after_photos": [PHOTO]})
    review = only_task(system, REVIEWER, number)
    r = client.post(f"/api/v1/tasks/{review['id']}/complete", headers=bearer(tokens["reviewer"]),
                    json={"data": {"decision": "reject", "reason": "still dirty"}})
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "incident" and "reject_typo" not in r.text
    assert system.tasks.for_actor(REVIEWER, business_key=number) == [], "parked: nobody completes it meanwhile"

    (incident,) = _open_incidents(client, tokens["admin"])
    assert incident["step"] == "task" and incident["element"] == "Gateway_decision"
    assert incident["submission"]["data"] == {"decision": "reject", "reason": "still dirty"}
    assert incident["submission"]["task"]["id"] == review["id"]

    bad = client.post(f"/api/v1/incidents/{incident['id']}/resolve", json={}, headers=bearer(tokens["admin"]))
    assert bad.status_code == 422
    r = client.post(f"/api/v1/incidents/{incident['id']}/resolve", json={"note": "reviewer will redo it"},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 200 and r.json()["resolution"] == "resolved"
    assert only_task(system, REVIEWER, number)["id"] == review["id"], "the task is open again"
    timeline = client.get(f"/api/v1/work-orders/{number}", headers=bearer(tokens["dispatcher"])).json()["timeline"]
    assert [e["kind"] for e in timeline][-2:] == ["incident", "incident_resolved"]


def test_unknown_and_closed_incidents(client, tokens):
    assert client.get("/api/v1/incidents/999", headers=bearer(tokens["admin"])).status_code == 404
    assert client.post("/api/v1/incidents/999/retry", headers=bearer(tokens["admin"])).status_code == 404
    r = client.get("/api/v1/incidents", params={"open": "false"}, headers=bearer(tokens["admin"]))
    assert r.status_code == 200 and r.json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
