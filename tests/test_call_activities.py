"""Call activities: a called process deployed once and used by several callers, pinned at
deploy, with Camunda's in/out variable mappings, errors and escalations caught on the call
activity, and the child visible in the parent's timeline."""
from __future__ import annotations

import pytest

from engine.bpmn.xml import DefinitionError
from engine.runtime.errors import Actor
from tests.bpmn_build import definitions, flows, process

DESIGNER = Actor("designer1", {"designer"})
CLERK = Actor("clerk1", {"dispatcher"})


def _child(task_name: str = "Fix it", extra: str = "", end: str = '<bpmn:endEvent id="c_end"/>') -> str:
    return definitions(process("fix", f'''
<bpmn:startEvent id="c_start"/>
<bpmn:userTask id="c_fix" name="{task_name}" camunda:candidateGroups="dispatcher"/>
{end}
{extra}
{flows("c_start", "c_fix", "c_end")}'''))


def _parent(pid: str = "caller", mappings: str = "", attrs: str = "", after: str = "p_after") -> str:
    return definitions(process(pid, f'''
<bpmn:startEvent id="p_start"/>
<bpmn:callActivity id="p_call" name="Call fix" calledElement="fix" {attrs}>
  <bpmn:extensionElements>{mappings}</bpmn:extensionElements>
</bpmn:callActivity>
<bpmn:userTask id="{after}" name="After" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="p_end"/>
{flows("p_start", "p_call", after, "p_end")}'''))


def _task(engine, **where) -> dict:
    found = engine.tasks.for_actor(CLERK, **where)
    assert len(found) == 1, found
    return found[0]


def _data(engine, iid) -> dict:
    return engine.instance(iid)["data"]


MAPPINGS = '''<camunda:in source="address" target="where"/>
<camunda:in sourceExpression="${level * 10}" target="points"/>
<camunda:in businessKey="#{execution.processBusinessKey}"/>
<camunda:out source="fixed_by" target="rectified_by"/>
<camunda:out sourceExpression="${len(photos)}" target="photo_count"/>'''


def test_only_declared_variables_go_in_and_come_out(system):
    system.deploy([("fix.bpmn", _child()), ("caller.bpmn", _parent(mappings=MAPPINGS))], DESIGNER)
    iid = system.start("caller", {"address": "A-1", "level": 2, "secret": "s"}, CLERK, business_key="K-1")
    task = _task(system, instance_id=iid)
    assert task["name"] == "c_fix" and task["business_key"] == "K-1" and task["process_key"] == "caller"
    child_data = _data(system, iid)
    assert child_data == {"where": "A-1", "points": 20}, "the child sees only what the call activity maps in"
    system.complete(task["id"], CLERK, {"fixed_by": "w7", "photos": ["a", "b", "c"], "note": "child only"})
    after = _data(system, iid)
    assert after == {"address": "A-1", "level": 2, "secret": "s", "rectified_by": "w7", "photo_count": 3}


def test_a_called_process_with_its_own_business_key(system):
    """As Camunda 7 starts a called instance with `<camunda:in businessKey="${expr}"/>`: its tasks
    and timeline are under that key (a gas inspection's rectification is its work order's)."""
    mappings = '<camunda:in businessKey="${\'WO-\' + str(n)}"/>'
    system.deploy([("fix.bpmn", _child()), ("caller.bpmn", _parent(mappings=mappings))], DESIGNER)
    iid = system.start("caller", {"n": 7}, CLERK, business_key="GAS-1")
    task = _task(system, instance_id=iid)
    assert task["business_key"] == "WO-7" and task["instance_id"] == iid
    system.complete(task["id"], CLERK, {})
    after = _task(system, instance_id=iid)
    assert after["name"] == "p_after" and after["business_key"] == "GAS-1", "back in the caller: its own key"
    assert [e["kind"] for e in system.audit(business_key="WO-7")] == ["task_completed"]
    started = [e for e in system.audit(business_key="GAS-1") if e["kind"] == "call_started"]
    assert started and started[0]["detail"]["process"] == "fix"


