"""The designer's endpoints: the operation registry, validate without deploying, and where a
version's instances wait (the heatmap)."""
from __future__ import annotations

from engine.domain import workorders
from engine.system import WORKFLOWS
from tests.api.conftest import bearer
from tests.district import DISPATCHER, PHOTO, REVIEWER, WORKER_EAST, only_task

URL = "/api/v1/processes"
WORK_ORDER = (WORKFLOWS / "bpmn" / "rectification.bpmn").read_text()   # the rectify/review loop


def _files(*files):
    return [("files", (name, content, "application/octet-stream")) for name, content in files]


def _versions(client, token, key="work_order"):
    return [d["version"] for d in client.get(URL, params={"kind": "bpmn", "key": key}, headers=bearer(token)).json()]


def test_operations_list_the_registry_with_parameters(client, system, tokens):
    r = client.get(f"{URL}/operations", headers=bearer(tokens["dispatcher"]))
    assert r.status_code == 200, r.text
    ops = {o["name"]: o for o in r.json()}
    assert set(ops) == set(system.registry.names())
    assert {"dispatch", "escalate", "close_order", "spawn_rectification"} <= set(ops)
    assert ops["dispatch"]["description"].startswith("Route the order")
    assert ops["dispatch"]["parameters"][0]["name"] == "mode" and ops["dispatch"]["parameters"][0]["values"]
    assert ops["escalate"]["parameters"] == []
    assert client.get(f"{URL}/operations", headers=bearer(tokens["unit_worker"])).status_code == 403
    assert client.get(f"{URL}/operations").status_code == 401


def test_validate_runs_the_deploy_checks_and_stores_nothing(client, tokens):
    designer = tokens["designer"]
    before = _versions(client, designer)
    changed = WORK_ORDER.replace('name="Review"', 'name="Check the fix"', 1).encode()
    ok = client.post(f"{URL}/validate", files=_files(("rectification.bpmn", changed)), headers=bearer(designer))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"valid": True, "problems": []}

    bad = WORK_ORDER.replace('camunda:topic="escalate"', 'camunda:topic="launch_rockets"').encode()
    r = client.post(f"{URL}/validate", files=_files(("rectification.bpmn", bad)), headers=bearer(designer))
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is False
    assert body["problems"][0]["file"] == "rectification.bpmn"
    assert body["problems"][0]["element"] == "Task_escalate"
    assert "launch_rockets" in body["problems"][0]["message"]
    # the deploy refuses the same file with the same problems
    d = client.post(URL, files=_files(("rectification.bpmn", bad)), headers=bearer(designer))
    assert d.status_code == 422 and d.json()["error"] == "invalid_definition"
    assert d.json()["errors"]["problems"] == body["problems"]
    assert _versions(client, designer) == before


def test_validate_refuses_bad_input_clearly(client, tokens):
    designer = bearer(tokens["designer"])
    big = b"<x>" + b" " * (1024 * 1024) + b"</x>"
    r = client.post(f"{URL}/validate", files=_files(("big.bpmn", big)), headers=designer)
    assert r.status_code == 422 and "limit" in r.json()["message"]
    r = client.post(f"{URL}/validate", files=_files(("notes.txt", b"hello")), headers=designer)
    assert r.status_code == 200 and "unknown file type" in r.json()["problems"][0]["message"]
    r = client.post(f"{URL}/validate", files=_files(("x.bpmn", b"<not xml")), headers=designer)
    assert r.status_code == 200 and "well-formed" in r.json()["problems"][0]["message"]
    r = client.post(f"{URL}/validate", files=_files(("x.bpmn", b'<!DOCTYPE x [<!ENTITY a "b">]><x/>')),
                    headers=designer)
    assert r.json()["valid"] is False and "DTD" in r.json()["problems"][0]["message"]
    r = client.post(f"{URL}/validate", files=_files(*[(f"f{i}.form", b"{}") for i in range(51)]), headers=designer)
    assert r.status_code == 422 and "at most 50" in r.json()["message"]
    assert client.post(f"{URL}/validate", headers=designer).status_code == 422   # no files at all


def test_only_designers_validate(client, tokens):
    files = _files(("rectification.bpmn", WORK_ORDER.encode()))
    for role in ("dispatcher", "admin", "reviewer", "unit_worker"):
        r = client.post(f"{URL}/validate", files=files, headers=bearer(tokens[role]))
        assert r.status_code == 403, role
        r = client.post(URL, files=files, headers=bearer(tokens[role]))
        assert r.status_code == 403, role


def test_activity_counts_waiting_instances_per_element(client, system, tokens):
    orders = [workorders.report(system, DISPATCHER, source="patrol", category="exposed_garbage", area="dongcheng")
              for _ in range(3)]
    version = max(_versions(client, tokens["designer"]))
    r = client.get(f"{URL}/work_order/versions/{version}/activity", headers=bearer(tokens["dispatcher"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["process"] == "work_order" and body["version"] == version
    assert body["running"] >= 3
    waiting = {el: c["waiting"] for el, c in body["elements"].items() if c["waiting"]}
    assert sum(waiting.values()) == body["running"]          # every running order waits at one task
    assert waiting.get("Call_rectification", 0) >= len(orders), "the called rectification's tasks count on its call"
    assert "Task_rectify" not in waiting, "(an element of the called process, not of this diagram)"
    done = orders[0]     # rectified and approved: it has passed the call activity
    system.complete(only_task(system, WORKER_EAST, done.number)["id"], WORKER_EAST,
                    {"action": "fixed", "after_photos": [PHOTO]})
    system.complete(only_task(system, REVIEWER, done.number)["id"], REVIEWER, {"decision": "approve"})
    after = client.get(f"{URL}/work_order/versions/{version}/activity", headers=bearer(tokens["dispatcher"])).json()
    assert after["elements"]["Call_rectification"]["passed"] == 1
    assert after["elements"]["Call_rectification"]["waiting"] == waiting["Call_rectification"] - 1
    assert all(set(c) == {"waiting", "incidents", "passed"} for c in body["elements"].values())

    assert client.get(f"{URL}/work_order/versions/999/activity", headers=bearer(tokens["designer"])).status_code == 404
    assert client.get(f"{URL}/nope/versions/1/activity", headers=bearer(tokens["designer"])).status_code == 404
    assert client.get(f"{URL}/work_order/versions/0/activity", headers=bearer(tokens["designer"])).status_code == 422
    assert client.get(f"{URL}/{'k' * 200}/versions/1/activity", headers=bearer(tokens["designer"])).status_code == 404
    assert client.get(f"{URL}/work_order/versions/1/activity",
                      headers=bearer(tokens["unit_worker"])).status_code == 403
