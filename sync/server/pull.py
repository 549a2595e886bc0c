"""Pull: what a device needs, as the difference from what it already has.

The server remembers, per person and device (sync_cursor), the state the device has
acknowledged and the one it was last sent. A pull names the cursor of the last answer it
received: if that is the one last sent, the device has it (it becomes the acknowledged
state); if it is the acknowledged one, the last answer was lost and is computed again. Any
other cursor (or none) starts over with everything (reset). So a lost response, a crash
mid-pull or a retry never loses a change, and an answer holds at most `page_size` items
(has_more says to pull again).

Items: open tasks (assigned to the person, claimed by them or open in their groups) with
their form and instance version, tasks gone since (with the reason: completed, reassigned,
cancelled), crews with rosters and coming shifts (supervisors and unit leaders), a
deliverer's households (with the open inspection task of each), and reference data (units,
work-order categories, gas checklist items, the gas inspection form and the hazard decision
table the tablet evaluates itself, engine.bpmn.decision_table). Crews, households and
reference data are sent whole, and only when their digest changed."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import bindparam, select, update

from engine.bpmn.decision_table import table_of
from engine.clock import from_db, to_db
from engine.db.models import AuditEvent, Instance, OpenTask
from engine.db.upsert import insert_if_new
from engine.domain import gas, workorders
from engine.domain.models import AddressCode, Cleaner, Contract, Crew, Household, Shift, Unit
from engine.forms import form_to_dict
from engine.runtime.rows import fetch_open_task
from engine.runtime.tasks import FormsOf
from sync.protocol import PROTOCOL_VERSION, PullRequest, canonical_json, decode_cursor, encode_cursor
from sync.server.models import SyncCursor
from sync.server.ops import Pusher

__all__ = ["CREW_ROLES", "GAS_FORM", "HAZARD_DECISION", "HOUSEHOLD_ROLES", "MAX_TASKS", "SHIFTS_AHEAD", "pull"]

MAX_TASKS = 1000
SHIFTS_AHEAD = timedelta(days=2)
CREW_ROLES = ("supervisor", "unit_leader")
HOUSEHOLD_ROLES = ("deliverer",)
GAS_FORM = "gas_inspection"           # the form of the gas process's inspection tasks
HAZARD_DECISION = "gas_hazard"        # the decision it classifies hazards with
_CURSOR = SyncCursor.__table__
_VERSIONS = select(Instance.id, Instance.version).where(Instance.id.in_(bindparam("ids", expanding=True)))


def pull(engine, who: Pusher, request: PullRequest) -> dict:
    key = f"{who.id}|{who.device or request.device or '-'}"[:140]
    generation = decode_cursor(request.cursor)
    now = engine.clock()
    with engine.transaction(write=False) as s:
        row = s.connection().execute(select(_CURSOR).where(_CURSOR.c.key == key)).mappings().first()
    base = None
    if row is not None and generation is not None:
        if generation == row["pending_gen"]:
            base = json.loads(row["pending"])
        elif generation == row["acked_gen"]:
            base = json.loads(row["acked"])
    tasks = _current_tasks(engine, who)
    crews = _crews(engine, who, now) if who.role in CREW_ROLES else None
    households = _households(engine, who, now) if who.role in HOUSEHOLD_ROLES else None
    reference = _reference(engine)
    known = (base or {}).get("tasks", {})
    changed = sorted(t for t in tasks if known.get(t) != tasks[t]["entry"])
    removed = sorted(t for t in known if t not in tasks)
    page = request.page_size
    out_removed = [_removal(engine, who, t, known[t]) for t in removed[:page]]
    room = page - len(out_removed)
    out_changed = changed[:max(room, 0)]
    new_known = {t: e for t, e in known.items() if t not in set(removed[:page])}
    new_known.update({t: tasks[t]["entry"] for t in out_changed})
    state = {"tasks": new_known, "reference": (base or {}).get("reference"), "crews": (base or {}).get("crews"),
             "households": (base or {}).get("households")}
    send_reference = state["reference"] != _digest(reference)
    send_crews = crews is not None and state["crews"] != _digest(crews)
    send_households = households is not None and state["households"] != _digest(households)
    state["reference"], state["crews"] = _digest(reference), _digest(crews) if crews is not None else None
    state["households"] = _digest(households)
    has_more = len(removed) + len(changed) > len(out_removed) + len(out_changed)
    new_gen = _save(engine, key, who.id, row, base, generation, state, now)
    form_of = FormsOf(engine)
    return {"protocol": PROTOCOL_VERSION, "cursor": encode_cursor(new_gen), "reset": base is None,
            "has_more": has_more, "server_time": now.isoformat(),
            "tasks": [_task_out(tasks[t], form_of) for t in out_changed], "removed": out_removed,
            "crews": crews if send_crews else None, "households": households if send_households else None,
            "reference": reference if send_reference else None}


def _save(engine, key: str, actor: str, row, base, generation, state: dict, now) -> int:
    """Remember the state just sent as pending; what the device confirmed becomes acked."""
    acked_gen = row["acked_gen"] if row else 0
    acked = row["acked"] if row else "{}"
    if row is not None and base is not None and generation == row["pending_gen"]:
        acked_gen, acked = row["pending_gen"], row["pending"]
    elif base is None:
        acked_gen, acked = 0, "{}"
    new_gen = max(row["pending_gen"] if row else 0, acked_gen) + 1
    values = {"acked_gen": acked_gen, "acked": acked, "pending_gen": new_gen, "pending": json.dumps(state),
              "updated_at": to_db(now)}
    with engine.transaction() as s:
        if not insert_if_new(s, SyncCursor, {"key": key, "actor": actor[:64], **values}):
            s.connection().execute(update(_CURSOR).where(_CURSOR.c.key == key).values(**values))
    return new_gen


def _digest(value) -> str | None:
    return None if value is None else hashlib.sha256(canonical_json(value).encode()).hexdigest()[:32]


def _current_tasks(engine, who: Pusher) -> dict[str, dict]:
    rows = engine.tasks.for_actor(who.actor, limit=MAX_TASKS)
    versions: dict[int, int] = {}
    if rows:
        with engine.transaction(write=False) as s:
            versions = dict(s.connection().execute(_VERSIONS, {"ids": sorted({r["instance_id"] for r in rows})}).all())
    out = {}
    for r in rows:
        version = versions.get(r["instance_id"], 0)
        fingerprint = f"{version}:{r['assignee']}:{r['claimed_by']}:{r['form_definition_id']}"
        out[r["id"]] = {**r, "version": version, "entry": [fingerprint, r["instance_id"], r["name"]]}
    return out


def _iso(value):
    value = from_db(value)
    return value.isoformat() if value else None


def _task_out(t: dict, form_of) -> dict:
    return {"id": t["id"], "instance_id": t["instance_id"], "version": t["version"], "process_key": t["process_key"],
            "business_key": t["business_key"], "name": t["name"], "title": t["title"], "form_ref": t["form_ref"],
            "assignee": t["assignee"], "claimed_by": t["claimed_by"], "groups": t["groups"],
            "due_at": _iso(t["due_at"]), "created_at": _iso(t["created_at"]), "form": form_of(t)}


_WHY = {"completed": ("completed by {by}", "已由 {by} 完成"),
        "reassigned": ("reassigned to someone else", "已改派他人"),
        "cancelled": ("cancelled or closed", "已取消或关闭")}


def _removal(engine, who: Pusher, task_id: str, entry: list) -> dict:
    """Why a task the device holds is gone: still open but not its person's (reassigned or
    claimed by another), completed (by whom), or cancelled (no completion: a timer, a
    message or a closed case ended it)."""
    _, instance_id, name = entry
    by = None
    with engine.transaction(write=False) as s:
        if fetch_open_task(s, task_id) is not None:
            reason = "reassigned"
        else:
            by = s.execute(select(AuditEvent.actor).where(AuditEvent.instance_id == instance_id,
                                                          AuditEvent.kind == "task_completed",
                                                          AuditEvent.element == name)
                           .order_by(AuditEvent.id.desc()).limit(1)).scalar()
            state = s.execute(select(Instance.state).where(Instance.id == instance_id)).scalar()
            reason = "completed" if by is not None and state != "cancelled" else "cancelled"
    en, zh = _WHY[reason]
    return {"task_id": task_id, "instance_id": instance_id, "reason": reason,
            "by": by if reason == "completed" else None,
            "message": en.format(by=by), "message_zh": zh.format(by=by)}


def _crews(engine, who: Pusher, now) -> list[dict]:
    with engine.transaction(write=False) as s:
        q = select(Crew)
        if who.role == "supervisor":
            q = q.where(Crew.supervisor_id == who.id)
        else:
            q = q.where(Crew.contract_code.in_(select(Contract.code)
                                               .where(Contract.unit_code == (who.unit_code or ""))))
        out = []
        for (crew,) in s.execute(q.order_by(Crew.code)).all():
            roster = s.execute(select(Cleaner.id, Cleaner.name, Cleaner.badge_id).where(Cleaner.crew_code == crew.code)
                               .order_by(Cleaner.id)).all()
            shifts = s.execute(select(Shift).where(Shift.crew_code == crew.code, Shift.closed.is_(False),
                                                   Shift.grace_ends_at >= to_db(now - timedelta(hours=12)),
                                                   Shift.starts_at <= to_db(now + SHIFTS_AHEAD))
                               .order_by(Shift.starts_at)).scalars().all()
            out.append({"code": crew.code, "contract_code": crew.contract_code, "muster_point": crew.muster_point,
                        "shift_start": crew.shift_start, "grace_minutes": crew.grace_minutes,
                        "roster": [{"id": c, "name": n, "badge_id": b} for c, n, b in roster],
                        "shifts": [{"id": sh.id, "starts_at": _iso(sh.starts_at),
                                    "grace_ends_at": _iso(sh.grace_ends_at)}
                                   for sh in shifts]})
        return out


_HOUSEHOLDS = (select(Household.id, Household.address_code, Household.holder, AddressCode.label, AddressCode.lat,
                      AddressCode.lon, Household.last_inspected_at, Household.next_due_at, Household.supply_suspended)
               .select_from(Household).outerjoin(AddressCode, AddressCode.code == Household.address_code)
               .where(Household.deliverer_id == bindparam("who")).order_by(Household.id))
_INSPECTION_TASKS = (select(OpenTask.business_key, OpenTask.id)
                     .where(OpenTask.process_key == gas.PROCESS,
                            (OpenTask.assignee == bindparam("who")) | (OpenTask.claimed_by == bindparam("who")))
                     .order_by(OpenTask.id))


def _households(engine, who: Pusher, now) -> list[dict]:
    """The deliverer's own households, each with its open inspection task of theirs (if
    any): two queries whatever their number."""
    with engine.transaction(write=False) as s:
        conn = s.connection()
        rows = conn.execute(_HOUSEHOLDS, {"who": who.id}).all()
        open_tasks: dict[str, str] = {}
        for key, task_id in conn.execute(_INSPECTION_TASKS, {"who": who.id}).all():
            open_tasks.setdefault(key or "", task_id)
    limit = to_db(now)
    return [{"id": hid, "address_code": code, "holder": holder, "address": label or code, "lat": lat, "lon": lon,
             "last_inspected_at": _iso(last), "next_due_at": _iso(due),
             "due": due is None or due <= limit, "supply_suspended": bool(suspended),
             "task_id": open_tasks.get(f"household:{hid}")}
            for hid, code, holder, label, lat, lon, last, due, suspended in rows]


_TABLES: dict[str, dict] = {}         # sha256 of a decision's XML -> its table


def _gas_reference(s, engine) -> dict:
    """The gas inspection form and hazard table a new inspection would use now (the latest
    gas process's pins), for inspecting at a delivery when the household has no open task."""
    try:
        process_id, _ = engine.definitions.latest_process(s, gas.PROCESS)
    except KeyError:
        return {"gas_form": None, "hazard_table": None}
    found = engine.definitions.form_for(s, process_id, GAS_FORM)
    gas_form = None
    if found is not None:
        form_id, form = found
        gas_form = {"form_ref": GAS_FORM, "definition_id": form_id, "form": form_to_dict(form)}
    table = None
    dmn_id = engine.definitions.pinned(s, process_id, "dmn", HAZARD_DECISION)
    if dmn_id is not None:
        xml = engine.definitions.version_of(s, dmn_id).content.encode()
        digest = hashlib.sha256(xml).hexdigest()
        if digest not in _TABLES:
            _TABLES[digest] = table_of(xml)
        table = _TABLES[digest]
    return {"gas_form": gas_form, "hazard_table": table}


def _reference(engine) -> dict:
    with engine.transaction(write=False) as s:
        units = s.execute(select(Unit.code, Unit.name, Unit.name_zh, Unit.kind).order_by(Unit.code)).all()
        gas_reference = _gas_reference(s, engine)
    return {"units": [{"code": c, "name": n, "name_zh": z, "kind": k} for c, n, z, k in units],
            "categories": list(workorders.CATEGORIES), "checklist": list(gas.CHECKLIST), **gas_reference}

