"""Deploy refuses constant expressions that cannot succeed: a constant gives the same value
(or the same error) at every run, so deploy evaluates it once and names the element."""
from __future__ import annotations

from xml.sax.saxutils import escape

import pytest

from engine.bpmn import expressions, timers
from engine.bpmn.xml import DefinitionError
from engine.runtime.errors import Actor
from engine.system import WORKFLOWS, bundled_files

DESIGNER = Actor("designer1", {"designer"})
WORK_ORDER = (WORKFLOWS / "bpmn" / "rectification.bpmn").read_text()   # (the rectify/review loop)
GAS = (WORKFLOWS / "bpmn" / "gas_inspection.bpmn").read_text()
DISPATCH = (WORKFLOWS / "dmn" / "dispatch_rules.dmn").read_text()
SLA_TIMER = '<bpmn:timeDate xsi:type="bpmn:tFormalExpression">sla_due</bpmn:timeDate>'


def _refused(engine, source: str, old: str, new: str, name: str = "rectification.bpmn") -> DefinitionError:
    assert old in source, old
    with pytest.raises(DefinitionError) as err:
        engine.deploy([(name, source.replace(old, new, 1))], DESIGNER)
    return err.value


def _on(err: DefinitionError, element: str) -> list[str]:
    """The messages of the problems found on `element` (every problem names one)."""
    assert all(el for el, _ in err.problems), err.problems
    return [msg for el, msg in err.problems if el == element]


def _timer(kind: str, text: str) -> str:
    return f'<bpmn:{kind} xsi:type="bpmn:tFormalExpression">{escape(text)}</bpmn:{kind}>'


def test_the_reported_sla_timer_is_refused_twice_over(system):
    err = _refused(system, WORK_ORDER, SLA_TIMER, _timer("timeDate", "9**9**9 > 0"))
    found = _on(err, "Event_sla_due")
    assert len(found) == 2, err.problems
    assert "can never be evaluated: exponent of '**' is larger than 64" in found[0]
    assert "gives a bool; a timeDate timer needs an ISO 8601 date-time" in found[1]
    assert "Event_sla_due" in str(err) and "rectification.bpmn" in str(err)


@pytest.mark.parametrize("kind,text,message", [
    ("timeDate", '"PT4H"', "is a duration; a timeDate timer needs a date-time"),
    ("timeDate", '"next tuesday"', "is not an ISO 8601 date-time"),
    ("timeDate", "5", "gives a int"),
    ("timeDate", "1 / 0", "can never be evaluated: division by zero"),
    ("timeDate", '"2026-01-01" + 1', "can never be evaluated: operator '+' is not supported for str and int"),
    ("timeDuration", '"2026-03-02T08:00:00+08:00"', "is not an ISO 8601 duration"),
    ("timeDuration", '"PT4H5"', "is not an ISO 8601 duration"),
    ("timeDuration", '"P"', "is not an ISO 8601 duration"),
    ("timeDuration", '"P999999999Y"', "longer than 100 years"),
    ("timeDuration", "[1, 2]", "gives a list"),
    ("timeDuration", 'len("abc") > 2', "gives a bool"),
])
def test_constant_timers_must_give_their_kind(system, kind, text, message):
    err = _refused(system, WORK_ORDER, SLA_TIMER, _timer(kind, text))
    found = _on(err, "Event_sla_due")
    assert any(message in m and f"timer {kind}" in m for m in found), err.problems


def test_constant_timers_that_can_succeed_are_kept(system):
    for text in ('"2026-03-02T08:00:00+08:00"', '"2026-W10-1T08:00:00+08:00"', "${'2026-03-02T08:00:00Z'}"):
        assert system.deploy([("rectification.bpmn", WORK_ORDER.replace(SLA_TIMER, _timer("timeDate", text)))],
                             DESIGNER)
    deployed = system.deploy([("rectification.bpmn",
                               WORK_ORDER.replace(SLA_TIMER, _timer("timeDuration", '"P1DT4H"')))], DESIGNER)
    assert {(d.key, d.changed) for d in deployed if d.kind == "bpmn"} == {
        ("rectification", True), ("work_order", True), ("gas_inspection", True)}, "and its callers re-pinned"


def test_a_cycle_timers_bad_constant_is_refused_on_its_event(system):
    err = _refused(system, WORK_ORDER, SLA_TIMER, _timer("timeCycle", '"R3/P999999999Y"'))
    found = _on(err, "Event_sla_due")
    assert len(found) == 1 and "longer than 100 years" in found[0], err.problems


@pytest.mark.parametrize("text,message", [
    ("1 // 0", "division by zero"),
    ("9 ** 99", "exponent of '**' is larger than 64"),
    ("'a' * 60000 + 'b' * 60000", "larger than 100000 elements"),
    ('int("x")', "invalid literal for int()"),
    ("[1, 2][5]", "index 5 out of range"),
    ('{"a": 1}["b"]', "not found"),
    ("1 < 'a'", "not supported between instances of 'int' and 'str'"),
    ("min([])", "empty"),
])
def test_constant_conditions_that_fail_are_refused(system, text, message):
    err = _refused(system, WORK_ORDER, 'decision == "reject"', escape(text))
    found = _on(err, "Flow_decision_reject")
    assert any("conditionExpression" in m and "can never be evaluated" in m and message in m for m in found), \
        err.problems


def test_constants_that_succeed_and_non_constants_are_left_to_the_allow_list(system):
    for text in ("True", "1 + 1 == 2", 'len("ok") > 0', "decision == 1 / 0"):   # the last reads a variable
        assert system.deploy([("work_order.bpmn", WORK_ORDER.replace('decision == "reject"', escape(text), 1))],
                             DESIGNER)


