"""What the dispatch and review desks need from the API: the source and text filters of the
order list, an order's own process diagram (for whoever may see the order), the units to
re-route to and a unit's people to reassign to."""
from __future__ import annotations

from tests.api.conftest import bearer, token_for


def _report(client, tokens, **extra):
    body = {"category": "exposed_garbage", "area": "dongcheng", "description": "desk test", **extra}
    r = client.post("/api/v1/work-orders", json=body, headers=bearer(tokens["dispatcher"]))
    assert r.status_code == 201, r.text
    return r.json()


def test_source_and_text_filters(client, tokens):
    citizen = _report(client, tokens, source="citizen", description="bags by the 7th gate")
    patrol = _report(client, tokens, source="patrol")
    h = bearer(tokens["dispatcher"])
    numbers = {o["number"] for o in client.get("/api/v1/work-orders?source=citizen&limit=500", headers=h)
               .json()["items"]}
    assert citizen["number"] in numbers and patrol["number"] not in numbers
    found = client.get("/api/v1/work-orders", params={"q": "7th gate"}, headers=h).json()
    assert [o["number"] for o in found["items"]] == [citizen["number"]] and found["total"] == 1
    by_number = client.get("/api/v1/work-orders", params={"q": patrol["number"]}, headers=h).json()
    assert [o["number"] for o in by_number["items"]] == [patrol["number"]]
    assert client.get("/api/v1/work-orders", params={"q": "100%_"}, headers=h).json()["total"] == 0
    r = client.get("/api/v1/work-orders?source=fax", headers=h)
    assert r.status_code == 422 and "source" in r.text


def test_diagram_of_the_orders_own_version_for_who_may_see_it(client, tokens, system):
    order = _report(client, tokens)
    assert order["unit_code"] == "clean-east"
    r = client.get(f"/api/v1/work-orders/{order['number']}/diagram", headers=bearer(tokens["unit_worker"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert 'id="Call_rectification"' in r.text and "bpmndi:BPMNDiagram" in r.text
    detail = client.get(f"/api/v1/work-orders/{order['number']}", headers=bearer(tokens["unit_worker"])).json()
    inner = detail["process"]["position"][0]
    assert (inner["element"], inner["process"]) == ("Task_rectify", "rectification")
    called = client.get(f"/api/v1/work-orders/{order['number']}/diagram", params={"process": "rectification"},
                        headers=bearer(tokens["unit_worker"]))
    assert called.status_code == 200 and 'id="Task_rectify"' in called.text, "the called process, as pinned"
    for bad, status in (("gas_inspection", 404), ("../etc", 422)):
        r2 = client.get(f"/api/v1/work-orders/{order['number']}/diagram", params={"process": bad},
                        headers=bearer(tokens["unit_worker"]))
        assert r2.status_code == status, r2.text
    # a unit role may not read process definitions, but this one it may
    assert client.get("/api/v1/processes", headers=bearer(tokens["unit_worker"])).status_code == 403
    other = token_for(system, "worker.roads.9", "unit_worker", "roads")
    assert client.get(f"/api/v1/work-orders/{order['number']}/diagram", headers=bearer(other)).status_code == 404
    assert client.get("/api/v1/work-orders/WO-NOPE/diagram", headers=bearer(tokens["dispatcher"])).status_code == 404
    assert client.get(f"/api/v1/work-orders/{order['number']}/diagram", headers=bearer(tokens["designer"])
                      ).status_code == 403


def test_units_and_a_units_people(client, tokens, system):
    units = client.get("/api/v1/units", headers=bearer(tokens["unit_worker"])).json()
    assert "clean-east" in {u["code"] for u in units} and all(u["name_zh"] for u in units)
    people = client.get("/api/v1/units/clean-east/staff", headers=bearer(tokens["dispatcher"])).json()
    assert "worker.clean-east.1" in {p["id"] for p in people}
    assert client.get("/api/v1/units/clean-east/staff", headers=bearer(tokens["unit_leader"])).status_code == 200
    assert client.get("/api/v1/units/roads/staff", headers=bearer(tokens["unit_leader"])).status_code == 404
    assert client.get("/api/v1/units/clean-east/staff", headers=bearer(tokens["unit_worker"])).status_code == 403
    assert client.get("/api/v1/units/nowhere/staff", headers=bearer(tokens["dispatcher"])).status_code == 404
