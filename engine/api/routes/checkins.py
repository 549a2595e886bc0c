"""Badge check-ins in batches, one verdict per item (the check-in half of cleaning attendance).

Same prefix and object rule as engine.api.routes.attendance: a badge gateway may check in to
any shift; a supervisor or unit leader only to their own crews' shifts (others' are a 404)."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator
from sqlalchemy import update
from sqlmodel import select

from engine.api.deps import actor_of, allow, engine_of
from devices import token
from engine.api.routes.attendance import BADGE, TEXT, RowId, When
from engine.api.routes.badges import policy_of
from engine.auth.service import Principal
from engine.clock import from_db
from engine.domain import attendance, sightings
from engine.domain.models import Attendance, Badge, BadgeSighting, Cleaner
from engine.runtime.errors import Conflict, EngineError, NotFound, ProcessError
from engine.services.access import shift_for

log = logging.getLogger("cityloop.api")
router = APIRouter(prefix="/api/v1/attendance", tags=["attendance"])
MAX_BATCH = 1000
MAX_SKEW = timedelta(minutes=5)       # a device clock this far ahead of the server's is not believed
RANK = {"expected": 0, "unverified": 1, "late": 2, "present": 3, "absent": 0}


# ---- shapes ---------------------------------------------------------------------------------
class CheckinItem(BaseModel):
    badge_id: str = Field(pattern=BADGE)
    seen_at: When
    verified: bool | None = Field(default=None, description="without a frame: a person's word (recorded as source "
                                  "'manual'; a gateway's counts as unverified); with a frame: ignored")
    source: str = Field(default="", max_length=32, pattern=TEXT)
    # the badge's advertisement, when the client has it: then the server decides `verified`
    company_id: int = Field(default=token.COMPANY_ID, ge=0, le=0xFFFF)
    data: str | None = Field(default=None, pattern=r"^(?:[0-9a-fA-F]{2}){1,32}$", description="manufacturer data, hex")
    rssi: int | None = Field(default=None, ge=-127, le=20)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _frame_or_word(self):
        if self.data is None and self.verified is None:
            raise ValueError("verified is required when no frame (data) is sent")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class CheckinBatch(BaseModel):
    items: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class Verdict(BaseModel):
    index: int
    badge_id: str | None
    verdict: Literal["applied", "ignored", "invalid", "conflict", "flagged"]
    code: int
    status: str | None = None
    message: str | None = None


class BatchOut(BaseModel):
    shift_id: int
    applied: int
    ignored: int
    invalid: int
    conflict: int
    flagged: int = 0
    results: list[Verdict]


# ---- check-ins ------------------------------------------------------------------------------------
_ITEM = TypeAdapter(CheckinItem)
NO_FRAME = ("no badge frame: a device's check-in without one counts as unverified "
            "/ 无工牌信号：设备未附信号的打卡记为未验证")


def take_word(principal: Principal, item: CheckinItem) -> str | None:
    """A check-in without the badge's frame is somebody's word, and attendance is paid for. A
    person's word (a supervisor, directly or through their tablet) stands, recorded with
    source "manual" so that it is never mistaken for a verified badge; a device acting for
    itself (a gateway) has no word of its own: unverified. Returns a note for the verdict."""
    if item.data is not None:
        return None
    if principal.kind == "device" and principal.id == principal.device_id:
        item.verified = False
        return NO_FRAME
    if item.verified:
        item.source = attendance.MANUAL
    return None


def _invalid_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors())


@router.post("/shifts/{shift_id}/checkins", response_model=BatchOut,
             summary="Badge check-ins in a batch, one verdict per item / 批量打卡")
def check_in(shift_id: RowId, body: CheckinBatch, request: Request, principal: Principal = allow("attendance.checkin")):
    """Up to 1000 sightings {badge_id, seen_at (ISO 8601 with offset), verified, source} and,
    when the client has the badge's advertisement, {company_id, data (hex), rssi, lat, lon}: then
    the server verifies the frame itself and the client's `verified` is ignored. Each gets a
    verdict: applied (with the status it gives), ignored (with the reason: unknown badge, not
    on the roster, no better than an earlier check-in), flagged (clone, replay or forged frame:
    kept for the shift, see /shifts/{id}/flags), invalid (with a message) or conflict (409: the
    shift's grace period is over)."""
    engine = engine_of(request)
    actor = actor_of(principal)
    now = engine.clock()
    with engine.transaction(write=False) as s:
        shift = shift_for(s, principal, shift_id)
        starts = from_db(shift.starts_at)
        opens, grace_end = attendance.checkin_window(shift)
        parsed: list[CheckinItem | str] = []
        for raw in body.items:
            try:
                parsed.append(_ITEM.validate_python(raw))
            except ValidationError as exc:
                parsed.append(_invalid_message(exc))
        ids = sorted({p.badge_id for p in parsed if isinstance(p, CheckinItem)})
        badges = {b.id: b for b in s.exec(select(Badge).where(Badge.id.in_(ids)))} if ids else {}
        holders = dict(s.exec(select(Cleaner.badge_id, Cleaner.id).where(Cleaner.badge_id.in_(ids))).all()) if ids else {}
        status = dict(s.exec(select(Attendance.cleaner_id, Attendance.status).where(Attendance.shift_id == shift.id)).all())
    closed_msg = (f"the grace period of shift {shift.id} ended at {grace_end.isoformat()}; check-ins are closed "
                  "/ 宽限期已过，打卡已关闭")
    results, pending, candidates, closed = [], [], [], shift.closed or now > grace_end
    for i, item in enumerate(parsed):
        if isinstance(item, str):
            results.append(Verdict(index=i, badge_id=_badge_of(body.items[i]), verdict="invalid", code=422, message=item))
            continue
        v = dict(index=i, badge_id=item.badge_id)
        if closed:
            results.append(Verdict(**v, verdict="conflict", code=409, message=closed_msg))
            continue
        seen = item.seen_at
        if seen > now + MAX_SKEW:
            results.append(Verdict(**v, verdict="invalid", code=422, message=f"seen_at is in the future (server time {now.isoformat()})"))
            continue
        if not opens <= seen <= grace_end:
            results.append(Verdict(**v, verdict="invalid", code=422, message="seen_at is outside this shift's "
                                   f"check-in window ({attendance.window_text(shift)})"))
            continue
        badge, cleaner = badges.get(item.badge_id), holders.get(item.badge_id)
        reason = ("unknown badge" if badge is None else "badge deactivated" if not badge.active
                  else "badge not on this shift's roster" if cleaner not in status else None)
        if reason:
            results.append(Verdict(**v, verdict="ignored", code=200, message=reason))
            continue
        candidates.append((i, item, cleaner))
        results.append(None)  # decided below, with the whole batch
    rows = _judge_frames(engine, shift, candidates, results, badges, principal, policy_of(request), now)
    notes = {}
    for i, item, cleaner in candidates:
        if results[i] is not None:
            continue
        notes[i] = take_word(principal, item)
        new = ("present" if item.seen_at <= starts else "late") if item.verified else "unverified"
        if RANK[new] <= RANK.get(status[cleaner], 0):
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="ignored", code=200, status=status[cleaner],
                                 message=f"already checked in as {status[cleaner]}")
            continue
        status[cleaner] = new
        pending.append((i, item, new))
    _apply_all(engine, shift.id, pending, results, actor, principal.role, closed_msg)
    for i, note in notes.items():
        if note and results[i].message is None:
            results[i].message = note
    applied = [rows[i] for i, r in enumerate(results) if r.verdict == "applied" and rows.get(i) is not None]
    if applied:
        with engine.transaction() as s:
            s.execute(update(BadgeSighting).where(BadgeSighting.id.in_(applied)).values(verdict="applied"))
    tally = {k: sum(r.verdict == k for r in results) for k in ("applied", "ignored", "invalid", "conflict", "flagged")}
    return BatchOut(shift_id=shift.id, results=results, **tally)


