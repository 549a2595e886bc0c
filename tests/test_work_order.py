"""The work-order loop end to end through the engine's API."""
from __future__ import annotations

import pytest
from sqlmodel import Session, select

from engine.domain import workorders
from engine.domain.models import Notification, WorkOrder
from engine.runtime.errors import Forbidden, ProcessError, ValidationFailed
from tests.district import DISPATCHER, PHOTO, REVIEWER, ROADS, WORKER_EAST, WORKER_WEST, only_task


def _order(engine, number) -> WorkOrder:
    with Session(engine.db) as s:
        return s.exec(select(WorkOrder).where(WorkOrder.number == number)).one()


def test_dispatch_by_decision_table_goes_straight_to_the_unit(district):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng",
                              description="bags by the bins")
    o = _order(district, order.number)
    assert (o.unit_code, o.state) == ("clean-east", "at_unit")
    task = only_task(district, WORKER_EAST, order.number)
    assert task["name"] == "Task_rectify" and task["groups"] == ["unit:clean-east"]
    assert district.tasks.for_actor(WORKER_WEST) == []
    other = workorders.report(district, DISPATCHER, source="camera", category="manhole_cover", area="xinhe")
    assert _order(district, other.number).unit_code == "roads"
    assert _order(district, other.number).priority == "urgent"


def test_reject_loop_then_close_with_full_audit(district, clock):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    for loop in range(2):
        task = only_task(district, WORKER_EAST, order.number)
        district.complete(task["id"], WORKER_EAST, {"action": "fixed", "after_photos": [PHOTO], "note": f"try {loop}"})
        assert _order(district, order.number).state == "in_review"
        review = only_task(district, REVIEWER, order.number)
        clock.advance(minutes=30)
        district.complete(review["id"], REVIEWER, {"decision": "reject", "reason": f"still dirty {loop}"})
        assert _order(district, order.number).state == "at_unit"
    task = only_task(district, WORKER_EAST, order.number)
    district.complete(task["id"], WORKER_EAST, {"action": "fixed", "after_photos": [PHOTO]})
    review = only_task(district, REVIEWER, order.number)
    result = district.complete(review["id"], REVIEWER, {"decision": "approve"})
    assert result["state"] == "completed"
    o = _order(district, order.number)
    assert (o.state, o.reject_count, o.overdue) == ("closed", 2, False)
    kinds = [(e["kind"], e["actor"]) for e in district.audit(business_key=order.number)]
    assert kinds.count(("rejected", REVIEWER.id)) == 2
    assert ("closed", REVIEWER.id) in kinds and ("instance_completed", REVIEWER.id) in kinds
    reasons = [e["detail"]["reason"] for e in district.audit(business_key=order.number) if e["kind"] == "rejected"]
    assert reasons == ["still dirty 0", "still dirty 1"]
    times = [e["at"] for e in district.audit(business_key=order.number)]
    assert times == sorted(times)


def test_not_ours_goes_to_dispatcher_and_is_rerouted(district):
    order = workorders.report(district, DISPATCHER, source="patrol", category="exposed_garbage", area="dongcheng")
    task = only_task(district, WORKER_EAST, order.number)
    district.complete(task["id"], WORKER_EAST, {"action": "not_ours", "reason": "this is a road defect"})
    assert _order(district, order.number).state == "rerouting"
    reroute = only_task(district, DISPATCHER, order.number)
    with pytest.raises(ValidationFailed) as bad:
        district.complete(reroute["id"], DISPATCHER, {"unit": "Not A Code!"})
    assert set(bad.value.errors) == {"unit", "reason"}
    district.complete(reroute["id"], DISPATCHER, {"unit": "roads", "reason": "road defect"})
    o = _order(district, order.number)
    assert (o.unit_code, o.state, o.reroute_count) == ("roads", "at_unit", 1)
    assert district.tasks.for_actor(WORKER_EAST) == []
    only_task(district, ROADS, order.number)
    rerouted = [e for e in district.audit(business_key=order.number) if e["kind"] == "rerouted"]
    assert rerouted[0]["detail"]["reason"] == "road defect" and rerouted[0]["actor"] == DISPATCHER.id


