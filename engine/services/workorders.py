"""Work-order writes shared by the HTTP routes and the sync op handlers: reporting a
patrol finding, comments, and photos linked to an order (uploaded, attached by a tablet,
or submitted in a task form)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BindParameter, bindparam, insert, literal, null
from sqlalchemy import select as rows_of
from sqlalchemy.dialects import postgresql
from sqlmodel import Session, col, select

from engine.clock import to_db
from engine.db import direct
from engine.db.models import AuditEvent
from engine.db.upsert import insert_if_new
from engine.domain import workorders
from engine.domain.models import AddressCode, WorkOrder
from engine.domain.records import Comment, WorkOrderAttachment
from engine.runtime.audit import audit, event_row, flush_audit
from engine.runtime.errors import Actor, ValidationFailed
from engine.services.access import Caller, order_for
from engine.storage import AttachmentStore

__all__ = ["report", "comment", "link_photo", "link_photos", "upload_photo", "form_photos_to_order"]


def report(engine, actor: Actor, *, source: str, category: str, area: str, description: str = "",
           address_code: str | None = None, lat: float | None = None, lon: float | None = None,
           reporter: str | None = None) -> workorders.Reported:
    """A problem reported by staff (a patrol finding or a phoned-in report). An address code
    must exist; it gives the location when none is sent."""
    if address_code is not None:
        with engine.transaction(write=False) as s:
            address = s.get(AddressCode, address_code)
        if address is None:
            raise ValidationFailed({"address_code": f"no address code {address_code!r}"})
        if lat is None:
            lat, lon = address.lat, address.lon
    return workorders.report(engine, actor, source=source, category=category, area=area, description=description,
                             address_code=address_code, lat=lat, lon=lon, reporter=reporter)


def comment(engine, who: Caller, number: str, text: str, *, now: datetime | None = None,
            op_id: str | None = None, also=None) -> Comment:
    """Add `who`'s comment to an order they may see. `now`: the server time the comment is
    recorded at (a sync push's, for every op of the batch alike). `also(session, comment)`
    runs in the same transaction (the sync handler records its verdict there)."""
    if not text.strip():
        raise ValidationFailed({"text": "a comment needs some text / 备注不能为空"})
    now = now or engine.clock()
    detail = {"op_id": op_id} if op_id else {}
    with engine.transaction() as s:
        order = order_for(s, who, number)
        assert order.id is not None   # (a stored row)
        c = Comment(work_order_id=order.id, author=who.id, at=to_db(now), text=text)
        s.add(c)
        s.flush()
        audit(s, now, order.instance_id, order.number, who.id, "commented", None,
              {"comment_id": c.id, "text": text[:200], **detail})
        if also is not None:
            also(s, order, c)
        return c


def link_photo(s: Session, order, sha256: str, kind: str, by: str, now: datetime) -> bool:
    """Link a stored photo to an order (once, whoever sends it again). True if it was new.
    `order`: anything with id, instance_id and number."""
    added = insert_if_new(s, WorkOrderAttachment, {"work_order_id": order.id, "sha256": sha256, "kind": kind,
                                                   "added_by": by[:64], "at": to_db(now)})
    if added:
        audit(s, now, order.instance_id, order.number, by, "attachment_added", None, {"sha256": sha256, "kind": kind})
    return added


def link_photos(engine, who: Caller, number: str, shas: list[str], kind: str, *, now: datetime | None = None,
                also=None) -> list[str]:
    """Link stored photos to an order `who` may see; returns those newly linked.
    `also(session, order, linked)` runs in the same transaction."""
    now = now or engine.clock()
    with engine.transaction() as s:
        order = order_for(s, who, number)
        linked = [sha for sha in shas if link_photo(s, order, sha, kind, who.id, now)]
        if also is not None:
            also(s, order, linked)
        return linked


def upload_photo(engine, store: AttachmentStore, who: Caller, number: str, data: bytes,
                 content_type: str | None, kind: str) -> tuple[WorkOrder, str]:
    """Store an uploaded photo and link it to the order; (order, sha256). Refused bytes
    raise the store's errors (TooLarge, UnsupportedType, StoreError)."""
    now = engine.clock()
    with engine.transaction() as s:
        order = order_for(s, who, number)
        sha = store.put(data, content_type, who.id, s, now)
        link_photo(s, order, sha, kind, who.id, now)
        return order, sha


def form_photos_to_order(s: Session, task: dict, photos: dict[str, list[str]], by: str, now: datetime) -> None:
    """Photos submitted in a work-order task's file fields become attachments of its order,
    in the completion's transaction (`photos`: field key -> sha256s). On PostgreSQL each link
    and its audit event (only when the link is new) are one statement that waits with the
    step's writes and goes in their round trip: nothing of it is read back."""
    if not photos or not task["business_key"]:   # (a task under an order's number: its own or a called loop's)
        return
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        flush_audit(s)      # the step's events first: a link's event goes after them, as it happened
        rows = []
        for key, shas in photos.items():
            kind = workorders.photo_kind_of_field(key)
            for sha in shas:
                event = event_row(now, None, None, by, "attachment_added", None, {"sha256": sha, "kind": kind})
                rows.append({"number": task["business_key"], "sha256": sha, "kind": kind, "added_by": by[:64],
                             "actor": event["actor"], "at": event["at"], "detail": event["detail"]})
        direct.defer_many(conn, _LINK_WITH_EVENT, rows)
        return
    order = direct.execute(conn, _ORDER_BY_NUMBER, {"number": task["business_key"]}).first()
    if order is None:
        return
    for key, shas in photos.items():
        for sha in shas:
            link_photo(s, order, sha, workorders.photo_kind_of_field(key), by, now)


_ORDER_BY_NUMBER = (select(WorkOrder.id, WorkOrder.instance_id, WorkOrder.number)
                    .where(WorkOrder.number == bindparam("number")))
# PostgreSQL: link_photo as one statement, for the order named by its number (WITH the order,
# the link if it is new, then the audit event of a new link)


def _param(name: str, column) -> BindParameter:
    return bindparam(name, type_=column.type)


_ORDER = _ORDER_BY_NUMBER.cte("the_order")
_NEW_LINK = (postgresql.insert(WorkOrderAttachment)
             .from_select(["work_order_id", "sha256", "kind", "added_by", "at"],
                          rows_of(_ORDER.c.id, _param("sha256", WorkOrderAttachment.sha256),
                                 _param("kind", WorkOrderAttachment.kind),
                                 _param("added_by", WorkOrderAttachment.added_by),
                                 _param("at", WorkOrderAttachment.at)))
             .on_conflict_do_nothing().returning(col(WorkOrderAttachment.work_order_id)).cte("new_link"))
_LINK_WITH_EVENT = (insert(AuditEvent)
                    .from_select(["instance_id", "business_key", "at", "actor", "kind", "element", "detail"],
                                 rows_of(_ORDER.c.instance_id, _ORDER.c.number, _param("at", AuditEvent.at),
                                        _param("actor", AuditEvent.actor),
                                        literal("attachment_added"), null(),
                                        _param("detail", AuditEvent.detail))
                                 .select_from(_NEW_LINK.join(_ORDER, _ORDER.c.id == _NEW_LINK.c.work_order_id)))
                    .add_cte(_ORDER, _NEW_LINK, nest_here=True))
