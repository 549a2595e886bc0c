"""Cleaning attendance: contracts, crews and rosters, badges, shifts and attendance per shift
(check-ins in batches are in engine.api.routes.checkins).

Object rule: a supervisor sees and works only their own crews (Crew.supervisor_id); a unit
leader sees the crews of their unit's contracts; dispatchers and administrators see all; a
badge gateway may check in to any shift. Others' crews and shifts are a 404."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from sqlalchemy import func
from sqlmodel import select

from engine.api.deps import actor_of, allow, engine_of
from engine.auth.service import Principal
from engine.clock import from_db, to_db
from engine.domain import attendance
from engine.domain.models import Attendance, Badge, Cleaner, Contract, Crew, Shift
from engine.services import attendance as service
from engine.services.access import crew_for, crews_visible, shift_for

__all__ = ["BADGE", "CODE", "RowId", "TEXT", "When", "router"]  # (the routes themselves are reached through the router)

RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="row id")]
router = APIRouter(prefix="/api/v1/attendance", tags=["attendance"])
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
    id: str = Field(pattern=BADGE, description="a rotating badge advertises its id: at most 10 characters")
    kind: Literal["rotating", "legacy"] = "rotating"
    secret: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32,128}$",
                               description="hex key; write-only; left out, the server makes one (cityloop badge key)")
    beacon: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{32,36}[:/][0-9]{1,5}[:/][0-9]{1,5}$",
                               description="legacy iBeacon identity <uuid>:<major>:<minor>")


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


# ---- responses -----------------------------------------------------------------------------------
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
        crews = s.exec(select(Crew.contract_code, Crew.code).where(*crews_visible(principal)).order_by(Crew.code)).all()
        q = select(Contract).order_by(Contract.code)
        if principal.role == "supervisor":
            q = q.where(Contract.code.in_({c for c, _ in crews}))
        elif principal.role == "unit_leader":
            q = q.where(Contract.unit_code == (principal.unit_code or ""))
        return [dict(code=c.code, contractor=c.contractor, unit_code=c.unit_code,
                     crews=[code for cc, code in crews if cc == c.code]) for c in s.exec(q.limit(5000))]


@router.post("/contracts", response_model=ContractOut, status_code=201, summary="Add a contract / 新增合同")
def create_contract(body: ContractIn, request: Request, principal: Principal = allow("attendance.manage")):
    c = service.create_contract(engine_of(request), principal, code=body.code, contractor=body.contractor,
                                unit_code=body.unit_code)
    return dict(code=c.code, contractor=c.contractor, unit_code=c.unit_code, crews=[])


@router.get("/crews", response_model=list[CrewOut], summary="Crews (yours, for a supervisor) / 班组")
def list_crews(request: Request, principal: Principal = allow("attendance.read"),
               contract: str | None = Query(None, pattern=CODE)):
    with engine_of(request).transaction(write=False) as s:
        where = crews_visible(principal) + ([Crew.contract_code == contract] if contract else [])
        sizes = dict(s.exec(select(Cleaner.crew_code, func.count()).group_by(Cleaner.crew_code)).all())
        return [_crew_out(c, sizes.get(c.code, 0))
                for c in s.exec(select(Crew).where(*where).order_by(Crew.code).limit(5000))]


@router.get("/crews/{crew_code}", response_model=CrewDetail, summary="A crew and its roster / 班组与名单")
def get_crew(crew_code: Annotated[str, Path(pattern=CODE)], request: Request,
             principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        crew = crew_for(s, principal, crew_code)
        roster = s.exec(select(Cleaner).where(Cleaner.crew_code == crew.code).order_by(Cleaner.id)).all()
        return _crew_out(crew, len(roster), roster=[dict(id=c.id, name=c.name, badge_id=c.badge_id) for c in roster])


@router.post("/crews", response_model=CrewDetail, status_code=201, summary="Add a crew / 新增班组")
def create_crew(body: CrewIn, request: Request, principal: Principal = allow("attendance.manage")):
    crew = service.create_crew(engine_of(request), principal, **body.model_dump())
    return _crew_out(crew, 0, roster=[])


@router.post("/cleaners", response_model=CleanerOut, status_code=201, summary="Add a cleaner to a crew / 新增保洁员")
def create_cleaner(body: CleanerIn, request: Request, principal: Principal = allow("attendance.manage")):
    c = service.add_cleaner(engine_of(request), principal, cleaner_id=body.id, name=body.name,
                            crew_code=body.crew_code, badge_id=body.badge_id)
    return dict(id=c.id, name=c.name, badge_id=c.badge_id)


@router.get("/badges", response_model=list[BadgeOut], summary="Badges (never their keys) / 工牌")
def list_badges(request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        q = select(Badge, Cleaner.id).join(Cleaner, Cleaner.badge_id == Badge.id, isouter=True)
        if principal.role in ("supervisor", "unit_leader"):
            q = q.where(Cleaner.crew_code.in_(select(Crew.code).where(*crews_visible(principal))))
        return [dict(id=b.id, kind=b.kind, active=b.active, cleaner_id=cid)
                for b, cid in s.exec(q.order_by(Badge.id).limit(20000))]


@router.post("/badges", response_model=BadgeOut, status_code=201, summary="Register a badge / 登记工牌")
def create_badge(body: BadgeIn, request: Request, principal: Principal = allow("attendance.manage")):
    badge = service.register_badge(engine_of(request), principal, badge_id=body.id, kind=body.kind,
                                   secret=body.secret, beacon=body.beacon)
    return dict(id=badge.id, kind=badge.kind, active=True, cleaner_id=None)


@router.post("/badges/{badge_id}/deactivate", response_model=BadgeOut, summary="Deactivate a lost badge / 停用工牌")
def deactivate_badge(badge_id: Annotated[str, Path(pattern=BADGE)], request: Request,
                     principal: Principal = allow("attendance.manage")):
    badge, holder = service.deactivate_badge(engine_of(request), principal, badge_id)
    return dict(id=badge.id, kind=badge.kind, active=False, cleaner_id=holder)


# ---- shifts ---------------------------------------------------------------------------------------
@router.get("/shifts", response_model=list[ShiftOut], summary="Shifts by crew and day / 班次")
def list_shifts(request: Request, principal: Principal = allow("attendance.read"),
                crew: str | None = Query(None, pattern=CODE),
                day: date | None = Query(None, ge=date(2000, 1, 1), le=date(2999, 12, 31),
                                         description="district-local date (CITYLOOP_TIMEZONE)"),
                limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=2**31 - 1)):
    q = select(Shift).join(Crew, Crew.code == Shift.crew_code).where(*crews_visible(principal))
    if crew:
        q = q.where(Shift.crew_code == crew)
    if day:
        start = datetime.combine(day, time(0), attendance.DISTRICT_TZ)
        q = q.where(Shift.starts_at >= to_db(start), Shift.starts_at < to_db(start + timedelta(days=1)))
    with engine_of(request).transaction(write=False) as s:
        shifts = s.exec(q.order_by(Shift.starts_at, Shift.id).limit(limit).offset(offset)).all()
        counts = service.counts(s, [sh.id for sh in shifts])
        return [_shift_out(sh, counts[sh.id]) for sh in shifts]


@router.post("/shifts", response_model=ShiftOut, status_code=201,
             summary="Plan a shift (administrator or the crew's supervisor) / 排班")
def plan_shift(body: ShiftIn, request: Request, response: Response, principal: Principal = allow("attendance.plan")):
    planned = service.plan_shift(engine_of(request), principal, actor_of(principal), body.crew_code, body.starts_at)
    if not planned.created:
        response.status_code = 200  # planning is idempotent: the same shift again
    return _shift_out(planned.shift, planned.counts)


@router.get("/shifts/{shift_id}", response_model=ShiftOut, summary="A shift / 班次详情")
def get_shift(shift_id: RowId, request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        shift = shift_for(s, principal, shift_id)
        return _shift_out(shift, service.counts(s, [shift.id])[shift.id])


@router.get("/shifts/{shift_id}/attendance", response_model=ShiftAttendance,
            summary="Attendance of a shift / 班次出勤")
def shift_attendance(shift_id: RowId, request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        shift = shift_for(s, principal, shift_id)
        rows = s.exec(select(Attendance, Cleaner.name).join(Cleaner, Cleaner.id == Attendance.cleaner_id)
                      .where(Attendance.shift_id == shift.id).order_by(Attendance.cleaner_id)).all()
        counts = service.counts(s, [shift.id])[shift.id]
        attended = counts["present"] + counts["late"]
        return {"shift": _shift_out(shift, counts),
                "rate": round(attended / counts["roster"], 4) if counts["roster"] else None,
                "rows": [dict(cleaner_id=a.cleaner_id, name=name, status=a.status,
                              checked_in_at=from_db(a.checked_in_at), badge_id=a.badge_id, source=a.source)
                         for a, name in rows]}
