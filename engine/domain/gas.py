"""Bottled-gas safety: inspections at delivery, hazards, supply suspension, and who is due.

Operations named by gas_inspection.bpmn; `due_households` is the 4-month rule."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import or_
from sqlmodel import Session, select

from engine.clock import to_db
from engine.db.models import Instance
from engine.domain import workorders
from engine.domain.common import add_months, dumps, exclusive, load, need, notify
from engine.domain.models import AddressCode, Household, Inspection, Street
from engine.runtime.errors import Actor, NotFound, ValidationFailed
from engine.runtime.operations import OpContext, OperationError, Registry

__all__ = ["CHECKLIST", "INSPECTION_MONTHS", "PROCESS", "assess_checklist", "coverage", "due_households",
           "notify_household", "open_rectification_order", "record_inspection", "register", "resume_supply",
           "spawn_rectification",
           "start_due_inspections", "start_inspection", "suspend_supply"]

PROCESS = "gas_inspection"
INSPECTION_MONTHS = 4
CHECKLIST = ("hose_ok", "valve_leak_test", "ventilation", "co_alarm", "cylinder_inspection_date",
             "stove_flameout_protection", "photos")


def start_inspection(engine, household_id: int, deliverer_id: str, trigger: str, actor: Actor,
                     session: Session | None = None) -> int:
    if trigger not in ("delivery", "due_list"):
        raise ValidationFailed({"trigger": "trigger must be 'delivery' or 'due_list'"})
    with engine.transaction(session) as s:
        hh = s.get(Household, household_id)
        if hh is None:
            raise NotFound(f"no household {household_id}")
        return engine.start(PROCESS, {"household_id": hh.id, "address_code": hh.address_code,
                                      "deliverer": deliverer_id, "trigger": trigger},
                            actor, business_key=f"household:{hh.id}", session=s)


def due_households(session: Session, now: datetime, within: timedelta = timedelta(0)) -> list[Household]:
    """Households never inspected, or whose 4 months run out by now + within."""
    limit = to_db(now + within)
    q = select(Household).where(or_(Household.next_due_at.is_(None), Household.next_due_at <= limit))
    return list(session.exec(q.order_by(Household.next_due_at, Household.id)).all())


def start_due_inspections(engine, within: timedelta = timedelta(days=7)) -> int:
    """Daily job: open an inspection task for each due household that has none running."""
    started = 0
    with engine.transaction() as s:
        exclusive(s, "gas-due-list")  # every worker runs this job; one at a time sees the others' starts
        running = set(s.exec(select(Instance.business_key).where(
            Instance.process_key == PROCESS, Instance.state == "running")).all())
        for hh in due_households(s, engine.clock(), within):
            if f"household:{hh.id}" in running or not hh.deliverer_id:
                continue
            start_inspection(engine, hh.id, hh.deliverer_id, "due_list", Actor("scheduler"), session=s)
            started += 1
    return started


def _household(ctx: OpContext, data) -> Household:
    return load(ctx.session, Household, data, "household_id")


def assess_checklist(ctx: OpContext, data, params):
    """Derive facts the hazard table needs (is the cylinder past its inspection date?)."""
    stamped = need(data, "cylinder_inspection_date", str)
    try:
        due = date.fromisoformat(stamped[:10])
    except ValueError:
        raise OperationError(f"cylinder_inspection_date {stamped!r} is not a date") from None
    return {"cylinder_expired": due < ctx.now.date()}


def record_inspection(ctx: OpContext, data, params):
    """Store the inspection; the household is next due 4 months from now."""
    hh = _household(ctx, data)
    level = need(data, "hazard_level", str)
    if level not in ("none", "minor", "severe"):
        raise OperationError(f"hazard_level {level!r} is not none/minor/severe")
    ctx.session.add(Inspection(household_id=hh.id, instance_id=ctx.instance_id, task_id=ctx.task_id,
                               deliverer_id=str(data.get("deliverer") or ctx.actor), at=to_db(ctx.now),
                               checklist=dumps({k: data.get(k) for k in CHECKLIST}), hazard_level=level,
                               hazard_reason=data.get("hazard_reason")))
    hh.last_inspected_at = to_db(ctx.now)
    hh.next_due_at = to_db(add_months(ctx.now, INSPECTION_MONTHS))
    ctx.audit("inspected", household=hh.id, hazard_level=level, reason=data.get("hazard_reason"))
    return None


def notify_household(ctx: OpContext, data, params):
    """Tell the household what was found and what happens next."""
    hh = _household(ctx, data)
    notify(ctx.session, f"hazard:{ctx.instance_id}:{ctx.task_id}", f"household:{hh.id}",
           "Gas safety hazard found / 发现燃气安全隐患",
           f"{data.get('hazard_reason') or data.get('hazard_level')}", ctx.now)
    return None


def _hazard_order(ctx: OpContext, hh: Household, data) -> dict:
    """What a rectification work order for this inspection's hazard is opened with."""
    addr = ctx.session.get(AddressCode, hh.address_code)
    street = ctx.session.get(Street, addr.street_code) if addr else None
    return dict(source="inspection", category="gas_hazard", area=street.area if street else "unknown",
                address_code=hh.address_code, lat=addr.lat if addr else None, lon=addr.lon if addr else None,
                description=f"{data.get('hazard_level')} gas hazard: {data.get('hazard_reason')}",
                origin=f"gas_inspection:{ctx.instance_id}")


