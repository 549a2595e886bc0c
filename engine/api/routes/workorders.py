"""Work orders: report a patrol finding, list with filters, detail with the timeline from
the audit log, comments and photo attachments.

Object rule: unit workers and leaders see and touch only orders of their own unit (any
other order is a 404, so its existence does not leak); dispatchers, reviewers and
administrators see all."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, bindparam, func, or_
from sqlalchemy import select as rows_of
from sqlmodel import select

from engine.api.deps import actor_of, allow, engine_of
from engine.auth.service import Principal
from engine.clock import from_db, to_db
from engine.db import direct
from engine.db.models import Definition
from engine.domain import workorders
from engine.domain.models import WorkOrder
from engine.domain.records import Attachment, Comment, WorkOrderAttachment
from engine.domain.workorders import OrderState, is_overdue
from engine.runtime.errors import NotFound
from engine.runtime.rows import fetch_instance
from engine.services import workorders as orders
from engine.services.access import order_for, order_row_for, orders_visible
from engine.storage import StoreError, store_of

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1", tags=["work-orders"])

STATES = workorders.STATES
KINDS = workorders.PHOTO_KINDS


# ---- models ----------------------------------------------------------------------------
class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Literal[workorders.CATEGORIES]
    area: str = Field(min_length=1, max_length=40, description="street-office area code, e.g. dongcheng")
    description: str = Field(default="", max_length=4000)
    source: Literal["patrol", "citizen"] = Field(default="patrol", description="patrol finding, or a phoned-in report")
    reporter: str | None = Field(default=None, max_length=120)
    address_code: str | None = Field(default=None, min_length=1, max_length=40)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give lat and lon together, or neither")
        return self


class OrderOut(BaseModel):
    number: str
    source: str
    category: str
    area: str
    address_code: str | None
    lat: float | None
    lon: float | None
    description: str
    state: str
    unit_code: str | None
    priority: str | None
    sla_due: datetime | None
    overdue: bool = Field(description="escalated, or still open past its SLA")
    reject_count: int
    reroute_count: int
    reported_at: datetime
    dispatched_at: datetime | None
    closed_at: datetime | None


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int
    limit: int
    offset: int


class TimelineEvent(BaseModel):
    at: datetime
    actor: str
    kind: str
    element: str | None
    reason: str | None = Field(description="why, when the event carries a reason or note")
    detail: dict[str, Any]


class OpenTaskOut(BaseModel):
    id: str
    name: str
    title: str
    assignee: str | None
    claimed_by: str | None
    groups: list[str]
    due_at: datetime | None


class ProcessOut(BaseModel):
    instance_id: int
    process_key: str
    version: int
    state: str
    error: str | None
    next_timer_at: datetime | None
    position: list[dict[str, Any]]
    open_tasks: list[OpenTaskOut]


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000)


class CommentOut(BaseModel):
    id: int
    author: str
    at: datetime
    text: str


class AttachmentOut(BaseModel):
    sha256: str
    kind: str
    content_type: str
    size: int
    added_by: str
    at: datetime
    url: str


class OrderDetail(OrderOut):
    reporter: str | None
    origin: str | None
    process: ProcessOut | None
    timeline: list[TimelineEvent]
    comments: list[CommentOut]
    attachments: list[AttachmentOut]


# ---- helpers ---------------------------------------------------------------------------
def _order_out(o, now: datetime) -> dict:
    """An order's fields (a WorkOrder, or its row) as the API shows them."""
    return dict(number=o.number, source=o.source, category=o.category, area=o.area, address_code=o.address_code,
                lat=o.lat, lon=o.lon, description=o.description, state=o.state, unit_code=o.unit_code,
                priority=o.priority, sla_due=from_db(o.sla_due), overdue=is_overdue(o, now),
                reject_count=o.reject_count, reroute_count=o.reroute_count, reported_at=from_db(o.reported_at),
                dispatched_at=from_db(o.dispatched_at), closed_at=from_db(o.closed_at))


def _reason(detail: dict) -> str | None:
    data = detail.get("data") if isinstance(detail.get("data"), dict) else {}
    for value in (detail.get("reason"), data.get("reason"), data.get("note"), detail.get("message")):
        if isinstance(value, str) and value.strip():
            return value
    return None


_LINK, _FILE, _COMMENT = WorkOrderAttachment.__table__, Attachment.__table__, Comment.__table__
_ATTACHMENTS = (rows_of(_LINK.c.sha256, _LINK.c.kind, _LINK.c.added_by, _LINK.c.at, _FILE.c.content_type,
                        _FILE.c.size)
                .join_from(_LINK, _FILE, _FILE.c.sha256 == _LINK.c.sha256)
                .where(_LINK.c.work_order_id == bindparam("order_id")).order_by(_LINK.c.at, _LINK.c.sha256))
