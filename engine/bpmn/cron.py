"""Quartz cron texts (Camunda 7's timeCycle cron): read once, then asked for the next time.

    seconds  minutes  hours  day-of-month  month  day-of-week  [year]
    0-59     0-59     0-23   1-31          1-12   1-7 (1=SUN)  1970-2099
                                           JAN-DEC SUN-SAT

Each field is `*`, a value, a range `a-b`, a step `a/n`, `*/n` or `a-b/n`, or a list of
those (`1,15,20-25`). Day-of-month also takes `L` (the last day), `L-3` (three days before
it), `15W` (the weekday nearest the 15th, within the month) and `LW` (the last weekday);
day-of-week takes `L` (Saturday), `6L` (the last Friday of the month) and `6#3` (the third
Friday). `?` means "no value" in day-of-month or day-of-week. Quartz needs `?` in one of
the two; here `*` is read as `?` too (`0 0 9 * * *` is every day at 09:00), and giving
both a day of the month and a day of the week is refused, as Quartz refuses it.

The times are wall-clock times in a zone the caller gives (engine.bpmn.timers passes the
district's, CITYLOOP_TIMEZONE). A wall time that does not exist on a day (the hour skipped
when summer time starts) fires when the clock has moved past it, at the same UTC instant
as the wall time read with the offset before the change; a wall time that happens twice
fires once, the first time.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

__all__ = ["CronError", "Cron", "EXAMPLE", "MIN_YEAR", "MAX_YEAR", "parse", "shortest_gap"]

MIN_YEAR, MAX_YEAR = 1970, 2099
_MONTHS = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
# (name, lowest, highest, names)
_FIELDS = (("second", 0, 59, None), ("minute", 0, 59, None), ("hour", 0, 23, None),
           ("day-of-month", 1, 31, None), ("month", 1, 12, _MONTHS), ("day-of-week", 1, 7, _DAYS),
           ("year", MIN_YEAR, MAX_YEAR, None))
EXAMPLE = "0 0 9 * * ?"


class CronError(ValueError):
    """A cron text that cannot be read; the message says which field and why."""


@dataclass(frozen=True)
class _DaySpec:
    """How a day-of-month or day-of-week field picks days: `any` (* or ?), a set of
    values, or one of Quartz's special forms."""
    any: bool = False
    values: frozenset[int] = frozenset()
    last: bool = False            # dom L (offset: L-n); dow nL (values holds n)
    offset: int = 0
    nearest_weekday: int = 0      # dom nW; -1 for LW
    nth: int = 0                  # dow n#k: k (values holds n)


@dataclass(frozen=True)
class Cron:
    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    years: tuple[int, ...]
    dom: _DaySpec
    dow: _DaySpec

    # ---- days ---------------------------------------------------------------------
    def _days(self, year: int, month: int) -> list[int]:
        """The days of `month` this cron fires on, in order."""
        last = calendar.monthrange(year, month)[1]
        if not self.dow.any:
            return [d for d in range(1, last + 1) if self._dow_matches(date(year, month, d), last)]
        spec = self.dom
        if spec.any:
            return list(range(1, last + 1))
        if spec.last:
            day = last - spec.offset
            return [day] if day >= 1 else []
        if spec.nearest_weekday:
            target = last if spec.nearest_weekday == -1 else spec.nearest_weekday
            if target > last:
                return []
            return [_nearest_weekday(year, month, target, last)]
        return [d for d in sorted(spec.values) if d <= last]

    def _dow_matches(self, day: date, last: int) -> bool:
        quartz = day.isoweekday() % 7 + 1          # Quartz: 1 = Sunday ... 7 = Saturday
        spec = self.dow
        if quartz not in spec.values:
            return False
        if spec.last:
            return day.day + 7 > last
        if spec.nth:
            return (day.day - 1) // 7 + 1 == spec.nth
        return True

    # ---- the next time ------------------------------------------------------------------
    def next_after(self, after: datetime, zone: tzinfo) -> datetime | None:
        """The first time strictly after `after` (aware) that this cron names, read in
        `zone`, as an aware UTC datetime; None if there is none before the end of MAX_YEAR."""
        after_utc = after.astimezone(timezone.utc)
        # Wall times, searched from the local wall time of `after`; a candidate whose UTC
        # instant is not after `after` (a repeated wall hour) is skipped.
        start = after_utc.astimezone(zone).replace(tzinfo=None, fold=0)
        while True:
            wall = self._next_wall(start)
            if wall is None:
                return None
            found = wall.replace(tzinfo=zone).astimezone(timezone.utc)
            if found > after_utc:
                return found
            start = wall

    def _next_wall(self, after: datetime) -> datetime | None:
        """The first naive wall time strictly after `after` that matches."""
        for year in self.years:
            if year < after.year:
                continue
            for month in range(1, 13):
                if month not in self.months or (year, month) < (after.year, after.month):
                    continue
                for day in self._days(year, month):
                    this = date(year, month, day)
                    if this < after.date():
                        continue
                    at = self._time_on(this, after if this == after.date() else None)
                    if at is not None:
                        return at
        return None

    def _time_on(self, day: date, after: datetime | None) -> datetime | None:
        """The first matching time of `day` (after `after` when it is that day)."""
        if after is None:
            return datetime(day.year, day.month, day.day, self.hours[0], self.minutes[0], self.seconds[0])
        for h in self.hours:
            if h < after.hour:
                continue
            for m in self.minutes:
                if (h, m) < (after.hour, after.minute):
                    continue
                for s in self.seconds:
                    if (h, m, s) > (after.hour, after.minute, after.second):
                        return datetime(day.year, day.month, day.day, h, m, s)
        return None