def _judge_frames(engine, shift, candidates: list, results: list, badges: dict, principal: Principal, policy,
                  now) -> dict[int, int]:
    """Items that carry the badge's frame are verified here, by the server (the client's
    `verified` is replaced); clones, replays and forgeries are flagged and stored for the
    shift. Returns {item index: id of the stored sighting}."""
    framed = []
    for i, item, _ in candidates:
        if item.data is None:
            continue
        try:
            f = token.decode(bytes.fromhex(item.data), item.company_id)
        except token.TokenError as exc:
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="invalid", code=422,
                                 message=f"{exc} / 无效的工牌信号")
            continue
        if f.badge_id != (badges[item.badge_id].beacon if f.legacy else item.badge_id):
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="invalid", code=422,
                                 message=f"the frame is not badge {item.badge_id!r}'s / 信号不属于该工牌")
            continue
        framed.append((i, item))
    if not framed:
        return {}
    with engine.transaction() as s:
        judge = sightings.Judge(s, now, policy, principal.role, principal.id, fixed_shift=shift)
        judged = judge.judge([sightings.Sighting(item.company_id, bytes.fromhex(item.data), item.seen_at, item.rssi,
                                                 item.lat, item.lon, item.source or None) for _, item in framed])
        outs, rows = [(i, item, out) for (i, item), out in zip(framed, judged)], {}
        judge.withdraw_cloned()
        s.flush()
        for i, item, out in outs:
            v = dict(index=i, badge_id=item.badge_id)
            if out.verdict == "invalid":
                results[i] = Verdict(**v, verdict="invalid", code=422, message=out.message)
            elif out.verdict == "flagged":
                results[i] = Verdict(**v, verdict="flagged", code=200, message=f"{out.reason}: {out.message}")
            elif out.reason != "pending":
                results[i] = Verdict(**v, verdict="ignored", code=200, message=out.message)
            else:
                item.verified = out.verified
                if out._row is not None:
                    rows[i] = out._row.id
    return rows


