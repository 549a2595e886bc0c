"""Pull for gas deliverers: their own households (with the open inspection task of each),
sent whole and only when changed, in a constant number of queries however many there are;
and the reference data a delivery inspection needs offline: the gas form and the hazard
decision table (evaluated on the tablet, engine.bpmn.decision_table)."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session

from engine.bpmn.decision_table import evaluate
from engine.domain import gas
from engine.domain.models import AddressCode, Household, Staff
from sync.client import Outbox
from tests.api.conftest import app, bearer, client, tokens  # noqa: F401  (fixtures)
from tests.district import DELIVERER, GAS_OFFICE, REVIEWER, only_task
from tests.sync.test_pull import pull

KEYS = {"id", "address_code", "holder", "address", "lat", "lon", "last_inspected_at", "next_due_at", "due",
        "supply_suspended", "task_id"}


@pytest.fixture
def deliverer(tokens):  # noqa: F811
    return bearer(tokens["deliverer"])


def test_a_deliverer_pulls_their_households_whole_and_only_when_changed(client, system, deliverer, clock,  # noqa: F811
                                                                        tokens, tmp_path):  # noqa: F811
    with Session(system.db) as s:              # a household of another deliverer is not theirs to see
        s.add(Staff(id="deliverer2", name="Deliverer Two", role="deliverer"))
        s.add(AddressCode(code="DC01-002", street_code="dc-01", label="2 East Road", lat=31.21, lon=121.41))
        s.flush()
        s.add(Household(address_code="DC01-002", holder="Holder X", deliverer_id="deliverer2"))
        s.commit()
    first = pull(client, deliverer)
    homes = first["households"]
    assert [h["address_code"] for h in homes] == ["DC01-001-01", "DC01-001-02", "DC01-001-03"]
    assert all(set(h) == KEYS for h in homes)
    assert homes[0]["address"] == "1 East Road, flat 1" and (homes[0]["lat"], homes[0]["lon"]) == (31.2, 121.4)
    assert all(h["due"] and h["task_id"] is None and not h["supply_suspended"] for h in homes), "never inspected"
    second = pull(client, deliverer, first["cursor"])
    assert second["households"] is None, "unchanged: not sent again"

    # an inspection opens for household 1: its task is named and the list is sent again
    iid = gas.start_inspection(system, 1, "deliverer1", "delivery", DELIVERER)
    third = pull(client, deliverer, second["cursor"])
    [task] = third["tasks"]
    assert task["instance_id"] == iid
    assert [h["task_id"] for h in third["households"]] == [task["id"], None, None]
    system.complete(task["id"], DELIVERER, {"hose_ok": "ok", "valve_leak_test": "leak", "ventilation": "adequate",
                                            "co_alarm": "working", "cylinder_inspection_date": "2027-01-01",
                                            "stove_flameout_protection": "present", "photos": ["ab" * 32]})
    fourth = pull(client, deliverer, third["cursor"])
    h1 = fourth["households"][0]
    assert h1["supply_suspended"] and not h1["due"] and h1["last_inspected_at"].startswith("2026-03-02")
    assert h1["next_due_at"].startswith("2026-07-02")
    assert h1["task_id"] is None and fourth["tasks"] == [], "the gas office rectifies first"
    # the gas office rectifies the hazard's order and a reviewer approves: the re-inspection opens
    rectify = only_task(system, GAS_OFFICE, name="Task_rectify")
    system.complete(rectify["id"], GAS_OFFICE, {"action": "fixed", "after_photos": ["ab" * 32]})
    system.complete(only_task(system, REVIEWER, business_key=rectify["business_key"])["id"], REVIEWER,
                    {"decision": "approve"})
    fourth = pull(client, deliverer, fourth["cursor"])
    h1 = fourth["households"][0]
    reinspect = [t for t in fourth["tasks"] if t["name"] == "Task_reinspect"]
    assert h1["task_id"] == reinspect[0]["id"], "the re-inspection is the household's open task now"

    # the tablet keeps them: Outbox.apply_pull stores the list, value("households") reads it
    box = Outbox(tmp_path / "outbox.db")
    box.apply_pull(first)
    assert [h["id"] for h in box.value("households")] == [h["id"] for h in homes]
    box.apply_pull(second)                     # (None: kept as it was)
    assert box.value("households") == homes
    box.apply_pull(fourth)
    assert box.value("households")[0]["supply_suspended"] is True
    box.close()

    for role in ("supervisor", "unit_worker"):
        assert pull(client, bearer(tokens[role]))["households"] is None, role


def test_the_reference_has_the_gas_form_and_the_hazard_table(client, system, deliverer):  # noqa: F811
    ref = pull(client, deliverer)["reference"]
    form = ref["gas_form"]
    assert form["form_ref"] == "gas_inspection" and form["form"]["id"] == "gas_inspection"
    assert isinstance(form["definition_id"], int)
    keys = {c.get("key") for group in form["form"]["components"] for c in [group, *group.get("components", [])]}
    assert {"hose_ok", "valve_leak_test", "photos"} <= keys
    table = ref["hazard_table"]
    assert table["decision"] == "gas_hazard" and table["hit_policy"] == "UNIQUE"
    answers = {"hose_ok": "ok", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
               "stove_flameout_protection": "present"}
    assert evaluate(table, {**answers, "cylinder_expired": False})["hazard_level"] == "none"
    assert evaluate(table, {**answers, "hose_ok": "cracked", "cylinder_expired": False})["hazard_level"] == "severe"


def test_two_thousand_households_cost_the_same_queries_as_three(client, system, deliverer):  # noqa: F811
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def queries_of_a_fresh_pull(device: str) -> tuple[int, float, dict]:
        statements.clear()
        event.listen(system.db, "before_cursor_execute", count)
        try:
            started = time.perf_counter()
            answer = pull(client, deliverer, device=device)
            return len(statements), time.perf_counter() - started, answer
        finally:
            event.remove(system.db, "before_cursor_execute", count)

    queries_of_a_fresh_pull("tab-0")          # (warms the server's caches of definitions and tokens)
    few, _, answer = queries_of_a_fresh_pull("tab-a")
    assert len(answer["households"]) == 3
    with Session(system.db) as s:
        s.add_all([AddressCode(code=f"BIG-{i:05d}", street_code="dc-01", label=f"{i} Long Road", lat=31.2,
                               lon=121.4) for i in range(2000)])
        s.flush()
        s.add_all([Household(address_code=f"BIG-{i:05d}", holder=f"Holder {i}", deliverer_id="deliverer1",
                             next_due_at=system.clock() + timedelta(days=i % 200)) for i in range(2000)])
        s.commit()
    many, seconds, answer = queries_of_a_fresh_pull("tab-b")
    assert len(answer["households"]) == 2003
    assert sum(h["due"] for h in answer["households"]) == 3 + 10, "never inspected, or due by now"
    assert many == few, f"{many} statements for 2,003 households, {few} for 3: no query per household"
    assert seconds < 5, f"a pull of 2,003 households took {seconds:.1f} s"
