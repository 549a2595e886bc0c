"""Dashboard figures: work-order cycle times, on-time rate, backlog; attendance rates; gas
inspection coverage. Plain functions over a session, computed by SQL: counts by aggregates; the
median and p90 hours to close (`close_times`) by percentile_cont on PostgreSQL; on SQLite, SQL
gives exact integer spans and day numbers and Python sorts them. Both give what `percentile`
gives over the same hours, to the last bit (issue 14: loading every closed order as datetimes
cost ~0.75 s a request on 100k of them). The district-local day is computed in Python only for
attendance (a few rows per shift).

`unit` narrows everything to one responsible unit (a unit leader's view)."""
from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import NamedTuple

from sqlalchemy import Date, Float, Integer, String, case, cast, extract, func, literal, tuple_
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
    district-local day of closing (ISO date -> figures, in date order), equal to the last bit to
    `percentile` over the hours Python would compute from the loaded datetimes.

    PostgreSQL: percentile_cont over both grouping sets in one query (its interpolation is
    `percentile`'s, to the operation). SQLite has no percentile_cont; ranking the hours with
    window functions (row_number/count over each day, then the two neighbour ranks) was measured
    slower than what is done instead: SQL computes each order's exact span in microseconds and
    its local day number (integers, no datetime objects), and Python sorts them and applies
    `percentile` (bench/dashboard.py)."""
    where = _closed_in(start, end, unit)
    if session.get_bind().dialect.name == "postgresql":
        return _pg_close_times(session, where)
    return _sqlite_close_times(session, where, start, end)


def _figures(hours: list[float]) -> CloseTimes:
    return CloseTimes(len(hours), percentile(hours, 0.5), percentile(hours, 0.9))


# ---- PostgreSQL: percentile_cont over float8 hours, the day by AT TIME ZONE ------------------------
def _pg_close_times(session: Session, where: list) -> tuple[CloseTimes, dict[str, CloseTimes]]:
    """Hours as float8, rounded as Python rounds timedelta.total_seconds() / 3600: EXTRACT gives
    the exact seconds (numeric), the cast rounds them once, and the division by 3600 is IEEE. The
    day: timestamptz AT TIME ZONE the zone's name is the local wall time."""
    W = WorkOrder
    hours = cast(extract("epoch", W.closed_at - W.reported_at), Float) / literal(3600.0, Float)
    day = cast(func.timezone(literal(DISTRICT_TZ.key, String), W.closed_at), Date)
    q = (select(func.grouping(day), day, func.count(), func.percentile_cont(0.5).within_group(hours),
                func.percentile_cont(0.9).within_group(hours))
         .where(*where).group_by(func.grouping_sets(tuple_(), day)))
    overall, per_day = CloseTimes(0, None, None), {}
    for is_total, d, n, median, p90 in session.connection().execute(q):
        if is_total:
            overall = CloseTimes(int(n), median, p90) if n else overall
        else:
            per_day[d.isoformat()] = CloseTimes(int(n), median, p90)
    return overall, dict(sorted(per_day.items()))


# ---- SQLite: timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' ------------------------------------
_UNIX_EPOCH_JD_SECONDS = 210_866_760_000     # julianday('1970-01-01') * 86400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _sqlite_seconds(col):
    """Whole seconds since 1970 from the first 19 characters (SQLite's date functions keep
    milliseconds only, rounded: .9995 s would count as the next second). julianday() * 86400 is
    within 1e-4 of the integer, so round() makes it exact."""
    jd = func.julianday(func.substr(col, 1, 19, type_=String))
    return cast(func.round(jd * 86400), Integer) - _UNIX_EPOCH_JD_SECONDS


def _sqlite_micros(col):
    return cast(func.substr(col, 21, 6, type_=String), Integer)


def _utc_offsets(start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(from, seconds east of UTC) for each stretch of one DISTRICT_TZ offset in [start, end):
    sampled daily (no zone changes its offset twice within a day), each change found to the second
    by bisection (offsets change on whole seconds). About 2 ms for a year."""
    def offset(epoch: int) -> int:
        when = datetime.fromtimestamp(epoch, timezone.utc).astimezone(DISTRICT_TZ)
        return int(when.utcoffset().total_seconds())  # type: ignore[union-attr]

    lo_end = math.floor(to_db(start).timestamp())
    hi_end = math.ceil(to_db(end).timestamp())
    stretches = [(lo_end, offset(lo_end))]
    t = lo_end
    while t < hi_end:
        nxt = min(t + 86400, hi_end)
        if offset(nxt) != stretches[-1][1]:
            lo, hi = t, nxt                          # offset(lo) is the current one, offset(hi) not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == stretches[-1][1] else (lo, mid)
            stretches.append((hi, offset(hi)))
            nxt = hi
        t = nxt
    return [(datetime.fromtimestamp(at, timezone.utc), off) for at, off in stretches]


def _sqlite_close_times(session: Session, where: list, start: datetime,
                        end: datetime) -> tuple[CloseTimes, dict[str, CloseTimes]]:
    """Per order: the local day (days since 1970 of closed_at + the zone's offset at that instant,
    a CASE over the offset changes in the period, one constant for a zone without them) and the
    exact span in microseconds. Hours are then us / 10**6 / 3600, as timedelta.total_seconds()
    divides."""
    W = WorkOrder
    stretches = _utc_offsets(start, end)
    offset = (literal(stretches[0][1], Integer) if len(stretches) == 1 else
              case(*[(W.closed_at < to_db(at), off) for (at, _), (_, off) in zip(stretches[1:], stretches)],
                   else_=stretches[-1][1]))
    closed_s = _sqlite_seconds(W.closed_at)
    span_us = ((closed_s - _sqlite_seconds(W.reported_at)) * 1_000_000
               + _sqlite_micros(W.closed_at) - _sqlite_micros(W.reported_at))
    by_day: dict[int, list[float]] = {}
    for day, us in session.connection().execute(select((closed_s + offset) // 86400, span_us).where(*where)).all():
        by_day.setdefault(day, []).append(us / 1_000_000 / 3600)
    overall = _figures([h for hours in by_day.values() for h in hours])
    return overall, {date.fromordinal(_EPOCH_ORDINAL + d).isoformat(): _figures(v) for d, v in sorted(by_day.items())}


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
