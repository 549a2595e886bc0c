"""Each worker keeps the workflows of its last steps (engine.runtime.live): the next step on the
same instance skips deserialization, and nothing stale is ever used: not after another worker
stepped the instance, not after a step failed, not after a transaction rolled back."""
from __future__ import annotations

import pytest
from sqlmodel import Session

from engine.db.models import Instance
from engine.domain import workorders
from engine.domain.models import WorkOrder
from engine.runtime.errors import Actor, ProcessError, ValidationFailed
from engine.system import build
from tests.district import DISPATCHER, PHOTO, REVIEWER, WORKER_EAST, only_task, seed
from tests.test_security import _tamper

FIXED = {"action": "fixed", "after_photos": [PHOTO]}


def _report(engine):
    return workorders.report(engine, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")


def _state(engine, order) -> str:
    with Session(engine.db) as s:
        return s.get(WorkOrder, order.id).state


def test_the_next_step_uses_the_workflow_this_worker_saved(district):
    order = _report(district)
    hits = district.live.hits
    district.complete(only_task(district, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
    assert district.live.hits == hits + 1, "the start step's workflow was reused"
    district.complete(only_task(district, REVIEWER, order.number)["id"], REVIEWER, {"decision": "reject",
                                                                                   "reason": "still dirty"})
    district.complete(only_task(district, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
    district.complete(only_task(district, REVIEWER, order.number)["id"], REVIEWER, {"decision": "approve"})
    assert district.live.hits == hits + 4
    assert _state(district, order) == "closed" and district.instance(order.instance_id)["state"] == "completed"
    assert district.live.kept(order.instance_id) is None, "a completed instance is not kept"


def test_two_workers_alternating_on_one_instance(db_url, clock):
    one, two = build(db_url, clock=clock), build(db_url, clock=clock)
    try:
        seed(one)
        order = _report(one)                              # worker one keeps version 2
        two.complete(only_task(two, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
        assert (two.live.hits, two.live.misses) == (0, 1), "worker two had nothing: read from the row"
        reject = {"decision": "reject", "reason": "again"}
        misses = one.live.misses
        one.complete(only_task(one, REVIEWER, order.number)["id"], REVIEWER, reject)
        assert one.live.misses == misses + 1, "worker one's copy is of an older version: not used"
        two.complete(only_task(two, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
        one.complete(only_task(one, REVIEWER, order.number)["id"], REVIEWER, {"decision": "approve"})
        assert _state(one, order) == "closed"
        kinds = [e["kind"] for e in one.audit(business_key=order.number)]
        assert kinds.count("task_completed") == 4 and kinds.count("rejected") == 1 and kinds[-1] == "instance_completed"
    finally:
        one.db.dispose()
        two.db.dispose()


def test_a_transaction_rolled_back_after_the_save_leaves_nothing_to_reuse(district):
    order = _report(district)
    task = only_task(district, WORKER_EAST, order.number)

    def refuse(s, ot, row):     # e.g. the service's own check after the step: the whole completion is undone
        raise ValidationFailed({"after_photos": "not stored"})

    with pytest.raises(ValidationFailed):
        district.complete(task["id"], WORKER_EAST, FIXED, also=refuse)
    assert district.live.kept(order.instance_id) is None, "taken by the step, not put back by the rollback"
    misses = district.live.misses
    district.complete(task["id"], WORKER_EAST, FIXED)       # the same task again: from the row, as committed
    assert district.live.misses == misses + 1
    assert only_task(district, REVIEWER, order.number)["name"] == "Task_review"


def test_a_step_that_raises_leaves_nothing_to_reuse(district):
    order = _report(district)
    district.complete(only_task(district, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)
    _tamper(district, "rectification", 'decision == "reject"', "decision == reject_typo")
    review = only_task(district, REVIEWER, order.number)
    with pytest.raises(ProcessError) as failed:
        district.complete(review["id"], REVIEWER, {"decision": "reject", "reason": "still dirty"})
    assert "reject_typo" in str(failed.value)
    assert district.live.kept(order.instance_id) is None, "the object the failed step changed is gone"
    with Session(district.db) as s:
        row = s.get(Instance, order.instance_id)
        assert row.error and "reject_typo" in row.error, "the failed completion is parked, the row as before it"
    # the designer's fix; the parked completion retried reads the row, not a stale object
    _tamper(district, "rectification", "decision == reject_typo", 'decision == "reject"')
    hits = district.live.hits
    retried = district.retry_incident(failed.value.incident, Actor("admin1", {"admin"}))
    assert retried["resolved_at"] is not None, retried
    assert district.live.hits == hits, "nothing kept from the failed step was reused"
    assert _state(district, order) == "at_unit", "the reviewer's rejection, applied from the row"


def test_a_step_from_a_kept_workflow_writes_what_a_step_from_the_row_writes(db_url, clock):
    """A kept workflow comes with the scan of its save (the open tasks, awaited messages, timers
    and called processes the side tables mirror), and its next step starts from that scan
    instead of scanning again: the side tables and the audit trail must come out exactly as
    when every step reads the row and scans it."""
    kept, cold = build(db_url, clock=clock), build(db_url, clock=clock)
    cold.live.capacity = 0          # this worker keeps nothing: every step from the row
    try:
        seed(kept)
        orders = {"kept": _report(kept), "cold": _report(cold)}
        engines = {"kept": kept, "cold": cold}
        steps = [(WORKER_EAST, FIXED), (REVIEWER, {"decision": "reject", "reason": "again"}),
                 (WORKER_EAST, FIXED), (REVIEWER, {"decision": "approve"})]

        def seen(name: str) -> list:
            order = orders[name]
            tasks = [(t["name"], t["groups"], t["assignee"], t["due_at"] is not None)
                     for t in kept.tasks.for_actor(business_key=order.number)]
            events = [(e["kind"], e["element"]) for e in kept.audit(business_key=order.number)]
            return [tasks, events, kept.instance(order.instance_id)["state"]]

        assert seen("kept") == seen("cold")
        for who, form in steps:
            for name, engine in engines.items():
                engine.complete(only_task(engine, who, orders[name].number)["id"], who, form)
            assert seen("kept") == seen("cold")
        assert kept.live.hits >= len(steps) and cold.live.hits == 0
        assert _state(kept, orders["kept"]) == "closed"
    finally:
        kept.db.dispose()
        cold.db.dispose()


def test_reading_an_instance_borrows_the_kept_workflow_and_gives_it_back(db_url, clock):
    """engine.instance() describes a kept workflow without deserializing the row, the same as a
    worker that keeps nothing; the copy is still kept after, and the next step still uses it."""
    kept, cold = build(db_url, clock=clock), build(db_url, clock=clock)
    cold.live.capacity = 0
    try:
        seed(kept)
        order = _report(kept)
        kept.complete(only_task(kept, WORKER_EAST, order.number)["id"], WORKER_EAST, FIXED)   # data with a list
        version = kept.live.kept(order.instance_id)
        held = kept.live.borrow(order.instance_id, version)
        kept.live.give_back(order.instance_id, version, *held)

        described = kept.instance(order.instance_id)
        assert described == cold.instance(order.instance_id), "as read from the row"
        assert described["data"]["after_photos"] == [PHOTO] and described["position"][0]["element"] == "Task_review"
        described["data"]["after_photos"].append("not-a-photo")         # the caller's copy, not the workflow's
        assert kept.instance(order.instance_id)["data"]["after_photos"] == [PHOTO]

        again = kept.live.borrow(order.instance_id, version)
        assert again is not None and again[0] is held[0], "the same object, back in the worker's keeping"
        kept.live.give_back(order.instance_id, version, *again)
        hits = kept.live.hits
        kept.complete(only_task(kept, REVIEWER, order.number)["id"], REVIEWER, {"decision": "approve"})
        assert kept.live.hits == hits + 1 and _state(kept, order) == "closed"
    finally:
        kept.db.dispose()
        cold.db.dispose()


def test_a_borrowed_workflow_does_not_replace_a_newer_one():
    from engine.runtime.live import LiveWorkflows
    live = LiveWorkflows(2)
    info: dict = {}
    live.saved(info, 7, 3, "workflow v3", "scan v3")
    live.committed(info)
    borrowed = live.borrow(7, 3)
    assert borrowed == ("workflow v3", "scan v3") and live.kept(7) is None
    assert live.borrow(7, 3) is None and live.take(7, 3) is None, "one holder at a time"
    live.saved(info, 7, 4, "workflow v4", "scan v4")     # a step meanwhile, from the row
    live.committed(info)
    live.give_back(7, 3, *borrowed)
    assert live.kept(7) == 4 and live.take(7, 4) == ("workflow v4", "scan v4")
    assert live.borrow(7, 3) is None, "a version other than the kept one is not lent"
    live.give_back(7, 3, *borrowed)     # nothing kept now: it goes back, within the capacity
    for n in (8, 9):
        live.saved(info, n, 1, f"w{n}", None)
        live.committed(info)
    assert len(live) == 2 and live.kept(7) is None, "the oldest went first"
