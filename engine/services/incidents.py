"""Incidents for administrators: list them, retry a parked step once its definition is
fixed, or resolve it by hand (engine.runtime.incidents tells what each kind keeps)."""
from __future__ import annotations

from sqlmodel import select

from engine.db.models import Incident
from engine.runtime import incidents
from engine.runtime.errors import Actor, NotFound
from engine.services.access import Caller
from engine.services.tasks import FormPhotos

__all__ = ["page", "one", "retry", "resolve"]


def page(engine, *, open_only: bool = True, process_key: str | None = None, limit: int = 50,
         offset: int = 0) -> tuple[list[dict], int]:
    with engine.transaction(write=False) as s:
        rows, total = incidents.listing(s, open_only=open_only, process_key=process_key, limit=limit, offset=offset)
        return [incidents.as_dict(r) for r in rows], total


def one(engine, incident_id: int) -> dict:
    with engine.transaction(write=False) as s:
        found = s.exec(select(Incident).where(Incident.id == incident_id)).first()
        if found is None:
            raise NotFound(f"no incident {incident_id}")
        return incidents.as_dict(found)


def retry(engine, who: Caller, incident_id: int) -> dict:
    """Take the parked step again, as its submitter: a task's photos are checked and linked
    to the work order as at a completion."""
    submitter = one(engine, incident_id)["actor"]
    photos = FormPhotos(submitter, engine.clock())
    return engine.retry_incident(incident_id, Actor(who.id), check=photos.check,
                                 also=lambda s, task, row: photos.link(s, task))


def resolve(engine, who: Caller, incident_id: int, note: str) -> dict:
    return engine.resolve_incident(incident_id, Actor(who.id), note)