def _apply_all(engine, shift_id: int, pending: list, results: list, actor, role: str, closed_msg: str) -> None:
    """All good sightings in one step of the shift's process (attendance.check_in_many). The
    process takes them in order until its grace period ends; the rest are a conflict. If the
    step fails as a whole, each sighting goes on its own so that only the bad one is refused."""
    if not pending:
        return
    sightings = [(item.badge_id, item.seen_at, item.verified, item.source or role) for _, item, _ in pending]
    taken = None
    for _attempt in range(3):
        try:
            taken = attendance.check_in_many(engine, shift_id, sightings, actor)
            break
        except NotFound:
            taken = 0
            break
        except Conflict:
            continue  # another batch moved the shift's instance first: apply on top of it
        except EngineError:
            for i, item, new in pending:
                results[i] = _apply_one(engine, shift_id, i, item, actor, role, new)
            return
    for k, (i, item, new) in enumerate(pending):
        if taken is None:
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="conflict", code=409,
                                 message="the shift was busy; send this check-in again")
        elif k < taken:
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="applied", code=200, status=new)
        else:
            results[i] = Verdict(index=i, badge_id=item.badge_id, verdict="conflict", code=409, message=closed_msg)


def _apply_one(engine, shift_id: int, i: int, item: CheckinItem, actor, role: str, new: str) -> Verdict:
    v = dict(index=i, badge_id=item.badge_id)
    try:
        attendance.check_in(engine, shift_id, item.badge_id, item.seen_at, item.verified, item.source or role, actor)
        return Verdict(**v, verdict="applied", code=200, status=new)
    except NotFound:
        return Verdict(**v, verdict="conflict", code=409, message=f"shift {shift_id} is closed / 班次已关闭")
    except ProcessError as exc:   # not the sender's fault, and the process's text is not theirs to see
        log.error("shift %s could not take a check-in of %s: %s", shift_id, item.badge_id, exc)
        return Verdict(**v, verdict="conflict", code=500, message="the shift's process could not take this check-in; "
                       "administrators were told / 班次流程无法处理此打卡，已通知管理员")
    except EngineError as exc:
        return Verdict(**v, verdict="invalid" if not isinstance(exc, Conflict) else "conflict",
                       code=409 if isinstance(exc, Conflict) else 422, message=str(exc))


def _badge_of(raw) -> str | None:
    value = raw.get("badge_id") if isinstance(raw, dict) else None
    return value[:32] if isinstance(value, str) else None
