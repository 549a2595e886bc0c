"""Gas household writes: the CSV import of households, an inspection started at delivery
by the household's deliverer, and a deliverer's inspection at a delivery made offline (the
tablet's inspect_household op): the process is engine.domain.gas's."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine import forms
from engine.auth.policy import PERMISSIONS
from engine.db.models import Instance, OpenTask
from engine.domain import gas, households_import
from engine.domain.common import exclusive
from engine.domain.models import Inspection
from engine.runtime.errors import Actor, Conflict, Forbidden, ValidationFailed
from engine.services import tasks
from engine.services.access import Caller, household_for

__all__ = ["FORM_REF", "Inspected", "InspectionOpen", "Started", "import_households", "inspect_household",
           "start_inspection"]

FORM_REF = "gas_inspection"       # the form of the gas process's inspection tasks


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


@dataclass(frozen=True)
class Inspected:
    """What an inspection at delivery gave: the task completed (an open one of the
    household's, or the first of an inspection started for it) and the hazard found."""
    household_id: int
    instance_id: int
    business_key: str
    task_id: str
    started: bool                   # a new inspection (trigger "delivery") was started for it
    hazard_level: str | None
    hazard_reason: str | None
    rectification_order: str | None


class InspectionOpen(Conflict):
    """The household has an inspection open whose task is not this deliverer's to complete."""
    reason = "inspection_open"


def inspect_household(engine, who: Caller, actor: Actor, household_id: int, data: Mapping[str, Any], *,
                      now: datetime | None = None, photos: Sequence[str] = (),
                      also: Callable[[Session, Inspected], None] | None = None,
                      guard: Callable[[Session], None] | None = None) -> Inspected:
    """A deliverer inspects one of their households at a delivery: the household's open
    inspection task of theirs is completed with `data`; without one, an inspection is
    started (trigger "delivery") and its first task completed. The form is the deployed
    one's (ValidationFailed per field, checked before anything is started); the photos its
    file fields name must be stored uploads. `also(session, inspected)` runs in the
    completion's transaction (a caller's record of it commits with it). `guard(session)`
    runs, holding the household's lock, before an inspection would be started: it raises to
    start nothing (e.g. the caller's record shows a copy of this submission was applied
    meanwhile). Starting and completing are two steps; the completion takes the same lock,
    so a copy never starts a second inspection.

    Forbidden: not a deliverer (gas.inspect) or not the household's; NotFound: no such
    household among theirs; InspectionOpen: an inspection of it is open with someone else."""
    if who.role not in PERMISSIONS["gas.inspect"]:
        raise Forbidden(f"a {who.role} does not inspect households; only gas deliverers do / 仅送气员可入户安检")
    now = now or engine.clock()
    key = f"household:{household_id}"
    with engine.transaction(write=False) as s:
        hh = household_for(s, who, household_id)
        if hh.deliverer_id != who.id:
            raise Forbidden(f"household {household_id} is not one of yours / 该户不属于您")
        task_id = _open_task(s, who, key)
    started = False
    if task_id is None:
        _check_form(engine, who, data, now)
        task_id, started = _start(engine, who, actor, household_id, key, guard)
    done: list[Inspected] = []

    def after(s: Session, ot: dict, row) -> None:
        exclusive(s, _lock_name(key))
        s.flush()
        found = s.exec(select(Inspection).where(Inspection.instance_id == row.id)
                       .order_by(col(Inspection.id).desc())).first()   # (the one this step recorded)
        result = Inspected(household_id, row.id, row.business_key or key, ot["id"], started,
                           found.hazard_level if found else None, found.hazard_reason if found else None,
                           found.work_order_number if found else None)
        done.append(result)
        if also is not None:
            also(s, result)

    tasks.complete(engine, who, actor, task_id, data, now=now, photos=photos, also=after)
    return done[0]


_OPEN_TASK = (select(OpenTask.id).where(OpenTask.process_key == gas.PROCESS)
              .order_by(OpenTask.id))


def _open_task(s: Session, who: Caller, key: str) -> str | None:
    return s.exec(_OPEN_TASK.where(OpenTask.business_key == key,
                                   (OpenTask.assignee == who.id) | (OpenTask.claimed_by == who.id))).first()


def _check_form(engine, who: Caller, data: Mapping[str, Any], now: datetime) -> None:
    """The form a new inspection will have, checked before one is started for nothing."""
    with engine.transaction(write=False) as s:
        process_id, _ = engine.definitions.latest_process(s, gas.PROCESS)
        found = engine.definitions.form_for(s, process_id, FORM_REF)
        if found is None:
            return
        clean, errors = forms.validate_submission(found[1], data if isinstance(data, Mapping) else {})
        if errors:
            raise ValidationFailed(errors)
        tasks.FormPhotos(who.id, now).check(s, {}, found[1], clean)


def _lock_name(key: str) -> str:
    return f"gas-inspect:{key}"


def _start(engine, who: Caller, actor: Actor, household_id: int, key: str,
           guard: Callable[[Session], None] | None) -> tuple[str, bool]:
    """(the deliverer's first task, started) of a new inspection; one household at a time,
    so that two copies of one submission never start two inspections."""
    with engine.transaction() as s:
        exclusive(s, _lock_name(key))
        task_id = _open_task(s, who, key)          # another copy of the same submission was first
        if task_id is not None:
            return task_id, False
        if guard is not None:
            guard(s)
        running = s.exec(select(Instance.id).where(Instance.process_key == gas.PROCESS, Instance.state == "running",
                                                   Instance.business_key == key)).first()
        if running is not None:
            raise InspectionOpen(f"an inspection of household {household_id} is open (instance {running}) and its "
                                 "task is not yours / 该户已有进行中的安检，任务不属于您")
        instance_id = gas.start_inspection(engine, household_id, who.id, "delivery", actor, session=s)
        task_id = _open_task(s, who, key)
        if task_id is None:
            raise InspectionOpen(f"the inspection started for household {household_id} (instance {instance_id}) "
                                 "has no task for you / 新开安检无您的任务")
    return task_id, True
