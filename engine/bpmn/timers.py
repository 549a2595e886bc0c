"""Timer values: the texts a timer expression must give, read with bounds.

One reading for deploy (a constant timer text is checked once, before it is stored) and for
run time (engine.bpmn.specs), so that what deploy accepts is exactly what a timer can use.
The library's parsers are used underneath, with two additions: the kind must match the
timer (a timeDate needs a date-time, a timeDuration a duration, a timeCycle a repetition),
and a duration is bounded before the library walks it month by month (its loop runs once
per month, so "P999999999Y" would hang the step).

Cycles are read here, not by the library (whose reader takes "now" from the wall clock):
ISO 8601 repeating intervals (`R3/PT10M`, `R/PT1H`, `R5/2026-01-01T08:00:00+08:00/P1D`) and
Quartz cron texts as Camunda 7 writes them (`0 0 9 * * ?`, engine.bpmn.cron). Cron texts,
and cycle starts written without an offset, are read in the district's zone
(CITYLOOP_TIMEZONE, engine.settings; Asia/Shanghai unless configured). Firings closer than
one minute are refused, and so are counts below one and an interval given by an end date.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine import settings
from engine.bpmn import cron as _cron
from engine.bpmn.expr_ops import ExpressionError

__all__ = ["TimerValueError", "MAX_DURATION_MONTHS", "MAX_DURATION_DAYS", "MIN_CYCLE", "EXAMPLES", "Cycle",
           "Occurrence", "parse_date", "parse_duration", "parse_cycle", "due_after", "check_text", "check_type",
           "cron_zone", "parse_due_date"]

MAX_DURATION_MONTHS = 12 * 100        # years and months of one duration (100 years)
MAX_DURATION_DAYS = 366 * 100         # days, weeks, hours... of one duration, as days
MAX_TEXT = 200                        # characters of a timer value
MIN_CYCLE = timedelta(minutes=1)      # the closest two firings of one cycle may be
_MIN_WORDS = "1 minute"
EXAMPLES = {"timeDate": '"2026-03-02T08:00:00+08:00"', "timeDuration": '"PT4H"',
            "timeCycle": '"R3/PT10M"'}
_KIND_WORDS = {"timeDate": "an ISO 8601 date-time", "timeDuration": "an ISO 8601 duration",
               "timeCycle": "an ISO 8601 repeating interval or a cron"}


class TimerValueError(ExpressionError):
    """A timer expression gave a value its timer cannot use."""


def check_type(kind: str, value_type: type) -> None:
    """Refuse a value type a `kind` timer cannot use (every timer needs text)."""
    if value_type is not str:
        raise TimerValueError(f"gives a {value_type.__name__}; a {kind} timer needs {_KIND_WORDS[kind]} "
                              f"text such as {EXAMPLES[kind]}")


def _text(value: Any, kind: str) -> str:
    check_type(kind, type(value))
    text = value.strip()
    if not text or len(text) > MAX_TEXT:
        raise TimerValueError(f"{text[:40]!r} is not {_KIND_WORDS[kind]} (e.g. {EXAMPLES[kind]})")
    return text


def parse_date(value: Any) -> datetime:
    """A timeDate value: an ISO 8601 date-time (or ISO week date), as an aware UTC datetime."""
    text = _text(value, "timeDate")
    if text.upper().startswith("P"):
        raise TimerValueError(f"{text!r} is a duration; a timeDate timer needs a date-time (e.g. "
                              f"{EXAMPLES['timeDate']}); use timeDuration for durations")
    try:
        due = TimerEventDefinition.parse_time_or_duration(text)
    except Exception:                    # the library raises ValueError, AttributeError...
        raise TimerValueError(f"{text!r} is not {_KIND_WORDS['timeDate']} (e.g. {EXAMPLES['timeDate']})") from None
    if not isinstance(due, datetime):
        raise TimerValueError(f"{text!r} is not {_KIND_WORDS['timeDate']}")
    return due


def parse_duration(value: Any) -> dict:
    """A timeDuration value: the library's parsed duration, refused when beyond the bounds."""
    text = _text(value, "timeDuration")
    try:
        parsed = TimerEventDefinition.parse_iso_duration(text) if text.upper().startswith("P") else None
    except Exception:                    # the library raises a bare Exception
        parsed = None
    if not parsed:                       # (the library reads a bare "P" as no time at all)
        raise TimerValueError(f"{text!r} is not {_KIND_WORDS['timeDuration']} (e.g. {EXAMPLES['timeDuration']})")
    months = parsed.get("years", 0) * 12 + parsed.get("months", 0)
    days = (parsed.get("weeks", 0) * 7 + parsed.get("days", 0) + parsed.get("hours", 0) / 24
            + parsed.get("minutes", 0) / 1440 + parsed.get("seconds", 0) / 86400)
    if months > MAX_DURATION_MONTHS or days > MAX_DURATION_DAYS:
        raise TimerValueError(f"duration {text!r} is longer than 100 years")
    return parsed


