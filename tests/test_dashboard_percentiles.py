"""The median and p90 hours to close, computed by the database (percentile_cont on PostgreSQL;
exact integer spans and local day numbers on SQLite), against `metrics.percentile` over the
same orders loaded into Python as the dashboard used to: equal to the last bit, overall and per
district-local day.

The orders are written straight into the table: report and close times with microseconds,
closes a microsecond and 0.3 ms either side of every local midnight (SQLite's date functions
would round 23:59:59.9997 up to the next second), ties, days of one, two, three and more orders,
and zones with daylight saving (Berlin; Havana, whose clocks skip local midnight), a negative
offset and a quarter-hour one."""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from engine.clock import from_db, to_db
from engine.domain import metrics
from engine.domain.models import WorkOrder

__all__: list[str] = []

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
MIXED_END = datetime(2026, 4, 1, tzinfo=timezone.utc)   # random closes before; then days of 1, 2, 3, 4 orders
END = datetime(2026, 4, 6, tzinfo=timezone.utc)
ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/Havana", "Asia/Kathmandu"]
_serial = iter(range(1, 10**9))


def _order(reported: datetime, closed: datetime | None, unit: str = "u1", state: str = "closed") -> dict:
    n = next(_serial)
    return {"number": f"T{n:08d}", "source": "citizen", "category": "exposed_garbage", "area": "xinhe",
            "description": "", "state": state, "unit_code": unit, "overdue": False, "reject_count": 0,
            "reroute_count": 0, "reported_at": to_db(reported), "closed_at": to_db(closed)}


def _write(system, rows: list[dict]) -> None:
    with system.transaction() as s:
        s.connection().execute(insert(WorkOrder.__table__), rows)


def _by_python(system, tz, start, end, unit=None):
    """What the dashboard computed before: every closed order loaded, spans and days in Python."""
    W = WorkOrder
    where = [W.state == "closed", W.closed_at >= to_db(start), W.closed_at < to_db(end)]
    if unit is not None:
        where.append(W.unit_code == unit)
    spans: list[float] = []
    per_day: dict[str, list[float]] = {}
    with system.transaction(write=False) as s:
        for reported_at, closed_at in s.execute(select(W.reported_at, W.closed_at).where(*where)):
            span = (from_db(closed_at) - from_db(reported_at)).total_seconds() / 3600
            spans.append(span)
            per_day.setdefault(from_db(closed_at).astimezone(tz).date().isoformat(), []).append(span)
    return spans, per_day


def _figures(values: list[float]) -> metrics.CloseTimes:
    return metrics.CloseTimes(len(values), metrics.percentile(values, 0.5), metrics.percentile(values, 0.9))


def _midnights(tz, start, end):
    """Each local midnight in [start, end) as a UTC instant (where the zone skips midnight, the
    first instant of the day)."""
    day = start.astimezone(tz).date()
    while True:
        first = datetime.combine(day, time(0), tz).astimezone(timezone.utc)
        if first.astimezone(tz).date() != day:          # midnight did not exist: step to the day's first instant
            first = datetime.combine(day, time(1), tz).astimezone(timezone.utc)
            while (first - timedelta(seconds=1)).astimezone(tz).date() == day:
                first -= timedelta(seconds=1)
        if first >= end:
            return
        if first >= start:
            yield first
        day += timedelta(days=1)