def test_literals_over_the_limits_are_refused_naming_the_element(system):
    long_text = '"' + "x" * (expressions.MAX_LENGTH + 10) + '"'
    err = _refused(system, WORK_ORDER, 'decision == "reject"', "decision == " + long_text)
    assert any("expression is too long" in m for m in _on(err, "Flow_decision_reject")), err.problems
    huge_int = "9" * (expressions.MAX_LENGTH + 1)
    err = _refused(system, WORK_ORDER, SLA_TIMER, _timer("timeDate", huge_int))
    assert any("expression is too long" in m for m in _on(err, "Event_sla_due")), err.problems
    long_group = 'camunda:candidateGroups="' + "g" * 500 + '"'
    err = _refused(system, WORK_ORDER, 'camunda:candidateGroups="reviewer"', long_group)
    assert any("longer than 128 characters" in m for m in _on(err, "Task_review")), err.problems


def test_user_task_due_dates_and_assignees(system):
    task = 'camunda:formRef="wo_review" camunda:candidateGroups="reviewer"'
    err = _refused(system, WORK_ORDER, task, task + ' camunda:dueDate="tomorrow"')
    assert any("camunda:dueDate" in m and "not an ISO 8601 date-time" in m for m in _on(err, "Task_review"))
    err = _refused(system, WORK_ORDER, task, task + ' camunda:dueDate="${1 / 0}"')
    assert any("can never be evaluated: division by zero" in m for m in _on(err, "Task_review"))
    err = _refused(system, WORK_ORDER, task, task + ' camunda:assignee="${[1][3]}"')
    assert any("camunda:assignee" in m and "out of range" in m for m in _on(err, "Task_review"))
    assert system.deploy([("work_order.bpmn", WORK_ORDER.replace(
        task, task + ' camunda:dueDate="2026-03-09T17:00:00+08:00" camunda:assignee="reviewer1"', 1))], DESIGNER)


def test_constant_dmn_cells_that_fail_are_refused(system):
    first_output = DISPATCH.index("<outputEntry")
    text_at = DISPATCH.index("<text>", first_output) + len("<text>")
    end = DISPATCH.index("</text>", text_at)
    bad = DISPATCH[:text_at] + escape("1 / 0") + DISPATCH[end:]
    with pytest.raises(DefinitionError) as err:
        system.deploy([("dispatch_rules.dmn", bad)], DESIGNER)
    assert any(el and "output entry" in m and "division by zero" in m for el, m in err.value.problems), \
        err.value.problems
    first_input = DISPATCH.index("<inputEntry")
    text_at = DISPATCH.index("<text>", first_input) + len("<text>")
    end = DISPATCH.index("</text>", text_at)
    bad = DISPATCH[:text_at] + escape('"a" + 1') + DISPATCH[end:]
    with pytest.raises(DefinitionError) as err:
        system.deploy([("dispatch_rules.dmn", bad)], DESIGNER)
    assert any(el and "input entry" in m and "can never be evaluated" in m for el, m in err.value.problems), \
        err.value.problems


def _dispatch_with_garbage_sla(text: str) -> str:
    cell = '<outputEntry id="LiteralExpression_garbage_dongcheng_sla_hours">\n          <text>24</text>'
    assert cell in DISPATCH
    return DISPATCH.replace(cell, cell.replace("<text>24</text>", f"<text>{escape(text)}</text>"), 1)


def test_a_constant_that_is_not_a_finite_number_is_refused(system):
    with pytest.raises(DefinitionError) as err:
        system.deploy([("dispatch_rules.dmn", _dispatch_with_garbage_sla("1e308 * 10"))], DESIGNER)
    assert any("can never be evaluated" in m and "not finite" in m for _, m in err.value.problems), \
        err.value.problems


def test_a_value_that_is_not_a_finite_number_stops_the_step_and_is_not_stored(system):
    """Task data is JSON: an expression whose value is infinite (here a DMN output computed
    from the report) fails the step, naming the cause, instead of being stored."""
    from sqlmodel import Session, select

    from engine.db.models import Instance
    from engine.domain import workorders
    from tests.district import DISPATCHER, seed
    seed(system)
    system.deploy([("dispatch_rules.dmn", _dispatch_with_garbage_sla("len(area) * 1e308"))], DESIGNER)
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    with Session(system.db) as s:
        row = s.exec(select(Instance).where(Instance.id == order.instance_id)).one()
    assert row.state == "incident" and "not finite" in row.error, (row.state, row.error)
    assert "sla_hours" not in row.workflow, "nothing of the failed step is stored"


def test_the_bundled_definitions_still_deploy(system):
    files = bundled_files()
    assert {name.rsplit(".", 1)[1] for name, _ in files} >= {"bpmn", "dmn", "form"}
    deployed = system.deploy(files, DESIGNER)   # the fixture deployed them already: same content
    assert {d.key for d in deployed if d.kind == "bpmn"} == {"work_order", "rectification", "gas_inspection",
                                                                 "crew_attendance"}
    assert not any(d.changed for d in deployed)


def test_timer_values_are_read_the_same_at_run_time():
    """What deploy accepts for a timer is what the clocked timers use (engine.bpmn.specs)."""
    from datetime import datetime, timezone
    start = datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert timers.due_after("PT4H", start) == datetime(2026, 3, 2, 4, tzinfo=timezone.utc)
    assert timers.parse_date("2026-03-02T08:00:00+08:00") == start
    with pytest.raises(timers.TimerValueError, match="100 years"):
        timers.due_after("P99999999M", start)
    assert issubclass(timers.TimerValueError, expressions.ExpressionError)
