"""Photos named in a completion's form become attachments of the order, in the completion's
transaction. On PostgreSQL each link and its audit event are one statement sent with the step's
writes (engine.services.workorders.form_photos_to_order); on SQLite they are read and written
one by one. Either way: a photo already linked is not linked or audited again, a new one is
audited once, after the step's own events."""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlmodel import Session, select

from engine.db.models import AuditEvent
from engine.domain import workorders
from engine.domain.records import Attachment, WorkOrderAttachment
from engine.services import tasks as task_service
from engine.services.workorders import link_photos
from tests.district import DISPATCHER, REVIEWER, WORKER_EAST, only_task

OLD, NEW, EXTRA = "01" * 32, "02" * 32, "03" * 32


@dataclass
class Person:
    id: str
    role: str
    unit_code: str | None = None


def test_a_completion_links_its_new_photos_once_and_audits_them_after_its_step(district, clock):
    with Session(district.db) as s:
        for sha in (OLD, NEW, EXTRA):
            s.add(Attachment(sha256=sha, size=10, content_type="image/png", created_at=clock(), created_by="t"))
        s.commit()
    order = workorders.report(district, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng")
    worker = Person(WORKER_EAST.id, "worker", "clean-east")
    assert link_photos(district, worker, order.number, [OLD], "after") == [OLD]     # sent earlier, on its own
    task = only_task(district, WORKER_EAST, order.number)
    task_service.complete(district, worker, WORKER_EAST, task["id"], {"action": "fixed", "after_photos": [OLD, NEW]},
                          photos=[EXTRA])
    with Session(district.db) as s:
        links = {a.sha256: a.kind for a in s.exec(select(WorkOrderAttachment)
                                                  .where(WorkOrderAttachment.work_order_id == order.id))}
        events = s.exec(select(AuditEvent).where(AuditEvent.business_key == order.number)
                        .order_by(AuditEvent.id)).all()
    assert links == {OLD: "after", NEW: "after", EXTRA: "evidence"}
    added = [(e.kind, e.actor, e.instance_id) for e in events if e.kind == "attachment_added"]
    assert added == [("attachment_added", WORKER_EAST.id, order.instance_id)] * 3, "OLD once, NEW once, EXTRA once"
    kinds = [e.kind for e in events]
    completed = kinds.index("task_completed")
    assert kinds[completed + 1:].count("attachment_added") == 2, "the completion's links come after its step"
    details = [json.loads(e.detail) for e in events if e.kind == "attachment_added"]
    assert details == [{"sha256": OLD, "kind": "after"}, {"sha256": NEW, "kind": "after"},
                       {"sha256": EXTRA, "kind": "evidence"}]
    # the same photos again (a retried op from a tablet, say): nothing new to link or audit
    review = only_task(district, REVIEWER, order.number)
    task_service.complete(district, Person(REVIEWER.id, "reviewer"), REVIEWER, review["id"],
                          {"decision": "reject", "reason": "again"})
    again = only_task(district, WORKER_EAST, order.number)
    task_service.complete(district, worker, WORKER_EAST, again["id"], {"action": "fixed", "after_photos": [NEW]},
                          photos=[EXTRA])
    with Session(district.db) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.business_key == order.number)).all()
    assert [e.kind for e in events].count("attachment_added") == 3
