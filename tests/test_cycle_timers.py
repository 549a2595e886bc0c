"""Cycle timers (timeCycle): ISO 8601 repeating intervals and Quartz cron texts on boundary
events and event sub-process start events, fired by the timer sweep on the engine clock.

Each firing is one `timer_fired` audit event carrying its due time; the instance's
`next_timer_at` shows the next firing; after downtime the missed firings fire once in all;
several workers sweeping one database fire each firing once. Cron texts are read in the
district's zone (CITYLOOP_TIMEZONE, Asia/Shanghai unless configured)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, func, select

from engine.bpmn import cron, timers
from engine.bpmn.xml import DefinitionError
from engine.domain.models import Household, Notification
from engine.runtime.errors import Actor
from engine.system import build
from tests.bpmn_build import definitions, flows, process
from tests.conftest import START

DESIGNER = Actor("designer1", {"designer"})
CLERK = Actor("clerk1", {"dispatcher"})
HOUR = timedelta(hours=1)


# ---- processes ------------------------------------------------------------------------------
def _timer(text: str) -> str:
    return (f'<bpmn:timerEventDefinition id="td_remind"><bpmn:timeCycle xsi:type="bpmn:tFormalExpression">'
            f'{text}</bpmn:timeCycle></bpmn:timerEventDefinition>')


def _boundary_process(cycle: str, interrupting: bool = False) -> str:
    """A review task; a cycle timer on it reminds the household (a service task) each time."""
    return definitions(process("reminding", f'''
<bpmn:startEvent id="start"/>
<bpmn:userTask id="review" name="Review" camunda:candidateGroups="dispatcher"/>
<bpmn:boundaryEvent id="remind_timer" attachedToRef="review" cancelActivity="{str(interrupting).lower()}">
  {_timer(cycle)}
</bpmn:boundaryEvent>
<bpmn:serviceTask id="remind" name="Remind" camunda:type="external" camunda:topic="notify_household"/>
<bpmn:endEvent id="end"/>
<bpmn:endEvent id="reminded"/>
{flows("start", "review", "end")}
{flows("remind_timer", "remind", "reminded", prefix="r")}'''))


def _event_subprocess_process(cycle: str, body: str) -> str:
    """A review task; an event sub-process started by a cycle runs `body` each time."""
    return definitions(process("watched", f'''
<bpmn:startEvent id="start"/>
<bpmn:userTask id="review" name="Review" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="end"/>
{flows("start", "review", "end")}
<bpmn:subProcess id="watch" triggeredByEvent="true">
  <bpmn:startEvent id="watch_timer" isInterrupting="false">{_timer(cycle)}</bpmn:startEvent>
  {body}
  <bpmn:endEvent id="watch_end"/>
  {flows("watch_timer", "watch_step", "watch_end", prefix="w")}
</bpmn:subProcess>'''))


SERVICE_BODY = '<bpmn:serviceTask id="watch_step" camunda:type="external" camunda:topic="notify_household"/>'
TASK_BODY = '<bpmn:userTask id="watch_step" name="Check the site" camunda:candidateGroups="dispatcher"/>'


# ---- helpers -------------------------------------------------------------------------------
@pytest.fixture
def household(district) -> int:
    with Session(district.db) as s:
        return s.exec(select(Household.id).order_by(Household.id)).first()


def _fired(engine, iid) -> list[datetime]:
    """The due times of the instance's timer_fired events, in order."""
    return [datetime.fromisoformat(e["detail"]["due"]) for e in engine.audit(iid) if e["kind"] == "timer_fired"]


def _notifications(engine) -> int:
    with Session(engine.db) as s:
        return s.exec(select(func.count()).select_from(Notification)).one()


def _next(engine, iid) -> datetime | None:
    return engine.instance(iid)["next_timer_at"]


def _open(engine, iid, name: str = "review") -> list[dict]:
    return [t for t in engine.tasks.for_actor(CLERK, instance_id=iid) if t["name"] == name]


