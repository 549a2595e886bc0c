"""Completing a human task, for the HTTP route and the sync handler alike.

In one engine transaction: who may, the form (422 per field), that the photos the form
names are stored uploads, the step, and the photos linked to the work order (for a work
order's task); all of it happens or none of it does."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from engine.db import direct
from engine.domain.records import Attachment
from engine.runtime.errors import Actor, ValidationFailed
from engine.services.access import Caller
from engine.services.workorders import form_photos_to_order
from engine.storage import SHA256_RE

__all__ = ["complete", "FormPhotos"]


class FormPhotos:
    """The photos named in a task's file fields (form-js `filepicker`): each must be a
    stored upload (else a 422 for its field), and they are linked to the order."""

    def __init__(self, by: str, now: datetime, *, extra: Sequence[str] = ()):
        self.by, self.now, self.extra = by, now, list(extra)
        self.files: dict[str, list[str]] = {}

    def check(self, s: Session, task: dict, form, data: dict) -> None:
        if form is None:
            return
        wanted = {f.key: data[f.key] for f in form.fields
                  if f.type == "filepicker" and isinstance(data.get(f.key), list)}
        wanted = {k: [v for v in ids if isinstance(v, str) and SHA256_RE.fullmatch(v)] for k, ids in wanted.items()}
        ids = {v for vs in wanted.values() for v in vs}
        if not ids:
            return
        if len(ids) == 1:   # (the common case; an expanding IN is compiled on every call)
            stored = set(direct.execute(s.connection(), _STORED_ONE, {"id": next(iter(ids))}).scalars())
        else:
            stored = set(s.connection().execute(_STORED, {"ids": sorted(ids)}).scalars())
        errors = {}
        for key, vs in wanted.items():
            missing = [v for v in vs if v not in stored]
            if missing:
                errors[key] = {"code": "attachment", "message": f"Unknown attachment {missing[0]}: upload it first.",
                               "message_zh": f"附件 {missing[0]} 不存在，请先上传。"}
        if errors:
            raise ValidationFailed(errors)
        self.files = wanted

    def link(self, s: Session, task: dict) -> None:
        photos = dict(self.files)
        named = {v for vs in photos.values() for v in vs}
        others = [sha for sha in self.extra if sha not in named]
        if others:
            photos[""] = others          # sent with the op, in no field: evidence
        form_photos_to_order(s, task, photos, self.by, self.now)


def complete(engine, who: Caller, actor: Actor, task_id: str, data: Mapping[str, Any], *,
             expected_version: int | None = None, now: datetime | None = None, photos: Sequence[str] = (),
             also: Callable[[Session, dict, Any], None] | None = None) -> dict:
    """Complete a ready user task with its form data; returns the instance's new position.
    `photos`: photos sent beside the form (a sync op's attachments), linked as evidence.
    `also(session, open_task, instance_row)` runs last, in the same transaction."""
    files = FormPhotos(who.id, now or engine.clock(), extra=list(photos))

    def after(s: Session, task: dict, row) -> None:
        files.link(s, task)
        if also is not None:
            also(s, task, row)

    return engine.complete(task_id, actor, data, expected_version=expected_version, check=files.check, also=after)


_STORED = select(Attachment.sha256).where(col(Attachment.sha256).in_(bindparam("ids", expanding=True)))
_STORED_ONE = select(Attachment.sha256).where(Attachment.sha256 == bindparam("id"))
