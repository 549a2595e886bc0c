"""cityloop's task specs: user tasks with Camunda assignment, service tasks bound to the
operation registry, and timers that read the engine's clock instead of the wall clock."""
from __future__ import annotations

from datetime import datetime

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.control import BoundaryEventJoin
from SpiffWorkflow.bpmn.specs.defaults import ManualTask, NoneTask
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask
from SpiffWorkflow.bpmn.util import PendingBpmnEvent
from SpiffWorkflow.camunda.specs.user_task import UserTask as CamundaUserTask
from SpiffWorkflow.task import TaskState
from SpiffWorkflow.util.deep_merge import DeepMerge

from engine.bpmn import spiff, timers

__all__ = ["CityUserTask", "CityServiceTask", "ClockedTimeDate", "ClockedDuration", "ClockedCycle",
           "PassThroughManualTask", "PassThroughTask", "ignore_data_associations", "use_engine_clock"]


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


class ClockedCycle(TimerEventDefinition):
    """timeCycle timer on the engine clock: an ISO 8601 repeating interval or a Quartz cron
    text, read by engine.bpmn.timers.

    The library's CycleTimerEventDefinition keeps one task waiting and adds its outgoing
    path at each firing: after downtime it makes up every missed firing at once, the timer
    task never completes (so no firing is a completed timer), and an interrupting boundary
    event interrupts only at the last firing. Here each firing is the timer task firing as a
    timeDuration timer does (the engine records one timer_fired event with its due time):

    - the task waits for one firing of the series; its internal timer value is
      {"cycle": text, "origin": ISO, "index": n, "due": ISO or None}, "due" None when the
      series is over (the task then waits until its scope ends);
    - when it fires, a non-interrupting boundary event, or the start event of an event
      sub-process, is armed again: a new task of the same event beside it, waiting for the
      first firing due after now. Firings missed while the server was down are not made
      up: they fire once in all, with the first of them;
    - an interrupting boundary event fires once, at the first firing, and is not armed again;
    - an event sub-process starts no more once its process's own flow has ended (the
      library would wait for it forever, so a process with a cycle would never end).

    The due time and the engine's clock decide; the wall clock is never read."""

    def has_fired(self, my_task):
        if spiff.timer_fired(my_task) or my_task.has_state(TaskState.FINISHED_MASK):
            return True                       # (a task cancelled during this refresh: nothing to do)
        now = _now(my_task)
        armed = spiff.timer_value(my_task)
        if armed is None:
            armed = self._arm(my_task, now)
        if armed["due"] is None or timers.parse_date(armed["due"]) > now:
            return False
        spiff.mark_timer_fired(my_task)
        if _repeats(my_task):
            self._arm_next(my_task, armed, now)
        return True

    def update_task(self, my_task):
        """Called while the task waits, at the end of every engine step."""
        esp = _event_subprocess_of(my_task)
        if esp is not None and _own_flow_ended(esp.workflow):
            _stop_event_subprocess(my_task, esp)

    def details(self, my_task):
        armed = spiff.timer_value(my_task)
        return PendingBpmnEvent(self.name, type(self).__name__, armed["due"] if armed else None)

    def _arm(self, my_task, now: datetime) -> dict:
        value = my_task.workflow.script_engine.evaluate(my_task, self.expression)
        try:
            cycle = timers.parse_cycle(value)
        except timers.TimerValueError as exc:
            raise _timer_error(my_task, self.expression, exc) from None
        armed = _armed(cycle, cycle.origin(now), cycle.first(now))
        spiff.set_timer_value(my_task, armed)
        return armed

    def _arm_next(self, my_task, armed: dict, now: datetime) -> None:
        try:
            cycle = timers.parse_cycle(armed["cycle"])
        except timers.TimerValueError as exc:
            raise _timer_error(my_task, self.expression, exc) from None
        origin = timers.parse_date(armed["origin"])
        following = cycle.after(origin, timers.Occurrence(armed["index"], timers.parse_date(armed["due"])), now)
        _drop_finished_firings(my_task)
        if following is None:
            return                            # the series is over
        # As the library's cycle adds its path at each firing: a task of the same event
        # beside this one (under the same parent), its outgoing path predicted, then updated
        # so that it waits (it is not due) and the workflow's event manager lists it.
        spiff.repeat_waiting(my_task, _armed(cycle, origin, following))


