"""Responsible units, for choosing one (re-routing a work order, filtering the dispatch
desk), and a unit's people, for reassigning a task to one of them.

A unit leader sees the people of their own unit only (any other unit is a 404), as the
reassign rule lets them hand a task only to their own people."""
from __future__ import annotations

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel
from sqlmodel import col, select

from engine.api.deps import allow, engine_of
from engine.auth.policy import OVERSEERS, PERMISSIONS
from engine.auth.service import Principal
from engine.domain.models import Staff, Unit
from engine.runtime.errors import NotFound

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1", tags=["administration"])


class UnitOut(BaseModel):
    code: str
    name: str
    name_zh: str
    kind: str


class PersonOut(BaseModel):
    id: str
    name: str
    role: str


@router.get("/units", response_model=list[UnitOut], summary="Responsible units / 责任单位列表")
def list_units(request: Request, _: Principal = allow("workorders.read")):
    with engine_of(request).transaction(write=False) as s:
        rows = s.exec(select(Unit).order_by(Unit.code)).all()
    return [UnitOut(code=u.code, name=u.name, name_zh=u.name_zh, kind=u.kind) for u in rows]


@router.get("/units/{code}/staff", response_model=list[PersonOut],
            summary="A unit's active people who work on tasks (to reassign to) / 单位人员（改派用）")
def unit_staff(request: Request, code: str = Path(min_length=1, max_length=40),
               principal: Principal = allow("tasks.reassign")):
    if principal.role not in OVERSEERS and principal.unit_code != code:
        raise NotFound(f"no unit {code!r} of yours")
    with engine_of(request).transaction(write=False) as s:
        if s.get(Unit, code) is None:
            raise NotFound(f"no unit {code!r}")
        rows = s.exec(select(Staff).where(Staff.unit_code == code, col(Staff.active).is_(True))
                      .order_by(Staff.role, Staff.id)).all()
    workers = PERMISSIONS["tasks.work"]
    return [PersonOut(id=p.id, name=p.name, role=p.role) for p in rows if p.role in workers]
