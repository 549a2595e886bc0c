"""Dashboard figures: work-order cycle times, on-time rate, backlog; attendance rates; gas
inspection coverage. Plain functions over a session, computed by SQL: counts by aggregates; the
median and p90 hours to close (`close_times`) by percentile_cont on PostgreSQL and by window
functions on SQLite, each giving what `percentile` gives over the same hours, to the last bit
(issue 14: loading 100k closed orders into Python cost ~0.75 s a request). The district-local
day is computed in Python only for attendance (a few rows per shift).

`unit` narrows everything to one responsible unit (a unit leader's view)."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import NamedTuple

from sqlalchemy import Date, Float, Integer, String, case, cast, extract, func, literal
from sqlmodel import Session, select

from engine.clock import from_db, to_db
from engine.domain import gas
from engine.domain.attendance import DISTRICT_TZ
from engine.domain.models import Attendance, Contract, Crew, Household, Shift, WorkOrder

__all__ = ["ATTENDED", "CloseTimes", "attendance", "close_times", "gas_coverage", "percentile", "work_orders"]

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


class CloseTimes(NamedTuple):
    """Orders closed and the median and p90 of their hours from report to close (unrounded;
    None when nothing closed)."""
    closed: int
    median: float | None
    p90: float | None


def _closed_in(start: datetime, end: datetime, unit: str | None) -> list:
    W = WorkOrder
    where = [W.state == "closed", W.closed_at >= to_db(start), W.closed_at < to_db(end)]
    if unit is not None:
        where.append(W.unit_code == unit)
    return where


def close_times(session: Session, start: datetime, end: datetime,
                unit: str | None = None) -> tuple[CloseTimes, dict[str, CloseTimes]]:
    """Hours from report to close of the orders closed in [start, end): over them all, and per
    district-local day of closing (ISO date -> figures, in date order). Computed in the database,
    with the interpolation of `percentile` to the last bit: PostgreSQL's percentile_cont does the
    same arithmetic; on SQLite, window functions rank the hours and the two neighbour ranks are
    interpolated the same way."""
    where = _closed_in(start, end, unit)
    if session.get_bind().dialect.name == "postgresql":
        hours, day = _pg_hours(), _pg_local_day()
        figures = _pg_close_times
    else:
        hours, day = _sqlite_hours(), _sqlite_local_day(start, end)
        figures = _sqlite_close_times
    overall = figures(session, where, hours, None)
    per_day = figures(session, where, hours, day)
    return overall.get(None, CloseTimes(0, None, None)), {str(d): t for d, t in sorted(per_day.items())}


# ---- PostgreSQL: percentile_cont over float8 hours, the day by AT TIME ZONE ------------------------
def _pg_hours():
    """Hours as float8, rounded as Python rounds timedelta.total_seconds() / 3600: EXTRACT gives
    the exact seconds (numeric), the cast rounds them once, and the division by 3600 is IEEE."""
    W = WorkOrder
    return cast(extract("epoch", W.closed_at - W.reported_at), Float) / literal(3600.0, Float)


def _pg_local_day():
    """The district-local date of closing (timestamptz AT TIME ZONE the zone name -> local wall time)."""
    return cast(func.timezone(literal(DISTRICT_TZ.key, String), WorkOrder.closed_at), Date)


def _pg_close_times(session: Session, where: list, hours, day) -> dict:
    cols = [func.count(), func.percentile_cont(0.5).within_group(hours),
            func.percentile_cont(0.9).within_group(hours)]
    q = select(*cols).where(*where) if day is None else select(day, *cols).where(*where).group_by(day)
    out = {}
    for row in session.exec(q):
        key, (n, median, p90) = (None, row) if day is None else (row[0], row[1:])
        if n:
            out[key.isoformat() if key is not None else None] = CloseTimes(int(n), median, p90)
    return out


# ---- SQLite: no percentile_cont; timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' -----------------
def _sqlite_hours():
    """Hours as REAL from the stored text, exactly: whole seconds by strftime('%s') on the first 19
    characters, the microseconds from the last 6 (SQLite's own date functions keep milliseconds
    only, rounded), so the microseconds between the two are an exact integer, divided as Python
    divides them."""
    W = WorkOrder

    def seconds(col):
        return cast(func.strftime("%s", func.substr(col, 1, 19, type_=String)), Integer)

    def micros(col):
        return cast(func.substr(col, 21, 6, type_=String), Integer)

    span_us = ((seconds(W.closed_at) - seconds(W.reported_at)) * 1_000_000
               + micros(W.closed_at) - micros(W.reported_at))
    return cast(span_us, Float) / literal(1e6, Float) / literal(3600.0, Float)


def _utc_offsets(start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(from, seconds east of UTC) for each stretch of one DISTRICT_TZ offset in [start, end):
    sampled every 6 hours, each change found to the second (zone offsets change on whole seconds)."""
    def offset(epoch: int) -> int:
        when = datetime.fromtimestamp(epoch, timezone.utc).astimezone(DISTRICT_TZ)
        return int(when.utcoffset().total_seconds())  # type: ignore[union-attr]

    lo_end = math.floor(to_db(start).timestamp())
    hi_end = math.ceil(to_db(end).timestamp())
    stretches = [(lo_end, offset(lo_end))]
    t = lo_end
    while t < hi_end:
        nxt = min(t + 6 * 3600, hi_end)
        if offset(nxt) != stretches[-1][1]:
            lo, hi = t, nxt                          # offset(lo) is the current one, offset(hi) not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == stretches[-1][1] else (lo, mid)
            stretches.append((hi, offset(hi)))
            nxt = hi
        t = nxt
    return [(datetime.fromtimestamp(at, timezone.utc), off) for at, off in stretches]


