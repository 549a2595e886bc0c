"""APScheduler fires due timers by itself; a timer that fell due while the engine was
down fires exactly once after restart. The engine clock is a ManualClock: no long sleeps."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from sqlmodel import Session, select

from engine.db.models import Instance
from engine.domain import attendance, workorders
from engine.domain.models import WorkOrder
from engine.scheduler import start_scheduler
from engine.system import build
from tests.district import DISPATCHER, seed
from tests.waiting import wait_until


def _wait_for(predicate, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class _Sweeps:
    """Counts the timer sweeps the scheduler has run (APScheduler's job events), so a test
    waits for sweeps, not for a time it hopes is long enough for some."""

    def __init__(self, sched):
        self.done = 0
        sched.add_listener(self._ran, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)

    def _ran(self, event) -> None:
        if event.job_id == "timer-sweep":
            self.done += 1

    def wait(self, more: int) -> None:
        """Until `more` sweeps have finished from now (the first may have begun before)."""
        target = self.done + more
        wait_until(lambda: self.done >= target, 15, what=f"{more} timer sweeps")


def _escalations(engine, number) -> int:
    return sum(1 for e in engine.audit(business_key=number) if e["kind"] == "escalated")


def _overdue(engine, order_id) -> bool:
    with Session(engine.db) as s:
        return s.get(WorkOrder, order_id).overdue


def test_scheduler_fires_due_timers_without_a_manual_call(system, clock):
    seed(system)
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    sched = start_scheduler(system, sweep_seconds=0.1, calendar_jobs=False)
    sweeps = _Sweeps(sched)
    try:
        sweeps.wait(2)
        assert not _overdue(system, order.id), "not due yet"
        clock.advance(hours=25)
        assert _wait_for(lambda: _overdue(system, order.id))
    finally:
        sched.shutdown()
    assert _escalations(system, order.number) == 1


def test_timer_due_during_downtime_fires_once_after_restart(db_url, clock):
    first = build(db_url, clock=clock)
    seed(first)
    order = workorders.report(first, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    sched = start_scheduler(first, sweep_seconds=0.1, calendar_jobs=False)
    _Sweeps(sched).wait(2)
    sched.shutdown()
    first.db.dispose()
    clock.advance(days=3)  # the server was down past the SLA
    second = build(db_url, clock=clock)
    sched = start_scheduler(second, sweep_seconds=0.1, calendar_jobs=False)
    sweeps = _Sweeps(sched)
    try:
        assert _wait_for(lambda: _overdue(second, order.id))
        sweeps.wait(3)  # several more sweeps, which must not fire it again
    finally:
        sched.shutdown()
    assert _escalations(second, order.number) == 1
    fired = [e for e in second.audit(business_key=order.number) if e["kind"] == "timer_fired"]
    assert len(fired) == 1 and fired[0]["element"] == "Event_sla_due"
    second.db.dispose()


def test_calendar_jobs_plan_shifts_and_open_due_inspections(system, clock):
    seed(system)
    clock.set(datetime(2026, 3, 2, 6, 10, tzinfo=attendance.DISTRICT_TZ))   # today's 06:00 shift: in its grace
    sched = start_scheduler(system, sweep_seconds=0.1, calendar_jobs=True)
    try:
        # plan-shifts runs at start-up (idempotent); the crew gets today's and tomorrow's shift
        assert _wait_for(lambda: len(_instances(system, "crew_attendance")) == 2)
    finally:
        sched.shutdown()
    from engine.scheduler import gas_due_job
    gas_due_job(system)
    assert len(_instances(system, "gas_inspection")) == 3


def test_a_shift_whose_grace_period_has_ended_is_not_planned(system, clock):
    """Planned late (a server started in the afternoon), today's shift could take no check-in,
    and its close would tell the contractor the whole crew was absent: only tomorrow's is planned."""
    seed(system)
    clock.set(datetime(2026, 3, 2, 6, 15, tzinfo=attendance.DISTRICT_TZ))   # 06:00 + 15 minutes' grace
    today = clock().astimezone(attendance.DISTRICT_TZ).date()
    assert attendance.plan_day(system, today) == 0
    assert attendance.plan_day(system, today + timedelta(days=1)) == 1
    (planned,) = _instances(system, "crew_attendance")
    assert planned.state == "running"
    assert system.fire_due_timers() == 0, "no shift closes, no notice of absentees goes out"


def _instances(engine, key):
    with Session(engine.db) as s:
        return s.exec(select(Instance).where(Instance.process_key == key)).all()


def test_two_workers_sweeping_together_fire_each_timer_once(db_url, clock):
    import threading
    first = build(db_url, clock=clock)
    seed(first)
    second = build(db_url, clock=clock)
    orders = [workorders.report(first, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
              for _ in range(12)]
    clock.advance(hours=25)
    counts = []
    barrier = threading.Barrier(2)

    def sweep(engine):
        barrier.wait()
        counts.append(engine.fire_due_timers())

    threads = [threading.Thread(target=sweep, args=(e,)) for e in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 12, counts
    assert [_escalations(first, o.number) for o in orders] == [1] * 12
    assert first.fire_due_timers() == 0
    first.db.dispose()
    second.db.dispose()
