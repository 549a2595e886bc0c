"""The field sync protocol over HTTP (/sync/v1): pull, push, and the conflicts kept for
supervisors. The bodies are read as raw bytes and decoded by sync.protocol, so whatever a
device sends gets a 4xx with a clear message (never a 500); the work is done by the plain
Python of sync.server. A tablet's device token acts for its owner."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from engine.api.deps import allow, engine_of
from engine.auth.service import Principal
from engine.storage import store_of
from sync import protocol
from sync.server import conflicts, ops, waiting
from sync.server import pull as pulling

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/sync/v1", tags=["sync"])


def _pusher(principal: Principal, device: str | None) -> ops.Pusher:
    return ops.Pusher(principal.id, principal.role, principal.unit_code, principal.device_id or device)


def _refused(exc: protocol.ProtocolError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "message": str(exc), "message_zh": exc.message_zh}, status_code=exc.status)


class ConflictOut(BaseModel):
    id: int
    op_id: str
    actor: str
    unit_code: str | None
    kind: str
    task_id: str | None
    reason: str
    device_side: dict[str, Any]
    server_side: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    note: str | None


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    limit: int
    offset: int
    has_more: bool


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: Literal[conflicts.RESOLUTIONS] = Field(description="kept_server: the server's side stands; redone: "
                                                                   "the work was redone by hand; dismissed")
    note: str | None = Field(default=None, max_length=2000)


@router.post("/pull", summary="Changes since my cursor: tasks with forms, removals, crews, households, reference "
                              "data / 拉取",
             responses={400: {"description": "not a pull request, bad cursor, or another protocol version"}})
async def pull(request: Request, principal: Principal = allow("sync.pull")):
    """Body: {"protocol": 1, "cursor": the last answer's cursor or null, "device": an id for
    this installation (device tokens have their own), "page_size": 1-500}. Answer: the new
    cursor, reset (start from scratch), has_more, tasks, removed [{task_id, reason}],
    crews (supervisors, unit leaders; null if unchanged), households (deliverers: their own,
    [{id, address_code, holder, address, lat, lon, last_inspected_at, next_due_at, due,
    supply_suspended, task_id (their open inspection task of it, or null)}]; null if
    unchanged) and reference (null if unchanged: units, categories, checklist, gas_form
    {form_ref, definition_id, form} and hazard_table, the gas_hazard decision as a table for
    engine.bpmn.decision_table.evaluate)."""
    raw = await request.body()
    try:
        body = protocol.decode_pull(raw)
    except protocol.ProtocolError as exc:
        return _refused(exc)
    engine = engine_of(request)
    return await run_in_threadpool(pulling.pull, engine, _pusher(principal, body.device), body)


@router.post("/push", response_model=protocol.PushResponse,
             summary="A batch of ops, one verdict each (applied, duplicate, mismatch, conflict, invalid, waiting)"
                     " / 推送",
             responses={400: {"description": "not a push batch, or another protocol version"},
                        413: {"description": "too large or too many ops"}})
async def push(request: Request, principal: Principal = allow("sync.push")):
    """Each op is applied once, in its own transaction, with its verdict stored alongside:
    the same op_id and body again gets the stored result ("duplicate"); the same op_id with
    another body is a "mismatch" (409) and the original stands. An op whose photos are not
    uploaded yet is "waiting" (kept; applied when they arrive).

    Kinds: complete_task (payload: the form's data); check_in ({shift_id, badge_id, seen_at,
    verified, source, frame?}: with frame {company_id, data (lowercase hex), rssi, lat, lon}
    the server verifies the badge as a gateway's; a clone, replay or forgery is a
    "badge_flagged" conflict, never counted present); comment; attach; inspect_household
    ({household_id, data}: the deliverer's open inspection task of the household is
    completed, or an inspection started at delivery and its first task completed; result
    {household_id, instance_id, business_key, task_id, started, hazard_level, hazard_reason,
    rectification_order}; form errors are "invalid" per field; an inspection open with someone
    else is an "inspection_open" conflict)."""
    raw = await request.body()
    try:
        batch = protocol.decode_push(raw)
    except protocol.ProtocolError as exc:
        return _refused(exc)
    engine = engine_of(request)
    store = store_of(request)
    verdicts = await run_in_threadpool(ops.push, engine, _pusher(principal, batch.device), batch,
                                       exists=store.exists, sent_at=batch.sent_at)
    answer = protocol.PushResponse(server_time=engine.clock(), verdicts=verdicts)
    # (built from our own models: serialized once, not validated again on the way out)
    return Response(answer.model_dump_json(), media_type="application/json")



@router.get("/conflicts", response_model=ConflictPage, summary="Sync conflicts to sort out / 同步冲突")
def list_conflicts(request: Request, status: Literal[conflicts.STATUSES] = "open",
                   limit: int = Query(default=50, ge=1, le=500), offset: int = Query(default=0, ge=0, le=10_000_000),
                   principal: Principal = allow("sync.conflicts")):
    items, more = conflicts.list_conflicts(engine_of(request), _pusher(principal, None), status, limit, offset)
    return ConflictPage(items=items, limit=limit, offset=offset, has_more=more)


class WaitingOut(BaseModel):
    op_id: str
    actor: str
    device: str | None
    kind: str
    task_id: str | None
    waiting_since: datetime
    waiting_minutes: int
    device_time: datetime | None
    missing: list[str] = Field(description="sha256 of the photos not uploaded yet")


class WaitingPage(BaseModel):
    items: list[WaitingOut]
    limit: int
    offset: int
    has_more: bool


@router.get("/waiting", response_model=WaitingPage,
            summary="Ops still waiting for their photos, oldest first / 等待照片的操作")
def list_waiting(request: Request, older_than_minutes: int = Query(default=0, ge=0, le=525_600),
                 limit: int = Query(default=50, ge=1, le=500), offset: int = Query(default=0, ge=0, le=10_000_000),
                 principal: Principal = allow("sync.conflicts")):
    """A tablet pushes its ops before their photos; the server applies each op when its last
    photo arrives. This lists the ops whose photos have not come (with those still missing),
    so someone can follow up with the person or device: `older_than_minutes=60` for the
    ones that have waited an hour."""
    items, more = waiting.list_waiting(engine_of(request), _pusher(principal, None),
                                       timedelta(minutes=older_than_minutes), limit, offset)
    return WaitingPage(items=items, limit=limit, offset=offset, has_more=more)


@router.post("/conflicts/{conflict_id}/resolve", response_model=ConflictOut,
             summary="Resolve a sync conflict / 处理同步冲突")
def resolve_conflict(body: ResolveIn, request: Request, conflict_id: int = Path(ge=1, le=2**31 - 1),
                     principal: Principal = allow("sync.conflicts")):
    return conflicts.resolve(engine_of(request), _pusher(principal, None), conflict_id, body.resolution, body.note)
