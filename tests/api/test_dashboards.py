"""Dashboards over HTTP on a small known dataset built through the engine: work orders closed
on time and late, open and overdue ones, two shifts on two district-local days, one
inspected household of three."""
from __future__ import annotations

from datetime import timedelta

import pytest

from engine.auth import service
from engine.domain import attendance, gas, workorders
from engine.domain.models import Staff
from engine.runtime.errors import Actor
from tests.api.conftest import ACCOUNTS, bearer
from tests.district import DELIVERER, DISPATCHER, PHOTO, REVIEWER, WORKER_EAST, WORKER_WEST, only_task

D = "/api/v1/dashboards"
GOOD = {"hose_ok": "ok", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
        "cylinder_inspection_date": "2027-05-01", "stove_flameout_protection": "present", "photos": [PHOTO]}


def close(engine, number, worker):
    engine.complete(only_task(engine, worker, number)["id"], worker, {"action": "fixed", "after_photos": [PHOTO]})
    engine.complete(only_task(engine, REVIEWER, number)["id"], REVIEWER, {"decision": "approve"})


@pytest.fixture
def dataset(app, system, clock):
    gw = Actor("gateway-1", {"gateway"})
    # day 1 (2026-03-02 in Shanghai): a shift at 09:00 local; 16 present, 1 late, 1 unverified, 2 absent
    start = clock() + timedelta(hours=1)
    shift = attendance.plan_shift(system, "crew-e1", start)
    for i in range(16):
        attendance.check_in(system, shift.id, f"B{i:04d}", start - timedelta(minutes=5), True, "gateway", gw)
    attendance.check_in(system, shift.id, "B0016", start + timedelta(minutes=3), True, "gateway", gw)
    attendance.check_in(system, shift.id, "B0017", start, False, "legacy", gw)
    clock.set(start + timedelta(minutes=16))
    assert system.fire_due_timers() == 1
    # work orders: A, B, D to clean-east (24 h SLA), C to clean-west (24 h), E to roads (4 h)
    t0 = clock()
    a, b, d = (workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
               for _ in range(3))
    c = workorders.report(system, DISPATCHER, source="patrol", category="exposed_garbage", area="xinhe")
    workorders.report(system, DISPATCHER, source="camera", category="road_damage", area="xinhe")
    clock.set(t0 + timedelta(hours=10))
    close(system, a.number, WORKER_EAST)          # 10 h, on time
    clock.set(t0 + timedelta(hours=20))
    close(system, c.number, WORKER_WEST)          # 20 h, on time
    clock.set(t0 + timedelta(hours=30))
    close(system, b.number, WORKER_EAST)          # 30 h, late
    # gas: household 1 inspected, 2 and 3 never
    gas.start_inspection(system, 1, "deliverer1", "delivery", DELIVERER)
    system.complete(only_task(system, DELIVERER)["id"], DELIVERER, GOOD)
    # day 2 (2026-03-03 in Shanghai): nobody comes
    start2 = clock() + timedelta(hours=1)
    attendance.plan_shift(system, "crew-e1", start2)
    clock.set(start2 + timedelta(minutes=16))
    system.fire_due_timers()
    return {"t0": t0, "open": d.number}


@pytest.fixture
def fresh(system, dataset):
    """Access tokens issued on the moved clock."""
    with system.transaction() as s:
        return {role: bearer(service.issue_token(s, s.get(Staff, sid), system.clock()))
                for role, (sid, _) in ACCOUNTS.items()}


def test_work_order_times_on_time_rate_and_backlog(client, fresh):
    r = client.get(D + "/workorders", headers=fresh["dispatcher"])
    assert r.status_code == 200, r.text
    w = r.json()
    assert (w["closed"], w["median_hours"], w["p90_hours"], w["on_time_rate"]) == (3, 20.0, 28.0, 0.6667)
    assert w["on_time_by_unit"] == [{"unit": "clean-east", "closed": 2, "on_time": 1, "rate": 0.5},
                                    {"unit": "clean-west", "closed": 1, "on_time": 1, "rate": 1.0}]
    assert w["backlog"] == [{"unit": "clean-east", "category": "exposed_garbage", "open": 1, "overdue": 1},
                            {"unit": "roads", "category": "road_damage", "open": 1, "overdue": 1}]
    assert (w["backlog_total"], w["overdue_total"]) == (2, 2)


def test_a_unit_leader_sees_only_their_unit(client, fresh):
    w = client.get(D + "/workorders", headers=fresh["unit_leader"]).json()   # clean-east
    assert w["period"]["unit"] == "clean-east"
    assert (w["closed"], w["median_hours"], w["on_time_rate"]) == (2, 20.0, 0.5)
    assert [u["unit"] for u in w["on_time_by_unit"]] == ["clean-east"]
    assert [b["unit"] for b in w["backlog"]] == ["clean-east"]
    assert client.get(D + "/gas", headers=fresh["unit_leader"]).json() is None
    overview = client.get(D, headers=fresh["unit_leader"]).json()
    assert overview["gas"] is None and overview["attendance"]["expected"] == 40


def test_time_range(client, fresh, dataset):
    t0 = dataset["t0"]
    w = client.get(D + "/workorders", params={"from": (t0 + timedelta(hours=15)).isoformat(),
                                              "to": (t0 + timedelta(hours=25)).isoformat()},
                   headers=fresh["reviewer"]).json()
    assert (w["closed"], w["median_hours"], w["p90_hours"]) == (1, 20.0, 20.0)
    none = client.get(D + "/workorders", params={"from": "2025-01-01", "to": "2025-02-01"},
                      headers=fresh["admin"]).json()
    assert (none["closed"], none["median_hours"], none["on_time_rate"], none["backlog_total"]) == (0, None, None, 0)
    for params, field in (({"from": "yesterday"}, "from"), ({"to": "2026-03-02T10:00:00"}, "to"),
                          ({"from": "2026-03-05", "to": "2026-03-01"}, "from")):
        r = client.get(D + "/workorders", params=params, headers=fresh["admin"])
        assert r.status_code == 422 and field in r.json()["errors"], (params, r.text)


def test_attendance_rate_by_contract_and_local_day(client, fresh):
    a = client.get(D + "/attendance", headers=fresh["admin"]).json()
    days = [(r["contract"], r["day"], r["expected"], r["present"], r["late"], r["unverified"], r["absent"], r["rate"])
            for r in a["by_contract_day"]]
    assert days == [("C-EAST-1", "2026-03-02", 20, 16, 1, 1, 2, 0.85),
                    ("C-EAST-1", "2026-03-03", 20, 0, 0, 0, 20, 0.0)]
    assert (a["expected"], a["rate"]) == (40, 0.425)
    one_day = client.get(D + "/attendance", params={"from": "2026-03-03", "to": "2026-03-04"},
                         headers=fresh["admin"]).json()
    assert [r["day"] for r in one_day["by_contract_day"]] == ["2026-03-03"]


def test_gas_coverage_and_overdue_households(client, fresh):
    g = client.get(D + "/gas", headers=fresh["dispatcher"]).json()
    assert (g["households"], g["covered"], g["coverage"], g["overdue"]) == (3, 1, 0.3333, 2)
    assert [h["id"] for h in g["overdue_households"]] == [2, 3]
    assert g["overdue_by_deliverer"] == [{"deliverer_id": "deliverer1", "overdue": 2}]
    assert client.get(D + "/gas", params={"limit": 1},
                      headers=fresh["admin"]).json()["overdue_households"][0]["id"] == 2
    assert client.get(D + "/gas", headers=fresh["deliverer"]).status_code == 403
