"""Open311 GeoReport v2 for citizen intake, JSON and XML, at /open311/v2/.

Services are the work-order categories (`metadata` is false: no extra attributes, so a
service definition lists none). A POSTed request becomes a work order (source "citizen")
routed by the dispatch table; its id is the `service_request_id`. Only requests that came in
through Open311 are readable here. `api_key` and `jurisdiction_id` are accepted and not
checked yet (one jurisdiction). Errors use the GeoReport shape, `[{"code", "description"}]`
or `<errors><error>...`, in the format the URL asks for; bad input is a 400. A URL with
another extension (`services.yaml`) is a 404 in the server's usual error shape.
Datetimes are ISO 8601 in the district's time zone (+08:00)."""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Callable

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from lxml import etree
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.api.deps import actor_of, allow, engine_of
from engine.api.errors import problem
from engine.auth.service import AuthError, Principal
from engine.domain import intake
from engine.domain.attendance import DISTRICT_TZ
from engine.runtime.errors import Actor, ClientError, ProcessError, TooManyRequests

__all__ = ["router"]  # (the routes themselves are reached through the router)

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
_DOC = {200: {"content": {"application/json": {}, "text/xml": {}},
              "description": "GeoReport v2 document; `{fmt}` is json or xml"},
        400: {"description": "bad input: `[{\"code\": 400, \"description\": ...}]`"}}


class Open311Error(Exception):
    def __init__(self, status: int, description: str, headers: dict | None = None):
        self.status, self.description, self.headers = status, description, headers
        super().__init__(description)


class Open311Route(APIRoute):
    """Every failure on these routes answers in the GeoReport error format, never a 500
    for bad input."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - mapped below, re-raised when unknown
                mapped = _as_open311(exc)
                if mapped is None:
                    raise
                return _error_response(request, mapped)

        return guarded


def _as_open311(exc: Exception) -> Open311Error | None:
    if isinstance(exc, Open311Error):
        return exc
    if isinstance(exc, AuthError):
        return Open311Error(401, str(exc), {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, TooManyRequests):
        return Open311Error(429, str(exc), {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, RequestValidationError):
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return Open311Error(400, where or "invalid request")
    if isinstance(exc, ClientError):
        # (GeoReport v2 answers bad input with 400; a missing object, a refusal, a conflict keep theirs)
        return Open311Error(exc.status if exc.status in (403, 404, 409) else 400, str(exc))
    if isinstance(exc, ProcessError):   # nothing could be kept; the process's text is not the citizen's to see
        where = f" (incident {exc.incident})" if exc.incident else ""
        return Open311Error(500, f"the report could not be taken{where}; try again later / 暂时无法受理，请稍后再试")
    if isinstance(exc, StarletteHTTPException):
        return Open311Error(exc.status_code, str(exc.detail))
    return None   # a bug: the server logs it and answers 500


def _error_response(request: Request, err: Open311Error) -> Response:
    """GeoReport errors in the format the URL names; a URL naming no format we serve is not a
    GeoReport resource at all, so it gets the server's own error shape."""
    fmt = request.path_params.get("fmt")
    if fmt not in FORMATS:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}.get(err.status, "error")
        return problem(err.status, code, err.description, headers=err.headers)
    items = [{"code": err.status, "description": err.description}]
    return _render(fmt, "errors", "error", items, status=err.status, headers=err.headers)


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Open311Error(404, f"no format {fmt[:16]!r} here: use .json or .xml")
    return fmt


# ---- rendering ---------------------------------------------------------------------------
def _value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(DISTRICT_TZ).isoformat(timespec="seconds")
    return v


def _xml_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    # Stored text was checked on the way in; strip anything XML 1.0 cannot carry anyway.
    return intake.XML_UNSAFE.sub("", str(_value(v)))


def _xml_element(parent, name: str, v: Any) -> None:
    el = etree.SubElement(parent, name)
    if isinstance(v, list):          # e.g. a service definition's attributes
        for item in v:
            child = etree.SubElement(el, name[:-1] if name.endswith("s") else "item")
            for k, sub in item.items():
                _xml_element(child, k, sub)
    elif v is not None:
        el.text = _xml_text(v)       # lxml escapes text: no markup from user data


def _render(fmt: str, root: str, item: str | None, items: Any, status: int = 200,
            headers: dict | None = None) -> Response:
    """A list of items as `<root><item>...</item></root>` / a JSON array, or (item None) one
    object as `<root>...</root>` / a JSON object."""
    if fmt == "xml":
        doc = etree.Element(root)
        if item is None:
            for k, v in items.items():
                _xml_element(doc, k, v)
        else:
            for entry in items:
                el = etree.SubElement(doc, item)
                for k, v in entry.items():
                    _xml_element(el, k, v)
        body = XML_DECLARATION + etree.tostring(doc, encoding="UTF-8")
    else:
        data = {k: _value(v) for k, v in items.items()} if item is None else [
            {k: _value(v) for k, v in entry.items()} for entry in items]
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Response(body, status_code=status, media_type=FORMATS[fmt], headers=headers)


def _service(s: intake.Service) -> dict:
    return {"service_code": s.code, "service_name": s.name, "description": s.description, "metadata": False,
            "type": "realtime", "keywords": ", ".join(s.keywords), "group": s.group}