def _varied_orders(tz, rng: random.Random) -> list[dict]:
    rows = []
    for midnight in _midnights(tz, START, MIXED_END):
        for delta in (timedelta(microseconds=-1), timedelta(microseconds=-300), timedelta(0),
                      timedelta(microseconds=1), timedelta(microseconds=-999_999)):
            if rng.random() < 0.6:
                closed = midnight + delta
                rows.append(_order(closed - timedelta(seconds=rng.uniform(60, 5 * 86400)), closed,
                                   unit=rng.choice(["u1", "u2"])))
    for _ in range(300):                               # anywhere in the period, some with equal spans
        closed = START + timedelta(seconds=rng.uniform(0, (MIXED_END - START).total_seconds()))
        span = rng.choice([timedelta(hours=4), timedelta(hours=4), timedelta(days=2, microseconds=7)]
                          ) if rng.random() < 0.2 else timedelta(microseconds=rng.randrange(1, 10**12))
        rows.append(_order(closed - span, closed, unit=rng.choice(["u1", "u2"])))
    for n, day in enumerate((date(2026, 4, 2), date(2026, 4, 3), date(2026, 4, 4), date(2026, 4, 5)), 1):
        noon = datetime.combine(day, time(12), tz)
        spans = [timedelta(hours=3)] * (n // 2) + [timedelta(microseconds=rng.randrange(1, 10**11)) for _ in range(n)]
        rows += [_order(noon - span, noon) for span in spans[:n]]         # the 4-order day: two equal spans
    rows.append(_order(START - timedelta(hours=3), START))                         # at the start: counted
    rows.append(_order(END - timedelta(hours=3), END))                             # at the end: not
    rows.append(_order(START, START + timedelta(hours=5), state="in_review"))      # not closed
    rows.append(_order(START, None, state="at_unit"))
    return rows


@pytest.mark.parametrize("zone", ZONES)
def test_close_times_equal_python_percentiles_overall_and_per_local_day(system, monkeypatch, zone):
    tz = ZoneInfo(zone)
    monkeypatch.setattr(metrics, "DISTRICT_TZ", tz)
    _write(system, _varied_orders(tz, random.Random(f"close-times-{zone}")))
    sizes, ties = set(), set()
    for unit in (None, "u1"):
        spans, per_day = _by_python(system, tz, START, END, unit)
        with system.transaction(write=False) as s:
            overall, by_day = metrics.close_times(s, START, END, unit)
            board = metrics.work_orders(s, START, END, END, unit)
        assert overall == _figures(spans)
        assert by_day == {day: _figures(v) for day, v in sorted(per_day.items())}
        assert list(by_day) == sorted(per_day)
        assert (board["closed"], board["median_hours"], board["p90_hours"]) == (
            len(spans), round(metrics.percentile(spans, 0.5), 2), round(metrics.percentile(spans, 0.9), 2))
        assert board["by_day"] == [{"day": d, "closed": len(v), "median_hours": round(metrics.percentile(v, 0.5), 2),
                                    "p90_hours": round(metrics.percentile(v, 0.9), 2)}
                                   for d, v in sorted(per_day.items())]
        sizes |= {len(v) for v in per_day.values()}
        ties |= {len(v) != len(set(v)) for v in per_day.values()}
    # the data covers what it is meant to: ties, days of 1, 2 and 3 orders, larger even and odd days
    assert True in ties and {1, 2, 3} <= sizes
    assert any(n % 2 == 0 and n > 2 for n in sizes) and any(n % 2 and n > 3 for n in sizes)


def test_the_day_turns_at_local_midnight_to_the_microsecond(system, monkeypatch):
    tz = ZoneInfo("Asia/Shanghai")
    monkeypatch.setattr(metrics, "DISTRICT_TZ", tz)
    midnight = datetime(2026, 3, 3, 16, 0, tzinfo=timezone.utc)        # 4 March 00:00 in Shanghai
    _write(system, [_order(midnight - timedelta(hours=10, microseconds=300), midnight - timedelta(microseconds=300)),
                    _order(midnight - timedelta(hours=2), midnight)])
    with system.transaction(write=False) as s:
        overall, by_day = metrics.close_times(s, START, END)
    assert by_day == {"2026-03-03": metrics.CloseTimes(1, 10.0, 10.0), "2026-03-04": metrics.CloseTimes(1, 2.0, 2.0)}
    assert overall == metrics.CloseTimes(2, 6.0, 9.2)


def test_known_values_by_hand(system):
    # spans 1, 1, 1, 5 hours: median between the 2nd and 3rd = 1; p90 at rank 2.7 = 1 + 0.7 * 4
    at = datetime(2026, 3, 10, 4, 0, tzinfo=timezone.utc)
    _write(system, [_order(at - timedelta(hours=h), at) for h in (1, 5, 1, 1)])
    with system.transaction(write=False) as s:
        overall, by_day = metrics.close_times(s, START, END)
        board = metrics.work_orders(s, START, END, END)
    assert overall == metrics.CloseTimes(4, 1.0, 1 + (5 - 1) * ((4 - 1) * 0.9 - 2))
    assert (board["median_hours"], board["p90_hours"]) == (1.0, 3.8)
    assert list(by_day) == [date(2026, 3, 10).isoformat()]


def test_no_closed_orders(system):
    _write(system, [_order(START, None, state="at_unit"), _order(START, START + timedelta(hours=1), unit="u2")])
    with system.transaction(write=False) as s:
        assert metrics.close_times(s, START, END, "u1") == (metrics.CloseTimes(0, None, None), {})
        assert metrics.close_times(s, END, END + timedelta(days=1)) == (metrics.CloseTimes(0, None, None), {})
        board = metrics.work_orders(s, START, END, END, "u1")
    assert (board["closed"], board["median_hours"], board["p90_hours"], board["on_time_rate"], board["by_day"]) == (
        0, None, None, None, [])
