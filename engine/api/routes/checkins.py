"""Badge check-ins in batches, one verdict per item (the check-in half of cleaning attendance).

Same prefix and object rule as engine.api.routes.attendance: a badge gateway may check in to
any shift; a supervisor or unit leader only to their own crews' shifts (others' are a 404)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlmodel import select

from engine.api.deps import actor_of, allow, engine_of
from engine.api.routes.attendance import BADGE, TEXT, RowId, When, _shift
from engine.auth.service import Principal
from engine.clock import from_db
from engine.domain import attendance
from engine.domain.models import Attendance, Badge, Cleaner
from engine.runtime.errors import Conflict, EngineError, NotFound

router = APIRouter(prefix="/api/v1/attendance", tags=["attendance"])
MAX_BATCH = 1000
OPENS_BEFORE = timedelta(hours=2)     # a sighting earlier than this before the start is not for this shift
MAX_SKEW = timedelta(minutes=5)       # a device clock this far ahead of the server's is not believed
RANK = {"expected": 0, "unverified": 1, "late": 2, "present": 3, "absent": 0}


# ---- shapes ---------------------------------------------------------------------------------
class CheckinItem(BaseModel):
    badge_id: str = Field(pattern=BADGE)
    seen_at: When
    verified: bool
    source: str = Field(default="", max_length=32, pattern=TEXT)


class CheckinBatch(BaseModel):
    items: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class Verdict(BaseModel):
    index: int
    badge_id: str | None
    verdict: Literal["applied", "ignored", "invalid", "conflict"]
    code: int
    status: str | None = None
    message: str | None = None


class BatchOut(BaseModel):
    shift_id: int
    applied: int
    ignored: int
    invalid: int
    conflict: int
    results: list[Verdict]


# ---- check-ins ------------------------------------------------------------------------------------
_ITEM = TypeAdapter(CheckinItem)


def _invalid_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors())


@router.post("/shifts/{shift_id}/checkins", response_model=BatchOut,
             summary="Badge check-ins in a batch, one verdict per item / 批量打卡")
def check_in(shift_id: RowId, body: CheckinBatch, request: Request, principal: Principal = allow("attendance.checkin")):
    """Up to 1000 sightings {badge_id, seen_at (ISO 8601 with offset), verified, source}. Each
    gets a verdict: applied (with the status it gives), ignored (with the reason: unknown badge,
    not on the roster, no better than an earlier check-in), invalid (with a message) or conflict
    (409: the shift's grace period is over)."""
    engine = engine_of(request)
    actor = actor_of(principal)
    now = engine.clock()
    with engine.transaction(write=False) as s:
        shift = _shift(s, principal, shift_id)
        starts, grace_end = from_db(shift.starts_at), from_db(shift.grace_ends_at)
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
    results, pending, closed = [], [], shift.closed or now > grace_end
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
        if seen < starts - OPENS_BEFORE or seen > grace_end:
            results.append(Verdict(**v, verdict="invalid", code=422,
                                   message=f"seen_at is outside this shift's check-in window ({(starts - OPENS_BEFORE).isoformat()} to {grace_end.isoformat()})"))
            continue
        badge, cleaner = badges.get(item.badge_id), holders.get(item.badge_id)
        reason = ("unknown badge" if badge is None else "badge deactivated" if not badge.active
                  else "badge not on this shift's roster" if cleaner not in status else None)
        if reason:
            results.append(Verdict(**v, verdict="ignored", code=200, message=reason))
            continue
        new = ("present" if seen <= starts else "late") if item.verified else "unverified"
        if RANK[new] <= RANK.get(status[cleaner], 0):
            results.append(Verdict(**v, verdict="ignored", code=200, status=status[cleaner],
                                   message=f"already checked in as {status[cleaner]}"))
            continue
        status[cleaner] = new
        pending.append((i, item, new))
        results.append(None)  # decided below, with the whole batch
    _apply_all(engine, shift.id, pending, results, actor, principal.role, closed_msg)
    tally = {k: sum(r.verdict == k for r in results) for k in ("applied", "ignored", "invalid", "conflict")}
    return BatchOut(shift_id=shift.id, results=results, **tally)


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
    except EngineError as exc:
        return Verdict(**v, verdict="invalid" if not isinstance(exc, Conflict) else "conflict",
                       code=409 if isinstance(exc, Conflict) else 422, message=str(exc))


def _badge_of(raw) -> str | None:
    value = raw.get("badge_id") if isinstance(raw, dict) else None
    return value[:32] if isinstance(value, str) else None