# ---- query parsing -------------------------------------------------------------------------
def _list(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    items = [x.strip() for x in raw.split(",") if x.strip()]
    return items or None


def _when(name: str, raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", raw.strip())   # an unencoded '+' arrives as a space
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Open311Error(400, f"{name} is not an ISO 8601 date-time") from None
    value = value.replace(tzinfo=DISTRICT_TZ) if value.tzinfo is None else value
    if not 1970 <= value.year <= 9000:
        raise Open311Error(400, f"{name} is out of range")
    return value


def _query(params) -> intake.RequestQuery:
    q = intake.RequestQuery()
    ids = _list(params.get("service_request_id"))
    if ids is not None:
        if len(ids) > intake.MAX_RESULTS or not all(re.fullmatch(r"[0-9]{1,18}", i) for i in ids):
            raise Open311Error(400, "service_request_id is a comma-separated list of request ids")
        q.ids = [int(i) for i in ids]
    q.service_codes = _list(params.get("service_code"))
    for code in q.service_codes or ():
        if code not in intake.SERVICES:
            raise Open311Error(400, f"unknown service_code {code[:40]!r}")
    q.start, q.end = _when("start_date", params.get("start_date")), _when("end_date", params.get("end_date"))
    if q.start and q.end and q.start > q.end:
        raise Open311Error(400, "start_date is after end_date")
    q.statuses = _list(params.get("status"))
    if q.statuses and not set(q.statuses) <= {"open", "closed"}:
        raise Open311Error(400, "status is open, closed or both (comma-separated)")
    return q


async def _fields(request: Request) -> dict:
    """POST fields: form-encoded (as GeoReport v2 says) or multipart, or a JSON object."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):   # UnicodeDecodeError is a ValueError
            raise Open311Error(400, "the body is not valid JSON (or nested too deeply)") from None
        if not isinstance(data, dict):
            raise Open311Error(400, "the JSON body must be an object")
        return data
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        try:
            form = await request.form(max_files=0, max_fields=100)
        except Exception:  # noqa: BLE001 - malformed multipart, too many fields
            raise Open311Error(400, "the form body could not be read") from None
        data = {}
        for key, value in form.multi_items():
            if not isinstance(value, str):
                raise Open311Error(400, "file uploads are not taken here; send media_url")
            data.setdefault(key, value)
        return data
    raise Open311Error(400, f"unsupported content type {kind!r}; send form fields or JSON")


# ---- routes --------------------------------------------------------------------------------
router = APIRouter(tags=["open311"], route_class=Open311Route)
P = "/open311/v2"


@router.get(P + "/services.{fmt}", response_class=Response, responses=_DOC,
            summary="Open311: list services (work-order categories) / 服务类型")
def services(fmt: str, _: Principal | None = allow("public")):
    return _render(_check_format(fmt), "services", "service", [_service(s) for s in intake.SERVICES.values()])


@router.get(P + "/services/{service_code}.{fmt}", response_class=Response, responses=_DOC,
            summary="Open311: service definition / 服务定义")
def service_definition(service_code: str, fmt: str, _: Principal | None = allow("public")):
    _check_format(fmt)
    if service_code not in intake.SERVICES:
        raise Open311Error(404, f"no service {service_code[:40]!r}")
    return _render(fmt, "service_definition", None, {"service_code": service_code, "attributes": []})


@router.get(P + "/requests.{fmt}", response_class=Response, responses=_DOC,
            summary="Open311: find service requests (newest first, at most 1000) / 查询诉求")
def find_requests(fmt: str, request: Request, _: Principal | None = allow("public")):
    _check_format(fmt)
    query = _query(request.query_params)
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        found = intake.find_requests(s, query, engine.clock())
    return _render(fmt, "service_requests", "request", found)


_POST_FIELDS = {"type": "object", "required": ["service_code"], "properties": {
    **{name: {"type": "string", "maxLength": limit} for name, limit in intake.TEXT_LIMITS.items()},
    "lat": {"type": "number"}, "long": {"type": "number"}, "api_key": {"type": "string"},
    "jurisdiction_id": {"type": "string"}},
    "description": "a location is required: lat and long, address_string or address_id"}


@router.post(P + "/requests.{fmt}", response_class=Response, responses=_DOC, status_code=201,
             summary="Open311: report a problem (form fields or JSON) / 市民上报",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/x-www-form-urlencoded": {"schema": _POST_FIELDS},
                 "application/json": {"schema": _POST_FIELDS}}}})
async def create_request(fmt: str, request: Request, principal: Principal | None = allow("public")):
    _check_format(fmt)
    report = intake.parse_citizen_report(await _fields(request))
    actor = actor_of(principal) if principal is not None else Actor("citizen")
    # Anonymous citizens are limited per address (staff and paired devices are not).
    client = (request.client.host if request.client else "unknown") if principal is None else None
    done = await run_in_threadpool(intake.submit_citizen_report, engine_of(request), actor, report, None, client)
    return _render(fmt, "service_requests", "request",
                   [{"service_request_id": done.id, "service_notice": done.notice, "account_id": None}],
                   status=201)


@router.get(P + "/requests/{service_request_id}.{fmt}", response_class=Response, responses=_DOC,
            summary="Open311: one request's status / 诉求状态")
def get_request(service_request_id: str, fmt: str, request: Request, _: Principal | None = allow("public")):
    _check_format(fmt)
    if not re.fullmatch(r"[0-9]{1,18}", service_request_id):
        raise Open311Error(404, f"no service request {service_request_id[:40]!r}")
    engine = engine_of(request)
    with engine.transaction(write=False) as s:
        found = intake.find_requests(s, intake.RequestQuery(ids=[int(service_request_id)]), engine.clock())
    if not found:
        raise Open311Error(404, f"no service request {service_request_id}")
    return _render(fmt, "service_requests", "request", found)
