"""Definitions and data from outside are untrusted: deploy refuses what could run code,
and at run time nothing reaches eval/exec or spawns a process."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from sqlmodel import Session

from engine.bpmn.xml import DefinitionError
from engine.db.models import Definition
from engine.domain import workorders
from engine.runtime.errors import Actor, ProcessError, ValidationFailed
from engine.system import WORKFLOWS
from tests.district import DISPATCHER, PHOTO, REVIEWER, WORKER_EAST, only_task, seed

DESIGNER = Actor("designer1", {"designer"})
WORK_ORDER = (WORKFLOWS / "bpmn" / "work_order.bpmn").read_text()
RECTIFICATION = (WORKFLOWS / "bpmn" / "rectification.bpmn").read_text()   # the rectify/review loop
CREW = (WORKFLOWS / "bpmn" / "crew_attendance.bpmn").read_text()

# ---- a process-wide audit hook records code execution and process creation ---------
_WATCH = {"exec", "os.system", "subprocess.Popen", "os.posix_spawn", "os.spawn", "os.exec", "os.fork",
          "os.forkpty", "pty.spawn", "ctypes.dlopen"}
_seen: list[str] = []
_recording = threading.Event()


def _hook(event, args):
    if not _recording.is_set() or event not in _WATCH:
        return
    if event == "exec":
        # Libraries may generate code of their own (SQLAlchemy builds visitors lazily); what
        # must never happen is eval/exec called from SpiffWorkflow or from cityloop itself.
        caller = sys._getframe(1).f_code.co_filename
        if "SpiffWorkflow" not in caller and "/engine/" not in caller:
            return
        event = f"exec from {caller}"
    _seen.append(event)


sys.addaudithook(_hook)


@pytest.fixture
def watch():
    _seen.clear()
    _recording.set()
    yield _seen
    _recording.clear()


def escapes(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"__import__('os').system('touch {m}')",
        "().__class__.__base__.__subclasses__()",
        "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0](['touch', '%s'])" % m,
        f"open('{m}', 'w')",
        "(lambda: 1)()",
        "'a' * 10 ** 9",
        "reported_at.__class__.__mro__",
    ]


def _deploy_variant(engine, old: str, new: str, source: str | None = None, name: str | None = None):
    """Deploy the bundled file holding `old` with it replaced by `new`."""
    if source is None:
        source, name = ((WORK_ORDER, "work_order.bpmn") if old in WORK_ORDER
                        else (RECTIFICATION, "rectification.bpmn"))
    assert old in source, old
    return engine.deploy([(name, source.replace(old, new, 1))], DESIGNER)


def _problems(excinfo) -> str:
    return str(excinfo.value)


# ---- deploy-time refusals ----------------------------------------------------------------
@pytest.mark.parametrize("old,new,element", [
    ('<bpmn:serviceTask id="Task_close_order"',
     '<bpmn:scriptTask id="Task_evil" scriptFormat="python"><bpmn:script>import os</bpmn:script>'
     '</bpmn:scriptTask>\n<bpmn:serviceTask id="Task_close_order"', "Task_evil"),
    ('camunda:topic="close_order"', 'camunda:topic="shell"', "Task_close_order"),
    ('camunda:type="external" camunda:topic="close_order"', 'camunda:class="java.lang.Runtime"', "Task_close_order"),
    ('camunda:type="external" camunda:topic="close_order"',
     'camunda:type="external" camunda:topic="close_order" camunda:expression="${x}"', "Task_close_order"),
    ('camunda:formRef="wo_review"', 'camunda:formRef="no_such_form"', "Task_review"),
    ('camunda:candidateGroups="reviewer"', 'camunda:candidateGroups="${reviewer.__class__}"', "Task_review"),
])
def test_deploy_refuses_code_and_unknowns(system, old, new, element):
    with pytest.raises(DefinitionError) as err:
        _deploy_variant(system, old, new)
    assert element in _problems(err)


def test_deploy_refuses_listeners_and_foreign_extensions(system):
    listener = ('<bpmn:extensionElements><camunda:executionListener event="start">'
                '<camunda:script scriptFormat="groovy">'
                'x</camunda:script></camunda:executionListener></bpmn:extensionElements>')
    with pytest.raises(DefinitionError) as err:
        _deploy_variant(system, 'camunda:formRef="wo_review" camunda:candidateGroups="reviewer">',
                        'camunda:formRef="wo_review" camunda:candidateGroups="reviewer">' + listener)
    assert "executionListener" in _problems(err) and "Task_review" in _problems(err)
    spiff = RECTIFICATION.replace('xmlns:camunda=',
                               'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" xmlns:camunda=', 1)
    with pytest.raises(DefinitionError) as err:
        _deploy_variant(system, 'camunda:formRef="wo_review" camunda:candidateGroups="reviewer">',
                        'camunda:formRef="wo_review" camunda:candidateGroups="reviewer"><bpmn:extensionElements>'
                        '<spiffworkflow:preScript>import os</spiffworkflow:preScript></bpmn:extensionElements>',
                        source=spiff, name="rectification.bpmn")
    assert "preScript" in _problems(err)


@pytest.mark.parametrize("i", range(7))
def test_deploy_refuses_escapes_in_conditions_and_timers(system, tmp_path, i):
    expr = escapes(tmp_path / "pwned")[i]
    from xml.sax.saxutils import escape
    if i == 5:  # repetition is valid syntax; it is stopped at run time (see below)
        return
    with pytest.raises(DefinitionError) as err:
        _deploy_variant(system, 'decision == "reject"', escape(expr))
    assert "Flow_" in _problems(err) or "conditionExpression" in _problems(err)
    with pytest.raises(DefinitionError) as err:
        _deploy_variant(system, ">sla_due</bpmn:timeDate>", f">{escape(expr)}</bpmn:timeDate>")
    assert "timeDate" in _problems(err)
    assert not (tmp_path / "pwned").exists()


def test_deploy_refuses_dtd_entities_and_oversize(system, tmp_path):
    xxe = ('<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
           + WORK_ORDER.split("?>", 1)[1])
    with pytest.raises(DefinitionError, match="DTD"):
        system.deploy([("work_order.bpmn", xxe)], DESIGNER)
    bomb = '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>\n<d>&b;</d>'
    with pytest.raises(DefinitionError, match="DTD"):
        system.deploy([("x.bpmn", bomb)], DESIGNER)
    big = WORK_ORDER.replace("</bpmn:definitions>", "<!--" + "x" * (1024 * 1024) + "--></bpmn:definitions>")
    with pytest.raises(DefinitionError, match="limit"):
        system.deploy([("work_order.bpmn", big)], DESIGNER)
    with pytest.raises(DefinitionError, match="well-formed"):
        system.deploy([("work_order.bpmn", WORK_ORDER[:500])], DESIGNER)
    with pytest.raises(DefinitionError, match="file type"):
        system.deploy([("evil.py", "import os")], DESIGNER)


def test_deploy_refuses_bad_dmn_cells(system):
    dmn = (WORKFLOWS / "dmn" / "gas_hazard.dmn").read_text()
    with pytest.raises(DefinitionError) as err:
        system.deploy([("gas_hazard.dmn", dmn.replace('"leak"', "__import__('os').getcwd()", 1))], DESIGNER)
    assert "UnaryTests_valve_leak_valve_leak_test" in _problems(err)


def test_a_refused_deploy_stores_nothing(system):
    with Session(system.db) as s:
        before = len(s.exec(__import__("sqlmodel").select(Definition)).all())
    good_form = (WORKFLOWS / "forms" / "wo_review.form").read_text().replace('"id": "wo_review"', '"id": "wo_review2"')
    with pytest.raises(DefinitionError):
        system.deploy([("wo_review2.form", good_form),
                       ("work_order.bpmn", WORK_ORDER.replace('camunda:topic="close_order"', 'camunda:topic="nope"'))],
                      DESIGNER)
    with Session(system.db) as s:
        assert len(s.exec(__import__("sqlmodel").select(Definition)).all()) == before


# ---- run time -------------------------------------------------------------------------------
def _tamper(engine, process_key: str, old: str, new: str) -> None:
    """Simulate a definition that got past deploy (e.g. edited in the database)."""
    from sqlmodel import select
    with Session(engine.db) as s:
        row = s.exec(select(Definition).where(Definition.kind == "bpmn", Definition.key == process_key)
                     .order_by(Definition.version.desc())).first()
        assert old in row.content
        row.content = row.content.replace(old, new)
        s.add(row)
        s.commit()
    engine.definitions._specs.clear()
    engine.live.clear()


@pytest.mark.parametrize("i", range(7))
def test_escapes_in_stored_conditions_are_refused_at_run_time(system, tmp_path, watch, i):
    seed(system)
    marker = tmp_path / "pwned"
    from xml.sax.saxutils import escape
    _tamper(system, "rectification", 'decision == "reject"', escape(escapes(marker)[i]))
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    system.complete(only_task(system, WORKER_EAST, order.number)["id"], WORKER_EAST,
                    {"action": "fixed", "after_photos": [PHOTO]})
    review = only_task(system, REVIEWER, order.number)
    with pytest.raises(ProcessError) as failed:
        system.complete(review["id"], REVIEWER, {"decision": "reject", "reason": "not clean"})
    assert not marker.exists()
    assert watch == []
    assert any(e["kind"] == "incident" for e in system.audit(business_key=order.number))
    parked = system.resolve_incident(failed.value.incident, Actor("admin"), "rejected by phone instead")
    assert parked["submission"]["data"] == {"decision": "reject", "reason": "not clean"}, "the submission was kept"
    assert only_task(system, REVIEWER, order.number)["id"] == review["id"], "the step was rolled back"


@pytest.mark.parametrize("i", range(7))
def test_escapes_in_stored_timers_are_refused_at_run_time(system, tmp_path, watch, clock, i):
    from xml.sax.saxutils import escape
    seed(system)
    marker = tmp_path / "pwned"
    _tamper(system, "rectification", ">sla_due</bpmn:timeDate>", f">{escape(escapes(marker)[i])}</bpmn:timeDate>")
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    assert not marker.exists() and watch == []
    assert system.instance(order.instance_id)["state"] == "incident", "kept, parked, not run"


def test_message_payloads_are_data_never_code(system, tmp_path, watch, clock):
    from datetime import timedelta

    from engine.domain import attendance
    seed(system)
    marker = tmp_path / "pwned"
    shift = attendance.plan_shift(system, "crew-e1", clock() + timedelta(hours=1))
    gw = Actor("gw", {"device"})
    for evil in escapes(marker):
        system.send_message("badge_checkin", {"badge_id": evil, "seen_at": clock().isoformat(), "verified": True,
                                              "source": evil}, gw, business_key=f"shift:{shift.id}")
    for bad in ({"typename": "BpmnWorkflow"}, {"x": {"typename": "TimeDateEventDefinition"}}, {"__class__": 1},
                {"x": float("nan")}, {"x": object()}):
        with pytest.raises(ValidationFailed):
            system.send_message("badge_checkin", bad, gw, business_key=f"shift:{shift.id}")
    assert not marker.exists() and watch == []
    ignored = [e for e in system.audit(instance_id=shift.instance_id) if e["kind"] == "checkin_ignored"]
    assert len(ignored) == len(escapes(marker))
    assert system.instance(shift.instance_id)["state"] == "running"


def test_full_lifecycles_never_reach_eval_even_after_reload(system, watch, clock):
    """Timers, messages, DMN, gateways, loaded from storage at every step: no exec/eval."""
    from datetime import timedelta

    from engine.domain import attendance, gas
    seed(system)
    _recording.clear()
    warm = workorders.report(system, DISPATCHER, source="citizen", category="other", area="xinhe")  # warm caches
    _recording.set()
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    clock.advance(hours=30)
    system.fire_due_timers()
    system.complete(only_task(system, WORKER_EAST, order.number)["id"], WORKER_EAST,
                    {"action": "fixed", "after_photos": [PHOTO]})
    system.complete(only_task(system, REVIEWER, order.number)["id"], REVIEWER, {"decision": "approve"})
    gas.start_inspection(system, 1, "deliverer1", "delivery", Actor("deliverer1"))
    system.complete(only_task(system, Actor("deliverer1"))["id"], Actor("deliverer1"), {
        "hose_ok": "cracked", "valve_leak_test": "pass", "ventilation": "adequate", "co_alarm": "working",
        "cylinder_inspection_date": "2027-01-01", "stove_flameout_protection": "present", "photos": [PHOTO]})
    shift = attendance.plan_shift(system, "crew-e1", clock() + timedelta(hours=1))
    attendance.check_in(system, shift.id, "B0001", clock(), True, "gateway", Actor("gw"))
    clock.advance(hours=2)
    system.fire_due_timers()
    assert system.instance(order.instance_id)["state"] == "completed"
    assert system.instance(shift.instance_id)["state"] == "completed"
    assert watch == [], f"code execution during lifecycles: {watch}"
    assert warm.number


def test_the_watch_does_see_the_library_default_engine(system, watch):
    """Control: were the default engine used, the audit hook would catch it."""
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
    seed(system)
    order = workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    with system.transaction(write=False) as s:
        from engine.db.models import Instance
        wf = system.load(s, s.get(Instance, order.instance_id), DISPATCHER)
    task = wf.get_tasks()[-1]
    assert PythonScriptEngine().evaluate(task, "1 + 1") == 2
    assert any("SpiffWorkflow" in e for e in watch)


def test_deploy_checks_the_bpmn_schema(system):
    invalid = RECTIFICATION.replace('<bpmn:userTask id="Task_review"',
                                 '<bpmn:userTask id="Task_review" priority="high"', 1)
    with pytest.raises(DefinitionError) as err:
        system.deploy([("work_order.bpmn", invalid)], DESIGNER)
    assert "priority" in _problems(err) and "line" in _problems(err)
