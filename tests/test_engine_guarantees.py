"""Concurrency, versions, storage shape and the cost of history."""
from __future__ import annotations

import json
import threading

import pytest
from sqlmodel import Session, select

from engine.db.models import AuditEvent, Instance, OpenTask, TaskGroup
from engine.domain import workorders
from engine.domain.models import WorkOrder
from engine.runtime.errors import Actor, Conflict, NotFound
from engine.system import WORKFLOWS
from tests.district import DISPATCHER, PHOTO, REVIEWER, WORKER_EAST, only_task

DESIGNER = Actor("designer1", {"designer"})
FIXED = {"action": "fixed", "after_photos": [PHOTO]}


def _row(engine, iid) -> Instance:
    with Session(engine.db) as s:
        return s.get(Instance, iid)


def test_twenty_concurrent_completions_one_wins(district):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    task = only_task(district, WORKER_EAST, order.number)
    version_before = _row(district, order.instance_id).version
    barrier = threading.Barrier(20)
    outcomes: list = [None] * 20

    def attempt(i):
        actor = Actor(f"worker.clean-east.{i}", {"unit:clean-east"})
        barrier.wait()
        try:
            district.complete(task["id"], actor, {**FIXED, "note": f"by {i}"})
            outcomes[i] = "ok"
        except Conflict as exc:
            outcomes[i] = f"conflict: {exc}"

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes.count("ok") == 1, outcomes
    assert all(o.startswith("conflict") for o in outcomes if o != "ok"), outcomes
    assert _row(district, order.instance_id).version == version_before + 1, "advanced exactly once"
    with Session(district.db) as s:
        done = s.exec(select(AuditEvent).where(AuditEvent.instance_id == order.instance_id,
                                               AuditEvent.kind == "task_completed")).all()
        assert len(done) == 1
        open_tasks = s.exec(select(OpenTask).where(OpenTask.instance_id == order.instance_id)).all()
        stale_groups = s.exec(select(TaskGroup).where(TaskGroup.task_id == task["id"])).all()
    assert [t.name for t in open_tasks] == ["Task_review"]
    assert stale_groups == [], "a closed task's groups go with it"


def test_stale_version_is_a_conflict(district):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    task = only_task(district, WORKER_EAST, order.number)
    with pytest.raises(Conflict):
        district.complete(task["id"], WORKER_EAST, FIXED, expected_version=1)
    district.complete(task["id"], WORKER_EAST, FIXED, expected_version=_row(district, order.instance_id).version)


def test_new_version_for_new_instances_running_ones_keep_theirs(district):
    old = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    bpmn = (WORKFLOWS / "bpmn" / "rectification.bpmn").read_text()
    v2 = bpmn.replace('name="Review"', 'name="Review (two-person)"', 1)
    deployed = {d.key: d for d in district.deploy([("rectification.bpmn", v2)], DESIGNER)}
    assert deployed["rectification"].version == 2 and deployed["rectification"].changed
    assert deployed["work_order"].version == 2 and deployed["work_order"].changed, "its caller is re-pinned"
    again = {d.key: d for d in district.deploy([("rectification.bpmn", v2)], DESIGNER)}
    assert not again["rectification"].changed and not again["work_order"].changed, "same content, same version"
    new = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    assert district.instance(old.instance_id)["version"] == 1
    assert district.instance(new.instance_id)["version"] == 2
    for order in (old, new):
        district.complete(only_task(district, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
    titles = {t["business_key"]: t["title"] for t in district.tasks.for_actor(REVIEWER)}
    assert titles == {old.number: "Review", new.number: "Review (two-person)"}
    for order in (old, new):
        district.complete(only_task(district, REVIEWER, order.number)["id"], REVIEWER, {"decision": "approve"})
        assert district.instance(order.instance_id)["state"] == "completed"


def test_starting_a_process_nobody_deployed_is_not_found_and_leaves_nothing(district):
    """The newest version is looked up with the insert (one statement on PostgreSQL): no such
    process, no instance row and no audit event."""
    with Session(district.db) as s:
        rows, events = len(s.exec(select(Instance)).all()), len(s.exec(select(AuditEvent)).all())
    with pytest.raises(NotFound, match="no process 'street_lamps' is deployed"):
        district.start("street_lamps", {"order_id": 1}, DISPATCHER, business_key="SL-1")
    with Session(district.db) as s:
        assert len(s.exec(select(Instance)).all()) == rows
        assert len(s.exec(select(AuditEvent)).all()) == events
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    started = district.instance(order.instance_id)
    assert (started["state"], started["version"], started["business_key"]) == ("running", 1, order.number)


def test_new_decision_table_reaches_new_instances_only(district):
    dmn = (WORKFLOWS / "dmn" / "dispatch_rules.dmn").read_text()
    assert dmn.count('"clean-east"') >= 1
    old = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    deployed = {(d.kind, d.key): d
                for d in district.deploy([("dispatch_rules.dmn", dmn.replace('"clean-east"', '"clean-west"'))],
                                         DESIGNER)}
    assert deployed[("dmn", "dispatch_rules")].version == 2
    assert deployed[("bpmn", "work_order")].version == 2, "the process is re-pinned to the new table"
    new = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    with Session(district.db) as s:
        units = {o.number: o.unit_code for o in s.exec(select(WorkOrder))}
    assert units == {old.number: "clean-east", new.number: "clean-west"}


def test_instances_store_the_spec_by_reference_and_history_does_not_grow_them(district):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    sizes = []
    for loop in range(20):
        district.complete(only_task(district, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
        district.complete(only_task(district, REVIEWER, order.number)["id"], REVIEWER,
                          {"decision": "reject", "reason": f"loop {loop}"})
        sizes.append(len(_row(district, order.instance_id).workflow))
    stored = json.loads(_row(district, order.instance_id).workflow)
    assert "spec" not in stored and "subprocess_specs" not in stored
    assert max(sizes[5:]) <= sizes[2] * 1.1, sizes
    assert len(stored["tasks"]) < 20
    district.complete(only_task(district, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
    district.complete(only_task(district, REVIEWER, order.number)["id"], REVIEWER, {"decision": "approve"})
    assert district.instance(order.instance_id)["state"] == "completed"
    rejected = [e for e in district.audit(business_key=order.number) if e["kind"] == "rejected"]
    assert [e["detail"]["loop"] for e in rejected] == list(range(1, 21)), "the history lives in the audit log"


def test_restart_keeps_a_designers_newer_version(db_url, clock):
    from engine.system import build
    first = build(db_url, clock=clock)
    bpmn = (WORKFLOWS / "bpmn" / "work_order.bpmn").read_text().replace('name="Close order"', 'name="Close it"', 1)
    assert {d.key: d.version for d in first.deploy([("work_order.bpmn", bpmn)], DESIGNER)}["work_order"] == 2
    first.db.dispose()
    again = build(db_url, clock=clock)
    with Session(again.db) as s:
        from engine.db.models import Definition
        versions = s.exec(select(Definition.version).where(Definition.key == "work_order")).all()
    assert sorted(versions) == [1, 2], "a restart does not redeploy the bundled file over the designer's"
    again.db.dispose()
