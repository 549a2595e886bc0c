"""engine.bpmn.spiff.engine_steps against the library's own BpmnWorkflow.do_engine_steps, and
cityloop's stored form of a workflow against the library's own serializer.

The engine takes its steps with `engine_steps`, which finds each pass's ready tasks with one
plain walk of the task tree (`ready_tasks`) instead of the library's general iterator. Here
twin workflows of every bundled process and of every process of the BPMN corpus that deploys
are driven side by side, one by the library and one by cityloop, through user tasks, loops,
called processes, boundary and intermediate timers (the clock moves on between rounds), and
the two must stand exactly alike after every round: the same tasks in the same tree order,
in the same states, with the same data, or the same error. After every round the workflow is
also written by cityloop's serializer (engine.bpmn.serializer: spec by reference, its own task
converter) and by the library's stock one: apart from the spec the stock one carries, the two
must be the same."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.task import TaskState
from sqlmodel import Session

from engine.bpmn import serializer, spiff
from engine.bpmn.script_engine import SafeScriptEngine
from engine.clock import ManualClock
from engine.runtime.errors import Actor
from engine.system import WORKFLOWS, build
from tests.conftest import START

CORPUS = Path(__file__).parent / "bpmn_corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text(encoding="utf-8"))
DESIGNER = Actor("designer1", {"designer"})
ROUNDS = 12
# what a person enters, for the gateways after the bundled processes' user tasks
FORM = {"action": "fixed", "decision": "reject", "reason": "again", "after_photos": [], "unit": "roads",
        "valve_leak_test": "leak", "hose_ok": "yes", "co_alarm": "yes", "ventilation": "yes",
        "stove_flameout_protection": "yes", "approved": True}
# the data each bundled process is started with (as engine.domain starts it)
BUNDLED_START = {
    "work_order": {"order_id": 1, "category": "exposed_garbage", "area": "dongcheng", "source": "citizen",
                   "description": "bags", "reported_at": START.isoformat()},
    "rectification": {"order_id": 1, "order_no": "WO-1", "unit": "clean-east",
                      "sla_due": (START + timedelta(hours=72)).isoformat()},
    "gas_inspection": {"household_id": 1, "address_code": "A-1", "deliverer": "d1", "trigger": "delivery"},
    "crew_attendance": {"crew_id": "c1", "shift_id": 1, "shift_start": START.isoformat(),
                        "grace_end": (START + timedelta(minutes=15)).isoformat(), "roster": ["a", "b"]},
}
# what the bundled operations hand back to the process (the rest return nothing)
RESULTS = {"dispatch": {"unit": "clean-east", "sla_due": (START + timedelta(hours=72)).isoformat()},
           "assess_checklist": {"cylinder_expired": False}, "close_shift": {"absentees": ["b"]},
           "open_rectification_order": {"order_id": 2, "rectification_order": "WO-2", "category": "gas_hazard",
                                        "area": "dongcheng"}}


def operation(task, topic: str, params) -> bool:
    task.data.update(RESULTS.get(topic, {}))
    return True


def start_data(label: str) -> dict:
    where, key = label.split(":", 1)
    if where == "bundled":
        return dict(BUNDLED_START[key])
    entry = MANIFEST["files"][where]
    return dict(entry.get("processes", {}).get(key, {}).get("start", entry["start"]))


@pytest.fixture(scope="module")
def specs(module_db_url):
    """(label, spec, called specs) of every executable process deployed: the bundled ones and
    the corpus's (its support files first, as a designer deploys them)."""
    engine = build(module_db_url, clock=ManualClock(START))
    engine.deploy([(n, (CORPUS / n).read_bytes()) for n in MANIFEST["support"]], DESIGNER)
    ids: dict[str, int] = {}
    for name, entry in sorted(MANIFEST["files"].items()):
        if entry["expect"] != "accept" or "generated" in entry:
            continue
        try:
            deployed = engine.deploy([(name, (CORPUS / name).read_bytes())], DESIGNER)
        except Exception:       # (judged by tests/test_bpmn_corpus.py; here only what deploys)
            continue
        ids.update({f"{name}:{d.key}": d.definition_id for d in deployed if d.kind == "bpmn"})
    with Session(engine.db) as s:
        for path in sorted((WORKFLOWS / "bpmn").glob("*.bpmn")):
            key = path.stem
            ids[f"bundled:{key}"] = engine.definitions.latest_process(s, key)[0]
        found = [(label, *engine.definitions.spec(s, definition_id)) for label, definition_id in sorted(ids.items())]
    engine.db.dispose()
    return found


def _stands(wf: BpmnWorkflow) -> list:
    """Every task of the instance and its called processes, in the library's tree order."""
    return [(t.task_spec.name, TaskState.get_name(t.state), json.dumps(t.data, sort_keys=True, default=str))
            for t in wf.get_tasks()]


