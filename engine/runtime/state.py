"""Reading a workflow's position: ready human tasks, pending timers, awaited messages."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.task import TaskState

from engine.bpmn import spiff
from engine.bpmn.calls import CityCallActivity
from engine.bpmn.specs import CityUserTask

__all__ = ["EMPTY", "Scan", "calls", "position", "scan", "timer_due"]


def _definitions(task) -> list:
    ed = getattr(task.task_spec, "event_definition", None)
    if ed is None:
        return []
    if isinstance(ed, MultipleEventDefinition):
        return list(ed.event_definitions)
    return [ed]


def timer_due(task) -> datetime | None:
    """When a waiting timer task is due (None if it is not a timer, or not armed yet, or a
    cycle whose series is over). A cycle timer (engine.bpmn.specs.ClockedCycle) stores its
    next firing under "due"; the others store the due time itself."""
    if not any(isinstance(d, TimerEventDefinition) for d in _definitions(task)):
        return None
    value = spiff.timer_value(task)
    if isinstance(value, dict):
        value = value.get("due")
    if not isinstance(value, str):
        return None
    try:
        due = TimerEventDefinition.parse_time_or_duration(value)
    except Exception:
        return None
    return due if isinstance(due, datetime) else None


def position(wf) -> list[dict]:
    """Where an instance stands: each ready, waiting or started element, the innermost first
    (a user task of a called process before the call activity that waits for it); `process`
    is the id of the process the element belongs to."""
    out = []
    for t in wf.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.STARTED):
        spec = t.task_spec
        bpmn_id = getattr(spec, "bpmn_id", None)
        if not bpmn_id:
            continue
        out.append((-t.workflow.depth, {"element": bpmn_id, "name": getattr(spec, "bpmn_name", None) or bpmn_id,
                                        "state": TaskState.get_name(t.state), "task_id": str(t.id),
                                        "process": t.workflow.spec.name}))
    return [entry for _, entry in sorted(out, key=lambda pair: pair[0])]


@dataclass(frozen=True)
class Scan:
    """One pass over a workflow's live tasks: what the side tables mirror."""
    ready: dict            # task id (str) -> ready user task
    awaited: frozenset     # message names
    timers: dict           # task id (UUID) -> (element id, due)
    calls: dict            # call activity task id (UUID) -> (element id, called process, done)

    @property
    def next_timer(self) -> datetime | None:
        return min((due for _, due in self.timers.values()), default=None)




EMPTY = Scan({}, frozenset(), {}, {})   # what the side tables hold for an instance not yet run


def scan(wf) -> Scan:
    ready, awaited, timers = {}, set(), {}
    for t in wf.get_tasks(state=TaskState.READY | TaskState.WAITING):
        if t.state == TaskState.READY:
            if isinstance(t.task_spec, CityUserTask):
                ready[str(t.id)] = t
            continue
        for d in _definitions(t):
            if isinstance(d, MessageEventDefinition):
                awaited.add(d.name)
        due = timer_due(t)
        if due is not None:
            timers[t.id] = (t.task_spec.bpmn_id or t.task_spec.name, due)
    if not wf.is_completed():
        awaited.update(_triggers(wf))
    return Scan(ready, frozenset(awaited), timers, calls(wf))


def _triggers(wf) -> set[str]:
    """Messages that start one of the process's event sub-processes: awaited while it runs
    (the library starts such a sub-process when the message is caught, so no task waits)."""
    names = set()
    for name in getattr(wf.spec.start, "trigger_specs", ()):
        sub = wf.subprocess_specs.get(name)
        for start in getattr(sub, "bpmn_start_events", ()):
            if isinstance(start.event_definition, MessageEventDefinition):
                names.add(start.event_definition.name)
    return names


def calls(wf) -> dict:
    """The processes an instance has called (running or done, while their call activity is
    in the workflow): call activity task id -> (element id, called process id, done)."""
    found = {}
    for task_id, sub in wf.subprocesses.items():
        task = spiff.find_task(wf, task_id)
        if task is not None and isinstance(task.task_spec, CityCallActivity):
            found[task_id] = (task.task_spec.bpmn_id, task.task_spec.spec, bool(sub.completed))
    return found
