"""The reference way of persisting a SpiffWorkflow instance, for comparison with cityloop.

This is what the library's documentation suggests: the stock `BpmnWorkflowSerializer`
(Camunda config), the whole workflow *including its spec* dumped to JSON after every
step, stored in one row of a plain two-column table, and deserialized again (with the
script engine replaced) before the next step. No side tables, no audit, no domain rows.

cityloop's custom task specs and clocked timers are unknown to the stock serializer, so
this module registers converters for them, built from the library's own converters.
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, Callable

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.event_definition import TimerConditionalEventDefinitionConverter
from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter, SubWorkflowConverter
from SpiffWorkflow.camunda.serializer.task_spec import UserTaskConverter
from SpiffWorkflow.task import TaskState
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, select, update
from sqlalchemy.engine import Engine

from engine.bpmn.calls import CityCallActivity, Mapping
from engine.bpmn.script_engine import SafeScriptEngine
from engine.bpmn.serializer import reference_serializer as _stock_serializer
from engine.bpmn.specs import CityServiceTask, CityUserTask, ClockedDuration, ClockedTimeDate

# ---- converters for cityloop's specs ------------------------------------------------------


class CityUserTaskConverter(UserTaskConverter):
    """Camunda user task + cityloop's assignment attributes."""

    def to_dict(self, spec):
        dct = super().to_dict(spec)
        dct["assignee"] = spec.assignee
        dct["candidate_groups"] = list(spec.candidate_groups)
        dct["due_date"] = spec.due_date
        dct["form_ref"] = spec.form_ref
        return dct


class CityServiceTaskConverter(BpmnTaskSpecConverter):
    """Default BPMN task spec + the operation topic and its parameters."""

    def to_dict(self, spec):
        dct = self.get_default_attributes(spec)
        dct["topic"] = spec.topic
        dct["params"] = dict(spec.params)
        return dct


class CityCallActivityConverter(SubWorkflowConverter):
    """Call activity + its Camunda in/out mappings."""

    def to_dict(self, spec):
        dct = super().to_dict(spec)
        dct["in_mappings"] = [asdict(m) for m in spec.in_mappings]
        dct["out_mappings"] = [asdict(m) for m in spec.out_mappings]
        return dct

    def from_dict(self, dct):
        dct["in_mappings"] = [Mapping(**m) for m in dct.get("in_mappings", [])]
        dct["out_mappings"] = [Mapping(**m) for m in dct.get("out_mappings", [])]
        return super().from_dict(dct)


def reference_serializer() -> BpmnWorkflowSerializer:
    """engine.bpmn.serializer.reference_serializer() plus converters for cityloop's specs."""
    ser = _stock_serializer()
    CityUserTaskConverter(CityUserTask, ser.registry)
    CityServiceTaskConverter(CityServiceTask, ser.registry)
    CityCallActivityConverter(CityCallActivity, ser.registry)
    TimerConditionalEventDefinitionConverter(ClockedTimeDate, ser.registry)
    TimerConditionalEventDefinitionConverter(ClockedDuration, ser.registry)
    return ser


# ---- stub operations ----------------------------------------------------------------------


def stub_operations(clock: Callable[[], datetime]) -> Callable[..., Any]:
    """What cityloop's registry would do to the *workflow data* (not the database):
    dispatch sets `unit` and `sla_due`; the other operations return nothing."""

    def call_operation(task, topic: str, params) -> Any:
        if topic == "dispatch":
            hours = task.data.get("sla_hours") or 72
            task.data.update({"sla_due": (clock() + timedelta(hours=hours)).isoformat(),
                              "unit": task.data["unit"]})
        elif topic not in ("escalate", "reject_order", "close_order"):
            raise ValueError(f"unknown operation {topic!r}")
        return True

    return call_operation


# ---- storage: one row of JSON per instance ---------------------------------------------------

META = MetaData()
REF_TABLE = Table("bench_reference_workflow", META,
                  Column("id", Integer, primary_key=True, autoincrement=True),
                  Column("json", Text, nullable=False))


