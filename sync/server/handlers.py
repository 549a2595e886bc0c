"""What each kind of op does. Every handler applies its effect and calls `record(session,
verdict)` inside the same transaction, or raises Refused (conflict / invalid) having
changed nothing. Plain Python over the engine and the domain; no HTTP."""
from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import select

from engine.auth.policy import PERMISSIONS
from engine.db.models import AuditEvent
from engine.runtime.errors import Conflict, Forbidden, NotFound, ProcessError, ValidationFailed
from engine.runtime.rows import fetch_instance, fetch_open_task
from engine.services import checkins, tasks
from engine.services import gas as gas_service
from engine.services import workorders as orders
from sync.protocol import AttachPayload, CheckInPayload, CommentPayload, InspectHouseholdPayload, Op, Verdict
from sync.server.models import SyncCursor, SyncOp
from sync.server.ops import Pusher, Refused, Taken, Timing, settled_elsewhere

__all__ = ["FLAGS", "FRAME_INVALID", "HANDLERS", "REASONS", "attach", "check_in", "comment", "complete_task",
           "inspect_household"]

REASONS = {  # conflict reason -> (English, Chinese); the op itself is kept for a supervisor
    "completed": ("This task was already completed by {by}; your entry is kept for a supervisor.",
                  "该任务已由 {by} 完成；您提交的内容已保留，待主管处理。"),
    "reassigned": ("This task was reassigned to someone else; your entry is kept for a supervisor.",
                   "该任务已改派他人；您提交的内容已保留，待主管处理。"),
    "cancelled": ("This task was cancelled or closed; your entry is kept for a supervisor.",
                  "该任务已取消或关闭；您提交的内容已保留，待主管处理。"),
    "version": ("The case changed after you downloaded it; your entry is kept for a supervisor.",
                "该案件在您下载后已有变化；您提交的内容已保留，待主管处理。"),
    "shift_closed": ("The shift's check-in period is over; your entry is kept for a supervisor.",
                     "该班次的打卡时间已过；您提交的内容已保留，待主管处理。"),
    "process_error": ("The server could not take the next step; your entry is kept for a supervisor.",
                      "服务器无法执行下一步；您提交的内容已保留，待主管处理。"),
    "inspection_open": ("This household's inspection is open with someone else; your entry is kept for a supervisor.",
                        "该户已有他人进行中的安检；您提交的内容已保留，待主管处理。"),
}


def _applied(op: Op, timing: Timing, result: dict) -> Verdict:
    return Verdict(op_id=op.op_id, verdict="applied", code=200, result=result, message="applied",
                   message_zh="已处理", **timing.fields())


def _may(who: Pusher, permission: str, what: str, what_zh: str) -> None:
    if who.role not in PERMISSIONS[permission]:
        raise Refused("invalid", f"your role ({who.role}) may not {what}", f"您的角色无权{what_zh}", code=403,
                      errors={"kind": f"your role may not {what}"})


def _flat(errors: dict) -> dict[str, str]:
    return {str(k)[:200]: str(v.get("message", v) if isinstance(v, dict) else v)[:300] for k, v in errors.items()}


# ---- complete_task ------------------------------------------------------------------------------
def complete_task(engine, who: Pusher, op: Op, timing: Timing, record) -> Verdict:
    done: list[Verdict] = []

    def also(s, ot: dict, row) -> None:
        verdict = _applied(op, timing, {"task_id": op.task_id, "instance_id": row.id, "business_key": row.business_key,
                                        "state": row.state, "version": row.version})
        record(s, verdict)
        done.append(verdict)

    try:
        tasks.complete(engine, who, who.actor, op.task_id, op.payload, expected_version=op.based_on_version,
                       now=timing.server_time, photos=list(op.attachments), also=also)
    except Forbidden as exc:
        raise _conflict(engine, who, op, "reassigned", exc) from None
    except Conflict as exc:
        reason = exc.reason if exc.reason in ("version", "reassigned") else "gone"
        raise _conflict(engine, who, op, reason, exc) from None
    except NotFound as exc:
        raise _conflict(engine, who, op, "gone", exc) from None
    except ValidationFailed as exc:
        errors = _flat(exc.errors)
        raise Refused("invalid", "the form has errors: " + "; ".join(f"{k}: {v}" for k, v in errors.items())[:500],
                      "表单有误，请修改后重新提交", errors=errors) from None
    except ProcessError as exc:
        raise _conflict(engine, who, op, "process_error", exc) from None
    return done[0]


