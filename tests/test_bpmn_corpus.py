"""The BPMN corpus (tests/bpmn_corpus/): files written as Camunda Modeler 5 / bpmn-js save them,
one per construct a designer draws, each deployed through the real engine.

Every file either deploys or is refused with a DefinitionError whose problems name an element
of the file (or none) and say what is wrong; nothing else may come out of a deploy ("never
crash"), and no deploy may take unbounded time. An accepted file's executable processes are
started and must stand where MANIFEST.json says (an open user task, an awaited message, a due
timer, or completed), with no incident."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from lxml import etree
from sqlmodel import select

from engine.bpmn.xml import MAX_DEFINITION_BYTES, DefinitionError
from engine.clock import ManualClock
from engine.db.models import AwaitedMessage, Incident, OpenTask
from engine.runtime.errors import Actor
from engine.system import build
from tests.conftest import START

CORPUS = Path(__file__).parent / "bpmn_corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text(encoding="utf-8"))
FILES = MANIFEST["files"]
DESIGNER = Actor("designer1", {"designer"})
CLERK = Actor("clerk1", {"dispatcher"})
DEPLOY_TIMEOUT = 20.0          # seconds for one deploy; the slowest file takes well under one
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
WAITS = ("task", "message", "timer", "completed")


def _oversize() -> bytes:
    """A well-formed, otherwise valid BPMN file just over the size limit (the padding is a
    documentation text, as a designer pasting a long text into the modeler would make)."""
    head = (CORPUS / "a01_start_end.bpmn").read_bytes()
    pad = b"x" * (MAX_DEFINITION_BYTES + 1)
    return head.replace(b'name="Start and end" isExecutable="true">',
                        b'name="Start and end" isExecutable="true"><bpmn:documentation>' + pad
                        + b"</bpmn:documentation>", 1)


def content(name: str) -> bytes:
    generated = FILES.get(name, {}).get("generated")
    if generated == "oversize":
        return _oversize()
    return (CORPUS / name).read_bytes()


def test_manifest_and_folder_agree():
    on_disk = {p.name for p in CORPUS.glob("*.bpmn")}
    listed = {n for n, e in FILES.items() if "generated" not in e}
    assert on_disk == listed, f"not in MANIFEST.json: {sorted(on_disk - listed)}; missing: {sorted(listed - on_disk)}"
    for name, entry in FILES.items():
        assert entry["expect"] in ("accept", "refuse") and entry["why"], name
        if entry["expect"] == "accept":
            waits = entry["wait"] if isinstance(entry["wait"], list) else [entry["wait"]]
            assert set(waits) <= set(WAITS), name
        else:
            assert entry["word"], name
    assert len(content("z06_oversize.bpmn")) > MAX_DEFINITION_BYTES


_DRAWN = ("startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent", "task",
          "userTask", "serviceTask", "sendTask", "receiveTask", "scriptTask", "businessRuleTask", "callActivity",
          "subProcess", "transaction", "adHocSubProcess", "exclusiveGateway", "inclusiveGateway", "parallelGateway",
          "eventBasedGateway", "complexGateway", "sequenceFlow", "messageFlow", "participant", "lane",
          "dataObjectReference", "dataStoreReference", "textAnnotation", "association", "group")


@pytest.mark.parametrize("name", sorted(n for n in FILES if n[0] in "abcder"))
def test_every_element_is_drawn(name):
    """The files open in the designer as a modeler saved them: every element a modeler draws
    has its shape or edge, on a plane of an element of the file, and every flow node lists its
    flows (bpmn-js and bpmnlint read a node's flows from its incoming/outgoing)."""
    root = etree.fromstring(content(name))
    di = "http://www.omg.org/spec/BPMN/20100524/DI"
    drawn = {el.get("bpmnElement") for el in root.iter(f"{{{di}}}BPMNShape", f"{{{di}}}BPMNEdge")}
    planes = {el.get("bpmnElement") for el in root.iter(f"{{{di}}}BPMNPlane")}
    ids = _ids(content(name))
    missing = [el.get("id") for el in root.iter() if isinstance(el.tag, str)
               and etree.QName(el).namespace == BPMN_NS and etree.QName(el).localname in _DRAWN
               and el.get("id") not in drawn]
    assert missing == [], f"{name}: not drawn: {missing}"
    assert planes <= ids and drawn <= ids
    for flow in root.iter(f"{{{BPMN_NS}}}sequenceFlow"):
        source = root.find(f".//*[@id='{flow.get('sourceRef')}']")
        assert flow.get("id") in [o.text for o in source.findall(f"{{{BPMN_NS}}}outgoing")], (name, flow.get("id"))


@pytest.fixture(scope="module")
def corpus(module_db_url):
    """One engine on one database for the whole corpus, with the corpus's forms and decision
    table deployed (as a designer deploys them before the processes using them)."""
    engine = build(module_db_url, clock=ManualClock(START))
    engine.deploy([(n, (CORPUS / n).read_bytes()) for n in MANIFEST["support"]], DESIGNER)
    yield engine
    engine.db.dispose()


def deploy_within(engine, files, timeout: float = DEPLOY_TIMEOUT):
    """Deploy in a thread and wait for it at most `timeout` seconds: a deploy that hangs fails
    the test instead of the run. Returns the deployed list, or the exception the deploy raised."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = engine.deploy(files, DESIGNER)
        except BaseException as exc:     # handed to the test, which judges it
            outcome["value"] = exc

    worker = threading.Thread(target=run, name=f"deploy {files[0][0]}", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"deploying {files[0][0]} took more than {timeout:g} s"
    outcome["seconds"] = time.monotonic() - started
    return outcome["value"]


def _ids(raw: bytes) -> set[str]:
    try:
        root = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        return set()
    return {el.get("id") for el in root.iter() if isinstance(el.tag, str) and el.get("id")}


def _executable(raw: bytes) -> list[str]:
    root = etree.fromstring(raw)
    return [p.get("id") for p in root.findall(f"{{{BPMN_NS}}}process") if p.get("isExecutable", "true") != "false"]


def _pending(name: str):
    reason = FILES[name].get("pending")
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


@pytest.mark.parametrize("name", [pytest.param(n, marks=_pending(n)) for n in sorted(FILES)])
def test_corpus_file(corpus, name):
    entry = FILES[name]
    raw = content(name)
    for first in entry.get("deploy_first", []):
        outcome = deploy_within(corpus, [(first, content(first))])
        assert not isinstance(outcome, BaseException), f"{first} (deployed first): {outcome!r}"
    files = [(name, raw)] + [(n, content(n)) for n in entry.get("deploy_with", [])]
    outcome = deploy_within(corpus, files)
    if isinstance(outcome, BaseException) and not isinstance(outcome, DefinitionError):
        raise AssertionError(f"deploying {name} crashed instead of refusing") from outcome
    if entry["expect"] == "refuse":
        assert isinstance(outcome, DefinitionError), f"{name} was accepted: {outcome!r} ({entry['why']})"
        check_refusal(name, raw, outcome, entry)
    else:
        assert not isinstance(outcome, BaseException), f"{name} was refused: {outcome} ({entry['why']})"
        check_run(corpus, name, raw, entry)


def check_refusal(name: str, raw: bytes, err: DefinitionError, entry: dict) -> None:
    ids = _ids(raw)
    assert err.source == name, f"the refusal names {err.source!r}, not the file at fault"
    assert err.problems, "a refusal lists its problems"
    for element, message in err.problems:
        assert isinstance(message, str) and message.strip(), f"empty message in {err.problems}"
        assert element is None or element in ids, f"problem names {element!r}, which is no element of {name}: {message}"
    word, wanted = entry["word"].lower(), entry["element"]
    matching = [(el, msg) for el, msg in err.problems if word in msg.lower() and (wanted is None or el == wanted)]
    assert matching, f"no problem {'on ' + repr(wanted) + ' ' if wanted else ''}says {entry['word']!r}: {err.problems}"


def check_run(engine, name: str, raw: bytes, entry: dict) -> None:
    key = f"corpus-{Path(name).stem}"
    overrides = entry.get("processes", {})
    order = list(overrides) + [p for p in _executable(raw) if p not in overrides]
    assert set(order) == set(_executable(raw)), f"MANIFEST names processes {name} does not have"
    started = {}
    for pid in order:
        data = overrides.get(pid, {}).get("start", entry["start"])
        started[pid] = engine.start(pid, data, CLERK, business_key=key)
    if "advance" in entry:    # complete one user task (with nothing filled in) and look again
        adv = entry["advance"]
        task = _open_tasks(engine, started[adv["process"]])
        chosen = [t for t in task if t.name == adv["task"]]
        assert chosen, f"{adv['task']} is not open in {adv['process']}: {[t.name for t in task]}"
        engine.complete(chosen[0].id, CLERK, {})
    for pid, iid in started.items():
        expect = {**{k: entry[k] for k in ("wait", "at", "data", "form", "audit", "open_tasks") if k in entry},
                  **overrides.get(pid, {})}
        check_instance(engine, f"{name} {pid}", iid, expect)


def _open_tasks(engine, iid: int) -> list:
    with engine.transaction(write=False) as s:
        return list(s.exec(select(OpenTask).where(OpenTask.instance_id == iid)).all())


def check_instance(engine, what: str, iid: int, expect: dict) -> None:
    found = engine.instance(iid)
    with engine.transaction(write=False) as s:
        incidents = s.exec(select(Incident).where(Incident.instance_id == iid)).all()
        awaited = s.exec(select(AwaitedMessage.name).where(AwaitedMessage.instance_id == iid)).all()
    tasks = _open_tasks(engine, iid)
    assert found["state"] != "incident" and found["error"] is None, f"{what}: {found['state']}: {found['error']}"
    assert not incidents, f"{what}: incidents {[i.message for i in incidents]}"
    if found["state"] == "completed":
        stands = {"completed"}
    else:
        stands = {w for w, present in (("task", tasks), ("message", awaited), ("timer", found["next_timer_at"]))
                  if present}
    wanted = set(expect["wait"] if isinstance(expect["wait"], list) else [expect["wait"]])
    assert stands == wanted, (f"{what} stands at {sorted(stands)} (tasks {[t.name for t in tasks]}, messages "
                              f"{list(awaited)}, timer {found['next_timer_at']}), not {sorted(wanted)}")
    if "at" in expect:
        where = {p["element"] for p in found["position"]}
        assert set(expect["at"]) <= where, f"{what} is at {sorted(where)}, not at all of {expect['at']}"
    if "open_tasks" in expect:
        assert len(tasks) == expect["open_tasks"], f"{what}: {len(tasks)} open tasks"
    if "form" in expect:
        assert {t.form_ref for t in tasks} == {expect["form"]}, f"{what}: forms {[t.form_ref for t in tasks]}"
    for k, v in expect.get("data", {}).items():
        assert found["data"].get(k) == v, f"{what}: data {k} = {found['data'].get(k)!r}, not {v!r}"
    if "audit" in expect:
        kinds = {e["kind"] for e in engine.audit(instance_id=iid)}
        assert set(expect["audit"]) <= kinds, f"{what}: audit has {sorted(kinds)}"


def test_the_whole_corpus_deploys_in_bounded_time(corpus):
    """Every file of the corpus again, one deploy each, each within the per-file bound, and
    all of them (about ninety) within a bound for the lot: refusals are cheap and nothing
    walks a file more than a few times."""
    started = time.monotonic()
    slowest = (0.0, "")
    for name in sorted(FILES):
        entry = FILES[name]
        files = [(n, content(n)) for n in entry.get("deploy_first", [])]
        for f in files:
            deploy_within(corpus, [f])
        t0 = time.monotonic()
        with_them = [(n, content(n)) for n in entry.get("deploy_with", [])]
        outcome = deploy_within(corpus, [(name, content(name)), *with_them])
        slowest = max(slowest, (time.monotonic() - t0, name))
        assert not isinstance(outcome, BaseException) or isinstance(outcome, DefinitionError), (name, outcome)
    total = time.monotonic() - started
    assert total < 120, f"the corpus took {total:.1f} s to deploy (slowest: {slowest[1]}, {slowest[0]:.2f} s)"