def test_a_business_key_expression_that_gives_nothing_is_an_incident(system):
    system.deploy([("fix.bpmn", _child()),
                   ("caller.bpmn", _parent(mappings='<camunda:in businessKey="${missing}"/>'))], DESIGNER)
    iid = system.start("caller", {"missing": None}, CLERK)
    found = system.instance(iid)
    assert found["state"] == "incident" and "business key" in found["error"]


def test_all_variables_with_variables_all(system):
    system.deploy([("fix.bpmn", _child()),
                   ("caller.bpmn", _parent(mappings='<camunda:in variables="all"/><camunda:out variables="all"/>'))],
                  DESIGNER)
    iid = system.start("caller", {"a": 1}, CLERK)
    system.complete(_task(system, instance_id=iid)["id"], CLERK, {"b": 2})
    assert _data(system, iid) == {"a": 1, "b": 2}


def test_the_parent_timeline_shows_the_called_process_and_its_version(system):
    system.deploy([("fix.bpmn", _child()), ("caller.bpmn", _parent())], DESIGNER)
    system.deploy([("fix.bpmn", _child("Fix it again"))], DESIGNER)        # fix v2; caller re-pinned
    iid = system.start("caller", {}, CLERK, business_key="K-2")
    system.complete(_task(system, instance_id=iid)["id"], CLERK, {})
    events = [(e["kind"], e["element"], e["detail"]) for e in system.audit(iid)]
    calls = [e for e in events if e[0].startswith("call_")]
    assert calls == [("call_started", "p_call", {"process": "fix", "version": 2}),
                     ("call_completed", "p_call", {"process": "fix", "version": 2})]
    kinds = [e[0] for e in events]
    assert kinds.index("call_started") < kinds.index("task_completed") < kinds.index("call_completed")


def test_callee_pinned_at_deploy_and_running_instances_keep_their_version(system):
    deployed = system.deploy([("fix.bpmn", _child("Version one")), ("caller.bpmn", _parent())], DESIGNER)
    assert {(d.key, d.version) for d in deployed} == {("fix", 1), ("caller", 1)}
    old = system.start("caller", {}, CLERK)
    again = system.deploy([("fix.bpmn", _child("Version two"))], DESIGNER)
    assert {(d.key, d.version, d.changed) for d in again} == {("fix", 2, True), ("caller", 2, True)}, \
        "a new callee re-pins its callers, as a new decision table does"
    new = system.start("caller", {}, CLERK)
    assert _task(system, instance_id=old)["title"] == "Version one"
    assert _task(system, instance_id=new)["title"] == "Version two"
    # Deploying the same callee again changes nothing.
    assert all(not d.changed for d in system.deploy([("fix.bpmn", _child("Version two"))], DESIGNER))


def test_binding_version_keeps_calling_that_version(system):
    system.deploy([("fix.bpmn", _child("Version one"))], DESIGNER)
    system.deploy([("fix.bpmn", _child("Version two"))], DESIGNER)
    pinned = _parent("pinned", attrs='camunda:calledElementBinding="version" camunda:calledElementVersion="1"')
    system.deploy([("pinned.bpmn", pinned)], DESIGNER)
    system.deploy([("fix.bpmn", _child("Version three"))], DESIGNER)
    iid = system.start("pinned", {}, CLERK)
    assert _task(system, instance_id=iid)["title"] == "Version one"


def test_called_process_forms_come_from_its_own_pins(system):
    child = _child().replace('camunda:candidateGroups="dispatcher"/>',
                             'camunda:candidateGroups="dispatcher" camunda:formRef="wo_review"/>')
    system.deploy([("fix.bpmn", child), ("caller.bpmn", _parent())], DESIGNER)
    iid = system.start("caller", {}, CLERK)
    task = _task(system, instance_id=iid)
    assert task["form_ref"] == "wo_review"
    form = system.tasks.form(task["id"])
    assert form is not None and form.id == "wo_review"


ERRORS = '<bpmn:error id="Err_blocked" name="Blocked" errorCode="blocked"/>' \
         '<bpmn:escalation id="Esc_slow" name="Slow" escalationCode="slow"/>'


