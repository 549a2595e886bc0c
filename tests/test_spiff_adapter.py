"""engine.bpmn.spiff against the installed SpiffWorkflow: every internal the adapter uses,
exercised for real, so that an upgrade that moves one fails here, by name, first.
Also pins the FIELD-NOTES facts the engine relies on."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.migration.version_migration import MIGRATIONS
from SpiffWorkflow.task import Task, TaskState

from engine.bpmn import serializer, spiff
from engine.bpmn.parser import CityParser
from engine.bpmn.script_engine import SafeScriptEngine
from engine.bpmn.specs import CityServiceTask, use_engine_clock
from engine.bpmn.xml import load_xml
from engine.clock import ManualClock
from engine.runtime import state

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
        'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">'
        '<bpmn:process id="p" isExecutable="true">'
        '<bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>')
TAIL = ('<bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>'
        '<bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="middle"/>'
        '<bpmn:sequenceFlow id="f2" sourceRef="middle" targetRef="end"/>'
        '</bpmn:process></bpmn:definitions>')
TIMER = ('<bpmn:intermediateCatchEvent id="middle"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>'
         '<bpmn:timerEventDefinition><bpmn:timeDuration>"PT1H"</bpmn:timeDuration></bpmn:timerEventDefinition>'
         '</bpmn:intermediateCatchEvent>')
MULTI = ('<bpmn:userTask id="middle"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>'
         '<bpmn:multiInstanceLoopCharacteristics><bpmn:loopCardinality>2</bpmn:loopCardinality>'
         '</bpmn:multiInstanceLoopCharacteristics></bpmn:userTask>')
SERVICE = ('<bpmn:serviceTask id="middle" camunda:type="external" camunda:topic="notify">'
           '<bpmn:incoming>f1</bpmn:incoming>'
           '<bpmn:outgoing>f2</bpmn:outgoing></bpmn:serviceTask>')


@pytest.fixture
def clock():
    return ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc))


def _start(middle: str, clock, operation=None) -> tuple[BpmnWorkflow, object]:
    parser = CityParser()
    parser.add_bpmn_xml(load_xml(HEAD + middle + TAIL, "p.bpmn"), filename="p.bpmn")
    spec = parser.get_spec("p")
    use_engine_clock(spec)
    wf = BpmnWorkflow(spec)
    wf.script_engine = SafeScriptEngine(clock, operation)
    wf.do_engine_steps()
    return wf, spec


def _middle(wf) -> Task:
    return next(t for t in wf.get_tasks() if t.task_spec.name == "middle")


def _reload(text: str, spec, clock) -> BpmnWorkflow:
    wf = serializer.loads(text, spec)
    wf.script_engine = SafeScriptEngine(clock)
    return wf


# ---- the inventory -----------------------------------------------------------------------
def test_the_library_still_has_every_internal_the_adapter_uses():
    problems = spiff.library_problems()
    assert problems == [], "SpiffWorkflow upgrade broke engine/bpmn/spiff.py:\n" + "\n".join(problems)


def test_the_inventory_names_what_is_missing():
    problems = spiff.library_problems([(Task, "_no_such_method", ()), (Task, "_get_internal_data", ("key",)),
                                       (BpmnWorkflowSerializer, "migrate", ("dct",))])
    assert len(problems) == 2, problems
    assert problems[0] == "SpiffWorkflow.task.Task._no_such_method is gone"
    assert "Task._get_internal_data no longer takes key (takes self, name, default)" in problems[1]


def test_the_serializer_version_is_the_librarys_and_every_row_records_it(clock):
    assert spiff.SERIALIZER_VERSION == BpmnWorkflowSerializer().VERSION, \
        "SpiffWorkflow changed how its serializer version is declared (serializer.workflow.VERSION)"
    assert spiff.VERSION_KEY == "serializer_version"
    wf, _ = _start(TIMER, clock)
    stored = json.loads(serializer.dumps(wf))
    assert stored[spiff.VERSION_KEY] == spiff.SERIALIZER_VERSION
    assert "spec" not in stored and "subprocess_specs" not in stored, "the spec is stored by reference"


# ---- task internals and FIELD-NOTES facts -----------------------------------------------------
def test_a_timers_due_time_is_in_internal_data_and_survives_serialization(clock):
    wf, spec = _start(TIMER, clock)
    task = _middle(wf)
    due = (clock() + timedelta(hours=1)).isoformat()
    assert task.state == TaskState.WAITING
    assert task.internal_data.get("event_value") == due, \
        f"SpiffWorkflow no longer keeps a timer's due time under internal_data['event_value']: {task.internal_data}"
    assert spiff.timer_value(task) == due and not spiff.timer_fired(task)
    again = _reload(serializer.dumps(wf), spec, clock)
    assert spiff.timer_value(_middle(again)) == due
    assert state.scan(again).next_timer == clock() + timedelta(hours=1)


def test_timers_fire_only_through_refresh_timers_then_engine_steps(clock):
    wf, _ = _start(TIMER, clock)
    clock.advance(hours=2)
    wf.do_engine_steps()
    assert _middle(wf).state != TaskState.COMPLETED, "a timer fired without refresh_timers()"
    wf.refresh_timers()
    assert spiff.timer_fired(_middle(wf)), "refresh_timers() no longer marks the timer fired in internal data"
    wf.do_engine_steps()
    assert _middle(wf).state == TaskState.COMPLETED and wf.is_completed()


def test_set_and_mark_go_where_the_library_reads(clock):
    wf, _ = _start(TIMER, clock)
    task = _middle(wf)
    spiff.set_timer_value(task, (clock() - timedelta(minutes=1)).isoformat())   # due already
    wf.refresh_timers()
    wf.do_engine_steps()
    assert wf.is_completed(), "the timer did not read the value set through the adapter"


def test_a_deserialized_workflow_comes_back_with_the_library_default_engine(clock):
    wf, spec = _start(TIMER, clock)
    loaded = serializer.loads(serializer.dumps(wf), spec)
    assert type(loaded.script_engine) is PythonScriptEngine, \
        "a loaded workflow no longer has the library default engine: re-check CaseEngine.load"


def test_detach_makes_a_root(clock):
    wf, _ = _start(TIMER, clock)
    task = _middle(wf)
    assert task.parent is not None
    spiff.detach(task)
    assert task.parent is None and task.id in wf.tasks


def test_the_operation_hook_runs_when_the_library_runs_a_service_task(clock):
    calls = []
    wf, _ = _start(SERVICE, clock, lambda task, topic, params: calls.append((task.task_spec.name, topic)) or True)
    assert isinstance(_middle(wf).task_spec, CityServiceTask)
    assert calls == [("middle", "notify")], "the library no longer calls TaskSpec._execute for a service task"
    assert wf.is_completed()


# ---- the stored text ------------------------------------------------------------------------------
def _with_data(clock, data: dict) -> tuple[BpmnWorkflow, object]:
    wf, spec = _start(TIMER, clock)
    _middle(wf).data.update(data)
    return wf, spec


def test_stored_text_reads_back_exactly_whichever_encoder_wrote_it(clock):
    from enum import StrEnum

    class Kind(StrEnum):
        LEAK = "leak"
    data = {"text": "煤气 \u2028 \"quoted\" \\", "tenth": 0.1, "big_float": 1e16, "small": 5e-324, "neg": -0.0,
            "int64": 2 ** 63 - 1, "nested": [{"a": [1, 2.5, None, True]}], "empty": {}}
    for extra in ({}, {"beyond_64_bits": 2 ** 70}, {"subclass": Kind.LEAK}):   # (the last two: json writes them)
        wf, spec = _with_data(clock, {**data, **extra})
        text = serializer.dumps(wf)
        back = _reload(text, spec, clock)
        assert _middle(back).data == {**data, **{k: str(v) if isinstance(v, StrEnum) else v for k, v in extra.items()}}
        assert type(_middle(back).data.get("beyond_64_bits", 0)) is int
        assert serializer.dumps(back) == text


def test_a_row_holding_nan_or_infinity_is_written_back_as_it_was(clock):
    """Rows written before expressions refused them may hold NaN or Infinity (the standard
    library's json writes them); one read back is written by json again, never as null."""
    wf, spec = _with_data(clock, {"a": 1.25, "b": [2.75]})
    text = serializer.dumps(wf).replace("1.25", "NaN").replace("2.75", "-Infinity")
    back = _reload(text, spec, clock)
    again = serializer.dumps(back)
    assert '"a":NaN' in again and '"b":[-Infinity]' in again and again == text
    fresh, _ = _with_data(clock, {"a": 1.25})
    assert '"a":1.25' in serializer.dumps(fresh)


# ---- the library's logging when nobody listens -------------------------------------------------
class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def _listening(name: str, level: int | None):
    """Listen to a library logger at `level` (None: not at all) for the test; returns the
    records and an undo."""
    logger, handler = logging.getLogger(name), _Records()
    was_level, was_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(level if level is not None else logging.WARNING)

    def undo():
        logger.removeHandler(handler)
        logger.setLevel(was_level)
        logger.propagate = was_propagate
    return handler.records, undo


def _run_through(clock) -> tuple[list[tuple[str, str]], BpmnWorkflow]:
    wf, _ = _start(MULTI, clock)
    for task in wf.get_tasks(state=TaskState.READY, manual=True):
        task.run()
    wf.do_engine_steps()
    assert wf.is_completed()
    return [(t.task_spec.name, TaskState.get_name(t.state)) for t in wf.get_tasks()], wf


def test_state_changes_are_the_same_whether_or_not_the_library_logs(clock):
    assert spiff.quiet_library_logging() == [], \
        "the library's Task._set_state or Workflow.collect_log_extras changed: see engine/bpmn/spiff.py"
    records, undo = _listening("spiff.task", logging.INFO)
    workflow_records, undo_workflow = _listening("spiff.workflow", logging.INFO)
    try:
        logged, _ = _run_through(clock)
    finally:
        undo()
        undo_workflow()
    changes = [r for r in records if r.getMessage().startswith("State changed to ")]
    assert len(changes) > 10, "with spiff.task at INFO the library's own state-change records go out"
    assert {"task_spec", "state", "elapsed", "task_id"} <= set(vars(changes[0])), "with the library's extras"
    assert any(r.getMessage() == "Initialized workflow" and hasattr(r, "root") for r in workflow_records)

    quiet_records, undo = _listening("spiff.task", None)
    try:
        quiet, _ = _run_through(clock)
    finally:
        undo()
    assert quiet_records == [], "not listened to: no record built or sent"
    assert quiet == logged, "the same tasks end in the same states"


def test_a_state_change_marks_its_time_and_setting_the_same_state_does_not(clock):
    wf, _ = _start(TIMER, clock)
    task = _middle(wf)
    task.last_state_change = 0.0
    task._set_state(task.state)
    assert task.last_state_change == 0.0 and task.state == TaskState.WAITING
    before = time.time()
    task._set_state(TaskState.READY)
    assert task.state == TaskState.READY and before <= task.last_state_change <= time.time()


def test_a_quiet_form_is_left_out_over_library_code_it_was_not_written_for():
    class Library:
        def method(self):
            return "the library's"

    def ours(self):
        return "ours"
    quieted = [(Library, "method", Library.method, ours, "0" * 64)]
    assert spiff.quiet_library_logging(quieted) == [f"{__name__}.{Library.__qualname__}.method"]
    assert Library().method() == "the library's"


# ---- migration ------------------------------------------------------------------------------
def test_rows_without_a_version_load_as_written_by_3_2_0(clock):
    wf, spec = _start(TIMER, clock)
    stored = json.loads(serializer.dumps(wf))
    del stored[spiff.VERSION_KEY]
    loaded = _reload(json.dumps(stored), spec, clock)
    assert spiff.timer_value(_middle(loaded)) == spiff.timer_value(_middle(wf))
    assert serializer.dumps(loaded) == serializer.dumps(wf)


def test_an_older_version_goes_through_the_librarys_migration(clock):
    """Serializer 1.3 kept a reached multi-instance task WAITING; the library's 1.3 -> 1.4
    migration (update_mi_states) makes it STARTED. The stored dict has no spec: the
    migration reads the one lent by the adapter."""
    assert "1.3" in MIGRATIONS, "SpiffWorkflow dropped its 1.3 migration: pick another step for this test"
    wf, spec = _start(MULTI, clock)
    task = _middle(wf)
    assert task.state == TaskState.STARTED
    stored = json.loads(serializer.dumps(wf))
    stored["tasks"][str(task.id)]["state"] = TaskState.WAITING                  # as 1.3 wrote it
    as_written = dict(stored, **{spiff.VERSION_KEY: spiff.SERIALIZER_VERSION})   # control: no migration
    assert _middle(_reload(json.dumps(as_written), spec, clock)).state == TaskState.WAITING
    old = dict(stored, **{spiff.VERSION_KEY: "1.3"})
    migrated = _reload(json.dumps(old), spec, clock)
    assert _middle(migrated).state == TaskState.STARTED, "the library's 1.3 migration did not run"
    for child in (t for t in migrated.get_tasks(state=TaskState.READY) if t.parent is _middle(migrated)):
        child.run()
    migrated.do_engine_steps()
    assert migrated.is_completed()
    assert json.loads(serializer.dumps(migrated))[spiff.VERSION_KEY] == spiff.SERIALIZER_VERSION
    dct = dict(stored, **{spiff.VERSION_KEY: "1.3"})
    assert spiff.migrate(spiff.make_serializer(serializer.config()), dct, spec) == "1.3"
    assert not {"spec", "subprocess_specs", "VERSION", spiff.VERSION_KEY} & dct.keys(), "lent spec left behind"


def test_the_1_4_migration_runs_on_a_by_reference_row(clock):
    wf, spec = _start(TIMER, clock)
    stored = dict(json.loads(serializer.dumps(wf)), **{spiff.VERSION_KEY: "1.4"})
    loaded = _reload(json.dumps(stored), spec, clock)
    assert spiff.timer_value(_middle(loaded)) == spiff.timer_value(_middle(wf))


def test_a_row_from_a_newer_library_is_refused_loudly(clock):
    wf, spec = _start(TIMER, clock)
    stored = dict(json.loads(serializer.dumps(wf)), **{spiff.VERSION_KEY: "99.0"})
    with pytest.raises(spiff.StoredVersionError, match="99.0"):
        serializer.loads(json.dumps(stored), spec)
