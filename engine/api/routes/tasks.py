"""Human tasks: my open tasks with their forms, claim / release, complete with form data
(errors per field), and reassignment by dispatchers, administrators and unit leaders.

A person sees the tasks assigned to them, claimed by them, or open in one of their groups
(a deliverer: only their own). Completion is one engine transaction: of concurrent
completions one wins and the others get a 409."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from engine.api.deps import actor_of, allow, engine_of
from engine.auth.policy import OVERSEERS, PERMISSIONS
from engine.auth.service import Principal
from engine.clock import from_db
from engine.domain.models import Staff
from engine.runtime.errors import Forbidden, NotFound, ProcessError, ValidationFailed
from engine.runtime.reassign import reassign
from engine.runtime.rows import fetch_open_task, task_groups
from engine.runtime.tasks import FormsOf
from engine.services import tasks

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1", tags=["tasks"])


class TaskOut(BaseModel):
    id: str
    instance_id: int
    process_key: str
    business_key: str | None
    name: str = Field(description="BPMN element id")
    title: str
    form_ref: str | None
    assignee: str | None
    claimed_by: str | None
    groups: list[str]
    due_at: datetime | None
    created_at: datetime
    form: dict[str, Any] | None = Field(description="form-js schema to render, if the task has a form")


class TaskPage(BaseModel):
    items: list[TaskOut]
    limit: int
    offset: int
    has_more: bool


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any] = Field(default_factory=dict, description="the form's field values, by key")
    expected_version: int | None = Field(default=None, ge=1, description="fail with 409 if the instance moved on")


class CompleteOut(BaseModel):
    instance_id: int
    state: str
    version: int
    position: list[dict[str, Any]]


class ParkedOut(BaseModel):
    state: str = "incident"
    incident: int = Field(description="the incident that keeps this submission until it is retried")
    message: str = ("accepted; the next step is waiting for an administrator, your entry is kept "
                    "/ 已受理；下一步待管理员处理，您提交的内容已保存")


class ReassignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=64, description="staff id of the new assignee")
    reason: str | None = Field(default=None, max_length=500)


# ---- helpers ---------------------------------------------------------------------------
def _no_form(task: dict) -> None:
    return None


def _task_out(task: dict, form_of) -> TaskOut:
    return TaskOut(**{k: task[k] for k in TaskOut.model_fields if k not in ("form", "due_at", "created_at")},
                   due_at=from_db(task["due_at"]), created_at=from_db(task["created_at"]), form=form_of(task))


def _in_unit(task: dict, groups: set[str], unit: str | None, staff_unit) -> bool:
    if not unit:
        return False
    if groups & {f"unit:{unit}", f"leader:{unit}"}:
        return True
    return any(p and staff_unit(p) == unit for p in (task["assignee"], task["claimed_by"]))


def _staff_unit(s):
    return lambda staff_id: (st.unit_code if (st := s.get(Staff, staff_id)) else None)


def _visible(s, task: dict, groups: set[str], principal: Principal) -> bool:
    actor = actor_of(principal)
    if actor.id in (task["assignee"], task["claimed_by"]) or groups & actor.groups:
        return True
    if principal.role in OVERSEERS:
        return True
    return principal.role == "unit_leader" and _in_unit(task, groups, principal.unit_code, _staff_unit(s))


def _open_task(request: Request, task_id: str, principal: Principal) -> dict:
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        ot = fetch_open_task(s, task_id) if len(task_id) <= 36 else None
        groups = task_groups(s, task_id) if ot is not None else set()
        if ot is None or not _visible(s, ot, groups, principal):
            raise NotFound(f"no open task {task_id[:40]!r} for you")
        return {**ot, "groups": sorted(groups)}


# ---- routes ----------------------------------------------------------------------------
@router.get("/tasks", response_model=TaskPage, summary="My open tasks with their forms / 我的待办")
def my_tasks(request: Request,
             process: str | None = Query(default=None, max_length=128, description="process key, e.g. work_order"),
             business_key: str | None = Query(default=None, max_length=128, description="e.g. a work-order number"),
             limit: int = Query(default=50, ge=1, le=500),
             offset: int = Query(default=0, ge=0, le=10_000_000),
             forms: bool = Query(default=True, description="each task's form-js schema (false: `form` is null; "
                                                           "GET /tasks/{id} has it). 300 review tasks: 390 KB "
                                                           "with them, 91 KB without"),
             principal: Principal = allow("tasks.work")):
    engine = engine_of(request)
    rows = engine.tasks.for_actor(actor_of(principal), process_key=process, business_key=business_key,
                                  limit=limit + 1, offset=offset)
    form_of = FormsOf(engine) if forms else _no_form
    return TaskPage(items=[_task_out(t, form_of) for t in rows[:limit]], limit=limit, offset=offset,
                    has_more=len(rows) > limit)


@router.get("/tasks/{task_id}", response_model=TaskOut, summary="One open task with its form / 待办详情")
def get_task(task_id: str, request: Request, principal: Principal = allow("tasks.work")):
    return _task_out(_open_task(request, task_id, principal), FormsOf(engine_of(request)))


@router.post("/tasks/{task_id}/claim", response_model=TaskOut, summary="Claim a group task / 认领任务")
def claim_task(task_id: str, request: Request, principal: Principal = allow("tasks.work")):
    engine = engine_of(request)
    engine.claim(task_id, actor_of(principal))
    return _task_out(_open_task(request, task_id, principal), FormsOf(engine))


@router.post("/tasks/{task_id}/release", response_model=TaskOut, summary="Release a claimed task / 释放任务")
def release_task(task_id: str, request: Request, principal: Principal = allow("tasks.work")):
    engine = engine_of(request)
    engine.claim(task_id, actor_of(principal), release=True)
    return _task_out(_open_task(request, task_id, principal), FormsOf(engine))


@router.post("/tasks/{task_id}/complete", response_model=CompleteOut,
             summary="Complete a task with its form data / 提交任务",
             responses={202: {"model": ParkedOut, "description": "accepted and kept, but the process could not "
                                                                 "take its next step: an incident for administrators"},
                        409: {"description": "already completed, claimed by someone else, or the instance moved on"},
                        422: {"description": "form errors, keyed by field"}})
def complete_task(task_id: str, body: CompleteIn, request: Request, principal: Principal = allow("tasks.work")):
    try:
        result = tasks.complete(engine_of(request), principal, actor_of(principal), task_id, body.data,
                                expected_version=body.expected_version)
    except ProcessError as exc:
        if exc.incident is None:
            raise
        # The process could not take its next step: the submission is kept in an incident for
        # administrators; for the caller it is accepted (the task leaves their list).
        return Response(ParkedOut(incident=exc.incident).model_dump_json(), status_code=202,
                        media_type="application/json")
    # (our own model: serialized once here, not validated again in a further thread-pool hop,
    # which FastAPI takes for a sync route's response model: ~0.2 ms of CPU per completion)
    return Response(CompleteOut(**result).model_dump_json(), media_type="application/json")


@router.post("/tasks/{task_id}/reassign", response_model=TaskOut,
             summary="Reassign a task to a person / 改派任务")
def reassign_task(task_id: str, body: ReassignIn, request: Request, principal: Principal = allow("tasks.reassign")):
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        target = s.get(Staff, body.to)
    if target is None or not target.active or target.role not in PERMISSIONS["tasks.work"]:
        raise ValidationFailed({"to": f"{body.to!r} is not an active staff member who works on tasks"})
    leader_unit = principal.unit_code if principal.role not in OVERSEERS else None

    def may(s, task: dict, groups: set[str]) -> None:
        if principal.role in OVERSEERS:
            return
        if not _in_unit(task, groups, leader_unit, _staff_unit(s)):
            raise NotFound(f"no open task {task_id[:40]!r} in your unit")
        if target.unit_code != leader_unit:
            raise Forbidden(f"a unit leader reassigns only to people of unit {leader_unit}")

    task = reassign(engine, task_id, body.to, actor_of(principal), body.reason, may)
    return _task_out(task, FormsOf(engine))
