"""Process definitions over HTTP: deploy (designers only), versions, download, instances per version."""
from __future__ import annotations

from lxml import etree

from engine.domain import workorders
from engine.system import WORKFLOWS
from tests.api.conftest import bearer
from tests.district import DISPATCHER

URL = "/api/v1/processes"
WORK_ORDER = (WORKFLOWS / "bpmn" / "work_order.bpmn").read_text()
MODIFIED = WORK_ORDER.replace('name="Close order"', 'name="Close the order"', 1)


def _upload(client, token, *files):
    return client.post(URL, files=[("files", (name, content, "application/xml")) for name, content in files],
                       headers=bearer(token))


def _report(system):
    return workorders.report(system, DISPATCHER, source="patrol", category="exposed_garbage", area="dongcheng")


def test_designer_deploys_a_new_version_and_instances_show_theirs(client, system, tokens):
    designer = tokens["designer"]
    on_v1 = [_report(system), _report(system)]
    assert MODIFIED != WORK_ORDER
    r = _upload(client, designer, ("work_order.bpmn", MODIFIED.encode()))
    assert r.status_code == 201, r.text
    assert r.json()["deployed"] == [{"kind": "bpmn", "key": "work_order", "version": 2, "changed": True}]
    same = _upload(client, designer, ("work_order.bpmn", MODIFIED.encode()))
    assert same.json()["deployed"][0] == {"kind": "bpmn", "key": "work_order", "version": 2, "changed": False}
    on_v2 = _report(system)

    listed = client.get(URL, params={"kind": "bpmn", "key": "work_order"}, headers=bearer(designer)).json()
    assert [(d["version"], d["latest"], d["instances"]) for d in listed] == [
        (1, False, {"running": 2, "total": 2}), (2, True, {"running": 1, "total": 1})]
    assert listed[1]["deployed_by"] == "designer1" and len(listed[1]["sha256"]) == 64
    everything = client.get(URL, headers=bearer(tokens["dispatcher"])).json()
    assert {d["kind"] for d in everything} == {"bpmn", "dmn", "form"}
    assert all(d["instances"] is None for d in everything if d["kind"] != "bpmn")

    inst = client.get(f"{URL}/work_order/instances", headers=bearer(designer)).json()
    assert inst["total"] == 3
    assert [(v["version"], v["running"]) for v in inst["versions"]] == [(1, 2), (2, 1)]
    by_version = {i["business_key"]: i["version"] for i in inst["items"]}
    assert by_version == {on_v1[0].number: 1, on_v1[1].number: 1, on_v2.number: 2}
    v1 = client.get(f"{URL}/work_order/instances", params={"version": 1, "limit": 1}, headers=bearer(designer)).json()
    assert v1["total"] == 2 and len(v1["items"]) == 1 and v1["items"][0]["version"] == 1
    page2 = client.get(f"{URL}/work_order/instances", params={"version": 1, "limit": 1, "offset": 1},
                       headers=bearer(designer)).json()
    assert {v1["items"][0]["id"], page2["items"][0]["id"]} == {o.instance_id for o in on_v1}
    assert client.get(f"{URL}/no_such/instances", headers=bearer(designer)).status_code == 404

    old = client.get(f"{URL}/bpmn/work_order/1", headers=bearer(designer))
    assert old.status_code == 200 and old.headers["content-type"].startswith("application/xml")
    assert old.text == WORK_ORDER and "attachment" in old.headers["content-disposition"]
    new = client.get(f"{URL}/bpmn/work_order/2", headers=bearer(designer))
    assert etree.fromstring(new.content).find(".//{*}serviceTask[@id='Task_close_order']").get("name") == \
        "Close the order"
    form = client.get(f"{URL}/form/wo_review/1", headers=bearer(designer))
    assert form.headers["content-type"].startswith("application/json") and form.json()["id"] == "wo_review"
    assert client.get(f"{URL}/bpmn/work_order/3", headers=bearer(designer)).status_code == 404
    assert client.get(f"{URL}/exe/work_order/1", headers=bearer(designer)).status_code == 404


def test_a_script_task_is_refused_naming_the_element(client, system, tokens):
    evil = WORK_ORDER.replace(
        '<bpmn:serviceTask id="Task_close_order"',
        '<bpmn:scriptTask id="Task_evil" scriptFormat="python"><bpmn:script>import os</bpmn:script></bpmn:scriptTask>\n'
        '<bpmn:serviceTask id="Task_close_order"', 1)   # (work_order's own element)
    assert evil != WORK_ORDER
    r = _upload(client, tokens["designer"], ("work_order.bpmn", evil.encode()))
    assert r.status_code == 422, r.text
    problems = r.json()["errors"]["problems"]
    assert any(p["element"] == "Task_evil" and p["file"] == "work_order.bpmn" for p in problems), problems
    listed = client.get(URL, params={"key": "work_order"}, headers=bearer(tokens["designer"])).json()
    assert [d["version"] for d in listed] == [1], "nothing stored"


def test_bad_uploads_are_4xx(client, tokens):
    designer = tokens["designer"]
    assert _upload(client, designer, ("notes.txt", b"hello")).status_code == 422
    assert _upload(client, designer, ("x.bpmn", b"<not xml")).status_code == 422
    assert _upload(client, designer, ("x.bpmn", b"\xff\xfe")).status_code == 422
    dtd = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
    assert _upload(client, designer, ("x.dmn", dtd)).status_code == 422
    big = b"<x>" + b" " * (1024 * 1024 + 10) + b"</x>"
    assert _upload(client, designer, ("x.bpmn", big)).status_code == 422
    assert client.post(URL, json={}, headers=bearer(designer)).status_code == 422


def test_only_designers_deploy(client, tokens):
    for role in ("dispatcher", "admin", "reviewer"):
        r = _upload(client, tokens[role], ("work_order.bpmn", MODIFIED.encode()))
        assert r.status_code == 403 and r.json()["error"] == "role_forbidden", role
    assert client.post(URL, files=[("files", ("work_order.bpmn", MODIFIED.encode()))]).status_code == 401
    assert client.get(URL, headers=bearer(tokens["unit_worker"])).status_code == 403
