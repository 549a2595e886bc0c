"""cityloop's task specs: user tasks with Camunda assignment, service tasks bound to the
operation registry, and timers that read the engine's clock instead of the wall clock."""
from __future__ import annotations

from datetime import datetime

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.defaults import ManualTask, NoneTask
from SpiffWorkflow.bpmn.specs.event_definitions.timer import DurationTimerEventDefinition, TimeDateEventDefinition
from SpiffWorkflow.camunda.specs.user_task import UserTask as CamundaUserTask

from engine.bpmn import spiff, timers

__all__ = ["CityUserTask", "CityServiceTask", "ClockedTimeDate", "ClockedDuration", "PassThroughManualTask",
           "PassThroughTask", "ignore_data_associations", "use_engine_clock"]


class CityUserTask(CamundaUserTask):
    """A human task: performers and the form come from Camunda attributes."""

    def __init__(self, wf_spec, bpmn_id, form=None, assignee=None, candidate_groups=(),
                 due_date=None, form_ref=None, candidate_users=(), **kwargs):
        super().__init__(wf_spec, bpmn_id, form, **kwargs)
        self.assignee = assignee
        self.candidate_groups = tuple(candidate_groups)
        self.candidate_users = tuple(candidate_users)
        self.due_date = due_date
        self.form_ref = form_ref


class CityServiceTask(spiff.OperationTaskSpec):
    """An external-task style service task; `topic` names a registered operation."""

    def __init__(self, wf_spec, bpmn_id, topic=None, params=None, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.topic = topic
        self.params = dict(params or {})

    def run_operation(self, task):
        return task.workflow.script_engine.call_operation(task, self.topic, self.params)


def _now(task) -> datetime:
    return task.workflow.script_engine.now()


def _timer_error(task, expression: str, exc: timers.TimerValueError) -> WorkflowTaskException:
    return WorkflowTaskException(f"timer {expression!r} {exc}", task=task, exception=exc)


class ClockedTimeDate(TimeDateEventDefinition):
    """timeDate timer whose 'now' is the engine clock (injectable in tests)."""

    def has_fired(self, my_task):
        def due(value) -> str:
            value = value.isoformat() if isinstance(value, datetime) else value
            timers.parse_date(value)    # refuse garbage before it is stored
            return value
        return _fired(self, my_task, due)


class ClockedDuration(DurationTimerEventDefinition):
    """timeDuration timer started from the engine clock."""

    def has_fired(self, my_task):
        return _fired(self, my_task, lambda duration: timers.due_after(duration, _now(my_task)).isoformat())


def _fired(timer, my_task, due) -> bool:
    """The timer's due time is worked out once, when it starts waiting (`due` of its
    expression's value, on the engine clock) and stored with the task; it fires once the
    engine clock reaches it."""
    event_value = spiff.timer_value(my_task)
    if event_value is None:
        value = my_task.workflow.script_engine.evaluate(my_task, timer.expression)
        try:
            event_value = due(value)
        except timers.TimerValueError as exc:
            raise _timer_error(my_task, timer.expression, exc) from None
        spiff.set_timer_value(my_task, event_value)
    if timers.parse_date(event_value) <= _now(my_task):
        spiff.mark_timer_fired(my_task)
    return spiff.timer_fired(my_task)


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


class PassThroughTask(NoneTask):
    """An undefined `bpmn:task`: it passes at once, as in Camunda 7 (the library leaves it
    waiting for a caller to run it, and no one would: the instance would stand still)."""

    def __init__(self, wf_spec, bpmn_id, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.manual = False


class PassThroughManualTask(ManualTask):
    """A `bpmn:manualTask` (work done outside any system): it passes at once, as in Camunda 7."""

    def __init__(self, wf_spec, bpmn_id, **kwargs):
        super().__init__(wf_spec, bpmn_id, **kwargs)
        self.manual = False


def ignore_data_associations(spec) -> None:
    """Data objects and their associations are drawing only, as in Camunda 7: the library
    would move a task's variable into the data object on completion (and fail the step when
    the variable is missing). Process variables are the data; the drawing stays as it is."""
    for task_spec in spec.task_specs.values():
        if getattr(task_spec, "data_input_associations", None):
            task_spec.data_input_associations = []
        if getattr(task_spec, "data_output_associations", None):
            task_spec.data_output_associations = []
