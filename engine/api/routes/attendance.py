"""Cleaning attendance: contracts, crews and rosters, badges, shifts, check-ins in batches,
and attendance per shift.

Object rule: a supervisor sees and works only their own crews (Crew.supervisor_id); a unit
leader sees the crews of their unit's contracts; dispatchers and administrators see all; a
badge gateway may check in to any shift. Others' crews and shifts are a 404."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from engine.api.deps import actor_of, allow, engine_of
from engine.auth.service import Principal
from engine.clock import from_db, to_db
from engine.domain import attendance
from engine.domain.models import Attendance, Badge, Cleaner, Contract, Crew, Shift, Staff, Unit
from engine.runtime.errors import Conflict, EngineError, NotFound, ValidationFailed

RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="row id")]
router = APIRouter(prefix="/api/v1/attendance", tags=["attendance"])
MAX_BATCH = 1000
OPENS_BEFORE = timedelta(hours=2)     # a sighting earlier than this before the start is not for this shift
MAX_SKEW = timedelta(minutes=5)       # a device clock this far ahead of the server's is not believed
PLAN_AHEAD = timedelta(days=62)
RANK = {"expected": 0, "unverified": 1, "late": 2, "present": 3, "absent": 0}
CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"        # contract, crew and unit codes
PERSON = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"      # staff and cleaner ids
BADGE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
TEXT = r"^[^\x00-\x1f\x7f]*$"                    # free text: no control characters (nor NUL)


def _plausible(value: datetime) -> datetime:
    if not 2000 <= value.year <= 2999:
        raise ValueError("not a plausible time (years 2000 to 2999)")
    return value


When = Annotated[AwareDatetime, AfterValidator(_plausible)]


# ---- shapes ---------------------------------------------------------------------------------
class ContractIn(BaseModel):
    code: str = Field(pattern=CODE)
    contractor: str = Field(min_length=1, max_length=160, pattern=TEXT)
    unit_code: str = Field(pattern=CODE)


class ContractOut(BaseModel):
    code: str
    contractor: str
    unit_code: str
    crews: list[str]


class CrewIn(BaseModel):
    code: str = Field(pattern=CODE)
    contract_code: str = Field(pattern=CODE)
    supervisor_id: str | None = Field(default=None, pattern=PERSON)
    muster_point: str = Field(min_length=1, max_length=160, pattern=TEXT)
    shift_start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="local HH:MM")
    shift_minutes: int = Field(default=480, ge=30, le=24 * 60)
    grace_minutes: int = Field(default=15, ge=0, le=240)


class CleanerOut(BaseModel):
    id: str
    name: str
    badge_id: str | None


class CrewOut(BaseModel):
    code: str
    contract_code: str
    supervisor_id: str | None
    muster_point: str
    shift_start: str
    shift_minutes: int
    grace_minutes: int
    roster_size: int


class CrewDetail(CrewOut):
    roster: list[CleanerOut]


class CleanerIn(BaseModel):
    id: str = Field(pattern=PERSON)
    name: str = Field(min_length=1, max_length=120, pattern=TEXT)
    crew_code: str = Field(pattern=CODE)
    badge_id: str | None = Field(default=None, pattern=BADGE)


class BadgeIn(BaseModel):
    id: str = Field(pattern=BADGE)
    kind: Literal["rotating", "legacy"] = "rotating"
    secret: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32,128}$", description="hex key; write-only")


class BadgeOut(BaseModel):
    id: str
    kind: str
    active: bool
    cleaner_id: str | None


class ShiftIn(BaseModel):
    crew_code: str = Field(pattern=CODE)
    starts_at: When


class ShiftOut(BaseModel):
    id: int
    crew_code: str
    starts_at: datetime
    grace_ends_at: datetime
    closed: bool
    instance_id: int | None
    counts: dict[str, int]


class AttendanceRow(BaseModel):
    cleaner_id: str
    name: str
    status: str
    checked_in_at: datetime | None
    badge_id: str | None
    source: str | None


class ShiftAttendance(BaseModel):
    shift: ShiftOut
    rate: float | None
    rows: list[AttendanceRow]


class CheckinItem(BaseModel):
    badge_id: str = Field(pattern=BADGE)
    seen_at: When
    verified: bool
    source: str = Field(default="", max_length=32, pattern=TEXT)


class CheckinBatch(BaseModel):
    items: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class Verdict(BaseModel):
    index: int
    badge_id: str | None
    verdict: Literal["applied", "ignored", "invalid", "conflict"]
    code: int
    status: str | None = None
    message: str | None = None


class BatchOut(BaseModel):
    shift_id: int
    applied: int
    ignored: int
    invalid: int
    conflict: int
    results: list[Verdict]


# ---- object rules --------------------------------------------------------------------------------
def _crew_scope(principal: Principal) -> list:
    if principal.role == "supervisor":
        return [Crew.supervisor_id == principal.id]
    if principal.role == "unit_leader":
        return [Crew.contract_code.in_(select(Contract.code).where(Contract.unit_code == (principal.unit_code or "")))]
    return []


def _crew(s, principal: Principal, code: str) -> Crew:
    crew = s.exec(select(Crew).where(Crew.code == code, *_crew_scope(principal))).first()
    if crew is None:
        raise NotFound(f"no crew {code!r} (or not one of yours)")
    return crew


def _shift(s, principal: Principal, shift_id: int) -> Shift:
    shift = s.get(Shift, shift_id)
    if shift is None or (principal.role != "gateway" and
                         s.exec(select(Crew.code).where(Crew.code == shift.crew_code, *_crew_scope(principal))).first() is None):
        raise NotFound(f"no shift {shift_id} (or not one of your crews')")
    return shift


_STATUSES = ("expected", "present", "late", "absent", "unverified")


def _counts(s, shift_ids: list[int]) -> dict[int, dict[str, int]]:
    out = {sid: dict.fromkeys(_STATUSES, 0) for sid in shift_ids}
    if shift_ids:
        q = (select(Attendance.shift_id, Attendance.status, func.count()).where(Attendance.shift_id.in_(shift_ids))
             .group_by(Attendance.shift_id, Attendance.status))
        for sid, status, n in s.exec(q):
            out[sid][status] = n
    for c in out.values():
        c["roster"] = sum(c[k] for k in _STATUSES)
    return out


def _shift_out(shift: Shift, counts: dict) -> dict:
    return dict(id=shift.id, crew_code=shift.crew_code, starts_at=from_db(shift.starts_at),
                grace_ends_at=from_db(shift.grace_ends_at), closed=shift.closed, instance_id=shift.instance_id,
                counts=counts)


def _crew_out(crew: Crew, roster_size: int, **extra) -> dict:
    return dict(code=crew.code, contract_code=crew.contract_code, supervisor_id=crew.supervisor_id,
                muster_point=crew.muster_point, shift_start=crew.shift_start, shift_minutes=crew.shift_minutes,
                grace_minutes=crew.grace_minutes, roster_size=roster_size, **extra)


# ---- contracts, crews, cleaners, badges ------------------------------------------------------------
@router.get("/contracts", response_model=list[ContractOut], summary="Cleaning contracts / 保洁合同")
def list_contracts(request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        crews = s.exec(select(Crew.contract_code, Crew.code).where(*_crew_scope(principal)).order_by(Crew.code)).all()
        q = select(Contract).order_by(Contract.code)
        if principal.role == "supervisor":
            q = q.where(Contract.code.in_({c for c, _ in crews}))
        elif principal.role == "unit_leader":
            q = q.where(Contract.unit_code == (principal.unit_code or ""))
        return [dict(code=c.code, contractor=c.contractor, unit_code=c.unit_code,
                     crews=[code for cc, code in crews if cc == c.code]) for c in s.exec(q.limit(5000))]


@router.post("/contracts", response_model=ContractOut, status_code=201, summary="Add a contract / 新增合同")
def create_contract(body: ContractIn, request: Request, _: Principal = allow("attendance.manage")):
    with engine_of(request).transaction() as s:
        if s.get(Contract, body.code) is not None:
            raise Conflict(f"contract {body.code!r} already exists")
        if s.get(Unit, body.unit_code) is None:
            raise ValidationFailed({"unit_code": f"no unit {body.unit_code!r}"})
        s.add(Contract(code=body.code, contractor=body.contractor, unit_code=body.unit_code))
        return dict(body.model_dump(), crews=[])


@router.get("/crews", response_model=list[CrewOut], summary="Crews (yours, for a supervisor) / 班组")
def list_crews(request: Request, principal: Principal = allow("attendance.read"),
               contract: str | None = Query(None, pattern=CODE)):
    with engine_of(request).transaction(write=False) as s:
        where = _crew_scope(principal) + ([Crew.contract_code == contract] if contract else [])
        sizes = dict(s.exec(select(Cleaner.crew_code, func.count()).group_by(Cleaner.crew_code)).all())
        return [_crew_out(c, sizes.get(c.code, 0)) for c in s.exec(select(Crew).where(*where).order_by(Crew.code).limit(5000))]


@router.get("/crews/{crew_code}", response_model=CrewDetail, summary="A crew and its roster / 班组与名单")
def get_crew(crew_code: Annotated[str, Path(pattern=CODE)], request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        crew = _crew(s, principal, crew_code)
        roster = s.exec(select(Cleaner).where(Cleaner.crew_code == crew.code).order_by(Cleaner.id)).all()
        return _crew_out(crew, len(roster), roster=[dict(id=c.id, name=c.name, badge_id=c.badge_id) for c in roster])


@router.post("/crews", response_model=CrewDetail, status_code=201, summary="Add a crew / 新增班组")
def create_crew(body: CrewIn, request: Request, _: Principal = allow("attendance.manage")):
    with engine_of(request).transaction() as s:
        if s.get(Crew, body.code) is not None:
            raise Conflict(f"crew {body.code!r} already exists")
        errors = {}
        if s.get(Contract, body.contract_code) is None:
            errors["contract_code"] = f"no contract {body.contract_code!r}"
        if body.supervisor_id:
            sup = s.get(Staff, body.supervisor_id)
            if sup is None or sup.role != "supervisor":
                errors["supervisor_id"] = f"no supervisor {body.supervisor_id!r}"
        if errors:
            raise ValidationFailed(errors)
        crew = Crew(**body.model_dump())
        s.add(crew)
        return _crew_out(crew, 0, roster=[])


@router.post("/cleaners", response_model=CleanerOut, status_code=201, summary="Add a cleaner to a crew / 新增保洁员")
def create_cleaner(body: CleanerIn, request: Request, _: Principal = allow("attendance.manage")):
    with engine_of(request).transaction() as s:
        if s.get(Cleaner, body.id) is not None:
            raise Conflict(f"cleaner {body.id!r} already exists")
        errors = {}
        if s.get(Crew, body.crew_code) is None:
            errors["crew_code"] = f"no crew {body.crew_code!r}"
        if body.badge_id:
            badge = s.get(Badge, body.badge_id)
            holder = s.exec(select(Cleaner.id).where(Cleaner.badge_id == body.badge_id)).first()
            if badge is None or not badge.active:
                errors["badge_id"] = f"no active badge {body.badge_id!r}"
            elif holder is not None:
                errors["badge_id"] = f"badge {body.badge_id!r} is already issued to {holder}"
        if errors:
            raise ValidationFailed(errors)
        s.add(Cleaner(**body.model_dump()))
        return body.model_dump(exclude={"crew_code"})


@router.get("/badges", response_model=list[BadgeOut], summary="Badges (never their keys) / 工牌")
def list_badges(request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        q = select(Badge, Cleaner.id).join(Cleaner, Cleaner.badge_id == Badge.id, isouter=True)
        if principal.role in ("supervisor", "unit_leader"):
            q = q.where(Cleaner.crew_code.in_(select(Crew.code).where(*_crew_scope(principal))))
        return [dict(id=b.id, kind=b.kind, active=b.active, cleaner_id=cid)
                for b, cid in s.exec(q.order_by(Badge.id).limit(20000))]


@router.post("/badges", response_model=BadgeOut, status_code=201, summary="Register a badge / 登记工牌")
def create_badge(body: BadgeIn, request: Request, _: Principal = allow("attendance.manage")):
    if body.kind == "rotating" and not body.secret:
        raise ValidationFailed({"secret": "a rotating badge needs its key"})
    if body.kind == "legacy" and body.secret:
        raise ValidationFailed({"secret": "a legacy (static) badge has no key"})
    with engine_of(request).transaction() as s:
        if s.get(Badge, body.id) is not None:
            raise Conflict(f"badge {body.id!r} already exists")
        s.add(Badge(id=body.id, kind=body.kind, secret=body.secret.lower() if body.secret else None))
        return dict(id=body.id, kind=body.kind, active=True, cleaner_id=None)


@router.post("/badges/{badge_id}/deactivate", response_model=BadgeOut, summary="Deactivate a lost badge / 停用工牌")
def deactivate_badge(badge_id: Annotated[str, Path(pattern=BADGE)], request: Request, _: Principal = allow("attendance.manage")):
    with engine_of(request).transaction() as s:
        badge = s.get(Badge, badge_id)
        if badge is None:
            raise NotFound(f"no badge {badge_id!r}")
        badge.active = False
        holder = s.exec(select(Cleaner.id).where(Cleaner.badge_id == badge_id)).first()
        return dict(id=badge.id, kind=badge.kind, active=False, cleaner_id=holder)


# ---- shifts ---------------------------------------------------------------------------------------
@router.get("/shifts", response_model=list[ShiftOut], summary="Shifts by crew and day / 班次")
def list_shifts(request: Request, principal: Principal = allow("attendance.read"),
                crew: str | None = Query(None, pattern=CODE),
                day: date | None = Query(None, ge=date(2000, 1, 1), le=date(2999, 12, 31),
                                         description="district-local date (Asia/Shanghai)"),
                limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=2**31 - 1)):
    q = select(Shift).join(Crew, Crew.code == Shift.crew_code).where(*_crew_scope(principal))
    if crew:
        q = q.where(Shift.crew_code == crew)
    if day:
        start = datetime.combine(day, time(0), attendance.DISTRICT_TZ)
        q = q.where(Shift.starts_at >= to_db(start), Shift.starts_at < to_db(start + timedelta(days=1)))
    with engine_of(request).transaction(write=False) as s:
        shifts = s.exec(q.order_by(Shift.starts_at, Shift.id).limit(limit).offset(offset)).all()
        counts = _counts(s, [sh.id for sh in shifts])
        return [_shift_out(sh, counts[sh.id]) for sh in shifts]


@router.post("/shifts", response_model=ShiftOut, status_code=201,
             summary="Plan a shift (administrator or the crew's supervisor) / 排班")
def plan_shift(body: ShiftIn, request: Request, response: Response, principal: Principal = allow("attendance.plan")):
    engine = engine_of(request)
    now = engine.clock()
    try:
        with engine.transaction() as s:
            crew = _crew(s, principal, body.crew_code)
            if body.starts_at + timedelta(minutes=crew.grace_minutes) <= now:
                raise ValidationFailed({"starts_at": "the shift's grace period would already be over"})
            if body.starts_at > now + PLAN_AHEAD:
                raise ValidationFailed({"starts_at": f"more than {PLAN_AHEAD.days} days ahead"})
            existing = s.exec(select(Shift.id).where(Shift.crew_code == crew.code,
                                                     Shift.starts_at == to_db(body.starts_at))).first()
            shift = attendance.plan_shift(engine, crew.code, body.starts_at, actor_of(principal), session=s)
            if existing is not None:
                response.status_code = 200  # planning is idempotent: the same shift again
            s.flush()
            return _shift_out(shift, _counts(s, [shift.id])[shift.id])
    except IntegrityError:
        raise Conflict("this shift was planned at the same moment by someone else; reload") from None


@router.get("/shifts/{shift_id}", response_model=ShiftOut, summary="A shift / 班次详情")
def get_shift(shift_id: RowId, request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        shift = _shift(s, principal, shift_id)
        return _shift_out(shift, _counts(s, [shift.id])[shift.id])


@router.get("/shifts/{shift_id}/attendance", response_model=ShiftAttendance,
            summary="Attendance of a shift / 班次出勤")
def shift_attendance(shift_id: RowId, request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        shift = _shift(s, principal, shift_id)
        rows = s.exec(select(Attendance, Cleaner.name).join(Cleaner, Cleaner.id == Attendance.cleaner_id)
                      .where(Attendance.shift_id == shift.id).order_by(Attendance.cleaner_id)).all()
        counts = _counts(s, [shift.id])[shift.id]
        attended = counts["present"] + counts["late"]
        return {"shift": _shift_out(shift, counts),
                "rate": round(attended / counts["roster"], 4) if counts["roster"] else None,
                "rows": [dict(cleaner_id=a.cleaner_id, name=name, status=a.status,
                              checked_in_at=from_db(a.checked_in_at), badge_id=a.badge_id, source=a.source)
                         for a, name in rows]}


# ---- check-ins ------------------------------------------------------------------------------------
_ITEM = TypeAdapter(CheckinItem)


def _invalid_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors())


@router.post("/shifts/{shift_id}/checkins", response_model=BatchOut,
             summary="Badge check-ins in a batch, one verdict per item / 批量打卡")
def check_in(shift_id: RowId, body: CheckinBatch, request: Request, principal: Principal = allow("attendance.checkin")):
    """Up to 1000 sightings {badge_id, seen_at (ISO 8601 with offset), verified, source}. Each
    gets a verdict: applied (with the status it gives), ignored (with the reason: unknown badge,
    not on the roster, no better than an earlier check-in), invalid (with a message) or conflict
    (409: the shift's grace period is over)."""
    engine = engine_of(request)
    actor = actor_of(principal)
    now = engine.clock()
    with engine.transaction(write=False) as s:
        shift = _shift(s, principal, shift_id)
        starts, grace_end = from_db(shift.starts_at), from_db(shift.grace_ends_at)
        parsed: list[CheckinItem | str] = []
        for raw in body.items:
            try:
                parsed.append(_ITEM.validate_python(raw))
            except ValidationError as exc:
                parsed.append(_invalid_message(exc))
        ids = sorted({p.badge_id for p in parsed if isinstance(p, CheckinItem)})
        badges = {b.id: b for b in s.exec(select(Badge).where(Badge.id.in_(ids)))} if ids else {}
        holders = dict(s.exec(select(Cleaner.badge_id, Cleaner.id).where(Cleaner.badge_id.in_(ids))).all()) if ids else {}
        status = dict(s.exec(select(Attendance.cleaner_id, Attendance.status).where(Attendance.shift_id == shift.id)).all())
    closed_msg = (f"the grace period of shift {shift.id} ended at {grace_end.isoformat()}; check-ins are closed "
                  "/ 宽限期已过，打卡已关闭")
    results, pending, closed = [], [], shift.closed or now > grace_end
    for i, item in enumerate(parsed):
        if isinstance(item, str):
            results.append(Verdict(index=i, badge_id=_badge_of(body.items[i]), verdict="invalid", code=422, message=item))
            continue
        v = dict(index=i, badge_id=item.badge_id)
        if closed:
            results.append(Verdict(**v, verdict="conflict", code=409, message=closed_msg))
            continue
        seen = item.seen_at
        if seen > now + MAX_SKEW:
            results.append(Verdict(**v, verdict="invalid", code=422, message=f"seen_at is in the future (server time {now.isoformat()})"))
            continue
        if seen < starts - OPENS_BEFORE or seen > grace_end:
            results.append(Verdict(**v, verdict="invalid", code=422,
                                   message=f"seen_at is outside this shift's check-in window ({(starts - OPENS_BEFORE).isoformat()} to {grace_end.isoformat()})"))
            continue
        badge, cleaner = badges.get(item.badge_id), holders.get(item.badge_id)
        reason = ("unknown badge" if badge is None else "badge deactivated" if not badge.active
                  else "badge not on this shift's roster" if cleaner not in status else None)
        if reason:
            results.append(Verdict(**v, verdict="ignored", code=200, message=reason))
            continue
        new = ("present" if seen <= starts else "late") if item.verified else "unverified"
        if RANK[new] <= RANK.get(status[cleaner], 0):
            results.append(Verdict(**v, verdict="ignored", code=200, status=status[cleaner],
                                   message=f"already checked in as {status[cleaner]}"))
            continue
        status[cleaner] = new
        pending.append((i, item, new))
        results.append(None)  # decided below, with the whole batch
    _apply_all(engine, shift.id, pending, results, actor, principal.role, closed_msg)
    tally = {k: sum(r.verdict == k for r in results) for k in ("applied", "ignored", "invalid", "conflict")}
    return BatchOut(shift_id=shift.id, results=results, **tally)


def _apply_all(engine, shift_id: int, pending: list, results: list, actor, role: str, closed_msg: str) -> None:
    """All good sightings in one step of the shift's process (attendance.check_in_many). The
    process takes them in order until its grace period ends; the rest are a conflict. If the
    step fails as a whole, each sighting goes on its own so that only the bad one is refused."""
    if not pending:
        return
    sightings = [(item.badge_id, item.seen_at, item.verified, item.source or role) for _, item, _ in pending]
    taken = None
    for _attempt in range(3):
        try:
            taken = attendance.check_in_many(engine, shift_id, sightings, actor)
            break
        except NotFound:
            taken = 0
            break
        except Conflict:
            continue  # another batch moved the shift's instance first: apply on top of it
        except EngineError:
            for i, item, new in pending:
                results[i] = _apply_one(engine, shift_id, i, item, actor, role, new)
            return
    for k, (i, item, new) in enumerate(pending):
        if taken is None:
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="conflict", code=409,
                                 message="the shift was busy; send this check-in again")
        elif k < taken:
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="applied", code=200, status=new)
        else:
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="conflict", code=409, message=closed_msg)


def _apply_one(engine, shift_id: int, i: int, item: CheckinItem, actor, role: str, new: str) -> Verdict:
    v = dict(index=i, badge_id=item.badge_id)
    try:
        attendance.check_in(engine, shift_id, item.badge_id, item.seen_at, item.verified, item.source or role, actor)
        return Verdict(**v, verdict="applied", code=200, status=new)
    except NotFound:
        return Verdict(**v, verdict="conflict", code=409, message=f"shift {shift_id} is closed / 班次已关闭")
    except EngineError as exc:
        return Verdict(**v, verdict="invalid" if not isinstance(exc, Conflict) else "conflict",
                       code=409 if isinstance(exc, Conflict) else 422, message=str(exc))


def _badge_of(raw) -> str | None:
    value = raw.get("badge_id") if isinstance(raw, dict) else None
    return value[:32] if isinstance(value, str) else None
