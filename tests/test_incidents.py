"""Incidents at the engine: a parked completion is applied again by a retry once its cause
is gone, with the data it was sent; a failing timer counts its attempts and its incident
closes when the instance moves on."""
from __future__ import annotations

from sqlmodel import Session, select

from engine.db.models import Incident
from engine.domain import workorders
from engine.domain.models import WorkOrder
from engine.runtime.errors import Actor, ProcessError
from tests.district import DISPATCHER, PHOTO, REVIEWER, WORKER_EAST, only_task, seed
from tests.test_security import _tamper

ADMIN = Actor("admin1", {"admin"})


def test_a_parked_completion_is_applied_by_a_retry_once_its_cause_is_gone(system):
    seed(system)
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    system.complete(only_task(system, WORKER_EAST, order.number)["id"], WORKER_EAST,
                    {"action": "fixed", "after_photos": [PHOTO]})
    review = only_task(system, REVIEWER, order.number)
    # (the stored definition is changed in place: a stand-in for whatever made the step fail)
    _tamper(system, "rectification", 'decision == "reject"', "decision == reject_typo")
    try:
        system.complete(review["id"], REVIEWER, {"decision": "reject", "reason": "still dirty"})
        raise AssertionError("the step should have failed")
    except ProcessError as exc:
        incident_id = exc.incident
    assert incident_id is not None
    failed = system.retry_incident(incident_id, ADMIN)
    assert failed["resolved_at"] is None and failed["attempts"] == 2 and "reject_typo" in failed["message"]

    _tamper(system, "rectification", "decision == reject_typo", 'decision == "reject"')
    done = system.retry_incident(incident_id, ADMIN)
    assert done["resolution"] == "retried"
    with Session(system.db) as s:
        row = s.exec(select(WorkOrder).where(WorkOrder.number == order.number)).one()
    assert (row.state, row.reject_count) == ("at_unit", 1), "the reviewer's rejection took effect, once"
    completed = [e for e in system.audit(business_key=order.number) if e["kind"] == "task_completed"
                 and e["element"] == "Task_review"]
    assert len(completed) == 1 and completed[0]["actor"] == REVIEWER.id, "done as the reviewer who sent it"
    assert only_task(system, WORKER_EAST, order.number)["name"] == "Task_rectify"


def test_a_failing_timer_counts_its_attempts_and_closes_when_the_instance_moves_on(system, clock):
    seed(system)
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    _tamper(system, "rectification", 'camunda:topic="escalate"', 'camunda:topic="escalate_typo"')
    with Session(system.db) as s:
        due = s.exec(select(WorkOrder.sla_due).where(WorkOrder.number == order.number)).one()
    clock.set(due.replace(tzinfo=clock().tzinfo) if due.tzinfo is None else due)
    clock.advance(minutes=1)
    system.fire_due_timers()
    clock.advance(minutes=10)
    system.fire_due_timers()
    with Session(system.db) as s:
        (incident,) = s.exec(select(Incident)).all()
    assert (incident.step, incident.attempts, incident.resolved_at) == ("timer", 2, None)
    _tamper(system, "rectification", 'camunda:topic="escalate_typo"', 'camunda:topic="escalate"')
    clock.advance(minutes=10)
    system.fire_due_timers()
    with Session(system.db) as s:
        incident = s.get(Incident, incident.id)
        overdue = s.exec(select(WorkOrder.overdue).where(WorkOrder.number == order.number)).one()
    assert incident.resolution == "retried" and overdue
