"""What the one-map view shows, read with each caller's object rules (engine.services.access):
open work orders (a unit's people only their unit's), gas households (a deliverer only their
own; other units none), crews' depots and the badge gateways fixed at them (a supervisor only
their crews', a unit leader their unit's contracts'), and the areas' extents for a plain
background. Rows are read as plain tuples (no ORM objects: a district has 100,000 orders) and
returned in engine.domain.mappoints' columnar form."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlmodel import col, select

from engine.auth.models import Device
from engine.clock import from_db, to_db
from engine.domain.mappoints import Layer, columns
from engine.domain.models import AddressCode, Contract, Crew, Household, Street, Unit, WorkOrder
from engine.domain.workorders import OrderState
from engine.services.access import Caller, crews_visible, households_visible, orders_visible

__all__ = ["areas", "depots", "gateways", "households", "work_orders"]


def work_orders(engine, who: Caller, now: datetime) -> Layer:
    """The open work orders `who` may see that have a place: number, lat, lon, state,
    category, area, unit, overdue (escalated, or open past its SLA)."""
    late = or_(WorkOrder.overdue.is_(True), and_(WorkOrder.sla_due.is_not(None), WorkOrder.sla_due < to_db(now)))
    query = (select(WorkOrder.number, WorkOrder.lat, WorkOrder.lon, WorkOrder.state, WorkOrder.category,
                    WorkOrder.area, WorkOrder.unit_code, late)
             .where(WorkOrder.state != OrderState.CLOSED.value, col(WorkOrder.lat).is_not(None),
                    col(WorkOrder.lon).is_not(None), orders_visible(who))
             .order_by(WorkOrder.id))
    with engine.transaction(write=False) as s:
        rows = s.exec(query).all()
    return columns(rows, ("number", "lat", "lon", "state", "category", "area", "unit", "overdue"),
                   coded=("state", "category", "area", "unit"), flags=("overdue",))


def households(engine, who: Caller, now: datetime) -> Layer:
    """The gas households `who` may see (Forbidden for other units' people): id, lat, lon, area,
    overdue (never inspected, or due before now), suspended (supply stopped)."""
    where = households_visible(who)
    due = or_(col(Household.next_due_at).is_(None), Household.next_due_at <= to_db(now))
    query = (select(Household.id, AddressCode.lat, AddressCode.lon, Street.area, due, Household.supply_suspended)
             .join(AddressCode, AddressCode.code == Household.address_code)
             .join(Street, Street.code == AddressCode.street_code)
             .where(*where).order_by(Household.id))
    with engine.transaction(write=False) as s:
        rows = s.exec(query).all()
    return columns(rows, ("id", "lat", "lon", "area", "overdue", "suspended"), coded=("area",),
                   flags=("overdue", "suspended"))


def depots(engine, who: Caller) -> Layer:
    """The crews' muster points `who` may see that have a place: crew, lat, lon, muster point,
    contract, unit, shift start."""
    query = (select(Crew.code, Crew.lat, Crew.lon, Crew.muster_point, Crew.contract_code, Contract.unit_code,
                    Crew.shift_start)
             .join(Contract, Contract.code == Crew.contract_code)
             .where(col(Crew.lat).is_not(None), col(Crew.lon).is_not(None), *crews_visible(who))
             .order_by(Crew.code))
    with engine.transaction(write=False) as s:
        rows = s.exec(query).all()
    return columns(rows, ("crew", "lat", "lon", "muster_point", "contract", "unit", "shift_start"))


def gateways(engine, who: Caller) -> Layer:
    """The fixed badge gateways with a place, at the depots `who` may see (a gateway of no crew
    only to those who see every crew): id, lat, lon, name, crew, paired, revoked, last seen."""
    visible = crews_visible(who)
    where = [Device.kind == "gateway", col(Device.lat).is_not(None), col(Device.lon).is_not(None)]
    if visible:
        where.append(col(Device.crew_code).in_(select(Crew.code).where(*visible)))
    query = (select(Device.id, Device.lat, Device.lon, Device.name, Device.crew_code,
                    col(Device.paired_at).is_not(None), col(Device.revoked_at).is_not(None), Device.last_seen_at)
             .where(*where).order_by(Device.id))
    with engine.transaction(write=False) as s:
        rows = [(*r[:7], from_db(r[7]).isoformat() if r[7] else None) for r in s.exec(query).all()]
    return columns(rows, ("id", "lat", "lon", "name", "crew", "paired", "revoked", "last_seen_at"),
                   flags=("paired", "revoked"))


def areas(engine) -> list[dict]:
    """Each area's (street office's) extent: the box around its address codes, for drawing
    the district's outline where there are no map tiles."""
    query = (select(Street.area, func.min(AddressCode.lat), func.min(AddressCode.lon), func.max(AddressCode.lat),
                    func.max(AddressCode.lon), func.count())
             .join(Street, Street.code == AddressCode.street_code)
             .group_by(Street.area).order_by(Street.area))
    with engine.transaction(write=False) as s:
        rows = s.exec(query).all()
        names = {u.code: (u.name, u.name_zh) for u in s.exec(select(Unit).where(
            col(Unit.code).in_([r[0] for r in rows]))).all()}    # a street office's unit is its area
    return [{"code": area, "name": names.get(area, (area, area))[0], "name_zh": names.get(area, (area, area))[1],
             "bounds": [[south, west], [north, east]], "addresses": n}
            for area, south, west, north, east, n in rows]
