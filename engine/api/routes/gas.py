"""Gas households: list and detail, CSV import, inspection history, the due list, and
starting an inspection at delivery.

Object rule: a deliverer sees only their own households (anyone else's is a 404); workers and
leaders of the gas office, dispatchers and administrators see all; other units see none."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import func, not_, or_
from sqlmodel import select
from starlette.datastructures import UploadFile

from engine.api.deps import actor_of, allow, engine_of
from engine.api.errors import problem
from engine.auth.service import Principal
from engine.clock import from_db, to_db
from engine.db.models import Instance
from engine.domain import gas, households_import
from engine.domain.models import AddressCode, Household, Inspection
from engine.services import gas as gas_service
from engine.services.access import household_for, households_visible

__all__ = ["ImportReport", "router"]  # (the routes themselves are reached through the router)

RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="row id")]
router = APIRouter(prefix="/api/v1/gas", tags=["gas"])
MULTIPART_SLACK = 64 * 1024   # form boundaries and headers around the file


class HouseholdOut(BaseModel):
    id: int
    address_code: str
    street_code: str | None
    label: str | None
    holder: str
    phone: str | None
    deliverer_id: str | None
    last_inspected_at: datetime | None
    next_due_at: datetime | None
    overdue: bool
    supply_suspended: bool


class HouseholdDetail(HouseholdOut):
    open_inspection_instance: int | None


class HouseholdPage(BaseModel):
    items: list[HouseholdOut]
    total: int
    limit: int
    offset: int


class InspectionOut(BaseModel):
    id: int
    at: datetime
    deliverer_id: str
    hazard_level: str
    hazard_reason: str | None
    checklist: dict
    instance_id: int
    work_order_number: str | None


class RowError(BaseModel):
    row: int
    field: str
    message: str


class ImportReport(BaseModel):
    created: int
    updated: int
    rows: int
    written: bool
    errors: list[RowError]


class StartedOut(BaseModel):
    household_id: int
    instance_id: int
    task_id: str | None


def _out(hh: Household, addr: AddressCode | None, now: datetime, **extra) -> dict:
    due = from_db(hh.next_due_at)
    return dict(id=hh.id, address_code=hh.address_code, street_code=addr.street_code if addr else None,
                label=addr.label if addr else None, holder=hh.holder, phone=hh.phone, deliverer_id=hh.deliverer_id,
                last_inspected_at=from_db(hh.last_inspected_at), next_due_at=due,
                overdue=due is None or due <= now, supply_suspended=hh.supply_suspended, **extra)


@router.get("/households", response_model=HouseholdPage, summary="List gas households / 燃气用户列表")
def list_households(request: Request, principal: Principal = allow("gas.read"),
                    due: bool | None = Query(None, description="due within `within_days` (true) or not (false)"),
                    overdue: bool | None = Query(None, description="past due or never inspected"),
                    within_days: int = Query(14, ge=0, le=366),
                    deliverer: str | None = Query(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
                    street: str | None = Query(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"),
                    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=2**31 - 1)):
    engine = engine_of(request)
    now = engine.clock()
    where = households_visible(principal)
    if deliverer:
        where.append(Household.deliverer_id == deliverer)
    if street:
        where.append(AddressCode.street_code == street)
    for flag, horizon in ((due, now + timedelta(days=within_days)), (overdue, now)):
        if flag is not None:
            cond = or_(Household.next_due_at.is_(None), Household.next_due_at <= to_db(horizon))
            where.append(cond if flag else not_(cond))
    joined = select(Household, AddressCode).join(AddressCode, AddressCode.code == Household.address_code, isouter=True)
    with engine.transaction(write=False) as s:
        total = s.exec(select(func.count()).select_from(Household)
                       .join(AddressCode, AddressCode.code == Household.address_code, isouter=True).where(*where)).one()
        rows = s.exec(joined.where(*where).order_by(Household.address_code).limit(limit).offset(offset)).all()
        return {"items": [_out(hh, addr, now) for hh, addr in rows], "total": total, "limit": limit, "offset": offset}


@router.get("/due", response_model=HouseholdPage, summary="Households due for inspection / 到期待检用户")
def due_list(request: Request, principal: Principal = allow("gas.read"),
             within_days: int = Query(0, ge=0, le=366, description="also those due within this many days"),
             limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=2**31 - 1)):
    """Never inspected first, then the longest overdue; a deliverer sees only their own."""
    engine = engine_of(request)
    now = engine.clock()
    households_visible(principal)
    with engine.transaction(write=False) as s:
        found = gas.due_households(s, now, timedelta(days=within_days))
        if principal.role == "deliverer":
            found = [h for h in found if h.deliverer_id == principal.id]
        found.sort(key=lambda h: (h.next_due_at is not None, from_db(h.next_due_at) or now, h.id))
        page = found[offset:offset + limit]
        codes = [h.address_code for h in page]
        addrs = {a.code: a for a in s.exec(select(AddressCode).where(AddressCode.code.in_(codes)))} if codes else {}
        return {"items": [_out(h, addrs.get(h.address_code), now) for h in page], "total": len(found),
                "limit": limit, "offset": offset}


@router.get("/households/import/template", response_class=PlainTextResponse,
            summary="CSV template for the household import / 导入模板")
def import_template(_: Principal = allow("gas.import")):
    return PlainTextResponse(households_import.example_csv(), media_type="text/csv; charset=utf-8")


@router.post("/households/import", response_model=ImportReport,
             summary="Import households from CSV, with a per-row error report / 导入燃气用户",
             responses={413: {"description": "file over 5 MiB"},
                        422: {"description": "rows with errors (nothing written in all-or-nothing mode)"}})
async def import_households(request: Request, all_or_nothing: bool = True,
                            principal: Principal = allow("gas.import")):
    """Send the CSV as the request body (`text/csv`) or as the form field `file`
    (`multipart/form-data`). Columns: address_code, holder, phone, deliverer_id and optionally
    last_inspected_at; UTF-8 (a byte-order mark is fine), at most 5 MiB and 50,000 rows.
    With `all_or_nothing=true` (the default) any bad row means nothing is written (422);
    otherwise the good rows are written and the bad ones reported."""
    limit = households_import.MAX_BYTES
    declared = request.headers.get("content-length")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        return _too_large(limit)
    if ctype == "application/json":
        return problem(415, "unsupported_media_type",
                       "send the CSV file as text/csv or as the multipart form field 'file' / 请上传 CSV 文件")
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _file_error("no file: send the CSV in the form field 'file'")
        raw = await upload.read(limit + 1)
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _too_large(limit)
            chunks.append(chunk)
        raw = b"".join(chunks)
    if len(raw) > limit:
        return _too_large(limit)
    try:
        report = await run_in_threadpool(gas_service.import_households, engine_of(request), principal, raw,
                                         all_or_nothing=all_or_nothing)
    except households_import.FileRejected as exc:
        return _file_error(str(exc), exc.row, exc.field)
    body = report.as_dict()
    if report.errors and not report.written:
        return JSONResponse({"error": "invalid", "message": f"{len(report.errors)} error(s) in the file; nothing "
                             "was written / 文件有错误，未导入任何数据", **body}, status_code=422)
    return body


def _too_large(limit: int) -> JSONResponse:
    return problem(413, "too_large", f"the file is over {limit // (1024 * 1024)} MiB / 文件过大")


def _file_error(message: str, row: int = 1, field: str = "file") -> JSONResponse:
    return JSONResponse({"error": "invalid_file", "message": message, "created": 0, "updated": 0, "rows": 0,
                         "written": False, "errors": [{"row": row, "field": field, "message": message}]},
                        status_code=422)


@router.get("/households/{household_id}", response_model=HouseholdDetail, summary="A gas household / 燃气用户详情")
def get_household(household_id: RowId, request: Request, principal: Principal = allow("gas.read")):
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        hh = household_for(s, principal, household_id)
        running = s.exec(select(Instance.id).where(Instance.process_key == gas.PROCESS, Instance.state == "running",
                                                   Instance.business_key == f"household:{hh.id}")).first()
        return _out(hh, s.get(AddressCode, hh.address_code), engine.clock(), open_inspection_instance=running)


@router.get("/households/{household_id}/inspections", response_model=list[InspectionOut],
            summary="Inspection history of a household / 安检记录")
def list_inspections(household_id: RowId, request: Request, principal: Principal = allow("gas.read"),
                     limit: int = Query(100, ge=1, le=1000)):
    with engine_of(request).transaction(write=False) as s:
        hh = household_for(s, principal, household_id)
        rows = s.exec(select(Inspection).where(Inspection.household_id == hh.id)
                      .order_by(Inspection.at.desc(), Inspection.id.desc()).limit(limit)).all()
        return [dict(id=i.id, at=from_db(i.at), deliverer_id=i.deliverer_id, hazard_level=i.hazard_level,
                     hazard_reason=i.hazard_reason, checklist=json.loads(i.checklist or "{}"),
                     instance_id=i.instance_id, work_order_number=i.work_order_number) for i in rows]


@router.post("/households/{household_id}/inspections", response_model=StartedOut, status_code=201,
             summary="Start an inspection at delivery (the household's deliverer) / 送气时开始安检")
def start_inspection(household_id: RowId, request: Request, principal: Principal = allow("gas.inspect")):
    started = gas_service.start_inspection(engine_of(request), principal, actor_of(principal), household_id)
    return StartedOut(household_id=started.household_id, instance_id=started.instance_id, task_id=started.task_id)