def _conflict(engine, who: Pusher, op: Op, reason: str, exc: Exception) -> Refused:
    """A conflict with the server's side of it, for the supervisor who sorts it out."""
    server: dict = {"message": str(exc)[:500], "task_id": op.task_id}
    by = None
    with engine.transaction(write=False) as s:
        ot = fetch_open_task(s, op.task_id) if op.task_id else None
        instance_id = ot["instance_id"] if ot else None
        if ot is not None:
            server["open_task"] = {k: ot[k] for k in ("name", "title", "assignee", "claimed_by", "instance_id")}
            if reason == "gone":
                reason = "reassigned"
        elif reason == "gone":
            reason, by, instance_id = _gone(s, who, op)
        row = fetch_instance(s, instance_id) if instance_id else None
        if row is not None:
            server["instance"] = {"id": row.id, "business_key": row.business_key, "state": row.state,
                                  "version": row.version}
    server["completed_by"] = by
    en, zh = REASONS[reason]
    return Refused("conflict", en.format(by=by or "someone else"), zh.format(by=by or "他人"), reason=reason,
                   server_side=server)


def _gone(s, who: Pusher, op: Op) -> tuple[str, str | None, int | None]:
    """Why a task is no longer open: completed (by whom) or cancelled."""
    other = s.exec(select(SyncOp.actor, SyncOp.result).where(SyncOp.task_id == op.task_id,
                                                             SyncOp.kind == "complete_task",
                                                             SyncOp.verdict == "applied",
                                                             SyncOp.op_id != op.op_id)).first()
    if other is not None:  # completed through sync: its stored result names the instance
        return "completed", other[0], json.loads(other[1]).get("result", {}).get("instance_id")
    where = _delivered(s, who, op.task_id)
    if where:
        instance_id, name = where
        done = s.exec(select(AuditEvent.actor).where(AuditEvent.instance_id == instance_id,
                                                     AuditEvent.kind == "task_completed", AuditEvent.element == name)
                      .order_by(AuditEvent.id.desc()).limit(1)).first()
        row = fetch_instance(s, instance_id)
        if done is not None and not (row is not None and row.state == "cancelled"):
            return "completed", done, instance_id
        return "cancelled", None, instance_id
    return "cancelled", None, None


def _delivered(s, who: Pusher, task_id: str) -> tuple[int, str] | None:
    """(instance id, element) of a task as a pull delivered it to this person."""
    for acked, pending in s.exec(select(SyncCursor.acked, SyncCursor.pending).where(SyncCursor.actor == who.id)):
        for blob in (pending, acked):
            entry = json.loads(blob or "{}").get("tasks", {}).get(task_id)
            if entry:
                return entry[1], entry[2]
    return None


# ---- check_in -------------------------------------------------------------------------------------
def check_in(engine, who: Pusher, op: Op, timing: Timing, record) -> Verdict:
    """One check-in through engine.services.checkins, as the batch route's are. With the
    badge's frame the server verifies it as it does a gateway's (the tablet's `verified` is
    not believed): a clone, replay or forgery is flagged, kept for the shift and never counted
    present (a "badge_flagged" conflict, kept for a supervisor); a frame that is not this
    badge's is invalid. Without a frame it is the supervisor's word, recorded as such. A badge
    the shift does not count (unknown, not on the roster, no better than before) is applied
    with a note, as the process ignored it before; refusals keep their sync verdicts."""
    _may(who, "attendance.checkin", "check badges in", "打卡")
    p = CheckInPayload.model_validate(op.payload)
    # A device clock known to be off (the batch's sent_at) has its sighting time corrected.
    seen = p.seen_at - timedelta(seconds=timing.skew) if timing.flagged else p.seen_at
    f = p.frame
    frame = None if f is None else checkins.Frame(f.company_id, f.raw(), f.rssi, f.lat, f.lon)
    source = p.source or "tablet"
    if frame is not None and who.device:   # the frame's hearer: the same token heard by two tablets apart is a clone
        source = f"tablet:{who.device}"[:32]
    item = checkins.Checkin(p.badge_id, seen, p.verified, source, frame)
    done: list[Verdict] = []

    def also(s, batch: checkins.Batch) -> None:
        r = batch.results[0]
        if r.verdict not in ("applied", "ignored"):
            return
        result = {"shift_id": batch.shift_id, "badge_id": p.badge_id, "seen_at": seen.isoformat(), "status": r.status,
                  "frame": "checked by the server" if frame is not None else None}
        if r.verdict == "ignored":
            result["ignored"] = r.message
        done.append(_applied(op, timing, result))
        record(s, done[0])

    try:
        batch = checkins.check_in(engine, who, who.actor, p.shift_id, [item], now=timing.server_time, also=also)
    except NotFound:
        raise Refused("invalid", f"no shift {p.shift_id} (or not one of your crews')",
                      f"班次 {p.shift_id} 不存在或不属于您的班组", code=404,
                      errors={"payload.shift_id": "no such shift among your crews'"}) from None
    if done:
        return done[0]
    raise _check_in_refused(batch)