def due_after(value: Any, start: datetime) -> datetime:
    """When a timeDuration timer started at `start` is due."""
    parsed = parse_duration(value)
    return start + TimerEventDefinition.get_timedelta_from_start(dict(parsed), start)


def parse_due_date(value: Any) -> datetime | None:
    """A user task's camunda:dueDate value: None, a datetime, or an ISO 8601 date-time text."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TimerValueError(f"gives a {type(value).__name__}; a due date needs an ISO 8601 date-time text "
                              f"such as {EXAMPLES['timeDate']}")
    try:
        return TimerEventDefinition.get_datetime(value.strip())
    except ValueError:
        raise TimerValueError(f"{value[:40]!r} is not an ISO 8601 date-time (e.g. {EXAMPLES['timeDate']})") from None


def check_text(kind: str, value: Any) -> None:
    """Raise TimerValueError unless `value` is usable by a `kind` timer (timeDate,
    timeDuration or timeCycle)."""
    if kind == "timeDate":
        parse_date(value)
    elif kind == "timeDuration":
        parse_duration(value)
    elif kind == "timeCycle":
        parse_cycle(value)
    else:
        raise ValueError(f"unknown timer kind {kind!r}")   # a bug in the caller, not the designer's


# ---- cycles ---------------------------------------------------------------------------------
def cron_zone() -> ZoneInfo:
    """The zone cron texts (and cycle start dates without an offset) are read in: the
    district's, CITYLOOP_TIMEZONE (Asia/Shanghai unless configured)."""
    return settings.current().district_tz


@dataclass(frozen=True)
class Occurrence:
    """One firing of a cycle: its number (0 for the first of the series) and when it is due."""
    index: int
    due: datetime


@dataclass(frozen=True)
class Cycle:
    """A timeCycle value, read: an ISO 8601 repeating interval (`count` firings in all, or
    None for no end; `start` the first firing when the text gives one, else one `every`
    after the timer starts waiting) or a Quartz cron text (`cron`, no end).

    The firings form a fixed series from an origin (the start, or when the timer started
    waiting), so that a firing that was missed (the server was down) is not made up later:
    `after` gives the first firing due after a given time."""
    text: str
    count: int | None = None
    start: datetime | None = None
    every: tuple[int, timedelta] | None = None    # (months, the rest) between two firings
    cron: _cron.Cron | None = None

    def first(self, armed: datetime) -> Occurrence | None:
        """The first firing of a timer that starts waiting at `armed`: the start when it
        is not past yet, else the first later one of the series (None: the series is over)."""
        if self.cron is not None:
            due = self.cron.next_after(armed, cron_zone())
            return None if due is None else Occurrence(0, due)
        origin = self.origin(armed)
        if self.start is not None and origin >= armed:
            return self._numbered(0, origin)
        index = self._first_index_after(origin, armed, inclusive=self.start is not None)
        return self._numbered(index, self.nth(origin, index))

    def after(self, origin: datetime, last: Occurrence, now: datetime) -> Occurrence | None:
        """The first firing after `last` that is due after `now` (None: the series is over).
        `origin` is what `origin()` gave when the timer started waiting."""
        if self.cron is not None:
            due = self.cron.next_after(max(now, last.due), cron_zone())
            return None if due is None else Occurrence(last.index + 1, due)
        index = max(last.index + 1, self._first_index_after(origin, now, inclusive=False))
        return self._numbered(index, self.nth(origin, index))

    def origin(self, armed: datetime) -> datetime:
        """Where the series is counted from: the start, or the time the timer started waiting."""
        return self.start if self.start is not None else armed

    def nth(self, origin: datetime, index: int) -> datetime | None:
        """The due time of firing `index` (0-based) of an ISO series counted from `origin`
        (None past the year 9999)."""
        assert self.every is not None
        months, rest = self.every
        steps = index if self.start is not None else index + 1
        try:
            return _add_months(origin, months * steps) + rest * steps
        except OverflowError:
            return None

    def _numbered(self, index: int, due: datetime | None) -> Occurrence | None:
        if due is None or (self.count is not None and index >= self.count):
            return None
        return Occurrence(index, due)

    def _first_index_after(self, origin: datetime, when: datetime, inclusive: bool) -> int:
        """The smallest index whose firing is after `when` (at or after, if `inclusive`):
        the series only grows, so a doubling search then a halving one (a few dozen steps
        even after years of downtime)."""
        def early(i: int) -> bool:
            due = self.nth(origin, i)
            return due is not None and (due < when if inclusive else due <= when)
        if not early(0):
            return 0
        high = 1
        while early(high):
            high *= 2
        low = high // 2                  # early(low) holds, early(high) does not
        while high - low > 1:
            mid = (low + high) // 2
            if early(mid):
                low = mid
            else:
                high = mid
        return high