def _sweep_together(engine, barrier: threading.Barrier, counts: list[int]) -> None:
    barrier.wait()
    counts.append(engine.fire_due_timers())


def _sweep_at(engine, clock, when: datetime) -> int:
    clock.set(when)
    return engine.fire_due_timers()


# ---- boundary events -----------------------------------------------------------------------
def test_a_counted_cycle_fires_each_time_and_then_never(district, clock, household):
    district.deploy([("reminding.bpmn", _boundary_process('"R3/PT1H"'))], DESIGNER)
    iid = district.start("reminding", {"household_id": household}, CLERK)
    before = _notifications(district)
    assert _next(district, iid) == START + HOUR
    assert _sweep_at(district, clock, START + HOUR - timedelta(seconds=1)) == 0, "not due yet"
    for n in (1, 2, 3):
        assert _sweep_at(district, clock, START + n * HOUR) == 1
        assert _fired(district, iid) == [START + k * HOUR for k in range(1, n + 1)], "one event per firing, its due"
        assert _notifications(district) == before + n, "the reminder ran once per firing"
        assert _next(district, iid) == (START + (n + 1) * HOUR if n < 3 else None)
    for hours in (4, 5, 30):
        assert _sweep_at(district, clock, START + hours * HOUR) == 0
    assert len(_fired(district, iid)) == 3 and _notifications(district) == before + 3, "never a 4th time"
    assert len(_open(district, iid)) == 1 and district.instance(iid)["state"] == "running", "the task is still open"


def test_an_unbounded_cycle_fires_until_its_task_is_completed(district, clock, household):
    district.deploy([("reminding.bpmn", _boundary_process('"R/PT1H"'))], DESIGNER)
    iid = district.start("reminding", {"household_id": household}, CLERK)
    for n in range(1, 6):
        assert _sweep_at(district, clock, START + n * HOUR) == 1
        assert len(_open(district, iid)) == 1, "the reminders leave the task open"
        assert _next(district, iid) == START + (n + 1) * HOUR
    assert len(_fired(district, iid)) == 5
    district.complete(_open(district, iid)[0]["id"], CLERK, {})
    found = district.instance(iid)
    assert found["next_timer_at"] is None and found["state"] == "completed", "completing the task stops the cycle"
    assert _sweep_at(district, clock, START + 10 * HOUR) == 0
    assert len(_fired(district, iid)) == 5


def test_missed_firings_fire_once_after_downtime(district, clock, household):
    district.deploy([("reminding.bpmn", _boundary_process('"R/PT1H"'))], DESIGNER)
    iid = district.start("reminding", {"household_id": household}, CLERK)
    before = _notifications(district)
    down_until = START + HOUR + 10 * HOUR                   # 10 h past the first firing
    assert _sweep_at(district, clock, down_until) == 1
    assert _fired(district, iid) == [START + HOUR], "one firing for the eleven missed"
    assert _notifications(district) == before + 1
    assert _next(district, iid) == down_until + HOUR, "the first firing after the clock"
    assert district.fire_due_timers() == 0
    assert _sweep_at(district, clock, down_until + HOUR) == 1
    assert _fired(district, iid) == [START + HOUR, down_until + HOUR]


def test_an_interrupting_cycle_fires_once_and_ends_the_task(district, clock, household):
    district.deploy([("reminding.bpmn", _boundary_process('"R/PT1H"', interrupting=True))], DESIGNER)
    iid = district.start("reminding", {"household_id": household}, CLERK)
    before = _notifications(district)
    assert _sweep_at(district, clock, START + HOUR) == 1
    found = district.instance(iid)
    assert _open(district, iid) == [] and found["state"] == "completed", "the task was interrupted"
    assert found["next_timer_at"] is None
    assert _sweep_at(district, clock, START + 5 * HOUR) == 0
    assert _fired(district, iid) == [START + HOUR] and _notifications(district) == before + 1


