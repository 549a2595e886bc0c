"""cityloop's task specs: user tasks with Camunda assignment, service tasks bound to the
operation registry, and timers that read the engine's clock instead of the wall clock."""
from __future__ import annotations

from datetime import datetime

from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.camunda.specs.user_task import UserTask as CamundaUserTask


class CityUserTask(CamundaUserTask):
    """A human task: performers and the form come from Camunda attributes."""

    def __init__(self, wf_spec, bpmn_id, form=None, assignee=None, candidate_groups=(),
                 due_date=None, form_ref=None, **kwargs):
        super().__init__(wf_spec, bpmn_id, form, **kwargs)
        self.assignee = assignee
        self.candidate_groups = tuple(candidate_groups)
        self.due_date = due_date
        self.form_ref = form_ref


class CityServiceTask(ServiceTask):
    """An external-task style service task; `topic` names a registered operation."""

    def __init__(self, wf_spec, bpmn_id, topic=None, params=None, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.topic = topic
        self.params = dict(params or {})

    def _execute(self, task):
        return task.workflow.script_engine.call_operation(task, self.topic, self.params)


def _now(task) -> datetime:
    return task.workflow.script_engine.now()


class ClockedTimeDate(TimeDateEventDefinition):
    """timeDate timer whose 'now' is the engine clock (injectable in tests)."""

    def has_fired(self, my_task):
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            event_value = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            event_value = event_value.isoformat() if isinstance(event_value, datetime) else str(event_value)
            TimerEventDefinition.parse_time_or_duration(event_value)  # refuse garbage early
            my_task._set_internal_data(event_value=event_value)
        if TimerEventDefinition.parse_time_or_duration(event_value) <= _now(my_task):
            my_task._set_internal_data(event_fired=True)
        return my_task._get_internal_data("event_fired", False)


class ClockedDuration(DurationTimerEventDefinition):
    """timeDuration timer started from the engine clock."""

    def has_fired(self, my_task):
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            expression = str(my_task.workflow.script_engine.evaluate(my_task, self.expression))
            parsed = TimerEventDefinition.parse_iso_duration(expression)
            start = _now(my_task)
            event_value = (start + TimerEventDefinition.get_timedelta_from_start(parsed, start)).isoformat()
            my_task._set_internal_data(event_value=event_value)
        if TimerEventDefinition.get_datetime(event_value) <= _now(my_task):
            my_task._set_internal_data(event_fired=True)
        return my_task._get_internal_data("event_fired", False)


_CLOCKED = {TimeDateEventDefinition: ClockedTimeDate, DurationTimerEventDefinition: ClockedDuration}


def use_engine_clock(spec) -> None:
    """Swap the library's wall-clock timer definitions for clocked ones, in place.

    The subclasses add no state, so swapping the class keeps every parsed attribute."""
    for task_spec in spec.task_specs.values():
        ed = getattr(task_spec, "event_definition", None)
        if ed is None:
            continue
        for d in [ed, *getattr(ed, "event_definitions", [])]:
            replacement = _CLOCKED.get(type(d))
            if replacement is not None:
                d.__class__ = replacement