def _step(wf: BpmnWorkflow, ours: bool) -> str | None:
    try:
        spiff.engine_steps(wf) if ours else wf.do_engine_steps()
    except Exception as exc:    # (the same failure must come out of both)
        return type(exc).__name__
    return None


# the library's serializer with its own converters (spec inside), for the classes cityloop stores
STOCK = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(serializer.config()))


class _LibraryReading(BpmnWorkflowConverter):
    """The library's BpmnWorkflowConverter.from_dict on a spec given instead of one restored from
    the dict (the library's parser output is what both sides run): its own task and called-
    process converters read the task tree."""

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


LIBRARY_READING = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure({**serializer.config(),
                                                                          BpmnWorkflow: _LibraryReading}))


def _stored_as_the_library_stores_it(wf: BpmnWorkflow) -> None:
    text = serializer.dumps(wf)
    ours = json.loads(text)
    ours.pop(spiff.VERSION_KEY)
    theirs = STOCK.to_dict(wf)
    del theirs["spec"], theirs["subprocess_specs"]
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True, default=str)
    _read_back_as_the_library_reads_it(wf, text)


def _tree(wf: BpmnWorkflow) -> list:
    """What a loaded workflow is made of beyond `_stands`: ids, links, flags, internal data,
    and where its last task, waiting events and called processes are."""
    every = [wf, *wf.subprocesses.values()]
    return [
        [(str(t.id), str(t._parent), [str(c) for c in t._children], t.triggered, t.last_state_change,
          json.dumps(STOCK.registry.convert(t.internal_data), sort_keys=True, default=str), t.workflow is w,
          type(t.id).__name__)
         for t in w.tasks.values()] + [str(w.task_tree.id), str(w.last_task.id) if w.last_task else None,
                                       json.dumps(w.data, sort_keys=True), w.success, w.completed]
        for w in every
    ] + [sorted(str(k) for k in wf.event_manager.tasks), sorted(str(k) for k in wf.subprocesses),
         [wf.subprocesses[k].parent_task_id == k for k in wf.subprocesses]]


def _read_back_as_the_library_reads_it(wf: BpmnWorkflow, text: str) -> None:
    """cityloop's reading of what it stored (engine.bpmn.serializer.loads) against the library's
    reading of what the library stores: the same workflow."""
    ours = serializer.loads(text, wf.spec, wf.subprocess_specs)
    stored = STOCK.to_dict(wf)
    del stored["spec"], stored["subprocess_specs"]
    theirs = LIBRARY_READING.from_dict(stored, spec=wf.spec, subprocess_specs=wf.subprocess_specs)
    assert _stands(ours) == _stands(theirs) == _stands(wf)
    assert _tree(ours) == _tree(theirs)


def test_the_specs_cover_what_engine_steps_must_handle(specs):
    labels = [label for label, *_ in specs]
    assert len(labels) >= 40, labels
    assert {"bundled:work_order", "bundled:rectification", "bundled:gas_inspection",
            "bundled:crew_attendance"} <= set(labels)
    assert any(called for _, _, called in specs), "some process calls another"


def test_engine_steps_move_a_workflow_exactly_as_the_library_does(specs):
    rounds: dict[str, int] = {}
    for label, spec, called in specs:
        clock = ManualClock(START)
        twins = []
        for _ in range(2):
            wf = BpmnWorkflow(spec, called)
            wf.script_engine = SafeScriptEngine(clock, operation)
            for task in wf.get_tasks(state=TaskState.READY):
                task.data.update(start_data(label))
            twins.append(wf)
        theirs, ours = twins
        for round_ in range(ROUNDS):
            rounds[label] = round_ + 1
            failed = (_step(theirs, False), _step(ours, True))
            assert failed[0] == failed[1], (label, round_, failed)
            assert _stands(theirs) == _stands(ours), (label, round_)
            _stored_as_the_library_stores_it(ours)
            if failed[0] is not None or theirs.is_completed():
                break
            manual = [[t for t in wf.get_tasks(state=TaskState.READY) if t.task_spec.manual] for wf in twins]
            assert [t.task_spec.name for t in manual[0]] == [t.task_spec.name for t in manual[1]], label
            if manual[0]:
                for task in (manual[0][0], manual[1][0]):
                    task.data.update(FORM)
                    task.run()
            clock.advance(days=4)       # due timers fire at the next refresh
    # the bundled processes go round their loops (call activity, reject loop, SLA timers) to the end
    assert all(rounds[f"bundled:{key}"] == ROUNDS for key in ("work_order", "rectification", "gas_inspection")), rounds
