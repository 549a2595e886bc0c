"""Badge sightings, derived badge keys and flagged sightings (issue 5; domain logic in
engine.domain.badges and engine.domain.sightings).

- POST /sightings: a gateway or tablet pushes raw advertisements; the server decodes and
  re-verifies each, routes it to the open shift of the holder's crew and checks it in, or
  flags it (clone, replay, forged). A badge gateway may push for any crew; a supervisor or
  unit leader (or their tablet) only for their own crews (others' badges are ignored).
- GET /badge-keys?crew=: epoch keys (today and tomorrow) of a crew's badges, for the crew's
  supervisor or unit leader to verify offline; never a master key. Others' crews are a 404.
- GET /shifts/{id}/flags: the flagged sightings of a shift, with the raw frame."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator
from sqlmodel import select

from devices import token
from engine.api.deps import actor_of, allow, engine_of
from engine.api.routes.attendance import CODE, TEXT, RowId, When
from engine.auth.service import Principal
from engine.clock import from_db
from engine.domain import badges, sightings
from engine.domain.models import Cleaner
from engine.services import sightings as sighting_service
from engine.services.access import crew_for, shift_for

__all__ = ["policy_of", "router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/attendance", tags=["attendance"])
MAX_BATCH = 1000
Lat = Field(default=None, ge=-90, le=90)
Lon = Field(default=None, ge=-180, le=180)


# ---- shapes ---------------------------------------------------------------------------------
class Place(BaseModel):
    lat: float | None = Lat
    lon: float | None = Lon

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class SightingIn(Place):
    company_id: int = Field(ge=0, le=0xFFFF, description="manufacturer id the data was advertised under")
    data: str = Field(pattern=r"^(?:[0-9a-fA-F]{2}){1,32}$", description="manufacturer data, hex (no company id)")
    rssi: int | None = Field(default=None, ge=-127, le=20)
    seen_at: When


class SightingBatch(Place):
    source: str = Field(min_length=1, max_length=64, pattern=TEXT, description="gateway or tablet id")
    items: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class SightingVerdict(BaseModel):
    index: int
    badge_id: str | None
    verdict: Literal["applied", "ignored", "flagged", "invalid"]
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    shift_id: int | None = None


class SightingsOut(BaseModel):
    applied: int
    ignored: int
    flagged: int
    invalid: int
    results: list[SightingVerdict]


class EpochKey(BaseModel):
    badge_id: str
    cleaner_id: str
    epoch: int
    valid_from: datetime
    valid_until: datetime
    key: str


class BadgeKeys(BaseModel):
    crew_code: str
    step_seconds: int
    skew_steps: int
    keys: list[EpochKey]


class Flag(BaseModel):
    id: int
    badge_id: str | None
    cleaner_id: str | None
    reason: str | None
    detail: str | None
    source: str
    sent_by: str
    lat: float | None
    lon: float | None
    rssi: int | None
    seen_at: datetime
    received_at: datetime
    company_id: int
    data: str
    counter: int | None
    related_id: int | None


# ---- routes ---------------------------------------------------------------------------------------
_ITEM = TypeAdapter(SightingIn)


def _parse(raw: Any, batch: SightingBatch) -> sightings.Sighting | str:
    try:
        item = _ITEM.validate_python(raw)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors())
    lat, lon = (item.lat, item.lon) if item.lat is not None else (batch.lat, batch.lon)
    return sightings.Sighting(item.company_id, bytes.fromhex(item.data), item.seen_at, item.rssi, lat, lon)


def policy_of(request: Request) -> badges.BadgePolicy:
    """The app's badge policy (app.state.badge_policy), else from the environment."""
    policy = getattr(request.app.state, "badge_policy", None)
    return policy if policy is not None else badges.BadgePolicy.from_settings()


@router.post("/sightings", response_model=SightingsOut,
             summary="Raw badge advertisements from a gateway or tablet / 上传工牌信号")
def post_sightings(body: SightingBatch, request: Request, principal: Principal = allow("attendance.sightings")):
    """Up to 1000 advertisements {company_id, data (hex), rssi, seen_at (ISO 8601 with
    offset), lat?, lon?}. Each gets a verdict: applied (checked in, with the status it gave),
    ignored (with the reason), flagged (clone, replay or forged: stored for the shift, never
    counted present) or invalid (with a message)."""
    parsed = [_parse(raw, body) for raw in body.items]
    out = sighting_service.push(engine_of(request), principal, actor_of(principal), body.source, parsed,
                                policy=policy_of(request))
    results = [SightingVerdict(index=o.index, badge_id=o.badge_id, verdict=o.verdict, status=o.status,
                               reason=o.reason, message=o.message, shift_id=o.shift_id) for o in out]
    tally = {k: sum(r.verdict == k for r in results) for k in ("applied", "ignored", "flagged", "invalid")}
    return SightingsOut(results=results, **tally)


@router.get("/badge-keys", response_model=BadgeKeys,
            summary="Derived keys of your crew's badges, for offline checks / 工牌派生密钥")
def badge_keys(request: Request, crew: str = Query(pattern=CODE), principal: Principal = allow("attendance.badgekeys")):
    """Epoch keys (today and tomorrow, UTC days) of the crew's rotating badges: enough to
    verify badges offline for a shift or two. Only for your own crews (others: 404). The
    server re-verifies every sighting when it is synced."""
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        c = crew_for(s, principal, crew)
        keys = badges.epoch_keys(s, c.code, engine.clock())
    return BadgeKeys(crew_code=c.code, step_seconds=token.STEP_SECONDS, skew_steps=policy_of(request).skew_steps,
                     keys=keys)


@router.get("/shifts/{shift_id}/flags", response_model=list[Flag],
            summary="Flagged badge sightings of a shift (clone, replay, forged) / 可疑工牌信号")
def shift_flags(shift_id: RowId, request: Request, principal: Principal = allow("attendance.read")):
    with engine_of(request).transaction(write=False) as s:
        shift = shift_for(s, principal, shift_id)
        rows = sightings.flags(s, shift.id)
        ids = sorted({r.badge_id for r in rows if r.badge_id})
        holders = (dict(s.exec(select(Cleaner.badge_id, Cleaner.id).where(Cleaner.badge_id.in_(ids))).all())
                   if ids else {})
        return [dict(id=r.id, badge_id=r.badge_id, cleaner_id=holders.get(r.badge_id), reason=r.reason,
                     detail=r.detail, source=r.source, sent_by=r.sent_by, lat=r.lat, lon=r.lon, rssi=r.rssi,
                     seen_at=from_db(r.seen_at), received_at=from_db(r.received_at), company_id=r.company_id,
                     data=r.data, counter=r.counter, related_id=r.related_id) for r in rows]