def _sqlite_local_day(start: datetime, end: datetime):
    """date(closed_at, '+N seconds') with N the zone's offset at that instant (a CASE over the
    offset changes within the period; one constant for a zone without them). On the whole
    seconds: date() would round .9995 s up to the next second, and perhaps the next day."""
    stretches = _utc_offsets(start, end)
    shift = [f"{off:+d} seconds" for _, off in stretches]
    if len(stretches) == 1:
        modifier = literal(shift[0], String)
    else:
        modifier = case(*[(WorkOrder.closed_at < to_db(at), s) for (at, _), s in zip(stretches[1:], shift)],
                        else_=shift[-1])
    return func.date(func.substr(WorkOrder.closed_at, 1, 19, type_=String), modifier, type_=String)


def _sqlite_close_times(session: Session, where: list, hours, day) -> dict:
    """Rank the hours in each group (0-based i of n), keep the two ranks around (n - 1) * q, and
    interpolate as `percentile` does: v[lo] + (v[hi] - v[lo]) * ((n - 1) * q - lo)."""
    group = [] if day is None else [day]
    spans = select(*[d.label("day") for d in group], hours.label("h")).where(*where).subquery()
    by = [spans.c.day] if day is not None else None
    ranked = select(*([spans.c.day] if by else []), spans.c.h,
                    (func.row_number().over(partition_by=by, order_by=spans.c.h) - 1).label("i"),
                    func.count().over(partition_by=by).label("n")).subquery()
    r = ranked.c

    def quantile(q: float):
        pos = (r.n - 1) * literal(q, Float)
        lo = cast(pos, Integer)
        hi = lo + case((pos > lo, 1), else_=0)
        v_lo, v_hi = (func.max(case((r.i == k, r.h))) for k in (lo, hi))
        return v_lo + (v_hi - v_lo) * (pos - lo)

    cols = [func.count(), quantile(0.5), quantile(0.9)]
    q = select(*cols).select_from(ranked) if not by else select(r.day, *cols).group_by(r.day)
    out = {}
    for row in session.exec(q):
        key, (n, median, p90) = (None, row) if not by else (row[0], row[1:])
        if n:
            out[key] = CloseTimes(int(n), median, p90)
    return out


def work_orders(session: Session, start: datetime, end: datetime, now: datetime, unit: str | None = None) -> dict:
    """Orders closed in [start, end): median and p90 hours from report to close, on-time rate by
    unit (closed by the SLA due time; an order without an SLA counts as on time, as when it is
    closed). Backlog: orders open now that were reported before `end`, by unit and category,
    with those past their SLA as overdue. `by_day`: closed count, median and p90 per district-local
    day of closing; `hotspots`: orders reported in [start, end) by category and area (SQL counts)."""
    W = WorkOrder
    closed = _closed_in(start, end, unit)
    overall, per_day = close_times(session, start, end, unit)
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
        "closed": overall.closed,
        "median_hours": _hours(overall.median),
        "p90_hours": _hours(overall.p90),
        "on_time_rate": _rate(total_on_time, overall.closed),
        "on_time_by_unit": [{"unit": u, "closed": int(n), "on_time": int(ok or 0), "rate": _rate(int(ok or 0), int(n))}
                            for u, n, ok in by_unit],
        "backlog": [{"unit": u, "category": c, "open": int(n), "overdue": int(late or 0)}
                    for u, c, n, late in backlog],
        "backlog_total": sum(int(n) for _, _, n, _ in backlog),
        "overdue_total": sum(int(late or 0) for _, _, _, late in backlog),
        "by_day": [{"day": day, "closed": t.closed, "median_hours": _hours(t.median), "p90_hours": _hours(t.p90)}
                   for day, t in per_day.items()],
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