def test_error_end_in_the_child_is_caught_on_the_call_activity(system):
    child = definitions(ERRORS, process("fix", f'''
<bpmn:startEvent id="c_start"/>
<bpmn:userTask id="c_fix" camunda:candidateGroups="dispatcher"/>
<bpmn:exclusiveGateway id="c_ok" default="f_ok_end"/>
<bpmn:endEvent id="c_end"/>
<bpmn:endEvent id="c_blocked"><bpmn:errorEventDefinition errorRef="Err_blocked"/></bpmn:endEvent>
{flows("c_start", "c_fix", "c_ok")}
<bpmn:sequenceFlow id="f_ok_end" sourceRef="c_ok" targetRef="c_end"/>
<bpmn:sequenceFlow id="f_ok_blocked" sourceRef="c_ok" targetRef="c_blocked">
  <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">blocked</bpmn:conditionExpression>
</bpmn:sequenceFlow>'''))
    parent = definitions(ERRORS, process("caller", f'''
<bpmn:startEvent id="p_start"/>
<bpmn:callActivity id="p_call" calledElement="fix"/>
<bpmn:boundaryEvent id="p_on_blocked" attachedToRef="p_call"><bpmn:errorEventDefinition errorRef="Err_blocked"/>
</bpmn:boundaryEvent>
<bpmn:userTask id="p_handle" name="Handle blocked" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="p_end"/>
<bpmn:endEvent id="p_end2"/>
{flows("p_start", "p_call", "p_end")}
{flows("p_on_blocked", "p_handle", "p_end2", prefix="g")}'''))
    system.deploy([("fix.bpmn", child), ("caller.bpmn", parent)], DESIGNER)
    iid = system.start("caller", {}, CLERK)
    system.complete(_task(system, instance_id=iid)["id"], CLERK, {"blocked": True})
    assert _task(system, instance_id=iid)["name"] == "p_handle", "the error left the child by its boundary event"
    assert system.instance(iid)["state"] == "running"


def test_escalation_in_the_child_reaches_a_non_interrupting_boundary(system):
    child = definitions(ERRORS, process("fix", f'''
<bpmn:startEvent id="c_start"/>
<bpmn:intermediateThrowEvent id="c_slow"><bpmn:escalationEventDefinition escalationRef="Esc_slow"/>
</bpmn:intermediateThrowEvent>
<bpmn:userTask id="c_fix" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="c_end"/>
{flows("c_start", "c_slow", "c_fix", "c_end")}'''))
    parent = definitions(ERRORS, process("caller", f'''
<bpmn:startEvent id="p_start"/>
<bpmn:callActivity id="p_call" calledElement="fix"/>
<bpmn:boundaryEvent id="p_on_slow" cancelActivity="false" attachedToRef="p_call">
  <bpmn:escalationEventDefinition escalationRef="Esc_slow"/></bpmn:boundaryEvent>
<bpmn:userTask id="p_tell" name="Tell the leader" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="p_end"/>
<bpmn:endEvent id="p_end2"/>
{flows("p_start", "p_call", "p_end")}
{flows("p_on_slow", "p_tell", "p_end2", prefix="g")}'''))
    system.deploy([("fix.bpmn", child), ("caller.bpmn", parent)], DESIGNER)
    iid = system.start("caller", {}, CLERK)
    names = sorted(t["name"] for t in system.tasks.for_actor(CLERK, instance_id=iid))
    assert names == ["c_fix", "p_tell"], "the child goes on while the parent handles the escalation"
    for t in system.tasks.for_actor(CLERK, instance_id=iid):
        system.complete(t["id"], CLERK, {})
    assert system.instance(iid)["state"] == "completed"


