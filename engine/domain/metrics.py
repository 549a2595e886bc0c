"""Dashboard figures: work-order cycle times, on-time rate, backlog; attendance rates; gas
inspection coverage. Plain functions over a session; counting is done by SQL aggregates,
percentiles and the district-local day in Python (both differ between SQLite and PostgreSQL).

`unit` narrows everything to one responsible unit (a unit leader's view)."""
from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import case, func
from sqlmodel import Session, select

from engine.clock import from_db, to_db
from engine.domain import gas
from engine.domain.attendance import DISTRICT_TZ
from engine.domain.models import Attendance, Contract, Crew, Household, Shift, WorkOrder

__all__ = ["ATTENDED", "attendance", "gas_coverage", "percentile", "work_orders"]

ATTENDED = ("present", "late")


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _hours(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def work_orders(session: Session, start: datetime, end: datetime, now: datetime, unit: str | None = None) -> dict:
    """Orders closed in [start, end): median and p90 hours from report to close, on-time rate by
    unit (closed by the SLA due time; an order without an SLA counts as on time, as when it is
    closed). Backlog: orders open now that were reported before `end`, by unit and category,
    with those past their SLA as overdue. `by_day`: closed count, median and p90 per district-local
    day of closing; `hotspots`: orders reported in [start, end) by category and area (SQL counts)."""
    W = WorkOrder
    closed = [W.state == "closed", W.closed_at >= to_db(start), W.closed_at < to_db(end)]
    if unit is not None:
        closed.append(W.unit_code == unit)
    spans: list[float] = []
    per_day: dict[str, list[float]] = {}          # district-local day of closing -> spans
    for reported_at, closed_at in session.exec(select(W.reported_at, W.closed_at).where(*closed)):
        closed_local = from_db(closed_at)
        span = (closed_local - from_db(reported_at)).total_seconds() / 3600
        spans.append(span)
        per_day.setdefault(closed_local.astimezone(DISTRICT_TZ).date().isoformat(), []).append(span)
    on_time = case((W.sla_due.is_(None), 1), (W.closed_at <= W.sla_due, 1), else_=0)
    by_unit = session.exec(select(W.unit_code, func.count(), func.sum(on_time)).where(*closed)
                           .group_by(W.unit_code).order_by(W.unit_code)).all()
    is_open = [W.state != "closed", W.reported_at < to_db(end)]
    if unit is not None:
        is_open.append(W.unit_code == unit)
    overdue = case((W.sla_due < to_db(now), 1), else_=0)
    backlog = session.exec(select(W.unit_code, W.category, func.count(), func.sum(overdue)).where(*is_open)
                           .group_by(W.unit_code, W.category).order_by(W.unit_code, W.category)).all()
    reported = [W.reported_at >= to_db(start), W.reported_at < to_db(end)]
    if unit is not None:
        reported.append(W.unit_code == unit)
    hotspots = session.exec(select(W.category, W.area, func.count()).where(*reported)
                            .group_by(W.category, W.area).order_by(func.count().desc(), W.category, W.area)).all()
    total_on_time = sum(int(n or 0) for _, _, n in by_unit)
    return {
        "closed": len(spans),
        "median_hours": _hours(percentile(spans, 0.5)),
        "p90_hours": _hours(percentile(spans, 0.9)),
        "on_time_rate": _rate(total_on_time, len(spans)),
        "on_time_by_unit": [{"unit": u, "closed": int(n), "on_time": int(ok or 0), "rate": _rate(int(ok or 0), int(n))}
                            for u, n, ok in by_unit],
        "backlog": [{"unit": u, "category": c, "open": int(n), "overdue": int(late or 0)}
                    for u, c, n, late in backlog],
        "backlog_total": sum(int(n) for _, _, n, _ in backlog),
        "overdue_total": sum(int(late or 0) for _, _, _, late in backlog),
        "by_day": [{"day": day, "closed": len(v), "median_hours": _hours(percentile(v, 0.5)),
                    "p90_hours": _hours(percentile(v, 0.9))} for day, v in sorted(per_day.items())],
        "hotspots": [{"category": c, "area": a, "reported": int(n)} for c, a, n in hotspots],
        "reported_total": sum(int(n) for _, _, n in hotspots),
    }


def attendance(session: Session, start: datetime, end: datetime, unit: str | None = None) -> dict:
    """Shifts starting in [start, end), by contract and district-local day: present + late
    over expected (everyone on the roster; unverified sightings do not count)."""
    A = Attendance
    counts = [func.count()] + [func.sum(case((A.status == st, 1), else_=0)) for st in
                               ("present", "late", "absent", "unverified")]
    q = (select(Shift.id, Shift.starts_at, Shift.closed, Crew.contract_code, Contract.contractor, *counts)
         .join(Crew, Crew.code == Shift.crew_code).join(Contract, Contract.code == Crew.contract_code)
         .join(A, A.shift_id == Shift.id)
         .where(Shift.starts_at >= to_db(start), Shift.starts_at < to_db(end))
         .group_by(Shift.id, Shift.starts_at, Shift.closed, Crew.contract_code, Contract.contractor))
    if unit is not None:
        q = q.where(Contract.unit_code == unit)
    days: dict[tuple[str, str], dict] = {}
    for (_sid, starts_at, is_closed, contract, contractor, expected, present, late, absent,
         unverified) in session.exec(q):
        day = from_db(starts_at).astimezone(DISTRICT_TZ).date().isoformat()
        d = days.setdefault((contract, day), {"contract": contract, "contractor": contractor, "day": day,
                                              "shifts": 0, "open_shifts": 0, "expected": 0, "present": 0,
                                              "late": 0, "absent": 0, "unverified": 0})
        d["shifts"] += 1
        d["open_shifts"] += 0 if is_closed else 1
        for name, n in (("expected", expected), ("present", present), ("late", late), ("absent", absent),
                        ("unverified", unverified)):
            d[name] += int(n or 0)
    rows = [dict(d, rate=_rate(d["present"] + d["late"], d["expected"])) for _, d in sorted(days.items())]
    expected = sum(d["expected"] for d in rows)
    return {"by_contract_day": rows, "expected": expected,
            "rate": _rate(sum(d["present"] + d["late"] for d in rows), expected)}


def gas_coverage(session: Session, now: datetime, overdue_limit: int = 100) -> dict:
    """Share of households inspected within 4 months, and the households overdue now (never
    inspected first, then the longest overdue), with a count per deliverer."""
    figures = gas.coverage(session, now)
    due = gas.due_households(session, now)
    far_past = datetime.min.replace(tzinfo=DISTRICT_TZ)
    due.sort(key=lambda h: (h.next_due_at is not None, from_db(h.next_due_at) or far_past, h.id))
    per_deliverer: dict[str, int] = {}
    for h in due:
        key = h.deliverer_id or ""
        per_deliverer[key] = per_deliverer.get(key, 0) + 1
    suspended = session.exec(select(func.count()).select_from(Household)
                             .where(Household.supply_suspended.is_(True))).one()
    return {
        "households": figures["households"], "covered": figures["covered"], "coverage": round(figures["share"], 4),
        "overdue": figures["overdue"], "supply_suspended": int(suspended),
        "overdue_by_deliverer": [{"deliverer_id": k or None, "overdue": n} for k, n in sorted(per_deliverer.items())],
        "overdue_households": [
            {"id": h.id, "address_code": h.address_code, "holder": h.holder, "deliverer_id": h.deliverer_id,
             "last_inspected_at": from_db(h.last_inspected_at), "next_due_at": from_db(h.next_due_at),
             "days_overdue": None if h.next_due_at is None else (now - from_db(h.next_due_at)).days}
            for h in due[:overdue_limit]],
    }
