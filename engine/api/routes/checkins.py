"""Badge check-ins in batches, one verdict per item (the check-in half of cleaning attendance).

Same prefix and object rule as engine.api.routes.attendance: a badge gateway may check in to
any shift; a supervisor or unit leader only to their own crews' shifts (others' are a 404)."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from devices import token
from engine.api.deps import actor_of, allow, engine_of
from engine.api.routes.attendance import BADGE, TEXT, RowId, When
from engine.api.routes.badges import policy_of
from engine.auth.service import Principal
from engine.services import checkins

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/attendance", tags=["attendance"])
MAX_BATCH = 1000


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


def _parse(raw: Any) -> checkins.Checkin | checkins.Invalid:
    try:
        item = _ITEM.validate_python(raw)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors())
        return checkins.Invalid(message, _badge_of(raw))
    frame = None if item.data is None else checkins.Frame(item.company_id, bytes.fromhex(item.data), item.rssi,
                                                           item.lat, item.lon)
    return checkins.Checkin(item.badge_id, item.seen_at, item.verified, item.source, frame)


def _badge_of(raw) -> str | None:
    value = raw.get("badge_id") if isinstance(raw, dict) else None
    return value[:32] if isinstance(value, str) else None


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
    items = [_parse(raw) for raw in body.items]
    # a device acting for itself (a gateway) has no word of its own; a tablet acts for its owner
    vouches = not (principal.kind == "device" and principal.id == principal.device_id)
    batch = checkins.check_in(engine_of(request), principal, actor_of(principal), shift_id, items, vouches=vouches,
                              policy=policy_of(request))
    results = [Verdict(index=r.index, badge_id=r.badge_id, verdict=r.verdict, code=r.code, status=r.status,
                       message=r.message) for r in batch.results]
    return BatchOut(shift_id=batch.shift_id, results=results, **batch.tally())
