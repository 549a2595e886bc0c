"""Gas household writes: the CSV import of households, and an inspection started at
delivery by the household's deliverer (the process is engine.domain.gas's)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from engine.db.models import Instance
from engine.domain import gas, households_import
from engine.runtime.errors import Actor, Conflict, Forbidden
from engine.services.access import Caller, household_for

__all__ = ["Started", "import_households", "start_inspection"]


@dataclass(frozen=True)
class Started:
    household_id: int
    instance_id: int
    task_id: str | None             # the deliverer's first task, when there is one for them


def import_households(engine, who: Caller, raw: bytes, *, all_or_nothing: bool = True) -> households_import.Report:
    """Check every row of the CSV file, then write all of them, or only the good ones; a
    report per row. A file that cannot be read at all raises households_import.FileRejected
    (with its row and field)."""
    try:
        with engine.transaction() as s:
            return households_import.import_households(s, raw, engine.clock(), all_or_nothing)
    except IntegrityError:
        raise Conflict("households changed while importing (another import at the same time?); "
                       "nothing was written, try again") from None


def start_inspection(engine, who: Caller, actor: Actor, household_id: int) -> Started:
    """The household's deliverer starts its inspection at delivery; one open at a time."""
    with engine.transaction() as s:
        hh = household_for(s, who, household_id)
        if hh.deliverer_id != who.id:
            raise Forbidden("only the household's deliverer starts an inspection at delivery / 仅该户送气员可开始安检")
        key = f"household:{hh.id}"
        running = s.exec(select(Instance.id).where(Instance.process_key == gas.PROCESS, Instance.state == "running",
                                                   Instance.business_key == key)).first()
        if running is not None:
            raise Conflict(f"an inspection of household {hh.id} is already open (instance {running})"
                           " / 已有进行中的安检")
        assert hh.id is not None   # (a stored row)
        instance_id = gas.start_inspection(engine, hh.id, who.id, "delivery", actor, session=s)
    tasks = engine.tasks.for_actor(actor, instance_id=instance_id, limit=1)
    return Started(household_id, instance_id, tasks[0]["id"] if tasks else None)
