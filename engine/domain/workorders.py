"""Work orders: report -> dispatch to the responsible unit -> rectify -> review, with SLA
escalation. Operations named by work_order.bpmn, and the way orders enter the system."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, func, insert, update
from sqlmodel import Session, select

from engine.clock import from_db, to_db
from engine.db import direct
from engine.domain.common import need, notify, notify_once
from engine.domain.models import Staff, Unit, WorkOrder
from engine.runtime.errors import Actor, ValidationFailed
from engine.runtime.operations import OpContext, OperationError, Registry

__all__ = ["AFTER_PHOTOS_FIELD", "CATEGORIES", "OrderState", "PHOTO_KINDS", "PROCESS", "PhotoKind", "Reported",
           "SOURCES", "STATES", "STATE_OF_TASK", "close_order", "dispatch", "escalate", "is_overdue",
           "new_order", "on_task_opened", "photo_kind_of_field", "register", "reject_order", "report",
           "unit_workers"]


class OrderState(StrEnum):
    """Where a work order is in its loop (stored as its text in work_order.state)."""
    REPORTED = "reported"      # recorded, not yet dispatched
    AT_UNIT = "at_unit"        # with the responsible unit, to rectify
    REROUTING = "rerouting"    # the unit said "not ours": a dispatcher routes it again
    IN_REVIEW = "in_review"    # rectified, a reviewer checks the after-photos
    CLOSED = "closed"          # approved: the loop is closed


class PhotoKind(StrEnum):
    """Why a photo is linked to an order."""
    REPORT = "report"          # sent with the report (citizen, camera)
    EVIDENCE = "evidence"      # anyone's evidence
    AFTER = "after"            # the unit's after-rectification photo
    SNAPSHOT = "snapshot"      # a camera's frame


PROCESS = "work_order"
SOURCES = ("citizen", "camera", "patrol", "inspection")
CATEGORIES = ("exposed_garbage", "street_vending", "illegal_ads", "road_damage", "manhole_cover",
              "gas_hazard", "tree_fallen", "other")
STATES = tuple(OrderState)
PHOTO_KINDS = tuple(PhotoKind)
AFTER_PHOTOS_FIELD = "after_photos"   # the rectify form's file field whose photos are "after" photos
# States the operations do not set themselves (dispatch and reject_order set "at_unit").
STATE_OF_TASK = {"Task_review": OrderState.IN_REVIEW.value, "Task_reroute": OrderState.REROUTING.value}


def photo_kind_of_field(field_key: str) -> PhotoKind:
    """The kind of a photo submitted in a task form's file field."""
    return PhotoKind.AFTER if field_key == AFTER_PHOTOS_FIELD else PhotoKind.EVIDENCE


def is_overdue(order: WorkOrder, now: datetime) -> bool:
    """Escalated, or still open past its SLA."""
    return bool(order.overdue) or (order.state != OrderState.CLOSED and order.sla_due is not None
                                   and from_db(order.sla_due) < now)
_SET_STATE = update(WorkOrder).where(WorkOrder.number == bindparam("order_number")).values(state=bindparam("new_state"))
_NEW = insert(WorkOrder).returning(WorkOrder.id)
_NUMBER = update(WorkOrder).where(WorkOrder.id == bindparam("order_id")).values(number=bindparam("new_number"))
_INSTANCE = update(WorkOrder).where(WorkOrder.id == bindparam("order_id")).values(instance_id=bindparam("new_instance"))


def report(engine, actor: Actor, *, source: str, category: str, area: str, description: str = "",
           address_code: str | None = None, lat: float | None = None, lon: float | None = None,
           reporter: str | None = None, origin: str | None = None, session: Session | None = None) -> "Reported":
    """Record a problem and start its process; the DMN table routes it to a unit."""
    errors = {}
    if source not in SOURCES:
        errors["source"] = f"must be one of {', '.join(SOURCES)}"
    if category not in CATEGORIES:
        errors["category"] = f"must be one of {', '.join(CATEGORIES)}"
    if not isinstance(area, str) or not area:
        errors["area"] = "required"
    if errors:
        raise ValidationFailed(errors)
    with engine.transaction(session) as s:
        now = engine.clock()
        order_id, number, data = new_order(s, now, source=source, category=category, area=area,
                                           description=description, address_code=address_code, lat=lat, lon=lon,
                                           reporter=reporter, origin=origin)
        instance_id = engine.start(PROCESS, data, actor, business_key=number, session=s)
        direct.defer(s.connection(), _INSTANCE, {"order_id": order_id, "new_instance": instance_id})
        return Reported(order_id, number, instance_id)


