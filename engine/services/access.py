"""Object rules: which work orders, crews, shifts and gas households a caller may see and touch.

A unit's people see only their unit's orders; a supervisor only their own crews, a unit
leader the crews of their unit's contracts; a badge gateway checks in to any shift; a gas
deliverer only their own households, and of the units only the gas office sees households
at all. An object outside a caller's reach is "not found" (a 404), so that its existence
does not leak."""
from __future__ import annotations

from typing import Protocol

from sqlalchemy import bindparam, false, true
from sqlalchemy import inspect as mapped
from sqlalchemy import select as rows_of
from sqlmodel import Session, col, select

from engine.auth.policy import UNIT_ROLES
from engine.db import direct
from engine.domain.models import Contract, Crew, Household, Shift, WorkOrder
from engine.runtime.errors import Forbidden, NotFound

__all__ = ["Caller", "orders_visible", "order_for", "order_row_for", "crews_visible", "crew_for", "shift_for",
           "GAS_UNIT", "households_visible", "household_for"]
GAS_UNIT = "gas-office"


class Caller(Protocol):
    """Who asks: a signed-in person, a device acting for its owner, or a device itself
    (engine.auth.service.Principal; sync.server.ops.Pusher)."""
    id: str
    role: str
    unit_code: str | None


def orders_visible(who: Caller):
    """The SQL condition for the work orders `who` may see."""
    if who.role not in UNIT_ROLES:
        return true()
    return WorkOrder.unit_code == who.unit_code if who.unit_code else false()


def order_for(s: Session, who: Caller, number: str) -> WorkOrder:
    order = s.exec(select(WorkOrder).where(WorkOrder.number == number, orders_visible(who))).first()
    if order is None:
        raise NotFound(f"no work order {number[:64]!r}")
    return order


_ORDER = mapped(WorkOrder).local_table
_ORDER_BY_NUMBER = rows_of(_ORDER).where(_ORDER.c.number == bindparam("number"))
_UNIT_ORDER_BY_NUMBER = _ORDER_BY_NUMBER.where(_ORDER.c.unit_code == bindparam("unit"))


def order_row_for(conn, who: Caller, number: str):
    """`order_for` for reading: the order's row (its columns as attributes) on a connection,
    by a prebuilt statement (engine.db.direct), the same rule as `orders_visible`."""
    if who.role not in UNIT_ROLES:
        found = direct.execute(conn, _ORDER_BY_NUMBER, {"number": number}).first()
    elif who.unit_code:
        found = direct.execute(conn, _UNIT_ORDER_BY_NUMBER, {"number": number, "unit": who.unit_code}).first()
    else:
        found = None
    if found is None:
        raise NotFound(f"no work order {number[:64]!r}")
    return found


def crews_visible(who: Caller) -> list:
    """SQL conditions on Crew for the crews `who` may see (none: all)."""
    if who.role == "supervisor":
        return [Crew.supervisor_id == who.id]
    if who.role == "unit_leader":
        return [col(Crew.contract_code).in_(select(Contract.code).where(Contract.unit_code == (who.unit_code or "")))]
    return []


def crew_for(s: Session, who: Caller, code: str) -> Crew:
    crew = s.exec(select(Crew).where(Crew.code == code, *crews_visible(who))).first()
    if crew is None:
        raise NotFound(f"no crew {code!r} (or not one of yours)")
    return crew


def shift_for(s: Session, who: Caller, shift_id: int) -> Shift:
    shift = s.get(Shift, shift_id)
    if shift is None or (who.role != "gateway" and
                         s.exec(select(Crew.code).where(Crew.code == shift.crew_code,
                                                        *crews_visible(who))).first() is None):
        raise NotFound(f"no shift {shift_id} (or not one of your crews')")
    return shift


def households_visible(who: Caller) -> list:
    """SQL conditions on Household for the gas households `who` may see (none: all); other
    units' workers and leaders see none (Forbidden)."""
    if who.role == "deliverer":
        return [Household.deliverer_id == who.id]
    if who.role in UNIT_ROLES and who.unit_code != GAS_UNIT:
        raise Forbidden("only the gas office's staff see gas households / 仅燃气办可查看")
    return []


def household_for(s: Session, who: Caller, household_id: int) -> Household:
    households_visible(who)
    hh = s.get(Household, household_id)
    if hh is None or (who.role == "deliverer" and hh.deliverer_id != who.id):
        raise NotFound(f"no household {household_id}")
    return hh