def test_two_workers_fire_each_firing_once(db_url, clock):
    from tests.district import seed
    first, second = build(db_url, clock=clock), build(db_url, clock=clock)
    try:
        seed(first)
        with Session(first.db) as s:
            hh = s.exec(select(Household.id)).first()
        first.deploy([("reminding.bpmn", _boundary_process('"R/PT1H"'))], DESIGNER)
        iids = [first.start("reminding", {"household_id": hh}, CLERK) for _ in range(8)]
        # alternately: whoever sweeps second finds nothing left
        for n, (a, b) in enumerate([(first, second), (second, first)], start=1):
            clock.set(START + n * HOUR)
            assert a.fire_due_timers() == 8
            assert b.fire_due_timers() == 0
        # concurrently, in threads
        for n in (3, 4, 5):
            clock.set(START + n * HOUR)
            counts: list[int] = []
            barrier = threading.Barrier(2)

            threads = [threading.Thread(target=_sweep_together, args=(e, barrier, counts)) for e in (first, second)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sum(counts) == 8, counts
        for iid in iids:
            assert _fired(first, iid) == [START + n * HOUR for n in range(1, 6)], iid
            assert _next(second, iid) == START + 6 * HOUR
    finally:
        first.db.dispose()
        second.db.dispose()


# ---- cron --------------------------------------------------------------------------------------
def test_a_cron_cycle_fires_at_nine_district_time_every_day(district, clock, household):
    """Cron is read in the district's zone (CITYLOOP_TIMEZONE, Asia/Shanghai by default):
    09:00 there is 01:00 UTC. START is 08:00 in Shanghai, so the first firing is that day."""
    assert timers.cron_zone() == ZoneInfo("Asia/Shanghai")
    district.deploy([("reminding.bpmn", _boundary_process('"0 0 9 * * ?"'))], DESIGNER)
    iid = district.start("reminding", {"household_id": household}, CLERK)
    nine = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
    assert _next(district, iid) == nine
    assert _sweep_at(district, clock, nine - timedelta(minutes=1)) == 0
    for day in range(3):
        assert _sweep_at(district, clock, nine + timedelta(days=day)) == 1
        assert _next(district, iid) == nine + timedelta(days=day + 1)
    assert _fired(district, iid) == [nine + timedelta(days=d) for d in range(3)]


def test_cron_follows_the_configured_zone(district, clock, household, setenv):
    setenv(CITYLOOP_TIMEZONE="UTC")
    district.deploy([("reminding.bpmn", _boundary_process('"0 30 9 ? * MON-FRI"'))], DESIGNER)
    iid = district.start("reminding", {"household_id": household}, CLERK)   # START: Monday 00:00 UTC
    assert _next(district, iid) == datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
    assert _sweep_at(district, clock, datetime(2026, 3, 6, 10, 0, tzinfo=timezone.utc)) == 1   # Friday
    assert _next(district, iid) == datetime(2026, 3, 9, 9, 30, tzinfo=timezone.utc), "Monday: no weekend firing"


@pytest.mark.parametrize("text,after,expected", [
    ("0 0 9 * * ?", "2026-03-02T08:59:59", "2026-03-02T09:00:00"),
    ("0 0 9 * * ?", "2026-03-02T09:00:00", "2026-03-03T09:00:00"),
    ("0 15,45 8-10 ? * MON-FRI", "2026-03-06T10:50:00", "2026-03-09T08:15:00"),
    ("0 0 12 L * ?", "2026-02-01T00:00:00", "2026-02-28T12:00:00"),
    ("0 0 12 L-2 * ?", "2026-02-01T00:00:00", "2026-02-26T12:00:00"),
    ("0 0 12 15W * ?", "2026-03-01T00:00:00", "2026-03-16T12:00:00"),      # the 15th is a Sunday
    ("0 0 12 1W * ?", "2026-02-01T00:00:00", "2026-02-02T12:00:00"),       # Sunday 1st: Monday 2nd
    ("0 0 12 LW * ?", "2026-05-01T00:00:00", "2026-05-29T12:00:00"),       # 31 May is a Sunday
    ("0 0 12 ? * 6#3", "2026-03-01T00:00:00", "2026-03-20T12:00:00"),      # third Friday
    ("0 0 12 ? * 6L", "2026-03-01T00:00:00", "2026-03-27T12:00:00"),       # last Friday
    ("0 0 12 ? * SUN", "2026-03-02T00:00:00", "2026-03-08T12:00:00"),      # 1 = Sunday in Quartz
    ("0 0 12 ? * 1", "2026-03-02T00:00:00", "2026-03-08T12:00:00"),
    ("0 0 0 29 2 ?", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
    ("0 0/20 * * * ?", "2026-03-02T10:41:00", "2026-03-02T11:00:00"),
    ("0 0 6 1 JAN,JUL ? 2027", "2026-03-01T00:00:00", "2027-01-01T06:00:00"),
])
def test_quartz_cron_next_times(text, after, expected):
    parsed = cron.parse(text)
    found = parsed.next_after(datetime.fromisoformat(after).replace(tzinfo=timezone.utc), timezone.utc)
    assert found == datetime.fromisoformat(expected).replace(tzinfo=timezone.utc)


def test_cron_across_a_summer_time_change():
    """Europe/Berlin skips 02:00-03:00 on 29 March 2026 and repeats 02:00-03:00 on 25 October."""
    berlin = ZoneInfo("Europe/Berlin")
    daily = cron.parse("0 30 2 * * ?")
    spring = daily.next_after(datetime(2026, 3, 28, 12, tzinfo=timezone.utc), berlin)
    assert spring == datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc), "the skipped 02:30 fires at 03:30 CEST"
    autumn = daily.next_after(datetime(2026, 10, 24, 12, tzinfo=timezone.utc), berlin)
    assert autumn == datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc), "the repeated 02:30 fires once, the first"
    assert daily.next_after(autumn, berlin) == datetime(2026, 10, 26, 1, 30, tzinfo=timezone.utc)


