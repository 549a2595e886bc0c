"""Delivering a named message with a plain-data payload to the instances awaiting it."""
from __future__ import annotations

from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition
from sqlmodel import Session, select

from engine.bpmn import serializer
from engine.db.models import AwaitedMessage
from engine.runtime import state
from engine.runtime.errors import Actor, NotFound
from engine.runtime.rows import fetch_instance

__all__ = ["deliver"]


def deliver(engine, s: Session, name: str, payloads: list[dict], actor: Actor,
            business_key: str | None, instance_id: int | None) -> dict[int, int]:
    """Deliver each payload in turn to every instance awaiting `name`; an instance is loaded
    and saved once however many payloads it takes. Returns {instance id: payloads taken}."""
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
                wf.do_engine_steps()
                serializer.compact(wf)  # keep the tree small: every loop through the gateway adds tasks
                taken += 1

        if name not in state.scan(wf).awaited:
            continue
        engine.run_step(s, row, wf, actor, catch_all)
        delivered[iid] = taken
    return delivered
