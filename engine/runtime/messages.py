"""Delivering a named message with a plain-data payload to the instances awaiting it."""
from __future__ import annotations

from sqlmodel import Session, select
from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition

from engine.db.models import AwaitedMessage
from engine.runtime.rows import fetch_instance
from engine.runtime import state
from engine.runtime.errors import Actor, NotFound


def deliver(engine, s: Session, name: str, payload: dict, actor: Actor,
            business_key: str | None, instance_id: int | None) -> list[int]:
    if business_key is None and instance_id is None:
        raise NotFound("a message needs a business key or an instance id")
    q = select(AwaitedMessage.instance_id).where(AwaitedMessage.name == name)
    if business_key is not None:
        q = q.where(AwaitedMessage.business_key == business_key)
    if instance_id is not None:
        q = q.where(AwaitedMessage.instance_id == instance_id)
    ids = sorted(s.exec(q).all())
    if not ids:
        raise NotFound(f"no running instance is waiting for message {name!r}"
                       + (f" with key {business_key!r}" if business_key else ""))
    delivered = []
    for iid in ids:
        row = fetch_instance(s, iid, lock=True)
        wf = engine.load(s, row, actor)
        if name not in state.scan(wf).awaited:
            continue

        def catch(wf, name=name):
            # The result variable is fixed by the server: senders choose data, not names.
            event = BpmnEvent(MessageEventDefinition(name), payload={"payload": payload, "result_var": name})
            wf.catch(event)

        engine._audit(s, row, actor.id, "message_received", element=name, payload=payload)
        engine._run_or_raise(s, row, wf, actor, catch)
        delivered.append(iid)
    return delivered
