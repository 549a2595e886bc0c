"""Incidents: steps a deployed process could not take, for administrators (and designers,
who fix the definitions). Each names the failing element, the error and the process
version, and keeps what the caller submitted until it is retried or resolved."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from engine.api.deps import allow, engine_of
from engine.auth.service import Principal
from engine.services import incidents

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1, description="incident id")]


class IncidentOut(BaseModel):
    id: int
    instance_id: int
    process_key: str
    business_key: str | None
    definition_id: int
    version: int = Field(description="the process version that failed")
    step: str = Field(description="start, task, message or timer")
    element: str | None = Field(description="the BPMN element that failed")
    message: str = Field(description="the error, for administrators")
    submission: dict[str, Any] = Field(description="what the caller sent, kept for a retry")
    actor: str
    attempts: int
    created_at: datetime
    last_failed_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None = Field(description="retried or resolved, once closed")


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    total: int
    limit: int
    offset: int


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=500, description="how it was settled")


@router.get("", response_model=IncidentPage, summary="Incidents, newest first / 流程异常列表")
def list_incidents(request: Request, open: bool = Query(default=True, description="only those not yet closed"),
                   process: str | None = Query(default=None, max_length=128, description="process key"),
                   limit: int = Query(default=50, ge=1, le=500), offset: int = Query(default=0, ge=0, le=10_000_000),
                   _: Principal = allow("incidents.read")):
    items, total = incidents.page(engine_of(request), open_only=open, process_key=process, limit=limit,
                                  offset=offset)
    return IncidentPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{incident_id}", response_model=IncidentOut, summary="One incident / 流程异常详情")
def get_incident(incident_id: IncidentId, request: Request, _: Principal = allow("incidents.read")):
    return incidents.one(engine_of(request), incident_id)


@router.post("/{incident_id}/retry", response_model=IncidentOut,
             summary="Take the failed step again (after fixing the definition) / 重试")
def retry_incident(incident_id: IncidentId, request: Request, principal: Principal = allow("incidents.manage")):
    """A parked start runs on the newest deployed version of its process; a parked task
    completion is applied again with the form data it was sent; a timer fires now. The
    answer is the incident: closed ("retried"), or still open with the new error."""
    return incidents.retry(engine_of(request), principal, incident_id)


@router.post("/{incident_id}/resolve", response_model=IncidentOut,
             summary="Close an incident settled by other means / 手动处理")
def resolve_incident(incident_id: IncidentId, body: ResolveIn, request: Request,
                     principal: Principal = allow("incidents.manage")):
    """The parked submission is dropped (it stays here for the record); a parked task is
    listed again for its people."""
    return incidents.resolve(engine_of(request), principal, incident_id, body.note)