def test_a_reroute_to_a_unit_that_does_not_exist_fails_and_changes_nothing(district):
    """The dispatch checks the unit within its update of the order (one statement): a unit code
    of the right form that names no unit fails the step, naming the unit, and the order stays."""
    order = workorders.report(district, DISPATCHER, source="patrol", category="exposed_garbage", area="dongcheng")
    task = only_task(district, WORKER_EAST, order.number)
    district.complete(task["id"], WORKER_EAST, {"action": "not_ours", "reason": "this is a road defect"})
    reroute = only_task(district, DISPATCHER, order.number)
    with pytest.raises(ProcessError, match="unit 'no-such-unit' does not exist"):
        district.complete(reroute["id"], DISPATCHER, {"unit": "no-such-unit", "reason": "road defect"})
    o = _order(district, order.number)
    assert (o.unit_code, o.state, o.reroute_count) == ("clean-east", "rerouting", 0)
    assert not [e for e in district.audit(business_key=order.number) if e["kind"] == "rerouted"]


def test_sla_timer_escalates_without_interrupting(district, clock):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    clock.advance(hours=23)
    assert district.fire_due_timers() == 0
    clock.advance(hours=2)
    assert district.fire_due_timers() == 1
    assert district.fire_due_timers() == 0
    o = _order(district, order.number)
    assert o.overdue and o.state == "at_unit"
    with Session(district.db) as s:
        recipients = {n.recipient
                      for n in s.exec(select(Notification).where(Notification.subject.contains(order.number)))}
    assert {"leader.clean-east", "dispatcher"} <= recipients
    task = only_task(district, WORKER_EAST, order.number)  # still open: non-interrupting
    district.complete(task["id"], WORKER_EAST, {"action": "fixed", "after_photos": [PHOTO]})
    review = only_task(district, REVIEWER, order.number)
    district.complete(review["id"], REVIEWER, {"decision": "reject", "reason": "no"})
    district.fire_due_timers()  # the re-armed boundary timer is already past due
    escalations = [e for e in district.audit(business_key=order.number) if e["kind"] == "escalated"]
    assert len(escalations) == 1, "one escalation per SLA, however often the loop passes"


def test_form_errors_are_per_field_and_nothing_moves(district):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    task = only_task(district, WORKER_EAST, order.number)
    with pytest.raises(ValidationFailed) as bad:
        district.complete(task["id"], WORKER_EAST, {"action": "fixed"})
    assert "after_photos" in bad.value.errors
    with pytest.raises(ValidationFailed) as bad:
        district.complete(task["id"], WORKER_EAST, {"action": "burn it"})
    assert bad.value.errors["action"]["code"] == "choice"
    assert only_task(district, WORKER_EAST, order.number)["id"] == task["id"]


def test_only_performers_may_complete(district):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    task = only_task(district, WORKER_EAST, order.number)
    with pytest.raises(Forbidden):
        district.complete(task["id"], WORKER_WEST, {"action": "fixed", "after_photos": [PHOTO]})
    with pytest.raises(Forbidden):
        district.complete(task["id"], REVIEWER, {"action": "fixed", "after_photos": [PHOTO]})


def test_claimed_task_is_reserved_for_the_claimer(district):
    from engine.runtime.errors import Actor, Conflict
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    task = only_task(district, WORKER_EAST, order.number)
    district.claim(task["id"], WORKER_EAST)
    colleague = Actor("worker.clean-east.2", {"unit:clean-east"})
    assert district.tasks.for_actor(colleague) == []
    with pytest.raises(Conflict):
        district.complete(task["id"], colleague, {"action": "fixed", "after_photos": [PHOTO]})
    district.complete(task["id"], WORKER_EAST, {"action": "fixed", "after_photos": [PHOTO]})


def test_an_unlocated_report_goes_to_the_dispatch_desk(district):
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="unlocated")
    assert _order(district, order.number).unit_code == "dispatch-desk"