def test_event_subprocess_started_by_a_message_runs_beside_the_main_flow(system):
    body = f'''
<bpmn:startEvent id="p_start"/>
<bpmn:userTask id="p_work" camunda:candidateGroups="dispatcher"/>
<bpmn:endEvent id="p_end"/>
{flows("p_start", "p_work", "p_end")}
<bpmn:subProcess id="p_on_note" triggeredByEvent="true">
  <bpmn:startEvent id="e_start" isInterrupting="false"><bpmn:messageEventDefinition messageRef="Msg_note"/>
  </bpmn:startEvent>
  <bpmn:userTask id="e_read" camunda:candidateGroups="dispatcher"/>
  <bpmn:endEvent id="e_end"/>
  {flows("e_start", "e_read", "e_end", prefix="e")}
</bpmn:subProcess>'''
    system.deploy([("noted.bpmn", definitions('<bpmn:message id="Msg_note" name="note"/>', process("noted", body)))],
                  DESIGNER)
    iid = system.start("noted", {}, CLERK, business_key="N-1")
    system.send_message("note", {"text": "hello"}, CLERK, business_key="N-1")
    names = sorted(t["name"] for t in system.tasks.for_actor(CLERK, instance_id=iid))
    assert names == ["e_read", "p_work"]


@pytest.mark.parametrize("attrs,mappings,element,words", [
    ('calledElement="nowhere"', "", "p_call", "unknown called process 'nowhere'"),
    ('calledElement="${which}"', "", "p_call", "must be a process id"),
    ('', "", "p_call", "without calledElement"),
    ('calledElement="fix" camunda:calledElementBinding="versionTag"', "", "p_call", "is not supported"),
    ('calledElement="fix" camunda:calledElementBinding="version" camunda:calledElementVersion="7"', "",
     "p_call", "has no version 7"),
    ('calledElement="fix" camunda:calledElementVersion="1"', "", "p_call", 'needs camunda:calledElementBinding'),
    ('calledElement="fix"', '<camunda:in source="a"/>', "p_call", "must be a variable name"),
    ('calledElement="fix"', '<camunda:in sourceExpression="${a.__class__}" target="b"/>', "p_call", "camunda:in"),
    ('calledElement="fix"', '<camunda:in sourceExpression="${open(1)}" target="b"/>', "p_call", "open"),
    ('calledElement="fix"', '<camunda:out source="a" sourceExpression="${a}" target="b"/>', "p_call",
     "either source"),
    ('calledElement="fix"', '<camunda:in businessKey="order"/>', "p_call", "write ${expression}"),
    ('calledElement="fix"', '<camunda:in businessKey="${order.__class__}"/>', "p_call", "businessKey"),
    ('calledElement="fix"', '<camunda:out businessKey="${order}"/>', "p_call", "not supported"),
    ('calledElement="fix"', '<camunda:in variables="local"/>', "p_call", 'only "all"'),
])
def test_bad_call_activities_are_refused_naming_the_element(system, attrs, mappings, element, words):
    system.deploy([("fix.bpmn", _child())], DESIGNER)
    text = _parent(mappings=mappings).replace('calledElement="fix" ', "").replace(
        '<bpmn:callActivity id="p_call" name="Call fix"', f'<bpmn:callActivity id="p_call" name="Call fix" {attrs}')
    with pytest.raises(DefinitionError) as err:
        system.deploy([("caller.bpmn", text)], DESIGNER)
    assert any(el == element and words in msg for el, msg in err.value.problems), err.value.problems


def test_recursive_calls_are_refused(system):
    a = _parent("a").replace('calledElement="fix"', 'calledElement="b"')
    b = _parent("b").replace('calledElement="fix"', 'calledElement="a"')
    with pytest.raises(DefinitionError) as err:
        system.deploy([("a.bpmn", a), ("b.bpmn", b)], DESIGNER)
    assert "recursive call" in str(err.value) and "a -> b -> a" in str(err.value)
    assert err.value.problems[0][0] == "p_call", "named on the call activity that starts the circle"
    itself = _parent("selfish").replace('calledElement="fix"', 'calledElement="selfish"')
    with pytest.raises(DefinitionError) as err:
        system.deploy([("selfish.bpmn", itself)], DESIGNER)
    assert "selfish -> selfish" in str(err.value)
    # ... also through a process deployed earlier
    system.deploy([("fix.bpmn", _child()), ("a.bpmn", _parent("a"))], DESIGNER)
    loop = _child().replace('<bpmn:endEvent id="c_end"/>',
                            '<bpmn:callActivity id="c_call" calledElement="a"/><bpmn:endEvent id="c_end"/>')
    loop = loop.replace(flows("c_start", "c_fix", "c_end"), flows("c_start", "c_fix", "c_call", "c_end"))
    with pytest.raises(DefinitionError) as err:
        system.deploy([("fix.bpmn", loop)], DESIGNER)
    assert "fix -> a -> fix" in str(err.value)


