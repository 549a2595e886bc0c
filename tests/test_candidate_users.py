"""camunda:candidateUsers: a task offered to named people (literal ids or ${expressions}),
as Camunda Modeler's "Candidate users" field writes it."""
from __future__ import annotations

import pytest

from engine.bpmn.xml import DefinitionError
from engine.runtime.errors import Actor, Forbidden
from tests.bpmn_build import definitions, flows, process

DESIGNER = Actor("designer1", {"designer"})


def _file(users: str) -> str:
    return definitions(process("offered", f'''
<bpmn:startEvent id="s"/>
<bpmn:userTask id="t" camunda:candidateUsers="{users}" camunda:candidateGroups="reviewer"/>
<bpmn:endEvent id="e"/>
{flows("s", "t", "e")}'''))


def test_candidate_users_are_offered_the_task_and_nobody_else(system):
    system.deploy([("offered.bpmn", _file("ann, ${helper}"))], DESIGNER)
    iid = system.start("offered", {"helper": "bob"}, Actor("starter"))
    for who in (Actor("ann"), Actor("bob"), Actor("rita", {"reviewer"})):
        [task] = system.tasks.for_actor(who, instance_id=iid)
        assert task["name"] == "t", who
    carl = Actor("carl", {"dispatcher"})
    assert system.tasks.for_actor(carl, instance_id=iid) == []
    with pytest.raises(Forbidden):
        system.complete(task["id"], carl, {})
    system.complete(task["id"], Actor("bob"), {})
    assert system.instance(iid)["state"] == "completed"


def test_candidate_user_expressions_pass_the_allow_list(system):
    with pytest.raises(DefinitionError) as err:
        system.deploy([("offered.bpmn", _file("${helper.__class__}"))], DESIGNER)
    assert any(el == "t" and "candidate user" in msg for el, msg in err.value.problems), err.value.problems
