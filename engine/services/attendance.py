"""Cleaning attendance set up and planned: contracts, crews, cleaners on a crew's roster,
badges (registered, deactivated when lost) and shifts planned ahead. Check-ins are in
engine.services.checkins.

Who may is the caller's business (engine.auth.policy); which crews a caller may plan for
is the object rule (engine.services.access.crew_for: another's crew is a 404)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.clock import to_db
from engine.domain import attendance, badges
from engine.domain.models import Attendance, Badge, Cleaner, Contract, Crew, Shift, Staff, Unit
from engine.runtime.errors import Actor, Conflict, NotFound, ValidationFailed
from engine.services.access import Caller, crew_for
from engine.services.rows import insert_new

__all__ = ["PLAN_AHEAD", "STATUSES", "Planned", "counts", "create_contract", "create_crew", "add_cleaner",
           "register_badge", "deactivate_badge", "plan_shift"]

PLAN_AHEAD = timedelta(days=62)     # a shift is planned at most this far ahead
STATUSES = ("expected", "present", "late", "absent", "unverified")


@dataclass
class Planned:
    shift: Shift
    counts: dict[str, int]          # attendance rows per status, and "roster"
    created: bool                   # False: the same shift was planned before (planning is idempotent)


def counts(s: Session, shift_ids: list[int]) -> dict[int, dict[str, int]]:
    """Attendance rows per status (and the roster's size) of each shift."""
    out = {sid: dict.fromkeys(STATUSES, 0) for sid in shift_ids}
    if shift_ids:
        q = (select(Attendance.shift_id, Attendance.status, func.count()).where(col(Attendance.shift_id).in_(shift_ids))
             .group_by(col(Attendance.shift_id), col(Attendance.status)))
        for sid, status, n in s.exec(q):
            out[sid][status] = n
    for c in out.values():
        c["roster"] = sum(c[k] for k in STATUSES)
    return out


def _new_row_errors(s: Session, model, key: str, what: str, parent, field: str, parent_key: str,
                    parent_what: str) -> dict:
    """Conflict if a `model` row `key` exists already; else the field errors so far: whether
    the `parent` row it belongs to (named by `field`) exists."""
    if s.get(model, key) is not None:
        raise Conflict(f"{what} {key!r} already exists")
    return {} if s.get(parent, parent_key) is not None else {field: f"no {parent_what} {parent_key!r}"}


def create_contract(engine, who: Caller, *, code: str, contractor: str, unit_code: str) -> Contract:
    with engine.transaction() as s:
        if s.get(Contract, code) is not None:
            raise Conflict(f"contract {code!r} already exists")
        if s.get(Unit, unit_code) is None:
            raise ValidationFailed({"unit_code": f"no unit {unit_code!r}"})
        return insert_new(s, Contract(code=code, contractor=contractor, unit_code=unit_code),
                          f"contract {code!r} already exists")


def create_crew(engine, who: Caller, *, code: str, contract_code: str, muster_point: str, shift_start: str,
                supervisor_id: str | None = None, shift_minutes: int = 480, grace_minutes: int = 15) -> Crew:
    """A crew of a contract that exists, led by a supervisor (a staff member of that role)."""
    with engine.transaction() as s:
        errors = _new_row_errors(s, Crew, code, "crew", Contract, "contract_code", contract_code, "contract")
        if supervisor_id:
            sup = s.get(Staff, supervisor_id)
            if sup is None or sup.role != "supervisor":
                errors["supervisor_id"] = f"no supervisor {supervisor_id!r}"
        if errors:
            raise ValidationFailed(errors)
        crew = Crew(code=code, contract_code=contract_code, supervisor_id=supervisor_id, muster_point=muster_point,
                    shift_start=shift_start, shift_minutes=shift_minutes, grace_minutes=grace_minutes)
        return insert_new(s, crew, f"crew {code!r} already exists")


def add_cleaner(engine, who: Caller, *, cleaner_id: str, name: str, crew_code: str,
                badge_id: str | None = None) -> Cleaner:
    """A cleaner on a crew's roster, with an active badge nobody else holds (or none yet)."""
    with engine.transaction() as s:
        errors = _new_row_errors(s, Cleaner, cleaner_id, "cleaner", Crew, "crew_code", crew_code, "crew")
        if badge_id:
            badge = s.get(Badge, badge_id)
            holder = s.exec(select(Cleaner.id).where(Cleaner.badge_id == badge_id)).first()
            if badge is None or not badge.active:
                errors["badge_id"] = f"no active badge {badge_id!r}"
            elif holder is not None:
                errors["badge_id"] = f"badge {badge_id!r} is already issued to {holder}"
        if errors:
            raise ValidationFailed(errors)
        return insert_new(s, Cleaner(id=cleaner_id, name=name, crew_code=crew_code, badge_id=badge_id),
                          f"cleaner {cleaner_id!r} already exists, or badge {badge_id!r} was just issued")


def register_badge(engine, who: Caller, *, badge_id: str, kind: str = "rotating", secret: str | None = None,
                   beacon: str | None = None) -> Badge:
    """A new badge (rules in engine.domain.badges). `beacon`: a legacy badge's iBeacon
    identity as text, <uuid>:<major>:<minor>."""
    try:
        ident = badges.parse_beacon(beacon) if beacon else None
    except ValueError as exc:
        raise ValidationFailed({"beacon": str(exc)}) from None
    try:
        with engine.transaction() as s:
            return badges.register(s, badge_id, kind, secret, ident)
    except IntegrityError:   # registered by someone else since the check (PostgreSQL)
        raise Conflict(f"badge {badge_id!r} already exists (created by someone else just now)") from None


def deactivate_badge(engine, who: Caller, badge_id: str) -> tuple[Badge, str | None]:
    """A lost badge checks nobody in any more; (the badge, the cleaner who holds it)."""
    with engine.transaction() as s:
        badge = s.get(Badge, badge_id)
        if badge is None:
            raise NotFound(f"no badge {badge_id!r}")
        badge.active = False
        holder = s.exec(select(Cleaner.id).where(Cleaner.badge_id == badge_id)).first()
        return badge, holder


def plan_shift(engine, who: Caller, actor: Actor, crew_code: str, starts_at: datetime) -> Planned:
    """Plan a shift of one of `who`'s crews and start its attendance process. The same
    shift planned again is the one planned before (created False)."""
    now = engine.clock()
    try:
        with engine.transaction() as s:
            crew = crew_for(s, who, crew_code)
            if starts_at + timedelta(minutes=crew.grace_minutes) <= now:
                raise ValidationFailed({"starts_at": "the shift's grace period would already be over"})
            if starts_at > now + PLAN_AHEAD:
                raise ValidationFailed({"starts_at": f"more than {PLAN_AHEAD.days} days ahead"})
            existing = s.exec(select(Shift.id).where(Shift.crew_code == crew.code,
                                                     Shift.starts_at == to_db(starts_at))).first()
            shift = attendance.plan_shift(engine, crew.code, starts_at, actor, session=s)
            s.flush()
            assert shift.id is not None   # (a stored row)
            return Planned(shift, counts(s, [shift.id])[shift.id], created=existing is None)
    except IntegrityError:
        raise Conflict("this shift was planned at the same moment by someone else; reload") from None