# ---- event sub-processes ------------------------------------------------------------------
def test_an_event_subprocess_runs_once_per_firing_while_the_process_lives(district, clock, household):
    district.deploy([("watched.bpmn", _event_subprocess_process('"R/PT1H"', SERVICE_BODY))], DESIGNER)
    iid = district.start("watched", {"household_id": household}, CLERK)
    before = _notifications(district)
    for n in (1, 2, 3):
        assert _sweep_at(district, clock, START + n * HOUR) == 1
        assert _notifications(district) == before + n
        assert _next(district, iid) == START + (n + 1) * HOUR
    events = [e for e in district.audit(iid) if e["kind"] == "timer_fired"]
    assert [e["element"] for e in events] == ["watch_timer"] * 3
    district.complete(_open(district, iid)[0]["id"], CLERK, {})
    found = district.instance(iid)
    assert found["state"] == "completed" and found["next_timer_at"] is None, "the process ended, and the cycle with it"
    assert _sweep_at(district, clock, START + 6 * HOUR) == 0
    assert _notifications(district) == before + 3


def test_a_running_firing_of_an_event_subprocess_ends_before_its_process(district, clock):
    district.deploy([("watched.bpmn", _event_subprocess_process('"R2/PT1H"', TASK_BODY))], DESIGNER)
    iid = district.start("watched", {}, CLERK)
    assert _sweep_at(district, clock, START + HOUR) == 1
    assert len(_open(district, iid, "watch_step")) == 1
    district.complete(_open(district, iid)[0]["id"], CLERK, {"reviewed": True})
    found = district.instance(iid)
    assert found["state"] == "running" and found["next_timer_at"] is None, "no more firings; one still running"
    assert _sweep_at(district, clock, START + 2 * HOUR) == 0
    district.complete(_open(district, iid, "watch_step")[0]["id"], CLERK, {"checked": True})
    assert district.instance(iid)["state"] == "completed"
    assert len(_fired(district, iid)) == 1