def new_order(s: Session, now: datetime, *, source: str, category: str, area: str, description: str = "",
              address_code: str | None = None, lat: float | None = None, lon: float | None = None,
              reporter: str | None = None, origin: str | None = None,
              instance_id: int | None = None) -> tuple[int, str, dict]:
    """Insert a work order row: (id, number, the process data it starts with). Its process is
    work_order (started by `report`) or, for an order another process opens and rectifies
    through the called rectification process, that process's instance (`instance_id`)."""
    values = dict(number=f"new-{uuid.uuid4().hex[:24]}", source=source, category=category, area=area,
                  address_code=address_code, lat=lat, lon=lon, description=description[:4000],
                  reporter=reporter, reported_at=to_db(now), origin=origin, state=OrderState.REPORTED.value,
                  overdue=False, reject_count=0, reroute_count=0, instance_id=instance_id)
    order_id = direct.execute(s.connection(), _NEW, values).scalar_one()
    number = f"WO{now:%Y%m%d}-{order_id:06d}"
    direct.defer(s.connection(), _NUMBER, {"order_id": order_id, "new_number": number})   # (with the step's writes)
    return order_id, number, {"order_id": order_id, "category": category, "area": area, "source": source,
                              "description": values["description"], "reported_at": now.isoformat()}


@dataclass(frozen=True)
class Reported:
    id: int
    number: str
    instance_id: int


def on_task_opened(session: Session, instance, open_task: dict) -> None:
    """Mirror the order's state from the human task it waits on: a task of the rectification
    loop under an order's number (work_order's own, or a called rectification's own key)."""
    if open_task["name"] not in STATE_OF_TASK or not open_task["business_key"]:
        return
    session.flush()  # pending ORM changes to the order first, then this one
    direct.defer(session.connection(), _SET_STATE, {"order_number": open_task["business_key"],
                                                    "new_state": STATE_OF_TASK[open_task["name"]]})


# Each operation is one UPDATE ... RETURNING on the order: on PostgreSQL every round trip
# costs about 0.2 ms, and an operation runs inside every step that reaches it.
_W = WorkOrder
_UNIT = select(Unit.code, Unit.leader_id).where(Unit.code == bindparam("code"))
_DISPATCH = (update(_W).where(_W.id == bindparam("order_id"),     # (and the unit exists: checked in the same trip)
                              select(Unit.code).where(Unit.code == bindparam("new_unit")).exists())
             .values(unit_code=bindparam("new_unit"), sla_due=bindparam("due"), dispatched_at=bindparam("at"),
                     priority=func.coalesce(bindparam("new_priority"), _W.priority, "normal"), overdue=False,
                     state=OrderState.AT_UNIT.value, reroute_count=_W.reroute_count + bindparam("rerouted"))
             .returning(_W.number, _W.category, _W.area, _W.description, _W.priority))
_ESCALATE = (update(_W).where(_W.id == bindparam("order_id"), _W.state != OrderState.CLOSED.value).values(overdue=True)
             .returning(_W.number, _W.unit_code, _W.sla_due, _W.category, _W.area))
_REJECT = (update(_W).where(_W.id == bindparam("order_id"))
           .values(reject_count=_W.reject_count + 1, state=OrderState.AT_UNIT.value)
           .returning(_W.number, _W.unit_code, _W.reject_count))
_CLOSE = (update(_W).where(_W.id == bindparam("order_id"))
          .values(state=OrderState.CLOSED.value, closed_at=bindparam("at"))
          .returning(_W.number, _W.unit_code, _W.sla_due))


