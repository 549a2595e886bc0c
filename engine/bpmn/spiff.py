"""The one place cityloop reaches into SpiffWorkflow's internals.

Everything here depends on something the library does not promise to keep: private methods
(``Task._get_internal_data``), internal data keys (a timer's due time under
``"event_value"``), converter internals (the by-reference workflow converter skips
``BpmnWorkflowConverter.to_dict`` and rebuilds ``from_dict`` from its parts), the
``TaskSpec._execute`` hook, the task-tree surgery a repeating timer needs (``Task._add_child``,
``TaskSpec._predict``/``_update``, ``Workflow._remove_task``), and the serializer's migration table. The rest of engine/
calls the functions below. tests/test_spiff_adapter.py exercises each against the
installed library, and `library_problems()` lists, by name, what an upgrade removed or
changed; run that test first after moving SpiffWorkflow.

Stored instances carry the library's serializer version (``serializer_version``, as the
library's own JSON does). Rows written before the marker existed were written by
SpiffWorkflow 3.2.0, whose serializer version is 1.5 (`UNMARKED_VERSION`). On load an older
version goes through the library's migration table (``BpmnWorkflowSerializer.migrate``).
The library's migrations read (and some rewrite) the spec inside the dict, which a
by-reference row does not hold: `migrate` puts the current spec, serialized by the
installed library, into the dict for the migration to read, and drops it afterwards.
What a migration changes in the task tree (states, data, internal data) is kept; what it
changes in the spec is not needed, because the spec is always parsed from the deployed XML
by the installed library. Migrations written for serializations older than 1.5 assume a
spec of their own era; cityloop never wrote those (its first rows are 1.5).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import time
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import (
    BpmnSubWorkflowConverter,
    BpmnWorkflowConverter,
    TaskConverter,
    WorkflowConverter,
)
from SpiffWorkflow.bpmn.serializer.migration.version_migration import MIGRATIONS
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SERIALIZER_VERSION
from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.util.subworkflow import BpmnSubWorkflow
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.specs.base import TaskSpec
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.deep_merge import DeepMerge
from SpiffWorkflow.util.task import TaskState
from SpiffWorkflow.workflow import Workflow

__all__ = ["SERIALIZER_VERSION", "VERSION_KEY", "UNMARKED_VERSION", "TIMER_VALUE", "TIMER_FIRED",
           "StoredVersionError", "OperationTaskSpec", "timer_value", "set_timer_value", "timer_fired",
           "mark_timer_fired", "find_task", "repeat_waiting", "refresh", "remove_subtree", "detach",
           "engine_steps", "ready_tasks",
           "make_serializer", "workflow_to_dict", "workflow_from_dict",
           "migrate", "quiet_library_logging",
           "library_problems"]

VERSION_KEY = BpmnWorkflowSerializer.VERSION_KEY     # "serializer_version"
UNMARKED_VERSION = "1.5"                              # what SpiffWorkflow 3.2.0 wrote, before the marker
TIMER_VALUE = "event_value"                           # internal data: a timer's due time (UTC ISO text)
TIMER_FIRED = "event_fired"                           # internal data: the timer has fired
_MIGRATION_LEFTOVERS = ("spec", "subprocess_specs", "VERSION")


class StoredVersionError(RuntimeError):
    """A stored workflow was written by a newer SpiffWorkflow than the one installed (a
    server problem: never a client's)."""


# ---- task internals ------------------------------------------------------------------
def timer_value(task: Task) -> Any:
    """The value a timer task stored when it started waiting (its due time), or None."""
    return task._get_internal_data(TIMER_VALUE)


def set_timer_value(task: Task, value: Any) -> None:
    task._set_internal_data(**{TIMER_VALUE: value})


def timer_fired(task: Task) -> bool:
    return bool(task._get_internal_data(TIMER_FIRED, False))


def mark_timer_fired(task: Task) -> None:
    task._set_internal_data(**{TIMER_FIRED: True})


def find_task(workflow, task_id: UUID) -> Task | None:
    """The task with `task_id` in a workflow or any of its sub-processes, or None (the
    library raises TaskNotFoundException instead)."""
    try:
        return workflow.get_task_from_id(task_id)
    except TaskNotFoundException:
        return None


def repeat_waiting(task: Task, timer: Any) -> Task:
    """A second task of `task`'s event beside it (same parent), holding `timer` as its due
    time, with its outgoing path predicted and itself brought up to date (waiting, and listed
    by the workflow's event manager): what the library's own cycle timer does at each firing."""
    again = task.parent._add_child(task.task_spec, TaskState.FUTURE)
    set_timer_value(again, timer)
    again.task_spec._predict(again, mask=TaskState.NOT_FINISHED_MASK)
    again.task_spec._update(again)
    return again


def refresh(task: Task) -> None:
    """Let a waiting task check again whether it may go on (the library's update hook)."""
    task.task_spec._update(task)


def remove_subtree(workflow, task: Task) -> None:
    """Take `task` and everything under it out of `workflow`'s task tree."""
    workflow._remove_task(task.id)


def detach(task: Task) -> None:
    """Make `task` a root: it forgets its parent (the caller re-roots the workflow on it)."""
    task.parent = None


class OperationTaskSpec(ServiceTask):
    """A service task whose work is `run_operation(task)`: the library calls the private
    ``_execute`` hook when the task runs; cityloop's specs implement the public method."""

    def run_operation(self, task: Task) -> Any:
        raise NotImplementedError

    def _execute(self, task):
        return self.run_operation(task)


# ---- engine steps -----------------------------------------------------------------------
_READY, _DESCEND, _FINISHED = TaskState.READY, TaskState.FUTURE, TaskState.FINISHED_MASK


def ready_tasks(workflow) -> list[Task]:
    """The READY tasks of a (sub-)workflow and of the processes it calls, in the order
    ``workflow.get_tasks(state=TaskState.READY)`` gives them (depth first, a called process's
    tree before the caller's children), found by one plain walk: the library's iterator is
    general (any filter, depth, breadth first) and cost about 3x more per pass (measured on a
    work order waiting at its rectify task: 113 vs 38 us). Like it, the walk goes below a task
    only when it is at least FUTURE (nothing definite grows under a predicted task), or when
    the task calls a process, and into that process unless the call is finished."""
    subprocesses = workflow.top_workflow.subprocesses
    found: list[Task] = []
    stack = [workflow.task_tree]
    while stack:
        task = stack.pop()
        state = task._state
        if state & _READY:
            found.append(task)
        called = subprocesses.get(task.id)
        if called is None and not (task._children and state >= _DESCEND):
            continue
        below = [called.task_tree] if called is not None and state < _FINISHED else []
        tasks = task.workflow.tasks
        below += [child for child in map(tasks.get, task._children) if child is not None]
        stack.extend(reversed(below))
    return found


def engine_steps(workflow: BpmnWorkflow) -> None:
    """``BpmnWorkflow.do_engine_steps()`` (no callbacks), its passes finding ready tasks with
    `ready_tasks`: the same passes in the same order (the deepest running called process
    first, each until nothing more runs, then its caller's task is updated; then the
    instance's own tree), repeated while a pass ran something or called a new process; then
    the timers are refreshed. tests/test_spiff_adapter.py runs both on twin workflows."""
    while _engine_pass(workflow):
        pass
    workflow.refresh_timers()


def _run_ready(workflow) -> int:
    ran = 0
    for task in ready_tasks(workflow):
        if not task.task_spec.manual:
            task.run()
            ran += 1
    return ran


def _engine_pass(workflow: BpmnWorkflow) -> bool:
    active = workflow.get_active_subprocesses()
    for called in sorted(active, key=lambda sub: sub.depth, reverse=True):
        while _run_ready(called):
            pass
        if called.parent_task_id is not None:
            caller = workflow.get_task_from_id(called.parent_task_id)
            caller.task_spec._update(caller)
    ran = _run_ready(workflow)
    return ran > 0 or len(workflow.get_active_subprocesses()) > len(active)


# ---- serialization, spec by reference --------------------------------------------------
# A task id's text, kept: a save writes each id about three times (as a key, as the task's id,
# as its parent's child or its child's parent), and UUID.__str__ was the top line of a save's
# profile. (Ids are immutable; 65536 of them are a few MB.)
_id_text = functools.lru_cache(maxsize=1 << 16)(str)
_id_of = functools.lru_cache(maxsize=1 << 16)(UUID)     # (the text's UUID: parsed once, validated)


class _TaskToDict(TaskConverter):
    """The library's task converter, writing the same dict (tests/test_engine_steps.py compares
    them on every round of every bundled and corpus process) with less work: the parent looked
    up once (the library reads the ``parent`` property four times), ids' text kept
    (`_id_text`), empty internal data not walked. Measured on a work order at its rectify task:
    a save's to_dict 589 -> 446 us.

    Reading back, it builds the tasks the library's would (the same test compares them) with
    ids parsed once per text (`_id_of`) and task data taken as stored, where the library walks
    every value for a typed object to restore: there is none, `to_dict` writes data
    unconverted and the engine admits only plain JSON into a workflow (no "typename" keys:
    engine.runtime.data). Measured on a work order at its rectify task: loads 267 -> 132 us."""

    def to_dict(self, task):
        parent = task.workflow.tasks.get(task._parent)
        if parent is None:      # (the root: its data whole, no delta)
            data, delta = task.data, {}
        else:
            data, delta = {}, {"updates": DeepMerge.get_updated_keys(parent.data, task.data),
                               "deletions": DeepMerge.get_deleted_keys(parent.data, task.data)}
        internal = task.internal_data
        return {"id": _id_text(task.id), "parent": _id_text(task._parent) if parent is not None else None,
                "children": [_id_text(child) for child in task._children],
                "last_state_change": task.last_state_change, "state": task._state, "task_spec": task.task_spec.name,
                "triggered": task.triggered, "internal_data": self.registry.convert(internal) if internal else {},
                "data": data, "delta": delta}

    def from_dict(self, dct, workflow):
        task_spec = workflow.spec.task_specs.get(dct["task_spec"])
        task = self.target_class(workflow, task_spec, state=dct["state"], id=_id_of(dct["id"]))
        parent_id = dct["parent"]
        task._parent = _id_of(parent_id) if parent_id is not None else None
        task._children = [_id_of(child) for child in dct["children"]]
        task.last_state_change = dct["last_state_change"]
        task.triggered = dct["triggered"]
        internal = dct["internal_data"]
        task.internal_data = self.registry.restore(internal) if internal else {}
        if isinstance(task_spec, CatchingEvent) and task.has_state(TaskState.WAITING):
            workflow.top_workflow.event_manager.add_task(task)
        delta = dct.get("delta")
        parent = workflow.tasks.get(task._parent) if delta else None
        if parent is not None:
            data = DeepMerge.merge({}, parent.data)
            data.update(delta.get("updates", {}))
            for key in delta.get("deletions", ()):
                data.pop(key, None)
        else:
            data = dct["data"]
        task.data = data
        return task


def _tasks_from_dict(registry, tasks: dict, workflow) -> dict:
    """A (sub-)workflow's tasks, in stored order (a parent before its children)."""
    restore = registry.convert_from_dict
    return {_id_of(k): restore[v["typename"]](v, workflow=workflow) for k, v in tasks.items()}


class _SubWorkflowConverter(BpmnSubWorkflowConverter):
    """The library's called-process converter, its tasks read as the instance's are."""

    def from_dict(self, dct, task, top_workflow):
        spec = top_workflow.subprocess_specs.get(task.task_spec.spec)
        subprocess = self.target_class(spec, task.id, top_workflow, deserializing=True)
        subprocess.tasks = _tasks_from_dict(self.registry, dct["tasks"], subprocess)
        subprocess.task_tree = subprocess.tasks.get(_id_of(dct["root"]))
        self.set_default_attributes(subprocess, dct)
        return subprocess


class _SpecByReferenceConverter(BpmnWorkflowConverter):
    """The library's workflow converter without the spec: it is taken from the definition store."""

    def mapping_to_dict(self, mapping, **kwargs):
        return {_id_text(k): self.registry.convert(v, **kwargs) for k, v in mapping.items()}

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)     # the base: tasks, data, root...
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        if spec is None:
            raise StoredVersionError("a stored instance needs its spec from the definition store")
        workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
        workflow.tasks = _tasks_from_dict(self.registry, dct["tasks"], workflow)
        workflow.task_tree = workflow.tasks.get(_id_of(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def make_serializer(config: dict) -> BpmnWorkflowSerializer:
    """A serializer for `config` (class -> converter) that stores workflows without their spec."""
    config = dict(config)
    config[BpmnWorkflow] = _SpecByReferenceConverter
    config[Task] = _TaskToDict
    config[BpmnSubWorkflow] = _SubWorkflowConverter
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


def workflow_to_dict(serializer: BpmnWorkflowSerializer, workflow: BpmnWorkflow) -> dict:
    dct = serializer.to_dict(workflow)
    dct[VERSION_KEY] = serializer.VERSION
    return dct


def workflow_from_dict(serializer: BpmnWorkflowSerializer, dct: dict, spec, subprocess_specs=None) -> BpmnWorkflow:
    migrate(serializer, dct, spec, subprocess_specs)
    return serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs)


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        raise StoredVersionError(f"stored workflow has an unreadable serializer version {text!r}") from None


def migrate(serializer: BpmnWorkflowSerializer, dct: dict, spec, subprocess_specs=None) -> str:
    """Bring a stored by-reference workflow dict up to the installed serializer version, in
    place, through the library's migrations. Returns the version it was stored with."""
    stored = dct.pop(VERSION_KEY, None) or UNMARKED_VERSION
    if stored == serializer.VERSION:
        return stored
    if _version(stored) > _version(serializer.VERSION):
        raise StoredVersionError(f"stored workflow was written with serializer version {stored}; the installed "
                                 f"SpiffWorkflow writes {serializer.VERSION} and cannot read it")
    # The migrations read the spec inside the dict: lend them the current one.
    dct["spec"] = serializer.registry.convert(spec)
    dct["subprocess_specs"] = {str(k): serializer.registry.convert(v) for k, v in (subprocess_specs or {}).items()}
    dct[VERSION_KEY] = stored
    try:
        serializer.migrate(dct)                               # MIGRATIONS[stored](dct), the library's way
    finally:
        for key in _MIGRATION_LEFTOVERS:
            dct.pop(key, None)
    return stored


# ---- the library's logging, when nobody listens -------------------------------------------
# SpiffWorkflow builds each log record's text and extras before calling the logger, so a state
# change costs a TaskState.get_name (a dict built per call) and a Task.collect_log_extras (and a
# workflow's a list of all its tasks, while its logger's level is NOTSET) even when the record
# is dropped: about 5% of a step's CPU (py-spy, bench lifecycle on SQLite). While the logger is
# not enabled for INFO (so neither of its INFO nor DEBUG records would be emitted) these do the
# same without building them; once it is, they are the library's own. Installed only over the
# library code they were written against (its source's digest below): another version keeps
# its own, and library_problems() names what changed.
_TASK_LOG, _WORKFLOW_LOG = logging.getLogger("spiff.task"), logging.getLogger("spiff.workflow")
_library_set_state = Task._set_state
_library_workflow_extras = Workflow.collect_log_extras


def _set_state(self, value: int) -> None:
    if _TASK_LOG.isEnabledFor(logging.INFO):
        return _library_set_state(self, value)
    if value != self.state:
        self.last_state_change = time.time()
        self._state = value
    return None


def _workflow_extras(self, dct: dict | None = None) -> dict:
    if _WORKFLOW_LOG.isEnabledFor(logging.INFO):
        return _library_workflow_extras(self, dct)
    return dct or {}


# (owner, attribute, the library's function, ours, sha256 of the library function's source)
_QUIETED = [
    (Task, "_set_state", _library_set_state, _set_state,
     "86c4c1d22dc9b70f0db4602e89b186aaddfb37f400116cf4773b943b021e40ac"),
    (Workflow, "collect_log_extras", _library_workflow_extras, _workflow_extras,
     "888ba42a9b91ba27132db444c29a38eb30bfb5f8bd922456893221ba62fc7649"),
]


def _digest(fn) -> str:
    try:
        return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
    except (OSError, TypeError):
        return "no source"


def _unlike_the_library(quieted=None) -> list[str]:
    """Which of `quieted` (default: ours) no longer match the library's code, by name."""
    return [f"{owner.__module__}.{owner.__qualname__}.{attr}" for owner, attr, theirs, _ours, digest
            in (_QUIETED if quieted is None else quieted) if _digest(theirs) != digest]


def quiet_library_logging(quieted=None) -> list[str]:
    """Put the quiet forms in the library's place (idempotent), each only over the library
    code it was written against; returns the names of those left as the library has them."""
    entries = _QUIETED if quieted is None else quieted
    left = _unlike_the_library(entries)
    for owner, attr, _theirs, ours, _known in entries:
        if f"{owner.__module__}.{owner.__qualname__}.{attr}" not in left:
            setattr(owner, attr, ours)
    return left


quiet_library_logging()


# ---- what the above needs from the library -------------------------------------------------
_NEEDED: list[tuple[object, str, tuple[str, ...]]] = [
    # (owner, attribute, parameter names it must accept)
    (Task, "_get_internal_data", ("name", "default")),
    (Task, "_set_internal_data", ()),
    (Task, "parent", ()),
    (Task, "_add_child", ("task_spec", "state")),
    (TaskSpec, "_predict", ("my_task", "mask")),
    (TaskSpec, "_update", ("my_task",)),
    (Workflow, "_remove_task", ("task_id",)),
    (ServiceTask, "_execute", ("task",)),
    (WorkflowConverter, "to_dict", ("workflow",)),
    (TaskConverter, "to_dict", ("task",)),
    (TaskConverter, "from_dict", ("dct", "workflow")),
    (BpmnSubWorkflowConverter, "from_dict", ("dct", "task", "top_workflow")),
    (BpmnSubWorkflowConverter, "set_default_attributes", ("workflow", "dct")),
    (Task, "__init__", ("workflow", "task_spec", "parent", "state", "id")),
    (DeepMerge, "merge", ("a", "b")),
    (DeepMerge, "get_updated_keys", ()),
    (DeepMerge, "get_deleted_keys", ()),
    (BpmnWorkflowConverter, "mapping_to_dict", ("mapping",)),
    (BpmnWorkflowConverter, "mapping_from_dict", ("mapping", "key_class")),
    (BpmnWorkflowConverter, "set_default_attributes", ("workflow", "dct")),
    (BpmnWorkflowConverter, "subprocesses_from_dict", ("dct", "workflow")),
    (BpmnWorkflowSerializer, "migrate", ("dct",)),
    (BpmnWorkflowSerializer, "configure", ("config", "registry")),
    (BpmnWorkflow, "__init__", ("spec", "subprocess_specs")),
    # engine_steps: what BpmnWorkflow.do_engine_steps is made of
    (BpmnWorkflow, "get_active_subprocesses", ()),
    (BpmnWorkflow, "get_task_from_id", ("task_id",)),
    (BpmnWorkflow, "refresh_timers", ()),
    (BpmnWorkflow, "top_workflow", ()),
    (Task, "state", ()),        # (a property over _state, which ready_tasks reads)
    (Task, "run", ()),
]


def library_problems(needed: list[tuple[object, str, tuple[str, ...]]] | None = None) -> list[str]:
    """What the installed SpiffWorkflow lacks of what this module uses (empty when all is
    there); `needed` replaces the built-in list of (owner, attribute, parameter names)."""
    problems = []
    for owner, attr, params in _NEEDED if needed is None else needed:
        where = f"{owner.__module__}.{owner.__qualname__}.{attr}"
        found = inspect.getattr_static(owner, attr, None)
        if found is None:
            problems.append(f"{where} is gone")
            continue
        if params:
            fn = found.__func__ if isinstance(found, (staticmethod, classmethod)) else found
            try:
                names = inspect.signature(fn).parameters
            except (TypeError, ValueError):
                problems.append(f"{where} has no readable signature")
                continue
            missing = [p for p in params if p not in names]
            if missing:
                problems.append(f"{where} no longer takes {', '.join(missing)} (takes {', '.join(names)})")
    problems += [f"{name} changed: review its quiet form in engine/bpmn/spiff.py (left out meanwhile)"
                 for name in _unlike_the_library()]
    if not isinstance(VERSION_KEY, str) or not VERSION_KEY:
        problems.append("BpmnWorkflowSerializer.VERSION_KEY is gone")
    if not isinstance(MIGRATIONS, dict):
        problems.append("SpiffWorkflow.bpmn.serializer.migration.version_migration.MIGRATIONS is not a dict")
    elif any(_version(v) >= _version(SERIALIZER_VERSION) for v in MIGRATIONS):
        problems.append(f"MIGRATIONS has an entry for {SERIALIZER_VERSION} or later: the version scheme changed")
    if _version(UNMARKED_VERSION) > _version(SERIALIZER_VERSION):
        problems.append(f"the installed serializer ({SERIALIZER_VERSION}) is older than 3.2.0's ({UNMARKED_VERSION})")
    return problems
