"""Workflow state <-> JSON, with the process spec stored by reference.

The library's serializer writes the whole parsed spec into every instance (about half of
a small instance's bytes, and most of its load time). cityloop keeps specs in the
definition store, so an instance row holds only its task tree and data; loading takes
the already-parsed spec from the cache. `compact` drops finished history from the task
tree so that a step costs the same after 50 review loops as after one: the history is in
the audit log, not in the workflow.
"""
from __future__ import annotations

import json
import weakref

import orjson
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
)
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.task import TaskState

from engine.bpmn import spiff
from engine.bpmn.specs import ClockedCycle, ClockedDuration, ClockedTimeDate

__all__ = ["dumps", "loads", "compact", "config", "reference_serializer", "SERIALIZER_VERSION", "StoredVersionError"]

SERIALIZER_VERSION = spiff.SERIALIZER_VERSION   # written into every stored instance
StoredVersionError = spiff.StoredVersionError


def config() -> dict:
    """The class -> converter configuration of stored workflows (Camunda specs, clocked timers)."""
    result = dict(CAMUNDA_CONFIG)
    # Fired timer events are kept in workflow state; the clocked classes serialize as theirs.
    result[ClockedTimeDate] = result[TimeDateEventDefinition]
    result[ClockedDuration] = result[DurationTimerEventDefinition]
    result[ClockedCycle] = result[CycleTimerEventDefinition]
    return result


_SERIALIZER = spiff.make_serializer(config())


# Written with orjson (a work order's save: 59 -> 9 us for the text). What it writes reads back
# as the standard library's json wrote it, with two differences it does not show, so both are
# kept away from it: it writes a NaN or an infinity as null (task data holds none: what enters
# a process is check_plain'ed, expressions refuse such values, and a row written before that with
# one is written by json again, see `loads`), and it refuses, rather than writes, what json
# treats otherwise (an int beyond 64 bits, a str or int subclass, a lone surrogate, a date):
# those go to json, as before. Reading stays with json: orjson reads an int beyond 64 bits as a
# float.
_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | \
    orjson.OPT_PASSTHROUGH_DATACLASS
_NOT_FINITE: "weakref.WeakSet[BpmnWorkflow]" = weakref.WeakSet()   # loaded from text holding NaN or infinity


def dumps(workflow: BpmnWorkflow) -> str:
    value = spiff.workflow_to_dict(_SERIALIZER, workflow)
    if workflow not in _NOT_FINITE:
        try:
            return orjson.dumps(value, option=_ORJSON).decode()
        except TypeError:
            pass
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes, spec, subprocess_specs=None) -> BpmnWorkflow:
    """Restore a stored instance with its spec; an instance stored by an older SpiffWorkflow
    goes through the library's migrations first (see engine.bpmn.spiff)."""
    found: list[str] = []

    def constant(name: str) -> float:     # (json calls it only for NaN, Infinity and -Infinity)
        found.append(name)
        return float(name)
    workflow = spiff.workflow_from_dict(_SERIALIZER, json.loads(text, parse_constant=constant), spec,
                                        subprocess_specs)
    if found:
        _NOT_FINITE.add(workflow)
    return workflow


def reference_serializer() -> BpmnWorkflowSerializer:
    """The library's own serializer (spec inside), for comparison in benchmarks."""
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(dict(CAMUNDA_CONFIG)))


_FINISHED = TaskState.FINISHED_MASK


def compact(workflow: BpmnWorkflow) -> int:
    """Drop finished history: called processes that are done (their data went back to the
    caller), and in the instance's tree and each running sub-process's tree, every finished
    task above the deepest task that holds all unfinished ones. Returns the tasks dropped."""
    dropped = 0
    for task_id, sub in list(workflow.subprocesses.items()):
        caller = spiff.find_task(workflow, task_id)
        if sub.completed and (caller is None or caller.has_state(_FINISHED)):
            dropped += len(sub.tasks)
            del workflow.subprocesses[task_id]
    for wf in (workflow, *workflow.subprocesses.values()):
        dropped += _compact_tree(wf)
    return dropped


def _compact_tree(workflow) -> int:
    """Re-root one (sub-)workflow's task tree at the deepest task above every unfinished task.

    Finished ancestors above that point can never run again (the engine only looks at a
    task's own subtree and unfinished tasks), so they are dropped. Their data survives:
    the new root keeps its full data. A running sub-process's caller task is unfinished
    (started), so it is always kept."""
    live = [t for t in workflow.tasks.values() if not t.has_state(_FINISHED)]
    if not live:
        return 0
    # Walk down from the root while exactly one child subtree holds every live task.
    live_ids = {t.id for t in live}
    marked: dict = {}
    for t in live:  # count live descendants per ancestor
        node = t
        while node is not None:
            marked[node.id] = marked.get(node.id, 0) + 1
            node = node.parent
    total = len(live_ids)
    new_root = workflow.task_tree
    while new_root.id not in live_ids:
        children = [c for c in new_root.children if marked.get(c.id, 0)]
        if len(children) != 1 or marked[children[0].id] != total:
            break
        new_root = children[0]
    # Keep the old root's spec-level position only if something is dropped; stay on a
    # finished task so engine logic that looks one level up still finds a parent state.
    if new_root is workflow.task_tree or new_root.parent is None:
        return 0
    new_root = new_root.parent
    if new_root is workflow.task_tree:
        return 0
    keep: dict = {}
    stack = [new_root]
    while stack:
        node = stack.pop()
        keep[node.id] = node
        stack.extend(node.children)
    dropped = len(workflow.tasks) - len(keep)
    data = dict(new_root.data)
    spiff.detach(new_root)
    new_root.data = data
    workflow.task_tree = new_root
    workflow.tasks = keep
    if workflow.last_task is not None and workflow.last_task.id not in keep:
        workflow.last_task = None
    return dropped
