"""Pull: the person's open tasks with forms and versions, removals with a reason, crews for
supervisors, reference data; a cursor that survives lost answers, and pages."""
from __future__ import annotations

from datetime import timedelta

import pytest

from engine.domain import attendance, gas
from engine.runtime.errors import Actor
from engine.runtime.reassign import reassign
from sync.protocol import encode_cursor
from tests.api.conftest import app, bearer, client, token_for, tokens  # noqa: F401  (fixtures)
from tests.district import DELIVERER
from tests.sync.syncing import PULL, WORKER, east_order, rectify_task


def pull(client, headers, cursor=None, page_size=100, device="tab-1"):  # noqa: F811
    r = client.post(PULL, headers=headers, json={"protocol": 1, "cursor": cursor, "device": device,
                                                 "page_size": page_size})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def worker(tokens):  # noqa: F811
    return bearer(tokens["unit_worker"])


def test_first_pull_has_my_tasks_with_forms_and_reference_data_then_nothing_new(client, system, worker):  # noqa: F811
    number = east_order(system)
    task = rectify_task(system, number)
    first = pull(client, worker)
    assert first["reset"] is True and first["has_more"] is False and first["cursor"].startswith("c1.")
    [t] = first["tasks"]
    assert (t["id"], t["business_key"], t["name"], t["version"]) == (task["id"], number, "Task_rectify",
                                                                      task["version"])
    assert t["form"]["id"] == "wo_rectify" and t["groups"] == ["unit:clean-east"]
    ref = first["reference"]
    assert "clean-east" in [u["code"] for u in ref["units"]] and "exposed_garbage" in ref["categories"]
    assert "hose_ok" in ref["checklist"] and first["crews"] is None
    second = pull(client, worker, first["cursor"])
    assert (second["tasks"], second["removed"], second["reference"], second["reset"]) == ([], [], None, False)


def test_tasks_are_scoped_per_person(client, system, tokens):  # noqa: F811
    east_order(system)
    west = bearer(token_for(system, "worker.clean-west.1", "unit_worker", "clean-west"))
    assert pull(client, west)["tasks"] == []
    gas.start_inspection(system, 1, "deliverer1", "delivery", DELIVERER)
    mine = pull(client, bearer(tokens["deliverer"]))["tasks"]
    assert [(t["name"], t["assignee"]) for t in mine] == [("Task_inspect", "deliverer1")]
    assert mine[0]["form"]["id"] == "gas_inspection"
    assert client.post(PULL, headers=bearer(tokens["dispatcher"]), json={"protocol": 1}).status_code == 403


def test_supervisor_gets_crews_rosters_and_shifts(client, system, tokens, clock):  # noqa: F811
    shift = attendance.plan_shift(system, "crew-e1", clock() + timedelta(hours=6))
    sup = bearer(tokens["supervisor"])
    first = pull(client, sup)
    [crew] = first["crews"]
    assert crew["code"] == "crew-e1" and len(crew["roster"]) == 20 and crew["roster"][0]["badge_id"] == "B0000"
    assert [s["id"] for s in crew["shifts"]] == [shift.id]
    assert pull(client, sup, first["cursor"])["crews"] is None   # unchanged: not sent again
    later = attendance.plan_shift(system, "crew-e1", clock() + timedelta(hours=30))
    crews = pull(client, sup, first["cursor"])["crews"]
    assert [s["id"] for s in crews[0]["shifts"]] == [shift.id, later.id]


def test_removed_tasks_come_with_their_reason(client, system, worker):  # noqa: F811
    done_elsewhere, reassigned = east_order(system), east_order(system)
    t1, t2 = rectify_task(system, done_elsewhere), rectify_task(system, reassigned)
    first = pull(client, worker)
    assert {t["id"] for t in first["tasks"]} == {t1["id"], t2["id"]}
    other = Actor("worker.clean-east.2", {"unit:clean-east"})
    system.complete(t1["id"], other, {"action": "not_ours", "reason": "a road defect"})
    token_for(system, "worker.clean-east.3", "unit_worker", "clean-east")
    reassign(system, t2["id"], "worker.clean-east.3", Actor("dispatcher1", {"dispatcher"}), "closer")
    second = pull(client, worker, first["cursor"])
    why = {r["task_id"]: (r["reason"], r["by"]) for r in second["removed"]}
    assert why == {t1["id"]: ("completed", "worker.clean-east.2"), t2["id"]: ("reassigned", None)}
    assert all(r["message"] and r["message_zh"] for r in second["removed"])
    assert second["tasks"] == [] and pull(client, worker, second["cursor"])["removed"] == []


def test_a_lost_answer_is_sent_again_and_a_version_change_is_a_change(client, system, worker):  # noqa: F811
    number = east_order(system)
    first = pull(client, worker)
    task = rectify_task(system, number)
    system.claim(task["id"], Actor(WORKER, {"unit:clean-east"}))   # the task changes (claimed)
    lost = pull(client, worker, first["cursor"])                   # ... this answer never arrives
    assert [t["claimed_by"] for t in lost["tasks"]] == [WORKER]
    again = pull(client, worker, first["cursor"])                  # so the device asks with its old cursor
    assert [t["id"] for t in again["tasks"]] == [task["id"]] and again["reset"] is False
    assert pull(client, worker, again["cursor"])["tasks"] == []


def test_pages_are_small_and_resumable(client, system, worker):  # noqa: F811
    numbers = {east_order(system) for _ in range(5)}
    seen, cursor, pages = [], None, 0
    while True:
        answer = pull(client, worker, cursor, page_size=2)
        pages += 1
        assert len(answer["tasks"]) <= 2
        seen.extend(t["business_key"] for t in answer["tasks"])
        cursor = answer["cursor"]
        if not answer["has_more"]:
            break
    assert pages == 3 and sorted(seen) == sorted(numbers)


def test_cursors_not_ours_are_refused_or_start_over(client, system, worker):  # noqa: F811
    east_order(system)
    r = client.post(PULL, headers=worker, json={"protocol": 1, "cursor": "c1.!!notbase64"})
    assert r.status_code == 400 and r.json()["error"] == "bad_cursor" and r.json()["message_zh"]
    unknown = pull(client, worker, encode_cursor(987654))
    assert unknown["reset"] is True and len(unknown["tasks"]) == 1
    r = client.post(PULL, headers=worker, json={"protocol": 2})
    assert r.status_code == 400 and r.json()["error"] == "upgrade_required" and "upgrade" in r.json()["message"]


def test_a_device_token_pulls_for_its_owner(client, system):  # noqa: F811
    from engine.auth import service
    number = east_order(system)
    with system.transaction() as s:
        device, code = service.create_device(s, "tablet", "tablet", WORKER, "admin1", system.clock())
    with system.transaction() as s:
        token = service.pair(s, device.id, code, system.clock())
    answer = pull(client, bearer(token), device=None)
    assert [t["business_key"] for t in answer["tasks"]] == [number]