def _run(ctx: OpContext, data, stmt, **params):
    ctx.session.flush()
    row = direct.execute(ctx.session.connection(), stmt, {"order_id": need(data, "order_id", int), **params}).first()
    if row is None and stmt is not _ESCALATE:
        raise OperationError(f"work order {data['order_id']} does not exist")
    return row


def dispatch(ctx: OpContext, data, params):
    """Route the order straight to its responsible unit and start its SLA clock."""
    unit_code = need(data, "unit", str)
    hours = data.get("sla_hours") or 72
    if not isinstance(hours, (int, float)) or not 0 < hours <= 24 * 90:
        raise OperationError(f"sla_hours {hours!r} is out of range")
    rerouted = params.get("mode") == "reroute"
    sla_due = ctx.now + timedelta(hours=hours)
    ctx.session.flush()
    conn = ctx.session.connection()
    order = direct.execute(conn, _DISPATCH, {"order_id": need(data, "order_id", int), "new_unit": unit_code,
                                             "due": to_db(sla_due), "at": to_db(ctx.now),
                                             "new_priority": data.get("priority"), "rerouted": int(rerouted)}).first()
    if order is None:   # (the unit or the order is missing: say which)
        if direct.execute(conn, _UNIT, {"code": unit_code}).first() is None:
            raise OperationError(f"unit {unit_code!r} does not exist")
        raise OperationError(f"work order {data['order_id']} does not exist")
    ctx.audit("rerouted" if rerouted else "dispatched", key=order.number, unit=unit_code, priority=order.priority,
              sla_due=sla_due.isoformat(), reason=data.get("reason") if rerouted else None)
    notify(ctx.session, f"dispatch:{order.number}:{ctx.task_id}", f"unit:{unit_code}",
           f"New work order {order.number}", f"{order.category} in {order.area}: {order.description}", ctx.now)
    return {"sla_due": sla_due.isoformat(), "unit": unit_code}


def escalate(ctx: OpContext, data, params):
    """SLA passed: mark overdue, tell the unit leader and the dispatchers (once per dispatch)."""
    order = _run(ctx, data, _ESCALATE)
    if order is None:  # closed meanwhile (or gone): nothing to escalate
        return None
    unit = (direct.execute(ctx.session.connection(), _UNIT, {"code": order.unit_code}).first()
            if order.unit_code else None)
    leader = unit.leader_id if unit and unit.leader_id else f"leader:{order.unit_code}"
    key = f"escalate:{order.number}:{from_db(order.sla_due).isoformat() if order.sla_due else ''}"
    first = notify_once(ctx.session, key + ":leader", leader, f"Overdue: {order.number}",
                   f"{order.category} at {order.area} passed its SLA ({order.sla_due}).", ctx.now)
    notify(ctx.session, key + ":dispatch", "dispatcher", f"Overdue: {order.number}",
           f"Unit {order.unit_code} has not rectified {order.number} in time.", ctx.now)
    if first:
        ctx.audit("escalated", key=order.number, unit=order.unit_code, sla_due=str(order.sla_due))
    return {"escalated": True}


def reject_order(ctx: OpContext, data, params):
    """Reviewer sent it back: count the loop and tell the unit why."""
    order = _run(ctx, data, _REJECT)
    reason = data.get("reason") or ""
    ctx.audit("rejected", key=order.number, unit=order.unit_code, reason=reason, loop=order.reject_count)
    notify(ctx.session, f"reject:{order.number}:{ctx.task_id}", f"unit:{order.unit_code}",
           f"Work order {order.number} sent back", reason, ctx.now)
    return None


def close_order(ctx: OpContext, data, params):
    """Reviewer approved: the loop is closed."""
    order = _run(ctx, data, _CLOSE, at=to_db(ctx.now))
    on_time = order.sla_due is None or ctx.now <= from_db(order.sla_due)
    ctx.audit("closed", key=order.number, unit=order.unit_code, on_time=on_time)
    return None


def register(reg: Registry) -> None:
    for name, fn in (("dispatch", dispatch), ("escalate", escalate), ("reject_order", reject_order),
                     ("close_order", close_order)):
        reg.register(name)(fn)


def unit_workers(session: Session, unit_code: str) -> list[Staff]:
    return list(session.exec(select(Staff).where(Staff.unit_code == unit_code)).all())