def _ordered(ctx: OpContext, number: str) -> None:
    """Note the order on the inspection this step recorded, and in the timeline."""
    ctx.session.flush()     # (the inspection record_inspection added in this step)
    latest = ctx.session.exec(select(Inspection).where(Inspection.instance_id == ctx.instance_id)
                              .order_by(Inspection.id.desc())).first()
    if latest is not None and latest.work_order_number is None:
        latest.work_order_number = number
    ctx.audit("rectification_ordered", work_order=number)


def spawn_rectification(ctx: OpContext, data, params):
    """Open a rectification work order for the gas office (once per inspection), with a
    work_order process of its own (gas_inspection versions before the called rectification)."""
    hh = _household(ctx, data)

    def spawn():
        return workorders.report(ctx.engine, Actor(ctx.actor), **_hazard_order(ctx, hh, data),
                                 session=ctx.session).number

    number = ctx.once("spawn_rectification", spawn)
    _ordered(ctx, number)
    return {"rectification_order": number}


def open_rectification_order(ctx: OpContext, data, params):
    """Open the work order for a hazard (once per inspection task). The inspection's own
    process then dispatches it and rectifies it through the called rectification process under
    the order's number, so it waits for the fix before it re-inspects."""
    hh = _household(ctx, data)

    def open_order():
        order_id, number, order_data = workorders.new_order(ctx.session, ctx.now, **_hazard_order(ctx, hh, data),
                                                            instance_id=ctx.instance_id)
        return {**order_data, "rectification_order": number}

    opened = ctx.once("open_rectification_order", open_order)
    _ordered(ctx, opened["rectification_order"])
    ctx.audit("reported", key=opened["rectification_order"], source="inspection", household=hh.id)
    return opened


def suspend_supply(ctx: OpContext, data, params):
    """Severe hazard: no more deliveries until a re-inspection passes."""
    hh = _household(ctx, data)
    hh.supply_suspended = True
    ctx.audit("supply_suspended", household=hh.id, reason=data.get("hazard_reason"))
    notify(ctx.session, f"suspend:{ctx.instance_id}:{ctx.task_id}", "gas_office",
           f"Supply suspended: {hh.address_code}", str(data.get("hazard_reason")), ctx.now)
    return None


def resume_supply(ctx: OpContext, data, params):
    """Re-inspection passed: deliveries may resume."""
    hh = _household(ctx, data)
    hh.supply_suspended = False
    ctx.audit("supply_resumed", household=hh.id)
    return None


def register(reg: Registry) -> None:
    # spawn_rectification stays registered: gas_inspection versions before the called
    # rectification process run on with it until their instances end.
    for fn in (assess_checklist, record_inspection, notify_household, spawn_rectification, open_rectification_order,
               suspend_supply, resume_supply):
        reg.register(fn.__name__)(fn)


def coverage(session: Session, now: datetime) -> dict:
    """Share of households inspected within the last 4 months."""
    total = len(session.exec(select(Household.id)).all())
    cutoff = to_db(add_months(now, -INSPECTION_MONTHS))
    covered = len(session.exec(select(Household.id).where(Household.last_inspected_at >= cutoff)).all())
    return {"households": total, "covered": covered, "share": covered / total if total else 0.0,
            "overdue": len(due_households(session, now))}


