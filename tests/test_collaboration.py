"""Collaborations: a file with several pools deploys one definition per executable process,
and the messages drawn between the pools are passed on by the engine (by business key, or by
starting the process whose start event catches the message)."""
from __future__ import annotations

import pytest

from engine.bpmn.xml import DefinitionError
from engine.runtime.errors import Actor
from engine.runtime.messages import MAX_HOPS
from tests.bpmn_build import definitions, flows, process

DESIGNER = Actor("designer1", {"designer"})
CLERK = Actor("clerk1", {"dispatcher"})

MESSAGES = ('<bpmn:message id="Msg_complaint" name="complaint"/>'
            '<bpmn:message id="Msg_reply" name="reply"/>')
COLLABORATION = '''<bpmn:collaboration id="Collab">
  <bpmn:participant id="Pool_citizen" name="Citizen" processRef="citizen"/>
  <bpmn:participant id="Pool_office" name="Street office" processRef="office"/>
  <bpmn:participant id="Pool_press" name="Press (not run)" processRef="press"/>
  <bpmn:messageFlow id="MF_1" sourceRef="c_send" targetRef="o_start"/>
  <bpmn:messageFlow id="MF_2" sourceRef="o_reply" targetRef="c_wait"/>
</bpmn:collaboration>'''
PAYLOAD = ('<bpmn:extensionElements><camunda:inputOutput>'
           '<camunda:inputParameter name="text">${text}</camunda:inputParameter>'
           '<camunda:inputParameter name="channel">phone</camunda:inputParameter>'
           '</camunda:inputOutput></bpmn:extensionElements>')
CITIZEN = process("citizen", f'''
<bpmn:startEvent id="c_start"/>
<bpmn:sendTask id="c_send" name="Complain" messageRef="Msg_complaint">{PAYLOAD}</bpmn:sendTask>
<bpmn:receiveTask id="c_wait" name="Wait for the reply" messageRef="Msg_reply"/>
<bpmn:endEvent id="c_end"/>
{flows("c_start", "c_send", "c_wait", "c_end")}''')
OFFICE = process("office", f'''
<bpmn:startEvent id="o_start"><bpmn:messageEventDefinition messageRef="Msg_complaint"/></bpmn:startEvent>
<bpmn:userTask id="o_handle" name="Handle the complaint" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="o_reply">
  <bpmn:extensionElements><camunda:inputOutput>
    <camunda:inputParameter name="answer">${{answer}}</camunda:inputParameter>
  </camunda:inputOutput></bpmn:extensionElements>
  <bpmn:messageEventDefinition messageRef="Msg_reply"/>
</bpmn:endEvent>
{flows("o_start", "o_handle", "o_reply")}''')
PRESS = process("press", '<bpmn:startEvent id="x_start"/>', executable=False)


def _deploy(system, *parts):
    return system.deploy([("complaints.bpmn", definitions(MESSAGES, COLLABORATION, *parts))], DESIGNER)


def test_each_pool_is_its_own_definition(system):
    deployed = _deploy(system, CITIZEN, OFFICE, PRESS)
    assert sorted((d.key, d.version) for d in deployed) == [("citizen", 1), ("office", 1)], \
        "the non-executable pool is drawing only"
    again = _deploy(system, CITIZEN, OFFICE.replace("Handle the complaint", "Handle it"), PRESS)
    assert sorted((d.key, d.version, d.changed) for d in again) == [("citizen", 2, True), ("office", 2, True)], \
        "a file is deployed as a whole: each of its processes gets a version of the new file"
    same = _deploy(system, CITIZEN, OFFICE.replace("Handle the complaint", "Handle it"), PRESS)
    assert all(not d.changed for d in same)


def test_messages_flow_between_the_pools(system):
    _deploy(system, CITIZEN, OFFICE, PRESS)
    citizen = system.start("citizen", {"text": "noise at night"}, CLERK, business_key="C-1")
    offices = [t for t in system.tasks.for_actor(CLERK, business_key="C-1")]
    assert [(t["process_key"], t["name"]) for t in offices] == [("office", "o_handle")], \
        "the complaint started the office's process with the citizen's business key"
    office = offices[0]["instance_id"]
    assert system.instance(office)["data"] == {"complaint": {"text": "noise at night", "channel": "phone"}}
    assert system.instance(citizen)["position"][0]["element"] == "c_wait"

    system.complete(offices[0]["id"], CLERK, {"answer": "we sent a patrol"})
    done = system.instance(citizen)
    assert done["state"] == "completed" and system.instance(office)["state"] == "completed"
    assert done["data"]["reply"] == {"answer": "we sent a patrol"}
    kinds = [(e["kind"], e["element"]) for e in system.audit(business_key="C-1")]
    assert ("message_received", "complaint") in kinds and ("message_received", "reply") in kinds


