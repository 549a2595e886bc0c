"""Gas inspections (hazard -> rectification order -> supply suspended -> re-inspection)
and crew attendance (check-in messages, grace timer, absentee notice)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from engine.domain import attendance, gas
from engine.domain.models import Attendance, Household, Inspection, Notification, Shift, WorkOrder
from engine.runtime.errors import Actor, NotFound
from tests.district import DELIVERER, GAS_OFFICE, PHOTO, REVIEWER, only_task

GOOD = {"hose_ok": "ok", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
        "cylinder_inspection_date": "2027-05-01", "stove_flameout_protection": "present", "photos": [PHOTO]}


def _household(engine, hid=1) -> Household:
    with Session(engine.db) as s:
        return s.get(Household, hid)


def test_clean_inspection_sets_next_due_four_months_on(district, clock):
    iid = gas.start_inspection(district, 1, "deliverer1", "delivery", DELIVERER)
    task = only_task(district, DELIVERER)
    assert task["assignee"] == "deliverer1" and task["form_ref"] == "gas_inspection"
    district.complete(task["id"], DELIVERER, GOOD)
    assert district.instance(iid)["state"] == "completed"
    hh = _household(district)
    assert hh.next_due_at == datetime(2026, 7, 2, tzinfo=timezone.utc) and not hh.supply_suspended
    with Session(district.db) as s:
        assert s.exec(select(WorkOrder)).all() == []


def test_minor_hazard_spawns_rectification_but_keeps_supply(district):
    gas.start_inspection(district, 2, "deliverer1", "delivery", DELIVERER)
    district.complete(only_task(district, DELIVERER)["id"], DELIVERER, {**GOOD, "hose_ok": "aged"})
    with Session(district.db) as s:
        order = s.exec(select(WorkOrder)).one()
        insp = s.exec(select(Inspection)).one()
    assert (order.category, order.unit_code, order.source) == ("gas_hazard", "gas-office", "inspection")
    assert insp.work_order_number == order.number, "the inspection names its rectification order"
    assert insp.hazard_level == "minor" and "aged" in insp.hazard_reason.lower()
    assert not _household(district, 2).supply_suspended


def test_severe_hazard_suspends_supply_until_reinspection_passes(district):
    iid = gas.start_inspection(district, 3, "deliverer1", "delivery", DELIVERER)
    district.complete(only_task(district, DELIVERER)["id"], DELIVERER, {**GOOD, "valve_leak_test": "leak"})
    assert _household(district, 3).supply_suspended
    with Session(district.db) as s:
        order = s.exec(select(WorkOrder)).one()
        notes = {n.recipient for n in s.exec(select(Notification))}
    assert order.unit_code == "gas-office" and "household:3" in notes
    assert (order.instance_id, order.source, order.state) == (iid, "inspection", "at_unit")
    # The inspection rectifies through the called rectification process, under the order's number;
    # the re-inspection opens once the rectification is approved.
    assert district.tasks.for_actor(DELIVERER) == [], "no re-inspection before the fix"
    rectify = only_task(district, GAS_OFFICE, name="Task_rectify")
    assert (rectify["instance_id"], rectify["business_key"]) == (iid, order.number)
    district.complete(rectify["id"], GAS_OFFICE, {"action": "fixed", "after_photos": [PHOTO]})
    review = only_task(district, REVIEWER, business_key=order.number)
    district.complete(review["id"], REVIEWER, {"decision": "approve"})
    with Session(district.db) as s:
        assert s.get(WorkOrder, order.id).state == "closed"
    timeline = [e["kind"] for e in district.audit(business_key=order.number)]
    assert timeline[0] == "reported" and {"dispatched", "task_completed", "closed"} <= set(timeline), timeline
    assert only_task(district, GAS_OFFICE, name="Task_reinspect")["instance_id"] == iid
    reinspect = only_task(district, DELIVERER, name="Task_reinspect")
    district.complete(reinspect["id"], DELIVERER, {**GOOD, "valve_leak_test": "leak"})
    assert _household(district, 3).supply_suspended, "still leaking: stays suspended"
    district.complete(only_task(district, DELIVERER)["id"], DELIVERER, GOOD)
    assert not _household(district, 3).supply_suspended
    assert district.instance(iid)["state"] == "completed"
    kinds = [e["kind"] for e in district.audit(instance_id=iid)]
    assert kinds.count("inspected") == 3 and "supply_suspended" in kinds and kinds[-2] == "supply_resumed"
    with Session(district.db) as s:
        assert len(s.exec(select(WorkOrder)).all()) == 1, "one rectification order, not one per loop"


def test_expired_cylinder_is_severe(district):
    gas.start_inspection(district, 1, "deliverer1", "delivery", DELIVERER)
    district.complete(only_task(district, DELIVERER)["id"], DELIVERER,
                      {**GOOD, "cylinder_inspection_date": "2025-01-01"})
    assert _household(district).supply_suspended


def test_due_list_opens_inspections_for_due_households_once(district, clock):
    with Session(district.db) as s:
        assert len(gas.due_households(s, clock())) == 3
    assert gas.start_due_inspections(district) == 3
    assert gas.start_due_inspections(district) == 0, "one open inspection per household"
    task = district.tasks.for_actor(DELIVERER)[0]
    district.complete(task["id"], DELIVERER, GOOD)
    with Session(district.db) as s:
        assert len(gas.due_households(s, clock())) == 2
        assert len(gas.due_households(s, clock() + timedelta(days=125))) == 3


def _shift_start(clock):
    return clock() + timedelta(hours=1)


def test_attendance_present_late_unverified_absent_and_notice(district, clock):
    start = _shift_start(clock)
    shift = attendance.plan_shift(district, "crew-e1", start)
    assert attendance.plan_shift(district, "crew-e1", start).id == shift.id, "planning is idempotent"
    gw = Actor("gateway-1", {"device"})
    for i in range(15):
        attendance.check_in(district, shift.id, f"B{i:04d}", start - timedelta(minutes=5), True, "gateway", gw)
    attendance.check_in(district, shift.id, "B0015", start + timedelta(minutes=10), True, "tablet", gw)
    attendance.check_in(district, shift.id, "B0016", start - timedelta(minutes=1), False, "legacy", gw)
    attendance.check_in(district, shift.id, "B0000", start + timedelta(minutes=1), False, "tablet", gw)  # no downgrade
    attendance.check_in(district, shift.id, "B9999", start, True, "gateway", gw)  # not on this crew
    clock.set(start + timedelta(minutes=14))
    assert district.fire_due_timers() == 0
    clock.set(start + timedelta(minutes=16))
    assert district.fire_due_timers() == 1
    with Session(district.db) as s:
        rows = {a.cleaner_id: a.status for a in s.exec(select(Attendance).where(Attendance.shift_id == shift.id))}
        notice = s.exec(select(Notification).where(Notification.recipient == "contractor:C-EAST-1")).one()
        assert s.get(Shift, shift.id).closed
    counts = {k: list(rows.values()).count(k) for k in set(rows.values())}
    assert counts == {"present": 15, "late": 1, "unverified": 1, "absent": 3}
    assert notice.body.splitlines() == ["Cleaner 17", "Cleaner 18", "Cleaner 19"]
    assert district.instance(shift.instance_id)["state"] == "completed"
    with pytest.raises(NotFound):
        attendance.check_in(district, shift.id, "B0019", start + timedelta(minutes=20), True, "gateway", gw)


@pytest.mark.parametrize("per_message", [attendance.BATCH, 7])
def test_a_batch_of_check_ins_is_one_step(district, clock, per_message):
    from engine.db.models import Instance
    start = _shift_start(clock)
    shift = attendance.plan_shift(district, "crew-e1", start)
    with Session(district.db) as s:
        before = s.get(Instance, shift.instance_id).version
    gw = Actor("gateway-1", {"device"})
    sightings = [(f"B{i:04d}", start - timedelta(minutes=3), True, "gateway") for i in range(18)]
    assert attendance.check_in_many(district, shift.id, sightings, gw, batch=per_message) == 18
    with Session(district.db) as s:
        assert s.get(Instance, shift.instance_id).version == before + 1, "loaded and saved once"
        rows = {a.cleaner_id: a.status for a in s.exec(select(Attendance).where(Attendance.shift_id == shift.id))}
    assert list(rows.values()).count("present") == 18
    assert len([e for e in district.audit(instance_id=shift.instance_id) if e["kind"] == "checked_in"]) == 18
    messages = [e for e in district.audit(instance_id=shift.instance_id) if e["kind"] == "message_received"]
    assert len(messages) == -(-18 // per_message), "a message per batch of sightings"
    assert district.instance(shift.instance_id)["data"].get("badge_checkin") is None, "the batch is not carried on"


def test_one_cleaner_seen_several_times_in_a_batch_ends_as_one_at_a_time_would(district, clock):
    """A batch's status rows are written together at the end of the step; a status is only
    ever raised, so the first sighting of the best status wins, whatever came before or after."""
    start = _shift_start(clock)
    shift = attendance.plan_shift(district, "crew-e1", start)
    gw = Actor("gateway-1", {"device"})
    at = [start - timedelta(minutes=m) for m in (9, 8, 7, 6)]
    batch = [("B0001", at[0], False, "legacy"), ("B0001", at[1], True, "gateway"),  # unverified, then present
             ("B0001", at[2], False, "tablet"), ("B0001", at[3], True, "gateway"),  # neither goes lower or again
             ("B0002", start + timedelta(minutes=2), True, "gateway"),            # late...
             ("B0002", at[3], True, "tablet"),                                     # ...then present
             ("B0003", at[0], False, "legacy")]                                    # unverified only
    assert attendance.check_in_many(district, shift.id, batch, gw) == len(batch)
    with Session(district.db) as s:
        rows = {a.cleaner_id: a for a in s.exec(select(Attendance).where(Attendance.shift_id == shift.id))}
    got = {c: (rows[c].status, rows[c].checked_in_at, rows[c].source) for c in ("cl001", "cl002", "cl003")}
    assert got == {"cl001": ("present", at[1], "gateway"), "cl002": ("present", at[3], "tablet"),
                   "cl003": ("unverified", at[0], "legacy")}
    clock.set(start + timedelta(minutes=16))
    assert district.fire_due_timers() == 1
    with Session(district.db) as s:
        statuses = [a.status for a in s.exec(select(Attendance).where(Attendance.shift_id == shift.id))]
    assert statuses.count("absent") == len(statuses) - 3, "the shift closes over the batch's rows"


def test_a_failed_batch_step_writes_none_of_its_check_ins(district, clock):
    """Rows gathered by a step that then fails are dropped with it, even when the caller's
    transaction goes on (as the frame judge's does) and takes another batch."""
    from engine.runtime.errors import ProcessError
    start = _shift_start(clock)
    shift = attendance.plan_shift(district, "crew-e1", start)
    gw = Actor("gateway-1", {"device"})
    good = [(f"B{i:04d}", start - timedelta(minutes=3), True, "gateway") for i in range(3)]
    with district.transaction() as s:
        batch = [{"badge_id": b, "seen_at": at.isoformat(), "verified": v, "source": src} for b, at, v, src in good]
        batch.append({"badge_id": "B0004", "seen_at": "never", "verified": True, "source": "gateway"})
        with pytest.raises(ProcessError):   # its last sighting's time is unreadable: the step fails
            district.send_messages(attendance.MESSAGE, [{"batch": batch}], gw, business_key=f"shift:{shift.id}",
                                   session=s)
        assert attendance.check_in_many(district, shift.id, good[:1], gw, session=s) == 1
    with Session(district.db) as s:
        present = [a.cleaner_id for a in s.exec(select(Attendance).where(Attendance.shift_id == shift.id,
                                                                         Attendance.status == "present"))]
    assert present == ["cl000"]
    events = district.audit(instance_id=shift.instance_id)
    checked = [e["detail"]["cleaner"] for e in events if e["kind"] == "checked_in"]
    assert checked == ["cl000"], "nor its audit events"