# ---- what deploy and run time refuse ----------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    ('"R/PT0S"', "a zero interval"),
    ('"R/PT30S"', "at least 1 minute apart (the timer sweep runs every few seconds)"),
    ('"R/P999999Y"', "longer than 100 years"),
    ('"R-1/PT1H"', "the count after R must be a whole number from 1"),
    ('"R0/PT1H"', "the count after R must be a whole number from 1"),
    ('"PT1H"', "is not a cycle"),
    ('"R/PT1H/2026-01-01T00:00:00Z"', "an end date is not supported"),
    ('"R/yesterday/PT1H"', "is not an ISO 8601 date-time"),
    ('"0 0 25 * * ?"', "hour 25 is outside 0-23"),
    ('"0 0 9 * *"', "6 or 7 fields"),
    ('"0 0 9 1 * MON"', "give either a day-of-month or a day-of-week"),
    ('"0 0 9 ? * 8"', "day-of-week 8 is outside 1-7"),
    ('"0/10 * * * * ?"', "fires 10 s apart"),
    ('"0 0 0 30 2 ?"', "names no time that exists"),
    ("3", "gives a int; a timeCycle timer needs"),
])
def test_deploy_refuses_bad_cycles_naming_the_event_with_an_example(system, text, message):
    with pytest.raises(DefinitionError) as err:
        system.deploy([("reminding.bpmn", _boundary_process(text))], DESIGNER)
    found = [m for el, m in err.value.problems if el == "remind_timer"]
    assert any(message in m and "timer timeCycle" in m for m in found), err.value.problems
    assert any(ex in m for m in found for ex in ('"R3/PT10M"', '"R/PT1H"', '"R/PT1M"', '"0 0 9 * * ?"',
                                                  '"0 */5 * * * ?"', "'0 0 9 ? * MON'", '"R5/P1D"', '"R/P1D"',
                                                  '"R5/2026-01-01T08:00:00+08:00/P1D"', '"0 0 9 L * ?"')), \
        f"no example in {found}"


def test_a_cycle_from_a_variable_is_read_at_run_time(district, clock, household):
    district.deploy([("reminding.bpmn", _boundary_process("every"))], DESIGNER)
    bad = district.start("reminding", {"household_id": household, "every": "R/PT0S"}, CLERK)
    found = district.instance(bad)
    assert found["state"] == "incident" and "a zero interval" in found["error"], found["error"]
    good = district.start("reminding", {"household_id": household, "every": "R2/PT2H"}, CLERK)
    assert _next(district, good) == START + 2 * HOUR
    assert _sweep_at(district, clock, START + 2 * HOUR) == 1
    assert _next(district, good) == START + 4 * HOUR


# ---- reading ISO cycles -------------------------------------------------------------------
def test_an_iso_cycle_with_a_start_counts_from_it():
    cycle = timers.parse_cycle("R5/2026-03-02T08:00:00+08:00/P1D")
    armed = datetime(2026, 3, 3, 12, tzinfo=timezone.utc)         # after the first two firings
    first = cycle.first(armed)
    assert first == timers.Occurrence(2, datetime(2026, 3, 4, 0, tzinfo=timezone.utc))
    last = cycle.after(cycle.origin(armed), first, datetime(2026, 3, 5, 12, tzinfo=timezone.utc))
    assert last == timers.Occurrence(4, datetime(2026, 3, 6, 0, tzinfo=timezone.utc))
    assert cycle.after(cycle.origin(armed), last, last.due) is None, "five in all"


def test_a_start_without_an_offset_is_read_in_the_district_zone():
    cycle = timers.parse_cycle("R/2026-03-02T09:00:00/PT12H")
    assert cycle.start == datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)


