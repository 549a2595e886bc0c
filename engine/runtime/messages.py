"""Delivering a named message with a plain-data payload to the instances awaiting it, from
the API (a badge check-in, say) or from another instance (a message flow between pools)."""
from __future__ import annotations

from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition
from sqlmodel import Session, select

from engine.bpmn import serializer, spiff
from engine.db.models import AwaitedMessage
from engine.runtime import state
from engine.runtime.data import check_plain
from engine.runtime.errors import Actor, NotFound, ProcessError
from engine.runtime.rows import fetch_instance

__all__ = ["MAX_HOPS", "deliver", "forward"]

MAX_HOPS = 16   # messages passed on within one transaction (a loop between processes stops here)


def deliver(engine, s: Session, name: str, payloads: list[dict], actor: Actor,
            business_key: str | None, instance_id: int | None, exclude: int | None = None) -> dict[int, int]:
    """Deliver each payload in turn to every instance awaiting `name` (but `exclude`); an
    instance is loaded and saved once however many payloads it takes. When none awaits it (and
    no instance was named), each deployed process whose start event catches the message starts
    with `business_key` and takes it, as Camunda's message correlation does. Returns
    {instance id: payloads taken}."""
    if business_key is None and instance_id is None:
        raise NotFound("a message needs a business key or an instance id")
    q = select(AwaitedMessage.instance_id).where(AwaitedMessage.name == name)
    if business_key is not None:
        q = q.where(AwaitedMessage.business_key == business_key)
    if instance_id is not None:
        q = q.where(AwaitedMessage.instance_id == instance_id)
    if exclude is not None:
        q = q.where(AwaitedMessage.instance_id != exclude)
    ids = sorted(s.exec(q).all())
    if not ids and instance_id is None:
        ids = [engine.start(key, {}, actor, business_key=business_key, session=s)
               for key in engine.definitions.message_starts(s).get(name, [])]
    if not ids:
        raise NotFound(f"no running instance is waiting for message {name!r}"
                       + (f" with key {business_key!r}" if business_key else "")
                       + ", and no deployed process starts on it")
    delivered: dict[int, int] = {}
    for iid in ids:
        row = fetch_instance(s, iid, lock=True)
        wf = engine.load(s, row, actor)
        taken = 0

        def catch_all(wf, row=row):   # (runs within this iteration)
            nonlocal taken
            for payload in payloads:
                if name not in state.scan(wf).awaited:
                    break  # the process moved past waiting (e.g. its grace period ended)
                engine.record_event(s, row, actor.id, "message_received", element=name, payload=payload)
                # The result variable is fixed by the server: senders choose data, not names.
                wf.catch(BpmnEvent(MessageEventDefinition(name), payload={"payload": payload, "result_var": name}))
                spiff.engine_steps(wf)
                serializer.compact(wf)  # keep the tree small: every loop through the gateway adds tasks
                taken += 1

        if name not in state.scan(wf).awaited:
            continue
        engine.run_step(s, row, wf, actor, catch_all)
        delivered[iid] = taken
    return delivered


def forward(engine, s: Session, row, events: list, actor: Actor) -> None:
    """Messages an instance threw that nothing inside it caught (a message flow to another
    pool) go, in the same transaction, to the running instances with the sender's business key
    that await them; when none does, each deployed process whose start event catches the
    message starts with that business key. A message nobody takes fails the sender's step (an
    incident to retry), as Camunda refuses a message it cannot correlate: none is dropped."""
    for event in events:
        if not isinstance(event.event_definition, MessageEventDefinition):
            continue    # an uncaught error or escalation ends at its own process's boundary
        name = event.event_definition.name
        body = event.payload.get("payload") if isinstance(event.payload, dict) else None
        payload = check_plain(dict(body) if isinstance(body, dict) else {"value": body}, f"message {name}")
        hops = s.info.get("message_hops", 0) + 1
        if hops > MAX_HOPS:
            raise ProcessError(f"message {name!r}: more than {MAX_HOPS} messages passed on in one step "
                               "(do two processes answer each other in a loop?)")
        s.info["message_hops"] = hops
        try:
            _pass_on(engine, s, row, name, payload, actor)
        except ProcessError as exc:
            raise ProcessError(f"message {name!r} could not be delivered: {exc.detail}", element=exc.element) from None
        finally:
            s.info["message_hops"] = hops - 1


def _pass_on(engine, s: Session, row, name: str, payload: dict, actor: Actor) -> None:
    key = row.business_key
    if key is not None:
        try:
            deliver(engine, s, name, [payload], actor, key, None, exclude=row.id)
            return
        except NotFound:
            raise ProcessError(f"no running instance with business key {key!r} awaits message {name!r}, and "
                               "no deployed process starts on it") from None
    starts = engine.definitions.message_starts(s).get(name, [])
    if not starts:
        raise ProcessError(f"no instance awaits message {name!r} (its sender has no business key), and no "
                           "deployed process starts on it")
    for process_key in starts:
        started = engine.start(process_key, {}, actor, business_key=None, session=s)
        deliver(engine, s, name, [payload], actor, None, started)