@pytest.mark.parametrize("key", ["camunda-forms:deployment:wo_review.form", "camunda-forms:app:forms/wo_review.form",
                                 "wo_review", "deployment:wo_review.form"])
def test_form_keys_name_form_js_forms(system, key):
    text = _child().replace('camunda:candidateGroups="dispatcher"/>',
                            f'camunda:candidateGroups="dispatcher" camunda:formKey="{key}"/>')
    system.deploy([("fix.bpmn", text)], DESIGNER)
    iid = system.start("fix", {}, CLERK)
    task = _task(system, instance_id=iid)
    assert task["form_ref"] == "wo_review" and system.tasks.form(task["id"]).id == "wo_review"


@pytest.mark.parametrize("key,words", [
    ("embedded:app:forms/review.html", "HTML forms cannot be shown on tablets"),
    ("app:review.html", "HTML forms cannot be shown on tablets"),
    ("camunda-forms:deployment:nosuch.form", "unknown form 'nosuch'"),
])
def test_unusable_form_keys_are_refused(system, key, words):
    text = _child().replace('camunda:candidateGroups="dispatcher"/>',
                            f'camunda:candidateGroups="dispatcher" camunda:formKey="{key}"/>')
    with pytest.raises(DefinitionError) as err:
        system.deploy([("fix.bpmn", text)], DESIGNER)
    assert any(el == "c_fix" and words in msg for el, msg in err.value.problems), err.value.problems


def _stored_size(system, iid) -> int:
    from sqlmodel import Session

    from engine.db.models import Instance
    with Session(system.db) as s:
        return len(s.get(Instance, iid).workflow)


def test_a_call_in_a_loop_does_not_grow_the_stored_instance(system):
    child = _child()
    parent = definitions(process("looper", '''
<bpmn:startEvent id="p_start"/>
<bpmn:exclusiveGateway id="p_merge" default="f_merge_call"/>
<bpmn:callActivity id="p_call" calledElement="fix">
  <bpmn:extensionElements><camunda:out source="again" target="again"/></bpmn:extensionElements>
</bpmn:callActivity>
<bpmn:exclusiveGateway id="p_again" default="f_again_end"/>
<bpmn:endEvent id="p_end"/>
<bpmn:sequenceFlow id="f_start" sourceRef="p_start" targetRef="p_merge"/>
<bpmn:sequenceFlow id="f_merge_call" sourceRef="p_merge" targetRef="p_call"/>
<bpmn:sequenceFlow id="f_call" sourceRef="p_call" targetRef="p_again"/>
<bpmn:sequenceFlow id="f_again_end" sourceRef="p_again" targetRef="p_end"/>
<bpmn:sequenceFlow id="f_again_loop" sourceRef="p_again" targetRef="p_merge">
  <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">again</bpmn:conditionExpression>
</bpmn:sequenceFlow>'''))
    system.deploy([("fix.bpmn", child), ("looper.bpmn", parent)], DESIGNER)
    iid = system.start("looper", {}, CLERK)
    sizes = []
    for _ in range(30):
        system.complete(_task(system, instance_id=iid)["id"], CLERK, {"again": True})
        sizes.append(_stored_size(system, iid))
    assert sizes[-1] <= sizes[2] * 1.1, sizes
    system.complete(_task(system, instance_id=iid)["id"], CLERK, {"again": False})
    assert system.instance(iid)["state"] == "completed"
    calls = [e["kind"] for e in system.audit(iid) if e["kind"].startswith("call_")]
    assert calls == ["call_started", "call_completed"] * 31