def test_monthly_cycles_keep_the_day_or_take_the_month_end():
    cycle = timers.parse_cycle("R/2026-01-31T09:00:00+08:00/P1M")
    origin = cycle.origin(START)
    assert [cycle.nth(origin, i).date().isoformat() for i in range(4)] == [
        "2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]


# ---- history does not pile up ---------------------------------------------------------------
def _call_process() -> str:
    """Each firing opens a call-the-household task on its own path to an end event."""
    return definitions(process("calling", f'''
<bpmn:startEvent id="start"/>
<bpmn:userTask id="review" name="Review" camunda:candidateGroups="dispatcher"/>
<bpmn:boundaryEvent id="remind_timer" attachedToRef="review" cancelActivity="false">
  {_timer('"R/PT1H"')}
</bpmn:boundaryEvent>
<bpmn:userTask id="call" name="Call" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="end"/>
<bpmn:endEvent id="called"/>
{flows("start", "review", "end")}
{flows("remind_timer", "call", "called", prefix="r")}'''))


def _stored_size(engine, iid) -> int:
    from engine.db.models import Instance
    with Session(engine.db) as s:
        return len(s.get(Instance, iid).workflow)


def test_finished_firings_leave_the_stored_instance_but_not_their_data(system, clock):
    system.deploy([("calling.bpmn", _call_process())], DESIGNER)
    iid = system.start("calling", {"case": "A"}, CLERK)
    for n in range(1, 5):
        assert _sweep_at(system, clock, START + n * HOUR) == 1
        call = _open(system, iid, "call")
        assert len(call) == 1, "the earlier calls were made"
        system.complete(call[0]["id"], CLERK, {f"call_{n}": n, "last_call": n})
    size = _stored_size(system, iid)
    for n in range(5, 25):
        assert _sweep_at(system, clock, START + n * HOUR) == 1
        system.complete(_open(system, iid, "call")[0]["id"], CLERK, {f"call_{n}": n, "last_call": n})
    assert _stored_size(system, iid) < size * 1.2, "twenty more firings, about the same size"
    system.complete(_open(system, iid)[0]["id"], CLERK, {"reviewed": True})
    found = system.instance(iid)
    assert found["state"] == "completed"
    calls = {f"call_{n}": n for n in range(1, 25)}
    assert found["data"] == {"case": "A", "reviewed": True, "last_call": 24, **calls}, \
        "every path's data reaches the end, the latest last"
    assert len(_fired(system, iid)) == 24


def test_a_firing_still_running_keeps_the_process_open(system, clock):
    system.deploy([("calling.bpmn", _call_process())], DESIGNER)
    iid = system.start("calling", {}, CLERK)
    assert _sweep_at(system, clock, START + HOUR) == 1
    system.complete(_open(system, iid)[0]["id"], CLERK, {})
    found = system.instance(iid)
    assert found["state"] == "running" and found["next_timer_at"] is None, "the cycle stopped; the call is open"
    system.complete(_open(system, iid, "call")[0]["id"], CLERK, {"called": True})
    assert system.instance(iid)["state"] == "completed"


def test_cycles_inside_a_called_process_end_with_it(system, clock):
    """A called process runs inside its caller's instance: its cycle timers are the
    instance's, and its event sub-process starts no more when its own flow has ended."""
    caller = definitions(process("caller", f'''
<bpmn:startEvent id="p_start"/>
<bpmn:callActivity id="p_call" calledElement="watched"/>
<bpmn:userTask id="p_after" name="After" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="p_end"/>
{flows("p_start", "p_call", "p_after", "p_end")}'''))
    system.deploy([("watched.bpmn", _event_subprocess_process('"R/PT1H"', TASK_BODY)), ("caller.bpmn", caller)],
                  DESIGNER)
    iid = system.start("caller", {}, CLERK, business_key="K-1")
    for n in (1, 2):
        assert _sweep_at(system, clock, START + n * HOUR) == 1
    assert _next(system, iid) == START + 3 * HOUR
    system.complete(_open(system, iid)[0]["id"], CLERK, {})          # the called process's own task
    assert _next(system, iid) is None, "the called process's flow ended, and its cycle with it"
    checks = _open(system, iid, "watch_step")
    assert len(checks) == 2, "one check per firing"
    for check in checks:
        assert _open(system, iid, "p_after") == [], "the called process waits for its running firings"
        system.complete(check["id"], CLERK, {})
    assert len(_open(system, iid, "p_after")) == 1
    assert [e["element"] for e in system.audit(business_key="K-1") if e["kind"] == "timer_fired"] == \
        ["watch_timer", "watch_timer"]