def _add_months(when: datetime, months: int) -> datetime:
    """`when` moved by whole calendar months, the day kept or clamped to the month's end."""
    if not months:
        return when
    total = when.year * 12 + when.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    if year > 9999:
        raise OverflowError("past the year 9999")
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


_CYCLE_HELP = ("an ISO 8601 repeating interval such as \"R3/PT10M\" (3 times, every 10 minutes), \"R/PT1H\" "
               "(every hour, no end) or \"R5/2026-01-01T08:00:00+08:00/P1D\", or a cron text such as "
               "\"0 0 9 * * ?\" (09:00 every day)")


def parse_cycle(value: Any) -> Cycle:
    """A timeCycle value read, or TimerValueError saying what is wrong with an example.

    Firings closer than MIN_CYCLE are refused: the timer sweep runs every few seconds and
    each firing is a step of the instance, so a cycle of seconds could never keep up."""
    text = _text(value, "timeCycle")
    if any(c.isspace() for c in text):
        return _parse_cron(text)
    if not text.upper().startswith("R"):
        raise TimerValueError(f"{text[:40]!r} is not a cycle: write {_CYCLE_HELP}")
    parts = text.split("/")
    count_text = parts[0][1:]
    if len(parts) not in (2, 3) or not parts[1]:
        raise TimerValueError(f"{text!r} is not a cycle: write {_CYCLE_HELP}")
    if count_text and not (count_text.isdigit() and len(count_text) <= 9 and int(count_text) >= 1):
        raise TimerValueError(f"{text!r}: the count after R must be a whole number from 1 (\"R3/PT10M\"), or "
                              "nothing for no end (\"R/PT1H\")")
    count = int(count_text) if count_text else None
    start = None
    if len(parts) == 3:
        if parts[1].upper().startswith("P"):
            raise TimerValueError(f"{text!r}: an end date is not supported; give the start and the interval "
                                  "(\"R5/2026-01-01T08:00:00+08:00/P1D\") or the count (\"R5/P1D\")")
        start = _cycle_start(parts[1], text)
    every = parts[-1]
    if not every.upper().startswith("P"):
        raise TimerValueError(f"{text!r}: the interval {every[:40]!r} is not an ISO 8601 duration (e.g. \"R/PT1H\")")
    try:
        parsed = parse_duration(every)
    except TimerValueError as exc:
        raise TimerValueError(f"{text!r}: {exc} (e.g. \"R/P1D\")") from None
    if any(isinstance(parsed.get(k), float) for k in ("years", "months")):
        raise TimerValueError(f"{text!r}: years and months of a cycle must be whole numbers")
    months = int(parsed.get("years", 0)) * 12 + int(parsed.get("months", 0))
    rest = timedelta(weeks=parsed.get("weeks", 0), days=parsed.get("days", 0), hours=parsed.get("hours", 0),
                     minutes=parsed.get("minutes", 0), seconds=parsed.get("seconds", 0))
    if not months and rest < MIN_CYCLE:
        what = "a zero interval" if not rest else f"an interval of {rest.total_seconds():g} s"
        raise TimerValueError(f"{text!r} has {what}; cycles must be at least {_MIN_WORDS} apart "
                              f"(the timer sweep runs every few seconds), e.g. \"R/PT1M\" or \"R/PT1H\"")
    return Cycle(text=text, count=count, start=start, every=(months, rest))


def _cycle_start(part: str, text: str) -> datetime:
    """The start of an ISO cycle; without an offset it is read in the district's zone."""
    try:
        start = datetime.fromisoformat(part)
    except ValueError:
        raise TimerValueError(f"{text!r}: the start {part[:40]!r} is not an ISO 8601 date-time "
                              "(e.g. \"R5/2026-01-01T08:00:00+08:00/P1D\")") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=cron_zone())
    return start.astimezone(timezone.utc)


def _parse_cron(text: str) -> Cycle:
    try:
        parsed = _cron.parse(text)
    except _cron.CronError as exc:
        raise TimerValueError(f"cron {text[:60]!r}: {exc} (e.g. \"0 0 9 * * ?\": 09:00 every day)") from None
    gap = _cron.shortest_gap(parsed)
    if gap is not None and gap < MIN_CYCLE:
        raise TimerValueError(f"cron {text[:60]!r} fires {gap.total_seconds():g} s apart; cycles must be at least "
                              f"{_MIN_WORDS} apart (the timer sweep runs every few seconds), e.g. "
                              f"\"0 */5 * * * ?\" (every 5 minutes)")
    if parsed.next_after(datetime(_cron.MIN_YEAR, 1, 1, tzinfo=timezone.utc), timezone.utc) is None:
        raise TimerValueError(f"cron {text[:60]!r} names no time that exists (such as 30 February); "
                              "\"0 0 9 L * ?\" is 09:00 on the last day of each month")
    return Cycle(text=parsed.text, cron=parsed)
