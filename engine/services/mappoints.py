"""What the one-map view shows, read with each caller's object rules (engine.services.access):
open work orders (a unit's people only their unit's), gas households (a deliverer only their
own; other units none), crews' depots and the badge gateways fixed at them (a supervisor only
their crews', a unit leader their unit's contracts'), and the areas' extents for a plain
background; and the two writes that place a depot or a gateway. Rows are read as plain
tuples (no ORM objects: a district has 100,000 orders) and returned in
engine.domain.mappoints' columnar form."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlalchemy import select as rows_of
from sqlmodel import col, select

from engine.auth.models import Device
from engine.clock import from_db, to_db
from engine.domain.mappoints import Layer, columns
from engine.domain.models import AddressCode, Contract, Crew, Household, Street, Unit, WorkOrder
from engine.domain.workorders import OrderState
from engine.runtime.errors import NotFound, ValidationFailed
from engine.services.access import Caller, crew_for, crews_visible, households_visible, orders_visible

__all__ = ["areas", "depots", "gateways", "households", "set_depot_location", "set_gateway_location", "work_orders"]


def work_orders(engine, who: Caller, now: datetime) -> Layer:
    """The open work orders `who` may see that have a place: number, lat, lon, state,
    category, area, unit, overdue (escalated, or open past its SLA)."""
    sla_due = col(WorkOrder.sla_due)
    late = or_(col(WorkOrder.overdue).is_(True), and_(sla_due.is_not(None), sla_due < to_db(now)))
    query = (rows_of(col(WorkOrder.number), col(WorkOrder.lat), col(WorkOrder.lon), col(WorkOrder.state),
                     col(WorkOrder.category), col(WorkOrder.area), col(WorkOrder.unit_code), late)
             .where(col(WorkOrder.state) != OrderState.CLOSED.value, col(WorkOrder.lat).is_not(None),
                    col(WorkOrder.lon).is_not(None), orders_visible(who))
             .order_by(col(WorkOrder.id)))
    with engine.transaction(write=False) as s:
        rows = s.connection().execute(query).all()
        layer = columns(rows, ("number", "lat", "lon", "state", "category", "area", "unit", "overdue"),
                        coded=("state", "category", "area", "unit"), flags=("overdue",))
        layer["names"] = {f: _unit_names(s, layer["codes"][f]) for f in ("area", "unit")}
    return layer


def _unit_names(s, codes: list) -> dict[str, list[str]]:
    """{code: [English, Chinese]} of the units among `codes` (an area's street office is the
    unit of the same code)."""
    wanted = [c for c in codes if c]
    if not wanted:
        return {}
    found = s.exec(select(Unit.code, Unit.name, Unit.name_zh).where(col(Unit.code).in_(wanted))).all()
    return {code: [name, name_zh] for code, name, name_zh in found}


def households(engine, who: Caller, now: datetime) -> Layer:
    """The gas households `who` may see (Forbidden for other units' people): id, lat, lon, area,
    overdue (never inspected, or due before now), suspended (supply stopped)."""
    where = households_visible(who)
    due = or_(col(Household.next_due_at).is_(None), col(Household.next_due_at) <= to_db(now))
    query = (rows_of(col(Household.id), col(AddressCode.lat), col(AddressCode.lon), col(Street.area), due,
                     col(Household.supply_suspended))
             .join(AddressCode, col(AddressCode.code) == col(Household.address_code))
             .join(Street, col(Street.code) == col(AddressCode.street_code))
             .where(*where).order_by(col(Household.id)))
    with engine.transaction(write=False) as s:
        rows = s.connection().execute(query).all()
    return columns(rows, ("id", "lat", "lon", "area", "overdue", "suspended"), coded=("area",),
                   flags=("overdue", "suspended"))


def depots(engine, who: Caller) -> Layer:
    """The crews' muster points `who` may see that have a place: crew, lat, lon, muster point,
    contract, unit, shift start."""
    query = (rows_of(col(Crew.code), col(Crew.lat), col(Crew.lon), col(Crew.muster_point), col(Crew.contract_code),
                     col(Contract.unit_code), col(Crew.shift_start))
             .join(Contract, col(Contract.code) == col(Crew.contract_code))
             .where(col(Crew.lat).is_not(None), col(Crew.lon).is_not(None), *crews_visible(who))
             .order_by(col(Crew.code)))
    with engine.transaction(write=False) as s:
        rows = s.connection().execute(query).all()
    return columns(rows, ("crew", "lat", "lon", "muster_point", "contract", "unit", "shift_start"))


def gateways(engine, who: Caller) -> Layer:
    """The fixed badge gateways with a place, at the depots `who` may see (a gateway of no crew
    only to those who see every crew): id, lat, lon, name, crew, paired, revoked, last seen."""
    visible = crews_visible(who)
    where: list = [col(Device.kind) == "gateway", col(Device.lat).is_not(None), col(Device.lon).is_not(None)]
    if visible:
        where.append(col(Device.crew_code).in_(select(Crew.code).where(*visible)))
    query = (rows_of(col(Device.id), col(Device.lat), col(Device.lon), col(Device.name), col(Device.crew_code),
                     col(Device.paired_at).is_not(None), col(Device.revoked_at).is_not(None), col(Device.last_seen_at))
             .where(*where).order_by(col(Device.id)))
    with engine.transaction(write=False) as s:
        rows = [(*r[:7], from_db(r[7]).isoformat() if r[7] else None) for r in s.connection().execute(query).all()]
    return columns(rows, ("id", "lat", "lon", "name", "crew", "paired", "revoked", "last_seen_at"),
                   flags=("paired", "revoked"))


def areas(engine) -> list[dict]:
    """Each area's (street office's) extent: the box around its address codes, for drawing
    the district's outline where there are no map tiles."""
    lat, lon = col(AddressCode.lat), col(AddressCode.lon)
    query = (rows_of(col(Street.area), func.min(lat), func.min(lon), func.max(lat), func.max(lon), func.count())
             .select_from(AddressCode).join(Street, col(Street.code) == col(AddressCode.street_code))
             .group_by(col(Street.area)).order_by(col(Street.area)))
    with engine.transaction(write=False) as s:
        rows = s.connection().execute(query).all()
        names = _unit_names(s, [r[0] for r in rows])    # a street office's unit is its area
    return [{"code": area, "name": name, "name_zh": name_zh, "bounds": [[south, west], [north, east]], "addresses": n}
            for area, south, west, north, east, n in rows
            for name, name_zh in [names.get(area, [area, area])]]


def set_depot_location(engine, who: Caller, crew_code: str, lat: float, lon: float) -> Crew:
    """Place a crew's muster point (depot) on the map (a crew outside `who`'s reach: 404)."""
    with engine.transaction() as s:
        crew = crew_for(s, who, crew_code)
        crew.lat, crew.lon = lat, lon
        s.add(crew)
        s.flush()
        s.refresh(crew)
        return crew


def set_gateway_location(engine, device_id: str, lat: float, lon: float, crew_code: str | None) -> Device:
    """Place a fixed badge gateway on the map, at the depot of `crew_code` (or of none)."""
    with engine.transaction() as s:
        device = s.get(Device, device_id)
        if device is None or device.kind != "gateway":
            raise NotFound(f"no badge gateway {device_id[:64]!r}")
        if crew_code is not None and s.get(Crew, crew_code) is None:
            raise ValidationFailed({"crew": f"no crew {crew_code[:64]!r} / 没有该班组"})
        device.lat, device.lon, device.crew_code = lat, lon, crew_code
        s.add(device)
        s.flush()
        s.refresh(device)
        return device