_COMMENTS = rows_of(_COMMENT).where(_COMMENT.c.work_order_id == bindparam("order_id")).order_by(_COMMENT.c.id)


def _attachments(conn, order_id: int) -> list[AttachmentOut]:
    return [AttachmentOut(sha256=a.sha256, kind=a.kind, content_type=a.content_type, size=a.size,
                          added_by=a.added_by, at=from_db(a.at), url=f"/api/v1/attachments/{a.sha256}")
            for a in direct.execute(conn, _ATTACHMENTS, {"order_id": order_id})]


def _process(engine, order) -> ProcessOut | None:
    if order.instance_id is None:
        return None
    try:
        inst = engine.instance(order.instance_id)
    except NotFound:
        return None
    tasks = engine.tasks.for_actor(None, business_key=order.number, instance_id=order.instance_id)
    return ProcessOut(instance_id=inst["id"], process_key=inst["process_key"], version=inst["version"],
                      state=inst["state"], error=inst["error"], next_timer_at=inst["next_timer_at"],
                      position=inst["position"],
                      open_tasks=[OpenTaskOut(**{k: t[k] for k in OpenTaskOut.model_fields}) for t in tasks])


def _detail(request: Request, number: str, principal: Principal) -> OrderDetail:
    engine = engine_of(request)
    with engine.reading() as conn:      # (prebuilt statements: ORM selects cost ~0.4 ms each here)
        order = order_row_for(conn, principal, number)
        comments = [CommentOut(id=c.id, author=c.author, at=from_db(c.at), text=c.text)
                    for c in direct.execute(conn, _COMMENTS, {"order_id": order.id})]
        attachments = _attachments(conn, order.id)
    timeline = [TimelineEvent(at=e["at"], actor=e["actor"], kind=e["kind"], element=e["element"],
                              reason=_reason(e["detail"]), detail=e["detail"])
                for e in engine.audit(business_key=order.number)]
    return OrderDetail(**_order_out(order, engine.clock()), reporter=order.reporter, origin=order.origin,
                       process=_process(engine, order), timeline=timeline, comments=comments, attachments=attachments)


# ---- routes ----------------------------------------------------------------------------
@router.post("/work-orders", response_model=OrderDetail, status_code=201,
             summary="Report a problem (patrol finding) / 上报问题（巡查发现）")
def create_order(body: OrderIn, request: Request, principal: Principal = allow("workorders.create")):
    reported = orders.report(engine_of(request), actor_of(principal), source=body.source,
                             category=body.category, area=body.area, description=body.description,
                             address_code=body.address_code, lat=body.lat, lon=body.lon, reporter=body.reporter)
    return _detail(request, reported.number, principal)


@router.get("/work-orders", response_model=OrderPage, summary="List work orders / 工单列表")
def list_orders(request: Request,
                state: Literal[STATES] | None = None,
                source: Literal[workorders.SOURCES] | None = Query(default=None, description="how it was reported"),
                unit: str | None = Query(default=None, max_length=40, description="responsible unit code"),
                category: Literal[workorders.CATEGORIES] | None = None,
                overdue: bool | None = Query(default=None, description="escalated, or open past its SLA"),
                area: str | None = Query(default=None, max_length=40),
                q: str | None = Query(default=None, min_length=1, max_length=60,
                                      description="a number (prefix) or words in the description"),
                reported_from: datetime | None = Query(default=None, description="ISO 8601, inclusive"),
                reported_to: datetime | None = Query(default=None, description="ISO 8601, exclusive"),
                limit: int = Query(default=50, ge=1, le=500),
                offset: int = Query(default=0, ge=0, le=10_000_000),
                principal: Principal = allow("workorders.read")):
    engine = engine_of(request)
    now = engine.clock()
    where = [orders_visible(principal)]
    for column, value in ((WorkOrder.state, state), (WorkOrder.unit_code, unit), (WorkOrder.category, category),
                          (WorkOrder.area, area), (WorkOrder.source, source)):
        if value is not None:
            where.append(column == value)
    if q is not None and q.strip():
        words = q.strip()
        where.append(or_(WorkOrder.number.startswith(words, autoescape=True),
                         WorkOrder.description.contains(words, autoescape=True)))
    if reported_from is not None:
        where.append(WorkOrder.reported_at >= to_db(reported_from))
    if reported_to is not None:
        where.append(WorkOrder.reported_at < to_db(reported_to))
    if overdue is not None:
        late = or_(WorkOrder.overdue.is_(True),
                   and_(WorkOrder.state != OrderState.CLOSED.value, WorkOrder.sla_due.is_not(None),
                        WorkOrder.sla_due < to_db(now)))
        where.append(late if overdue else ~late)
    with engine.transaction(write=False) as s:
        total = s.exec(select(func.count()).select_from(WorkOrder).where(*where)).one()
        rows = s.exec(select(WorkOrder).where(*where).order_by(WorkOrder.reported_at.desc(), WorkOrder.id.desc())
                      .limit(limit).offset(offset)).all()
    return OrderPage(items=[_order_out(o, now) for o in rows], total=total, limit=limit, offset=offset)


