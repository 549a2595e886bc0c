"""Reading a workflow's position: ready human tasks, pending timers, awaited messages."""
from __future__ import annotations

from datetime import datetime

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.task import TaskState

from engine.bpmn.specs import CityUserTask


def ready_user_tasks(wf) -> list:
    return [t for t in wf.get_tasks(state=TaskState.READY) if isinstance(t.task_spec, CityUserTask)]


def _definitions(task) -> list:
    ed = getattr(task.task_spec, "event_definition", None)
    if ed is None:
        return []
    if isinstance(ed, MultipleEventDefinition):
        return list(ed.event_definitions)
    return [ed]


def waiting_tasks(wf) -> list:
    return wf.get_tasks(state=TaskState.WAITING)


def timer_due(task) -> datetime | None:
    """When a waiting timer task is due (None if it is not a timer, or not armed yet)."""
    if not any(isinstance(d, TimerEventDefinition) for d in _definitions(task)):
        return None
    value = task._get_internal_data("event_value")
    if value is None:
        return None
    try:
        due = TimerEventDefinition.parse_time_or_duration(value)
    except Exception:
        return None
    return due if isinstance(due, datetime) else None


def next_timer(wf) -> datetime | None:
    dues = [d for d in (timer_due(t) for t in waiting_tasks(wf)) if d is not None]
    return min(dues) if dues else None


def armed_timers(wf) -> dict:
    """task id -> (element id, due) for every waiting timer."""
    out = {}
    for t in waiting_tasks(wf):
        due = timer_due(t)
        if due is not None:
            out[t.id] = (t.task_spec.bpmn_id or t.task_spec.name, due)
    return out


def awaited_messages(wf) -> set[str]:
    names = set()
    for t in waiting_tasks(wf):
        for d in _definitions(t):
            if isinstance(d, MessageEventDefinition):
                names.add(d.name)
    return names


def position(wf) -> list[dict]:
    """Where an instance stands: each ready or waiting element."""
    out = []
    for t in wf.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.STARTED):
        spec = t.task_spec
        bpmn_id = getattr(spec, "bpmn_id", None)
        if not bpmn_id:
            continue
        out.append({"element": bpmn_id, "name": getattr(spec, "bpmn_name", None) or bpmn_id,
                    "state": TaskState.get_name(t.state), "task_id": str(t.id)})
    return out


def snapshot(wf) -> tuple[frozenset[str], frozenset[str]]:
    """(ready user-task ids, awaited message names): what the side tables hold for this
    workflow version, so a step can diff them without reading them back."""
    return frozenset(str(t.id) for t in ready_user_tasks(wf)), frozenset(awaited_messages(wf))