class ReferenceStore:
    """Start/step/load with the stock serializer, one transaction per step."""

    def __init__(self, db: Engine, spec, subprocess_specs, clock: Callable[[], datetime]):
        self.db = db
        self.spec = spec
        self.subprocess_specs = subprocess_specs
        self.clock = clock
        self.serializer = reference_serializer()
        self.call_operation = stub_operations(clock)
        META.create_all(db)

    def _engine(self) -> SafeScriptEngine:
        return SafeScriptEngine(self.clock, self.call_operation)

    def start(self, data: dict) -> tuple[int, int]:
        """New instance from the shared parsed spec, run to its first wait, insert. -> (id, bytes)"""
        with self.db.begin() as conn:
            wf = BpmnWorkflow(self.spec, self.subprocess_specs)
            wf.script_engine = self._engine()
            for t in wf.get_tasks(state=TaskState.READY):
                t.data.update(data)
            wf.do_engine_steps()
            text = self.serializer.serialize_json(wf)
            row_id = conn.execute(insert(REF_TABLE).values(json=text)).inserted_primary_key[0]
            return row_id, len(text)

    def load(self, conn, row_id: int) -> BpmnWorkflow:
        text = conn.execute(select(REF_TABLE.c.json).where(REF_TABLE.c.id == row_id)).scalar_one()
        wf = self.serializer.deserialize_json(text)
        wf.script_engine = self._engine()  # the deserialized one is the eval-based default
        return wf

    def complete(self, row_id: int, task_name: str, form: dict) -> tuple[bool, int]:
        """Load, complete the ready user task named `task_name`, run, dump, update.
        -> (workflow completed?, stored bytes)"""
        with self.db.begin() as conn:
            wf = self.load(conn, row_id)
            ready = [t for t in wf.get_tasks(state=TaskState.READY)
                     if isinstance(t.task_spec, CityUserTask) and t.task_spec.bpmn_id == task_name]
            if len(ready) != 1:
                raise RuntimeError(f"expected one ready {task_name}, found {len(ready)}")
            task = ready[0]
            task.data.update(form)
            task.run()
            wf.do_engine_steps()
            text = self.serializer.serialize_json(wf)
            conn.execute(update(REF_TABLE).where(REF_TABLE.c.id == row_id).values(json=text))
            return wf.is_completed(), len(text)

    def ready_task_name(self, row_id: int) -> str | None:
        with self.db.begin() as conn:
            wf = self.load(conn, row_id)
        names = [t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.READY)
                 if isinstance(t.task_spec, CityUserTask)]
        return names[0] if names else None


# ---- in memory: the floor under both storage layers ------------------------------------------


def memory_lifecycle(spec, subprocess_specs, clock, data: dict, steps: list[tuple[str, dict]], mode: str) -> float:
    """One lifecycle without a database; returns seconds.

    mode "run": SpiffWorkflow only, the workflow object stays in memory.
    mode "cityloop": + cityloop's serializer (spec by reference, compact) dump/load around every step.
    mode "reference": + the stock serializer (spec inside) dump/load around every step."""
    import time

    from engine.bpmn import serializer as city

    ref = reference_serializer() if mode == "reference" else None
    call_operation = stub_operations(clock)

    def dump(wf):
        if mode == "cityloop":
            city.compact(wf)
            return city.dumps(wf)
        return ref.serialize_json(wf) if mode == "reference" else wf

    def load(saved):
        if mode == "cityloop":
            wf = city.loads(saved, spec, subprocess_specs)
        elif mode == "reference":
            wf = ref.deserialize_json(saved)
        else:
            return saved
        wf.script_engine = SafeScriptEngine(clock, call_operation)
        return wf

    began = time.perf_counter()
    wf = BpmnWorkflow(spec, subprocess_specs)
    wf.script_engine = SafeScriptEngine(clock, call_operation)
    for t in wf.get_tasks(state=TaskState.READY):
        t.data.update(data)
    wf.do_engine_steps()
    saved = dump(wf)
    for task_name, form in steps:
        wf = load(saved)
        task = next(t for t in wf.get_tasks(state=TaskState.READY)
                    if isinstance(t.task_spec, CityUserTask) and t.task_spec.bpmn_id == task_name)
        task.data.update(form)
        task.run()
        wf.do_engine_steps()
        saved = dump(wf)
    if not wf.is_completed():
        raise RuntimeError(f"in-memory {mode} lifecycle did not complete")
    return time.perf_counter() - began