def _check_in_refused(batch: checkins.Batch) -> Refused:
    r, shift_id = batch.results[0], batch.shift_id
    if r.reason == "closed":
        return Refused("conflict", *REASONS["shift_closed"], reason="shift_closed",
                       server_side={"shift_id": shift_id, "grace_ends_at": batch.grace_ends_at.isoformat(),
                                    "closed": batch.closed})
    if r.reason == "process_ended":
        return Refused("conflict", *REASONS["shift_closed"], reason="shift_closed",
                       server_side={"shift_id": shift_id, "message": "the shift's process takes no more check-ins"})
    if r.reason == "window":
        return Refused("invalid", "seen_at is outside this shift's check-in window", "打卡时间不在该班次范围内",
                       errors={"payload.seen_at": f"outside {batch.opens_at.isoformat()} to "
                                                  f"{batch.grace_ends_at.isoformat()}"})
    if r.reason == "future":
        return Refused("invalid", r.message, "打卡时间晚于服务器时间", errors={"payload.seen_at": r.message})
    if r.reason == "busy":
        return Refused("conflict", "the shift was busy; the op is kept for a supervisor",
                       "班次繁忙；操作已保留，待主管处理", reason="process_error")
    if r.verdict == "flagged":
        return _flagged(shift_id, r)
    if r.verdict == "invalid" and r.reason not in ("invalid", "refused"):   # the frame did not pass
        en, zh = FRAME_INVALID.get(r.reason or "", FRAME_INVALID["invalid_frame"])
        return Refused("invalid", f"{en} ({r.message})", zh, errors={"payload.frame": (r.message or en)[:300]})
    if r.verdict == "conflict":   # the shift's process could not take it: the server's problem, kept
        return Refused("conflict", *REASONS["process_error"], reason="process_error",
                       server_side={"shift_id": shift_id, "element": r.element})
    return Refused("invalid", r.message or "the check-in was refused", "打卡未被接受",
                   errors={"payload": (r.message or r.reason or "refused")[:300]})


FLAGS = {  # the server's flag on a badge frame -> (English, Chinese) for the supervisor
    "clone": ("badge {badge} was flagged as cloned: the same signal was heard at two places",
              "工牌 {badge} 被标记为克隆：同一信号同时出现在两处"),
    "replay": ("badge {badge} was flagged as a replayed signal: an old or repeated token",
               "工牌 {badge} 被标记为重放信号：信号已过期或重复"),
    "forged": ("badge {badge} was flagged as forged: its signal failed verification",
               "工牌 {badge} 被标记为伪造：信号验证失败"),
}
FLAG_TAIL = ("It is not counted present; the flag is kept for the shift. Check the person in by hand if they are "
             "really here.", "不计为到岗；该标记已记录在班次中。如本人确实在场，请手动打卡。")
FRAME_INVALID = {  # why a frame was not accepted -> (English, Chinese)
    "invalid_frame": ("the badge signal cannot be read", "工牌信号无法识别"),
    "not_this_badge": ("the badge signal belongs to another badge than badge_id", "工牌信号与所报工牌编号不符"),
}


def _flagged(shift_id: int, r: checkins.Result) -> Refused:
    badge = r.badge_id or "?"
    en, zh = FLAGS.get(r.reason or "", ("badge {badge} was flagged: {reason}", "工牌 {badge} 被标记：{reason}"))
    en, zh = en.format(badge=badge, reason=r.reason), zh.format(badge=badge, reason=r.reason)
    detail = (r.message or "").removeprefix(f"{r.reason}: ")
    return Refused("conflict", f"{en} ({detail}). {FLAG_TAIL[0]}"[:500], f"{zh}。{FLAG_TAIL[1]}",
                   reason="badge_flagged",
                   server_side={"shift_id": shift_id, "badge_id": r.badge_id, "flag": r.reason, "message": r.message})


# ---- comment and attach -------------------------------------------------------------------------
def _no_order(number: str) -> Refused:
    return Refused("invalid", f"no work order {number!r} for you", f"工单 {number} 不存在或无权访问", code=404,
                   errors={"payload.work_order": "no such work order for you"})