@router.get("/work-orders/{number}", response_model=OrderDetail,
            summary="A work order with its timeline, process position, comments and attachments / 工单详情")
def get_order(number: str, request: Request, principal: Principal = allow("workorders.read")):
    return _detail(request, number, principal)


@router.get("/work-orders/{number}/diagram", response_class=Response,
            responses={200: {"content": {"application/xml": {}}, "description": "BPMN 2.0 XML"}},
            summary="The BPMN diagram of the version this order's process runs on / 工单流程图")
def get_diagram(number: str, request: Request, principal: Principal = allow("workorders.read"),
                process: str | None = Query(None, max_length=128, pattern=r"^[A-Za-z_][\w.\-]*$",
                                            description="a process the order's process calls (the `process` "
                                                        "of a position entry), at the version it is pinned to")):
    """The process definition of the order's own instance (its version, not the latest), or of
    a process it calls: for showing where the order stands, to anyone who may see the order
    (unit roles may not read process definitions otherwise)."""
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        order = order_for(s, principal, number)
        row = fetch_instance(s, order.instance_id) if order.instance_id is not None else None
        definition_id = row.definition_id if row is not None else None
        if definition_id is not None and process is not None and process != row.process_key:
            definition_id = engine.definitions.pinned_deep(s, definition_id, "bpmn", process)
            if definition_id is None:
                raise NotFound(f"work order {number[:64]!r}'s process calls no process {process!r}")
        definition = s.get(Definition, definition_id) if definition_id is not None else None
    if definition is None:
        raise NotFound(f"work order {number[:64]!r} has no process diagram")
    return Response(definition.content.encode("utf-8"), media_type="application/xml; charset=utf-8",
                    headers={"ETag": f'"{definition.sha256}"', "X-Content-Type-Options": "nosniff",
                             "Cache-Control": "private, max-age=3600"})


@router.post("/work-orders/{number}/comments", response_model=CommentOut, status_code=201,
             summary="Comment on a work order / 添加备注")
def add_comment(number: str, body: CommentIn, request: Request, principal: Principal = allow("workorders.comment")):
    c = orders.comment(engine_of(request), principal, number, body.text)
    return CommentOut(id=c.id, author=c.author, at=from_db(c.at), text=c.text)


@router.post("/work-orders/{number}/attachments", response_model=AttachmentOut, status_code=201,
             summary="Upload a photo (JPEG, PNG or WebP, at most 10 MiB) / 上传照片",
             responses={413: {"description": "over 10 MiB"}, 415: {"description": "not a JPEG, PNG or WebP image"}})
def add_attachment(number: str, request: Request, file: UploadFile = File(description="the image"),
                   kind: Literal[KINDS] = Form(default="evidence"),
                   principal: Principal = allow("workorders.comment")):
    engine = engine_of(request)
    store = store_of(request)
    with engine.transaction(write=False) as s:
        order_for(s, principal, number)  # 404 before reading anything
    data = file.file.read(store.max_bytes + 1)
    order, sha = orders.upload_photo(engine, store, principal, number, data, file.content_type, kind)
    with engine.reading() as conn:
        return next(a for a in _attachments(conn, order.id) if a.sha256 == sha)


@router.get("/attachments/{sha256}", response_class=StreamingResponse,
            summary="An attachment's bytes (if linked to an order you may see) / 下载附件",
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
                             "description": "the stored bytes"}})
def get_attachment(sha256: str, request: Request, principal: Principal = allow("workorders.read")):
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        found = s.exec(select(Attachment).join(WorkOrderAttachment, WorkOrderAttachment.sha256 == Attachment.sha256)
                       .join(WorkOrder, WorkOrder.id == WorkOrderAttachment.work_order_id)
                       .where(Attachment.sha256 == sha256, orders_visible(principal)).limit(1)).first()
    if found is None:
        raise NotFound(f"no attachment {sha256[:64]!r}")
    try:
        stream = store_of(request).open(sha256)
    except (KeyError, StoreError):
        raise NotFound(f"attachment {sha256} is recorded but its bytes are missing") from None
    headers = {"ETag": f'"{sha256}"', "Cache-Control": "private, max-age=31536000, immutable",
               "X-Content-Type-Options": "nosniff", "Content-Length": str(found.size)}
    return StreamingResponse(_chunks(stream), media_type=found.content_type, headers=headers)


def _chunks(stream, size: int = 64 * 1024):
    with stream:
        while chunk := stream.read(size):
            yield chunk