def test_a_message_sent_through_the_api_starts_the_process_that_catches_it(system):
    _deploy(system, CITIZEN, OFFICE, PRESS)
    started = system.send_message("complaint", {"text": "by phone"}, CLERK, business_key="C-9")
    [office] = started
    assert system.instance(office)["process_key"] == "office"
    assert system.instance(office)["data"] == {"complaint": {"text": "by phone"}}
    assert [t["name"] for t in system.tasks.for_actor(CLERK, business_key="C-9")] == ["o_handle"]


def test_a_message_nobody_takes_fails_the_senders_step(system):
    system.deploy([("citizen.bpmn", definitions(MESSAGES, CITIZEN))], DESIGNER)     # no office to answer
    iid = system.start("citizen", {"text": "x"}, CLERK, business_key="C-2")
    found = system.instance(iid)
    assert found["state"] == "incident", "the complaint had nowhere to go: kept as an incident, not dropped"
    assert "no running instance with business key 'C-2' awaits message 'complaint'" in found["error"]


def test_messages_bouncing_between_processes_stop(system):
    ping = process("ping", f'''
<bpmn:startEvent id="a_start"><bpmn:messageEventDefinition messageRef="Msg_reply"/></bpmn:startEvent>
<bpmn:endEvent id="a_end"><bpmn:messageEventDefinition messageRef="Msg_complaint"/></bpmn:endEvent>
{flows("a_start", "a_end")}''')
    pong = process("pong", f'''
<bpmn:startEvent id="b_start"><bpmn:messageEventDefinition messageRef="Msg_complaint"/></bpmn:startEvent>
<bpmn:endEvent id="b_end"><bpmn:messageEventDefinition messageRef="Msg_reply"/></bpmn:endEvent>
{flows("b_start", "b_end")}''')
    system.deploy([("loop.bpmn", definitions(MESSAGES, ping, pong))], DESIGNER)
    starter = process("starter", f'''
<bpmn:startEvent id="s_start"/>
<bpmn:endEvent id="s_end"><bpmn:messageEventDefinition messageRef="Msg_reply"/></bpmn:endEvent>
{flows("s_start", "s_end")}''')
    system.deploy([("starter.bpmn", definitions(MESSAGES, starter))], DESIGNER)
    iid = system.start("starter", {}, CLERK, business_key="L-1")
    found = system.instance(iid)
    assert found["state"] == "incident" and f"more than {MAX_HOPS} messages" in found["error"]


@pytest.mark.parametrize("param,words", [
    ('<camunda:inputParameter name="x">${__import__("os")}</camunda:inputParameter>', "input parameter 'x'"),
    ('<camunda:inputParameter name="x">${a.b}</camunda:inputParameter>', "input parameter 'x'"),
    ('<camunda:inputParameter name="not ok">1</camunda:inputParameter>', "must be a variable name"),
    ('<camunda:inputParameter name="x"><camunda:script scriptFormat="groovy">1</camunda:script>'
     '</camunda:inputParameter>', "camunda:script is not allowed"),
])
def test_message_payloads_pass_the_allow_list(system, param, words):
    bad = CITIZEN.replace(PAYLOAD, f'<bpmn:extensionElements><camunda:inputOutput>{param}'
                                   '</camunda:inputOutput></bpmn:extensionElements>')
    with pytest.raises(DefinitionError) as err:
        _deploy(system, bad, OFFICE)
    assert any(el == "c_send" and words in msg for el, msg in err.value.problems), err.value.problems


@pytest.mark.parametrize("old,new,words", [
    ('messageRef="Msg_complaint">', 'messageRef="Msg_nowhere">', "names no bpmn:message"),
    ('<bpmn:sendTask id="c_send" name="Complain" messageRef="Msg_complaint">', '<bpmn:sendTask id="c_send">',
     "sendTask without a message"),
])
def test_send_tasks_need_a_message(system, old, new, words):
    bad = CITIZEN.replace(old, new)
    with pytest.raises(DefinitionError) as err:
        _deploy(system, bad, OFFICE)
    assert any(el == "c_send" and words in msg for el, msg in err.value.problems), err.value.problems


def test_correlation_properties_are_refused_with_what_to_do(system):
    prop = ('<bpmn:correlationProperty id="CP_order" name="order">'
            '<bpmn:correlationPropertyRetrievalExpression messageRef="Msg_complaint">'
            '<bpmn:messagePath>order</bpmn:messagePath></bpmn:correlationPropertyRetrievalExpression>'
            '</bpmn:correlationProperty>')
    with pytest.raises(DefinitionError) as err:
        _deploy(system, prop, CITIZEN, OFFICE)
    assert "correlate on the business key" in str(err.value)