def comment(engine, who: Pusher, op: Op, timing: Timing, record) -> Verdict:
    _may(who, "workorders.comment", "comment on work orders", "评论工单")
    p = CommentPayload.model_validate(op.payload)
    done: list[Verdict] = []

    def also(s, order, c) -> None:
        done.append(_applied(op, timing, {"work_order": order.number, "comment_id": c.id}))
        record(s, done[0])

    try:
        orders.comment(engine, who, p.work_order, p.text, now=timing.server_time, op_id=op.op_id, also=also)
    except ValidationFailed:   # (the service's only refusal before the order: no text)
        raise Refused("invalid", "a comment needs some text", "备注不能为空",
                      errors={"payload.text": "empty"}) from None
    except NotFound:
        raise _no_order(p.work_order) from None
    return done[0]


def attach(engine, who: Pusher, op: Op, timing: Timing, record) -> Verdict:
    _may(who, "workorders.comment", "add photos to work orders", "为工单添加照片")
    p = AttachPayload.model_validate(op.payload)
    done: list[Verdict] = []

    def also(s, order, linked) -> None:
        done.append(_applied(op, timing, {"work_order": order.number, "linked": linked}))
        record(s, done[0])

    try:
        orders.link_photos(engine, who, p.work_order, list(op.attachments), p.kind, now=timing.server_time, also=also)
    except NotFound:
        raise _no_order(p.work_order) from None
    return done[0]


# ---- inspect_household ------------------------------------------------------------------------------
def inspect_household(engine, who: Pusher, op: Op, timing: Timing, record) -> Verdict:
    """A deliverer's inspection at a delivery, made offline: engine.services.gas completes the
    household's open inspection task of theirs, or starts one and completes its first task.
    Form errors are "invalid" per field; another's household is refused; an inspection open
    with someone else, or a process that cannot go on, is a conflict kept for a supervisor."""
    _may(who, "gas.inspect", "inspect gas households", "入户安检")
    p = InspectHouseholdPayload.model_validate(op.payload)
    done: list[Verdict] = []

    def also(s, found: gas_service.Inspected) -> None:
        done.append(_applied(op, timing, {
            "household_id": found.household_id, "instance_id": found.instance_id, "business_key": found.business_key,
            "task_id": found.task_id, "started": found.started, "hazard_level": found.hazard_level,
            "hazard_reason": found.hazard_reason, "rectification_order": found.rectification_order}))
        record(s, done[0])

    def not_done_yet(s) -> None:   # (a copy of this op applied meanwhile: start no second inspection)
        if settled_elsewhere(s, op.op_id):
            raise Taken()

    server = {"household_id": p.household_id}
    try:
        gas_service.inspect_household(engine, who, who.actor, p.household_id, p.data, now=timing.server_time,
                                      photos=list(op.attachments), also=also, guard=not_done_yet)
    except NotFound:
        raise Refused("invalid", f"household {p.household_id} is not one of yours (or does not exist); "
                      "only its own deliverer inspects it",
                      f"住户 {p.household_id} 不属于您或不存在；仅该户送气员可安检", code=404,
                      errors={"payload.household_id": "not one of your households"}) from None
    except Forbidden as exc:
        raise Refused("invalid", f"you may not inspect household {p.household_id}: {exc}",
                      f"您无权对住户 {p.household_id} 安检", code=403,
                      errors={"payload.household_id": str(exc)[:300]}) from None
    except ValidationFailed as exc:
        errors = _flat(exc.errors)            # (by form field, as complete_task's: the form screen shows them)
        raise Refused("invalid", "the inspection form has errors: "
                      + "; ".join(f"{k}: {v}" for k, v in errors.items())[:500],
                      "安检表单有误，请修改后重新提交", errors=errors) from None
    except gas_service.InspectionOpen as exc:
        raise Refused("conflict", *REASONS["inspection_open"], reason="inspection_open",
                      server_side={**server, "message": str(exc)[:500]}) from None
    except Conflict as exc:
        raise Refused("conflict", *REASONS["version"], reason="version",
                      server_side={**server, "message": str(exc)[:500]}) from None
    except ProcessError as exc:
        raise Refused("conflict", *REASONS["process_error"], reason="process_error",
                      server_side={**server, "message": str(exc)[:500], "element": exc.element}) from None
    return done[0]


HANDLERS = {"complete_task": complete_task, "check_in": check_in, "comment": comment, "attach": attach,
            "inspect_household": inspect_household}