def _drop_finished_firings(my_task) -> int:
    """Take earlier firings of `my_task`'s cycle whose paths have run to their end out of
    the task tree, so that an instance does not grow with every firing (their history is in
    the audit log). Returns how many were taken out.

    What such a path leaves for the end of its process is its end event's data, which the
    process's end join merges, oldest arrival first, when the process ends. That data is
    merged in the same order into the end event of the path that arrived last, whose end
    join still waits in the tree, so the process ends with the same data."""
    wf = my_task.workflow
    end = wf.spec.end
    done = []
    for sibling in my_task.parent.children:
        if sibling is my_task or sibling.task_spec is not my_task.task_spec or sibling.state != TaskState.COMPLETED:
            continue
        tasks = _subtree(sibling)
        # (a boundary event's path also holds its own instance of the join after the
        # activity, waiting for the activity; the instance the activity reaches goes on)
        if wf.last_task not in tasks and all(t.has_state(TaskState.FINISHED_MASK)
                                             or isinstance(t.task_spec, BoundaryEventJoin) for t in tasks):
            done.append((sibling, tasks))
    ends = sorted((t for _, tasks in done for t in tasks if t.task_spec is end), key=lambda t: t.last_state_change)
    if ends:
        waiting = wf.get_tasks(state=TaskState.WAITING, spec_name=end.name, skip_subprocesses=True)
        if len(waiting) != 1:
            return 0                          # (no path to hand the data to: keep them all)
        data: dict = {}
        for t in ends:
            DeepMerge.merge(data, t.parent.data)
        last = waiting[0].parent
        last.data = DeepMerge.merge(data, last.data)
    top = wf.top_workflow
    for sibling, tasks in done:
        for t in tasks:
            if t.id in top.subprocesses:
                top.delete_subprocess(t)
        spiff.remove_subtree(wf, sibling)
    return len(done)


def _subtree(task) -> list:
    found, stack = [], [task]
    while stack:
        t = stack.pop()
        found.append(t)
        stack.extend(t.children)
    return found


def _armed(cycle: timers.Cycle, origin: datetime, occurrence: timers.Occurrence | None) -> dict:
    return {"cycle": cycle.text, "origin": origin.isoformat(), "index": occurrence.index if occurrence else None,
            "due": occurrence.due.isoformat() if occurrence else None}


def _repeats(my_task) -> bool:
    """Whether a cycle timer is armed again after it fires: on a non-interrupting boundary
    event and on an event sub-process's start event (SpiffWorkflow does not interrupt with
    those), not on an interrupting boundary event."""
    spec = my_task.task_spec
    if isinstance(spec, BoundaryEvent):
        return not spec.cancel_activity
    return isinstance(spec, StartEvent) and _event_subprocess_of(my_task) is not None


def _is_event_subprocess(task) -> bool:
    """An event sub-process started with its process (SpiffWorkflow connects those whose
    start event is a timer to the process's start; its Camunda parser reads them as plain
    sub-processes, so the class says nothing)."""
    spec = task.task_spec
    return isinstance(spec, SubWorkflowTask) and spec in task.workflow.spec.start.outputs


def _event_subprocess_of(my_task):
    """The event sub-process task whose start event `my_task` is, or None."""
    if not isinstance(my_task.task_spec, StartEvent) or my_task.workflow.parent_task_id is None:
        return None
    found = my_task.workflow.top_workflow.get_task_from_id(my_task.workflow.parent_task_id)
    return found if found is not None and _is_event_subprocess(found) else None


def _own_flow_ended(workflow) -> bool:
    """Whether a (sub-)workflow's own flow is over: its end join waits, and nothing but its
    end and its event sub-processes is left."""
    end = workflow.spec.end
    waiting_end = False
    for t in workflow.get_tasks(state=TaskState.DEFINITE_MASK, skip_subprocesses=True):
        if t.task_spec is end or t.task_spec in end.outputs:
            waiting_end = waiting_end or t.state == TaskState.WAITING
        elif not _is_event_subprocess(t):
            return False
    return waiting_end


def _stop_event_subprocess(my_task, esp) -> None:
    """The process's flow has ended: its event sub-process `esp` starts no more. A firing
    still running ends as it would; with none, the sub-process is cancelled. Then the
    engine steps that this makes possible are taken (the ends join)."""
    sub = my_task.workflow
    my_task.cancel()
    running = [t for t in sub.get_tasks(state=TaskState.DEFINITE_MASK, skip_subprocesses=True)
               if t.task_spec is not sub.spec.end and t.task_spec not in sub.spec.end.outputs]
    if running:
        return
    waiting_ends = sub.get_tasks(state=TaskState.WAITING, spec_name=sub.spec.end.name, skip_subprocesses=True)
    if waiting_ends:                          # an earlier firing ran to its end: finish normally
        for t in waiting_ends:
            spiff.refresh(t)
    else:
        esp.cancel()
        for t in esp.workflow.get_tasks(state=TaskState.WAITING, spec_name=esp.workflow.spec.end.name,
                                        skip_subprocesses=True):
            spiff.refresh(t)
    spiff.engine_steps(sub.top_workflow)


_CLOCKED = {TimeDateEventDefinition: ClockedTimeDate, DurationTimerEventDefinition: ClockedDuration,
            CycleTimerEventDefinition: ClockedCycle}


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