def _nearest_weekday(year: int, month: int, target: int, last: int) -> int:
    """Quartz's nW: the weekday nearest day `target`, not leaving the month."""
    weekday = date(year, month, target).isoweekday()   # 6 = Saturday, 7 = Sunday
    if weekday == 6:
        return target - 1 if target > 1 else target + 2
    if weekday == 7:
        return target + 1 if target < last else target - 2
    return target


# ---- reading -----------------------------------------------------------------------------
def parse(text: str) -> Cron:
    """Read a Quartz cron text; CronError names the field that is wrong."""
    fields = text.split()
    if len(fields) not in (6, 7):
        raise CronError(f"a cron text has 6 or 7 fields (seconds minutes hours day-of-month month day-of-week "
                        f"[year]), e.g. {EXAMPLE!r}; this one has {len(fields)}")
    fields = [f.upper() for f in fields] + (["*"] if len(fields) == 6 else [])
    sec, minute, hour, month, year = (_values(fields[i], *_FIELDS[i]) for i in (0, 1, 2, 4, 6))
    dom, dow = _dom(fields[3]), _dow(fields[5])
    if not dom.any and not dow.any:
        raise CronError("give either a day-of-month or a day-of-week and write ? in the other "
                        "(e.g. '0 0 9 ? * MON' or '0 0 9 1 * ?')")
    if not year:
        raise CronError("the year field names no year")
    return Cron(text=" ".join(text.split()), seconds=tuple(sorted(sec)), minutes=tuple(sorted(minute)),
                hours=tuple(sorted(hour)), months=frozenset(month), years=tuple(sorted(year)), dom=dom, dow=dow)


def _number(part: str, name: str, low: int, high: int, names: dict | None) -> int:
    if names and part in names:
        return names[part]
    if not part.isdigit() or len(part) > 4:
        known = f" or a name ({', '.join(names)})" if names else ""
        raise CronError(f"{name} {part!r} is not a number{known}")
    value = int(part)
    if not low <= value <= high:
        raise CronError(f"{name} {value} is outside {low}-{high}")
    return value


def _values(field: str, name: str, low: int, high: int, names: dict | None, allow_any: bool = True) -> set[int]:
    """The values a plain field (no L, W or #) names."""
    if field == "?":
        raise CronError(f"? is only for day-of-month or day-of-week, not the {name}")
    values: set[int] = set()
    for item in field.split(","):
        if not item:
            raise CronError(f"{name} {field!r} has an empty list item")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, f"{name} step", 1, high - low + 1 if high > low else 1, None)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, name, low, high, names), _number(b, name, low, high, names)
            if first > last:
                raise CronError(f"{name} range {base!r} runs backwards; write it as two ranges "
                                f"({a}-{high},{low}-{b})")
        else:
            first = _number(base, name, low, high, names)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def _dom(field: str) -> _DaySpec:
    name = "day-of-month"
    if field in ("?", "*"):
        return _DaySpec(any=True)
    if field == "LW":
        return _DaySpec(nearest_weekday=-1)
    if field.startswith("L"):
        offset = 0
        if field != "L":
            if not field.startswith("L-"):
                raise CronError(f"{name} {field!r}: write L (the last day) or L-n (n days before it)")
            offset = _number(field[2:], f"{name} offset", 0, 30, None)
        return _DaySpec(last=True, offset=offset)
    if field.endswith("W"):
        return _DaySpec(nearest_weekday=_number(field[:-1], name, 1, 31, None))
    if any(c in field for c in "LW#"):
        raise CronError(f"{name} {field!r}: L and W stand alone (L, L-3, 15W, LW), not in lists")
    return _DaySpec(values=frozenset(_values(field, name, 1, 31, None)))


def _dow(field: str) -> _DaySpec:
    name = "day-of-week"
    if field in ("?", "*"):
        return _DaySpec(any=True)
    if field == "L":
        return _DaySpec(values=frozenset({7}))
    if field.endswith("L"):
        return _DaySpec(values=frozenset({_number(field[:-1], name, 1, 7, _DAYS)}), last=True)
    if "#" in field:
        day, _, nth = field.partition("#")
        return _DaySpec(values=frozenset({_number(day, name, 1, 7, _DAYS)}),
                        nth=_number(nth, f"{name} week number", 1, 5, None))
    if "L" in field.replace("SAT", "").replace("SUN", "") or "W" in field.replace("WED", ""):
        raise CronError(f"{name} {field!r}: L and # stand alone (6L, 6#3), not in lists")
    return _DaySpec(values=frozenset(_values(field, name, 1, 7, _DAYS)))


def shortest_gap(cron: Cron) -> timedelta | None:
    """The shortest time between two firings on one day (None when it fires at most once a
    day); used to refuse crons that fire more often than a sweep can follow."""
    times = sorted(h * 3600 + m * 60 + s for h in cron.hours for m in cron.minutes for s in cron.seconds)
    if len(times) < 2:
        return None
    return timedelta(seconds=min(b - a for a, b in zip(times, times[1:])))
