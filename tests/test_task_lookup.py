"""engine.tasks.for_actor narrowed to one case (a business key or an instance) finds exactly the
tasks of that case that the person's whole list holds: assigned to them, claimed by them, or
unclaimed in one of their groups; not a task someone else claimed, nor one of a group they are
not in. (The narrowed query checks each candidate's groups on their own; the whole list looks
the person's groups' tasks up once: two forms of one rule, held together here.)"""
from __future__ import annotations

from engine.runtime.errors import Actor
from tests.bpmn_build import definitions, flows, process

DESIGNER = Actor("designer1", {"designer"})
ANA = Actor("ana", {"g1"})
BO = Actor("bo", {"g1", "g3"})
CY = Actor("cy", {"g9"})

FILE = definitions(process("pair", '''
<bpmn:startEvent id="s"/>
<bpmn:parallelGateway id="split"/>
<bpmn:userTask id="a" camunda:candidateGroups="g1, g2"/>
<bpmn:userTask id="b" camunda:candidateGroups="g3"/>
<bpmn:userTask id="c" camunda:assignee="${owner}"/>
<bpmn:endEvent id="e_a"/>
<bpmn:endEvent id="e_b"/>
<bpmn:endEvent id="e_c"/>
''' + flows("split", "a", "e_a") + flows("split", "b", "e_b", prefix="g") + flows("split", "c", "e_c", prefix="h")
    + flows("s", "split", prefix="i")))


def _names(tasks: list[dict]) -> list[tuple[str, str]]:
    return sorted((t["business_key"], t["name"]) for t in tasks)


def test_one_case_s_tasks_are_the_person_s_list_narrowed_to_it(system):
    system.deploy([("pair.bpmn", FILE)], DESIGNER)
    ids = {key: system.start("pair", {"owner": owner}, DESIGNER, business_key=key)
           for key, owner in (("K1", "ana"), ("K2", "cy"), ("K3", "bo"))}
    a_of_k1 = next(t for t in system.tasks.for_actor(BO, business_key="K1") if t["name"] == "a")
    system.claim(a_of_k1["id"], BO)                     # K1's "a": now bo's alone

    expected = {
        "ana": [("K1", "c"), ("K2", "a"), ("K3", "a")],
        "bo": [("K1", "a"), ("K1", "b"), ("K2", "a"), ("K2", "b"), ("K3", "a"), ("K3", "b"), ("K3", "c")],
        "cy": [("K2", "c")],
    }
    for actor in (ANA, BO, CY):
        everything = system.tasks.for_actor(actor)
        assert _names(everything) == expected[actor.id], actor.id
        for key, instance_id in ids.items():
            mine = sorted(t["id"] for t in everything if t["business_key"] == key)
            assert sorted(t["id"] for t in system.tasks.for_actor(actor, business_key=key)) == mine, (actor.id, key)
            assert sorted(t["id"] for t in system.tasks.for_actor(actor, instance_id=instance_id)) == mine, \
                (actor.id, key)
            both = system.tasks.for_actor(actor, process_key="pair", business_key=key, instance_id=instance_id)
            assert sorted(t["id"] for t in both) == mine, (actor.id, key)
    # the groups come with each task, in either form
    (k3_b,) = [t for t in system.tasks.for_actor(BO, business_key="K3") if t["name"] == "b"]
    assert k3_b["groups"] == ["g3"]
    assert system.tasks.for_actor(CY, business_key="K1") == []
