"""Dashboards (JSON): work-order cycle times, on-time rate, backlog; attendance rate by
contract and day; gas inspection coverage and overdue households.

`from`/`to` bound the period (ISO 8601 with an offset, or a date taken as district-local
midnight; default the 30 days up to now). A unit leader sees only their own unit's rows (and
the gas figures only if their unit is the gas office)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from engine.api.deps import allow, engine_of
from engine.auth.service import Principal
from engine.domain import metrics
from engine.domain.attendance import DISTRICT_TZ
from engine.runtime.errors import ValidationFailed

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/dashboards", tags=["dashboards"])
DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=3 * 366)
GAS_UNIT = "gas-office"
FROM = Query(None, alias="from", description="start (inclusive): ISO date-time with offset, or YYYY-MM-DD")
TO = Query(None, alias="to", description="end (exclusive): ISO date-time with offset, or YYYY-MM-DD")


class Period(BaseModel):
    start: datetime
    end: datetime
    unit: str | None


class WorkOrderDashboard(BaseModel):
    period: Period
    closed: int
    median_hours: float | None
    p90_hours: float | None
    on_time_rate: float | None
    on_time_by_unit: list[dict]
    backlog: list[dict]
    backlog_total: int
    overdue_total: int
    by_day: list[dict] = []
    hotspots: list[dict] = []
    reported_total: int = 0


class AttendanceDashboard(BaseModel):
    period: Period
    by_contract_day: list[dict]
    expected: int
    rate: float | None


class GasDashboard(BaseModel):
    at: datetime
    households: int
    covered: int
    coverage: float
    overdue: int
    supply_suspended: int
    overdue_by_deliverer: list[dict]
    overdue_households: list[dict]


class Overview(BaseModel):
    work_orders: WorkOrderDashboard
    attendance: AttendanceDashboard
    gas: GasDashboard | None


def _when(text: str | None, name: str) -> datetime | None:
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), DISTRICT_TZ)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed({name: f"{text[:40]!r} is not an ISO date or date-time"}) from None
    if value.tzinfo is None:
        raise ValidationFailed({name: "a date-time needs an offset (e.g. +08:00 or Z)"})
    if not 2000 <= value.year <= 2999:
        raise ValidationFailed({name: "out of range (years 2000 to 2999)"})
    return value


def _period(now: datetime, start: str | None, end: str | None, principal: Principal) -> dict:
    to = _when(end, "to") or now
    frm = _when(start, "from") or to - DEFAULT_PERIOD
    if frm >= to:
        raise ValidationFailed({"from": "must be before 'to'"})
    if to - frm > MAX_PERIOD:
        raise ValidationFailed({"from": f"the period is at most {MAX_PERIOD.days} days"})
    unit = (principal.unit_code or "") if principal.role == "unit_leader" else None
    return {"start": frm, "end": to, "unit": unit}


def _work_orders(s, now, period) -> dict:
    return {"period": period, **metrics.work_orders(s, period["start"], period["end"], now, period["unit"])}


def _attendance(s, period) -> dict:
    return {"period": period, **metrics.attendance(s, period["start"], period["end"], period["unit"])}


def _gas(s, now, principal: Principal, limit: int) -> dict | None:
    if principal.role == "unit_leader" and principal.unit_code != GAS_UNIT:
        return None
    return {"at": now, **metrics.gas_coverage(s, now, limit)}


@router.get("", response_model=Overview, summary="All dashboard figures / 总览")
def overview(request: Request, principal: Principal = allow("dashboards.read"),
             start: str | None = FROM, end: str | None = TO):
    engine = engine_of(request)
    now = engine.clock()
    period = _period(now, start, end, principal)
    with engine.transaction(write=False) as s:
        return {"work_orders": _work_orders(s, now, period), "attendance": _attendance(s, period),
                "gas": _gas(s, now, principal, 20)}


@router.get("/workorders", response_model=WorkOrderDashboard,
            summary="Work orders: time to close, on-time rate, backlog / 工单指标")
def work_orders(request: Request, principal: Principal = allow("dashboards.read"),
                start: str | None = FROM, end: str | None = TO):
    """Median and p90 hours from report to close and the on-time rate (closed by the SLA) over
    orders closed in the period; backlog and overdue (past SLA) by unit and category over
    orders open now that were reported before `to`."""
    engine = engine_of(request)
    now = engine.clock()
    period = _period(now, start, end, principal)
    with engine.transaction(write=False) as s:
        return _work_orders(s, now, period)


@router.get("/attendance", response_model=AttendanceDashboard,
            summary="Attendance rate by contract and day / 出勤率")
def attendance_rates(request: Request, principal: Principal = allow("dashboards.read"),
                     start: str | None = FROM, end: str | None = TO):
    """Shifts starting in the period, by contract and district-local day (CITYLOOP_TIMEZONE):
    (present + late) / expected."""
    engine = engine_of(request)
    period = _period(engine.clock(), start, end, principal)
    with engine.transaction(write=False) as s:
        return _attendance(s, period)


@router.get("/gas", response_model=GasDashboard | None,
            summary="Gas inspection coverage and overdue households / 燃气安检覆盖率")
def gas_coverage(request: Request, principal: Principal = allow("dashboards.read"),
                 limit: int = Query(100, ge=0, le=1000, description="how many overdue households to list")):
    """As of now: the share of households inspected within 4 months, and those overdue (never
    inspected first). Null for a unit leader of another unit."""
    engine = engine_of(request)
    now = engine.clock()
    with engine.transaction(write=False) as s:
        return _gas(s, now, principal, limit)
