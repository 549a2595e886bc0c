"""What the process designer needs besides deploy itself: the registered operations a
service task may name, a dry-run deploy (the very checks of a deploy, nothing stored), and
where a version's running instances wait now (the designer's heatmap).

The heatmap is read from the indexed side tables the engine keeps (open human tasks,
awaited messages, open incidents) and the audit log for what has passed, never by loading
instances' serialized workflows."""
from __future__ import annotations

from collections import Counter

from lxml import etree
from sqlalchemy import func
from sqlmodel import col, select

from engine.bpmn.validate import BPMN_NS
from engine.bpmn.xml import DefinitionError, load_xml
from engine.db.models import AuditEvent, AwaitedMessage, Definition, Incident, Instance, OpenTask
from engine.runtime.errors import Actor, NotFound

__all__ = ["PARAMETERS", "activity", "operations", "validate"]

# The camunda:properties an operation reads (its third argument); the rest comes from the
# instance's data. Keep in step with engine/domain (an operation not listed takes none).
PARAMETERS: dict[str, list[dict]] = {
    "dispatch": [{"name": "mode", "required": False, "values": ["reroute"],
                  "description": "reroute: the order comes back from the re-route desk to its new unit"}],
}
# Audit events that mark an element as passed by an instance.
_PASSED = ("task_completed", "timer_fired", "call_completed")


class _DryRun(Exception):
    """Raised inside the validation transaction so that nothing of the deploy is kept."""


def operations(engine) -> list[dict]:
    """The operations a service task may name (camunda:type="external" camunda:topic=name)."""
    return [{"name": name, "description": doc, "parameters": PARAMETERS.get(name, [])}
            for name, doc in engine.registry.describe().items()]


def validate(engine, files: list[tuple[str, bytes]], actor: Actor) -> list[dict]:
    """Run a deploy of `files` in a transaction that is always rolled back: the same checks
    as a deploy (against what is deployed now), and nothing stored. [] when it would deploy."""
    try:
        with engine.transaction() as s:
            engine.definitions.deploy(s, files, actor.id, engine.clock())
            raise _DryRun
    except _DryRun:
        return []
    except DefinitionError as exc:
        return [{"file": exc.source, "element": el, "message": msg} for el, msg in exc.problems]


def _called_elements(engine, s, definition_id: int, root, key: str) -> dict[str, str]:
    """Element id of a called process (at the version this one is pinned to, and of what that
    calls in turn) -> the call activity of this process that leads to it: the caller's diagram
    shows a called process's waiting tasks and incidents on its call activity."""
    process = next((p for p in root.iter(f"{{{BPMN_NS}}}process") if p.get("id") == key), None)
    if process is None:
        return {}
    own = {el.get("id") for el in process.iter() if isinstance(el.tag, str) and el.get("id")}
    found: dict[str, str] = {}
    for call in process.iter(f"{{{BPMN_NS}}}callActivity"):
        todo, seen = [(call.get("calledElement"), definition_id)], set()
        while todo:
            called, caller_id = todo.pop()
            pinned = engine.definitions.pinned(s, caller_id, "bpmn", called)
            if pinned is None or pinned in seen:
                continue
            seen.add(pinned)
            child = s.get(Definition, pinned)
            child_root = load_xml(child.content, child.filename)
            for proc in child_root.iter(f"{{{BPMN_NS}}}process"):
                if proc.get("id") != called:
                    continue
                for el in proc.iter():
                    if isinstance(el.tag, str) and el.get("id") and el.get("id") not in own:
                        found.setdefault(el.get("id"), call.get("id"))
                todo.extend((c.get("calledElement"), pinned) for c in proc.iter(f"{{{BPMN_NS}}}callActivity"))
    return found


def _message_elements(root) -> dict[str, list[str]]:
    """Message name -> ids of the intermediate catch events and receive tasks that wait for it
    (a boundary event waits alongside its task, which is counted already)."""
    names = {m.get("id"): m.get("name") or m.get("id") for m in root.iter(f"{{{BPMN_NS}}}message")}
    waiting: dict[str, list[str]] = {}
    for med in root.iter(f"{{{BPMN_NS}}}messageEventDefinition"):
        event = med.getparent()
        if etree.QName(event).localname == "intermediateCatchEvent":
            name = names.get(med.get("messageRef"))
            if name:
                waiting.setdefault(name, []).append(event.get("id"))
    for task in root.iter(f"{{{BPMN_NS}}}receiveTask"):
        name = names.get(task.get("messageRef"))
        if name:
            waiting.setdefault(name, []).append(task.get("id"))
    return waiting


def activity(engine, key: str, version: int) -> dict:
    """Per element of one process version: instances waiting there now, open incidents there,
    and how many instances of this version have passed it."""
    with engine.transaction(write=False) as s:
        row = s.exec(select(Definition.id, Definition.content, Definition.filename)
                     .where(Definition.kind == "bpmn", Definition.key == key, Definition.version == version)).first()
        if row is None:
            raise NotFound(f"no process {key[:128]!r} version {version}")
        definition_id = row.id
        running = (select(Instance.id).where(Instance.definition_id == definition_id, Instance.state == "running")
                   .scalar_subquery())
        waiting: Counter = Counter()
        for name, n in s.exec(select(OpenTask.name, func.count()).where(col(OpenTask.instance_id).in_(running))
                              .group_by(OpenTask.name)):
            waiting[name] += n
        messages = dict(s.exec(select(AwaitedMessage.name, func.count(func.distinct(AwaitedMessage.instance_id)))
                               .where(col(AwaitedMessage.instance_id).in_(running))
                               .group_by(AwaitedMessage.name)).all())
        root = load_xml(row.content, row.filename)
        if messages:
            where = _message_elements(root)
            for name, n in messages.items():
                for element in where.get(name, [])[:1]:   # the first event that waits for it
                    waiting[element] += n
        incidents = Counter({el: n for el, n in s.exec(
            select(Incident.element, func.count()).where(Incident.definition_id == definition_id,
                                                         col(Incident.resolved_at).is_(None),
                                                         col(Incident.element).is_not(None))
            .group_by(Incident.element))})
        every = select(Instance.id).where(Instance.definition_id == definition_id).scalar_subquery()
        passed = Counter({el: n for el, n in s.exec(
            select(AuditEvent.element, func.count(func.distinct(AuditEvent.instance_id)))
            .where(col(AuditEvent.instance_id).in_(every), col(AuditEvent.kind).in_(_PASSED),
                   col(AuditEvent.element).is_not(None))
            .group_by(AuditEvent.element))})
        counts = dict(s.exec(select(Instance.state, func.count()).where(Instance.definition_id == definition_id)
                             .group_by(Instance.state)).all())
        via_call = _called_elements(engine, s, definition_id, root, key)
    for counter in (waiting, incidents):    # a called process's elements count on their call activity
        for el in [el for el in counter if el in via_call]:
            counter[via_call[el]] += counter.pop(el)
    elements = {el: {"waiting": waiting.get(el, 0), "incidents": incidents.get(el, 0), "passed": passed.get(el, 0)}
                for el in sorted(set(waiting) | set(incidents) | set(passed))}
    return {"process": key, "version": version, "running": counts.get("running", 0),
            "total": sum(counts.values()), "elements": elements}

