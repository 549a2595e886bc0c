"""Timer values: the ISO 8601 texts a timer expression must give, read with bounds.

One reading for deploy (a constant timer text is checked once, before it is stored) and for
run time (engine.bpmn.specs), so that what deploy accepts is exactly what a timer can use.
The library's parsers are used underneath, with two additions: the kind must match the
timer (a timeDate needs a date-time, a timeDuration a duration, a timeCycle a repetition),
and a duration is bounded before the library walks it month by month (its loop runs once
per month, so "P999999999Y" would hang the step).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine.bpmn.expr_ops import ExpressionError

__all__ = ["TimerValueError", "MAX_DURATION_MONTHS", "MAX_DURATION_DAYS", "EXAMPLES", "parse_date",
           "parse_duration", "due_after", "check_text", "check_type", "parse_due_date"]

MAX_DURATION_MONTHS = 12 * 100        # years and months of one duration (100 years)
MAX_DURATION_DAYS = 366 * 100         # days, weeks, hours... of one duration, as days
MAX_TEXT = 200                        # characters of a timer value
EXAMPLES = {"timeDate": '"2026-03-02T08:00:00+08:00"', "timeDuration": '"PT4H"',
            "timeCycle": '"R3/PT10M"'}
_KIND_WORDS = {"timeDate": "an ISO 8601 date-time", "timeDuration": "an ISO 8601 duration",
               "timeCycle": "an ISO 8601 repeating interval"}


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
        text = _text(value, kind)
        if not text.upper().startswith("R"):
            raise TimerValueError(f"{text!r} is not {_KIND_WORDS[kind]} (e.g. {EXAMPLES[kind]})")
        parts = text.upper().replace("--", "/").strip("R").split("/")
        for part in parts[1:]:
            if part.startswith("P"):
                parse_duration(part)
        try:
            TimerEventDefinition.parse_iso_recurring_interval(text)
        except Exception:
            raise TimerValueError(f"{text!r} is not {_KIND_WORDS[kind]} (e.g. {EXAMPLES[kind]})") from None
    else:
        raise ValueError(f"unknown timer kind {kind!r}")   # a bug in the caller, not the designer's
