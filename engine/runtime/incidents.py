"""Incidents: steps a deployed process could not take (Camunda's model).

A failing expression, operation or model in a step is the server's problem, not the
caller's. The engine rolls the step back and records an incident: the failing element, the
error, the process version, and what the caller submitted (a start's data, a task's form
data), so that nothing acknowledged is lost. Administrators list incidents, retry them once
the definition is fixed (a parked start runs on the newest version; a parked task
completion is applied again) or resolve them by hand.

How a step is parked, by kind:
- start: the instance is kept in state "incident" with its start data and nothing run; the
  caller's own writes (the work order, the citizen's report) stand and it is answered as
  accepted.
- task: the completion is rolled back and its form data kept here; the task leaves the
  task lists (nobody else completes it meanwhile) until the incident is retried or resolved.
- timer: the sweep retries the timer by itself after a pause; the incident stays open and
  counts attempts until a step of the instance succeeds.
- message: the sender is told (its messages are its own to resend); recorded here too."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from engine.clock import from_db, to_db
from engine.db.models import Incident
from engine.runtime.errors import Conflict, NotFound

__all__ = ["STEPS", "record", "open_for", "get_open", "listing", "failed_again", "close", "close_instance",
           "as_dict"]

STEPS = ("start", "task", "message", "timer")
MAX_MESSAGE = 2000


def record(s: Session, now: datetime, *, instance_id: int, process_key: str, business_key: str | None,
           definition_id: int, version: int, step: str, element: str | None, message: str, submission: dict,
           actor: str) -> Incident:
    """A new open incident (or, for a timer that fails again, the open one's attempts counted)."""
    if step == "timer":
        same = s.exec(select(Incident).where(Incident.instance_id == instance_id, Incident.step == "timer",
                                             col(Incident.resolved_at).is_(None))).first()
        if same is not None:
            failed_again(s, same, now, message)
            return same
    incident = Incident(instance_id=instance_id, process_key=process_key, business_key=business_key,
                        definition_id=definition_id, version=version, step=step,
                        element=element[:128] if element else None, message=message[:MAX_MESSAGE],
                        submission=json.dumps(submission, ensure_ascii=False, default=str), actor=actor[:64],
                        attempts=1, created_at=to_db(now), last_failed_at=to_db(now))
    s.add(incident)
    s.flush()
    return incident


def open_for(s: Session, instance_id: int) -> list[Incident]:
    return list(s.exec(select(Incident).where(Incident.instance_id == instance_id, col(Incident.resolved_at).is_(None))
                       .order_by(col(Incident.id))))


def get_open(s: Session, incident_id: int) -> Incident:
    incident = s.get(Incident, incident_id, with_for_update=s.get_bind().dialect.name == "postgresql")
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    if incident.resolved_at is not None:
        raise Conflict(f"incident {incident_id} was already {incident.resolution} by {incident.resolved_by}")
    return incident


def listing(s: Session, *, open_only: bool = True, process_key: str | None = None, limit: int = 100,
            offset: int = 0) -> tuple[list[Incident], int]:
    where: list = []
    if open_only:
        where.append(col(Incident.resolved_at).is_(None))
    if process_key:
        where.append(Incident.process_key == process_key)
    total = s.exec(select(func.count()).select_from(Incident).where(*where)).one()
    rows = s.exec(select(Incident).where(*where).order_by(col(Incident.id).desc()).limit(limit).offset(offset)).all()
    return list(rows), total


def failed_again(s: Session, incident: Incident, now: datetime, message: str) -> None:
    incident.attempts += 1
    incident.last_failed_at = to_db(now)
    incident.message = message[:MAX_MESSAGE]
    s.add(incident)
    s.flush()


def close(s: Session, incident: Incident, now: datetime, by: str, resolution: str) -> None:
    incident.resolved_at, incident.resolved_by, incident.resolution = to_db(now), by[:64], resolution
    s.add(incident)
    s.flush()


def close_instance(s: Session, instance_id: int, now: datetime, by: str, steps=("timer", "message")) -> None:
    """A step of the instance went through: its open incidents of these kinds are over."""
    s.connection().execute(update(Incident).where(col(Incident.instance_id) == instance_id,
                                                  col(Incident.step).in_(steps), col(Incident.resolved_at).is_(None))
                           .values(resolved_at=to_db(now), resolved_by=by[:64], resolution="retried"))


def as_dict(incident: Incident) -> dict:
    return {"id": incident.id, "instance_id": incident.instance_id, "process_key": incident.process_key,
            "business_key": incident.business_key, "definition_id": incident.definition_id,
            "version": incident.version, "step": incident.step, "element": incident.element,
            "message": incident.message, "submission": json.loads(incident.submission), "actor": incident.actor,
            "attempts": incident.attempts, "created_at": from_db(incident.created_at),
            "last_failed_at": from_db(incident.last_failed_at), "resolved_at": from_db(incident.resolved_at),
            "resolved_by": incident.resolved_by, "resolution": incident.resolution}
