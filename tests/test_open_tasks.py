"""The open-task side table follows the workflow: after every step, open_task holds exactly the
ready user tasks and task_group exactly their candidate groups, whether tasks go one at a time,
several come at once, or several go at once (a terminate end event)."""
from __future__ import annotations

from sqlmodel import Session, select

from engine.db.models import OpenTask, TaskGroup
from engine.runtime.errors import Actor
from tests.bpmn_build import definitions, flows, process

DESIGNER = Actor("designer1", {"designer"})
WORKER = Actor("w1", {"g1", "g2", "g3", "g4"})

FILE = definitions(process("fan", '''
<bpmn:startEvent id="s"/>
<bpmn:parallelGateway id="split1"/>
<bpmn:userTask id="a" name="第一 A" camunda:candidateGroups="g1, g2"/>
<bpmn:userTask id="b" camunda:candidateGroups="g3"/>
<bpmn:parallelGateway id="join1"/>
<bpmn:parallelGateway id="split2"/>
<bpmn:userTask id="c" camunda:candidateGroups="g1" camunda:assignee="${owner}"/>
<bpmn:userTask id="d" camunda:candidateGroups="g2, g4"/>
<bpmn:userTask id="x" camunda:candidateGroups="g3"/>
<bpmn:endEvent id="done"><bpmn:terminateEventDefinition/></bpmn:endEvent>
<bpmn:endEvent id="e_d"/>
<bpmn:endEvent id="e_x"/>
''' + flows("s", "split1", "a", "join1", "split2", "c", "done") + flows("split1", "b", "join1", prefix="g")
    + flows("split2", "d", "e_d", prefix="h") + flows("split2", "x", "e_x", prefix="i")))


def _side_tables(system, iid: int) -> dict[str, tuple]:
    with Session(system.db) as s:
        tasks = s.exec(select(OpenTask).where(OpenTask.instance_id == iid)).all()
        groups = s.exec(select(TaskGroup)).all()
    by_task: dict[str, set] = {}
    for g in groups:
        by_task.setdefault(g.task_id, set()).add(g.group_name)
    assert set(by_task) <= {t.id for t in tasks}, "groups of a task that is gone"
    return {t.name: (t.id, t.title, t.assignee, frozenset(by_task.get(t.id, ()))) for t in tasks}


def _ready(system, iid: int) -> set[str]:
    return {t["name"] for t in system.tasks.for_actor(WORKER, instance_id=iid)}


def test_open_tasks_and_their_groups_follow_every_step(system):
    system.deploy([("fan.bpmn", FILE)], DESIGNER)
    iid = system.start("fan", {"owner": "w1"}, WORKER)
    tables = _side_tables(system, iid)
    assert {k: v[1:] for k, v in tables.items()} == {"a": ("第一 A", None, frozenset({"g1", "g2"})),
                                                     "b": ("b", None, frozenset({"g3"}))}
    assert _ready(system, iid) == {"a", "b"}

    system.complete(tables["a"][0], WORKER, {})           # one goes, nothing comes (the join waits)
    assert set(_side_tables(system, iid)) == {"b"} == _ready(system, iid)

    system.complete(tables["b"][0], WORKER, {})           # one goes, three come, with their groups
    tables = _side_tables(system, iid)
    assert {k: v[2:] for k, v in tables.items()} == {"c": ("w1", frozenset({"g1"})),
                                                     "d": (None, frozenset({"g2", "g4"})),
                                                     "x": (None, frozenset({"g3"}))}
    assert _ready(system, iid) == {"c", "d", "x"}

    system.complete(tables["c"][0], WORKER, {})           # the terminate end: c, d and x all go at once
    assert _side_tables(system, iid) == {}
    assert system.instance(iid)["state"] == "completed"
    with Session(system.db) as s:
        assert s.exec(select(TaskGroup)).all() == [], "their groups went with them"
