"""Process definitions: deploy (designers), validate without deploying, list versions,
download, which instances run on which version and where they wait (the designer's heatmap),
and the operations a service task may name. Deploying validates every file as the engine
does; a refused file comes back as a 422 naming the element at fault, and nothing is stored."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import select

from engine.api.deps import actor_of, allow, engine_of
from engine.auth.service import Principal
from engine.bpmn.xml import MAX_DEFINITION_BYTES, DefinitionError
from engine.clock import from_db
from engine.db.models import Definition, Instance
from engine.runtime.definitions import MAX_FILES_PER_DEPLOY
from engine.runtime.errors import NotFound
from engine.services import processes as process_service

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/processes", tags=["processes"])
MEDIA = {"bpmn": "application/xml", "dmn": "application/xml", "form": "application/json"}
EXTENSION = {"bpmn": "bpmn", "dmn": "dmn", "form": "form"}


class DeployedOut(BaseModel):
    kind: str
    key: str
    version: int
    changed: bool = Field(description="false when the file equals the latest version (no new version)")


class DeployOut(BaseModel):
    deployed: list[DeployedOut]


class InstanceCounts(BaseModel):
    running: int = 0
    total: int = 0


class DefinitionOut(BaseModel):
    kind: str
    key: str
    version: int
    sha256: str
    filename: str
    deployed_at: datetime
    deployed_by: str
    latest: bool
    instances: InstanceCounts | None = Field(default=None, description="processes only")


class ParameterOut(BaseModel):
    name: str
    required: bool = False
    values: list[str] = Field(default_factory=list, description="the values it takes, when it is a choice")
    description: str = ""


class OperationOut(BaseModel):
    name: str = Field(description='what a service task names: camunda:type="external" camunda:topic="<name>"')
    description: str
    parameters: list[ParameterOut] = Field(description="camunda:properties the operation reads")


class ProblemOut(BaseModel):
    file: str
    element: str | None = Field(description="the id of the element at fault, when there is one")
    message: str


class ValidateOut(BaseModel):
    valid: bool
    problems: list[ProblemOut]


class ElementActivity(BaseModel):
    waiting: int = Field(description="running instances of this version waiting at the element now")
    incidents: int = Field(description="open incidents at the element")
    passed: int = Field(description="instances of this version that have completed the element (a task, a timer)")


class ActivityOut(BaseModel):
    process: str
    version: int
    running: int
    total: int
    elements: dict[str, ElementActivity]


class InstanceOut(BaseModel):
    id: int
    business_key: str | None
    version: int
    state: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class VersionCount(InstanceCounts):
    version: int


class InstancesOut(BaseModel):
    process: str
    total: int
    versions: list[VersionCount]
    items: list[InstanceOut]


def _uploads(files: list[UploadFile]) -> list[tuple[str, bytes]]:
    """The uploaded files as (name, bytes), refusing too many, nameless or oversize files."""
    if len(files) > MAX_FILES_PER_DEPLOY:
        raise DefinitionError("deploy", [(None, f"at most {MAX_FILES_PER_DEPLOY} files per deploy")])
    uploads = []
    for f in files:
        name = Path(f.filename or "").name
        if not name:
            raise DefinitionError("deploy", [(None, "every file needs a file name (.bpmn, .dmn or .form)")])
        raw = f.file.read(MAX_DEFINITION_BYTES + 1)
        if len(raw) > MAX_DEFINITION_BYTES:
            raise DefinitionError(name, [(None, f"file is over the limit of {MAX_DEFINITION_BYTES} bytes")])
        uploads.append((name, raw))
    return uploads


@router.post("", response_model=DeployOut, status_code=201,
             summary="Deploy BPMN/DMN/form files as new versions / 部署流程定义")
def deploy(request: Request, files: list[UploadFile] = File(description=".bpmn, .dmn and .form files"),
           principal: Principal = allow("processes.deploy")):
    deployed = engine_of(request).deploy(_uploads(files), actor_of(principal))
    return DeployOut(deployed=[DeployedOut(kind=d.kind, key=d.key, version=d.version, changed=d.changed)
                               for d in deployed])


@router.post("/validate", response_model=ValidateOut,
             summary="Check files exactly as a deploy would, storing nothing / 校验流程定义（不部署）")
def validate(request: Request, files: list[UploadFile] = File(description=".bpmn, .dmn and .form files"),
             principal: Principal = allow("processes.deploy")):
    problems = process_service.validate(engine_of(request), _uploads(files), actor_of(principal))
    return ValidateOut(valid=not problems, problems=[ProblemOut(**p) for p in problems])


@router.get("/operations", response_model=list[OperationOut],
            summary="Operations a service task may name / 服务任务可用的操作")
def operations(request: Request, _: Principal = allow("processes.read")):
    return [OperationOut(**op) for op in process_service.operations(engine_of(request))]


@router.get("/{key}/versions/{version}/activity", response_model=ActivityOut,
            summary="Where a version's instances wait now / 各节点实例数（热力图）")
def activity(key: str, request: Request, version: int = PathParam(ge=1, le=1_000_000),
             _: Principal = allow("processes.read")):
    if len(key) > 128:
        raise NotFound("no process with a key that long (at most 128 characters)")
    return ActivityOut(**process_service.activity(engine_of(request), key, version))


@router.get("", response_model=list[DefinitionOut], summary="List definitions and versions / 流程版本列表")
def list_definitions(request: Request, kind: Literal["bpmn", "dmn", "form"] | None = None,
                     key: str | None = Query(default=None, max_length=128),
                     _: Principal = allow("processes.read")):
    with engine_of(request).transaction(write=False) as s:
        q = select(Definition.id, Definition.kind, Definition.key, Definition.version, Definition.sha256,
                   Definition.filename, Definition.deployed_at, Definition.deployed_by)
        if kind:
            q = q.where(Definition.kind == kind)
        if key:
            q = q.where(Definition.key == key)
        rows = s.exec(q.order_by(Definition.kind, Definition.key, Definition.version)).all()
        counts: dict[int, InstanceCounts] = {}
        for definition_id, state, n in s.exec(select(Instance.definition_id, Instance.state, func.count())
                                              .group_by(Instance.definition_id, Instance.state)):
            c = counts.setdefault(definition_id, InstanceCounts())
            c.total += n
            c.running += n if state == "running" else 0
    latest = {}
    for r in rows:
        latest[(r.kind, r.key)] = max(latest.get((r.kind, r.key), 0), r.version)
    return [DefinitionOut(kind=r.kind, key=r.key, version=r.version, sha256=r.sha256, filename=r.filename,
                          deployed_at=from_db(r.deployed_at), deployed_by=r.deployed_by,
                          latest=latest[(r.kind, r.key)] == r.version,
                          instances=counts.get(r.id, InstanceCounts()) if r.kind == "bpmn" else None)
            for r in rows]


@router.get("/{kind}/{key}/{version}", response_class=Response,
            responses={200: {"content": {"application/xml": {}, "application/json": {}}}},
            summary="Download one version's file / 下载流程定义")
def download(kind: str, key: str, request: Request, version: int = PathParam(ge=1, le=1_000_000),
             _: Principal = allow("processes.read")):
    if kind not in MEDIA:
        raise NotFound(f"no definition kind {kind[:16]!r}; use bpmn, dmn or form")
    with engine_of(request).transaction(write=False) as s:
        row = s.exec(select(Definition).where(Definition.kind == kind, Definition.key == key,
                                              Definition.version == version)).first()
    if row is None:
        raise NotFound(f"no {kind} {key[:128]!r} version {version}")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", row.key)[:100]
    return Response(row.content.encode("utf-8"), media_type=f"{MEDIA[kind]}; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{safe}.v{row.version}.{EXTENSION[kind]}"',
                             "ETag": f'"{row.sha256}"', "X-Content-Type-Options": "nosniff"})


@router.get("/{key}/instances", response_model=InstancesOut,
            summary="Which instances run on which version / 各版本运行实例")
def instances(key: str, request: Request, version: int | None = Query(default=None, ge=1, le=1_000_000),
              state: Literal["running", "completed", "failed", "cancelled"] | None = None,
              limit: int = Query(default=50, ge=1, le=500), offset: int = Query(default=0, ge=0, le=10_000_000),
              _: Principal = allow("processes.read")):
    with engine_of(request).transaction(write=False) as s:
        versions = dict(s.exec(select(Definition.id, Definition.version)
                               .where(Definition.kind == "bpmn", Definition.key == key)).all())
        if not versions:
            raise NotFound(f"no process {key[:128]!r} is deployed")
        per_version: dict[int, VersionCount] = {v: VersionCount(version=v) for v in versions.values()}
        for definition_id, st, n in s.exec(select(Instance.definition_id, Instance.state, func.count())
                                           .where(Instance.definition_id.in_(list(versions)))
                                           .group_by(Instance.definition_id, Instance.state)):
            c = per_version[versions[definition_id]]
            c.total += n
            c.running += n if st == "running" else 0
        ids = [i for i, v in versions.items() if version is None or v == version]
        where = [Instance.definition_id.in_(ids)] + ([Instance.state == state] if state else [])
        total = s.exec(select(func.count()).select_from(Instance).where(*where)).one() if ids else 0
        rows = s.exec(select(Instance.id, Instance.business_key, Instance.definition_id, Instance.state,
                             Instance.created_at, Instance.updated_at, Instance.completed_at)
                      .where(*where).order_by(Instance.id.desc()).offset(offset).limit(limit)).all() if ids else []
    return InstancesOut(process=key, total=total, versions=sorted(per_version.values(), key=lambda c: c.version),
                        items=[InstanceOut(id=r.id, business_key=r.business_key, version=versions[r.definition_id],
                                           state=r.state, created_at=from_db(r.created_at),
                                           updated_at=from_db(r.updated_at), completed_at=from_db(r.completed_at))
                               for r in rows])
