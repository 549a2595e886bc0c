"""The OpenAPI document tells the whole truth: every status each route can answer, each with
the one error shape (engine.api.errors.Problem) and the headers that come with it.

Most statuses follow from what a route is, so they are derived here, not written on every
decorator:

- 401 everywhere: a route that is not public needs a valid token, and even a public one
  refuses a token that is sent and not valid (WWW-Authenticate: Bearer);
- 403 where the route's permission (`allow(...)`, engine.api.policy) leaves out some role;
- 404 where the path names something (an object, or an Open311 format);
- 422 (FastAPI's request validation, answered in the one shape, not as HTTPValidationError)
  where the route takes any parameter or body;
- 400 where it takes input: a value the database refuses (a NUL character, say), or a body
  cut off on the way;
- 413 where it takes a body (errors.BodyLimit), 503 everywhere (the database connection was
  lost, or every connection stayed busy), both with Retry-After where it applies.

What a route's code raises beyond that (a 409, a 429, a 415, a 422 of a route without
parameters, a second success status) is in the explicit table `SPECIFIC`, checked by the
property-based run in tests/api/test_openapi_contract.py. Open311 routes answer errors in the
GeoReport shape (JSON or XML) when the URL names a format, and 400 where others say 422.

`install(app)` makes `app.openapi()` build this document (FastAPI's documented way to extend
its schema); it is built once, on the first request for it."""
from __future__ import annotations

import json
from typing import Any, Iterator

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from engine.api.errors import MAX_BODY, Problem
from engine.api.routes.gas import ImportReport
from engine.auth.policy import ANONYMOUS, DEVICES, PERMISSIONS, STAFF

__all__ = ["install", "build", "declared_statuses", "permission_of", "api_routes", "Problem", "SPECIFIC"]

PROBLEM_REF = "#/components/schemas/Problem"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
OPEN311 = "/open311/v2/"


class GeoReportError(BaseModel):
    code: int = Field(description="the HTTP status")
    description: str


class ImportRejected(ImportReport):
    """A household import refused as a whole: the report, with the error code and message."""
    error: str
    message: str


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "required": True,
                                "schema": {"type": "integer", "minimum": 0}}}
_HEADERS = {401: {"WWW-Authenticate": {"description": "Bearer", "required": True, "schema": {"type": "string"}}},
            429: _RETRY_AFTER, 503: _RETRY_AFTER}
_UPLOAD_409_HEADERS = {
    "Upload-Offset": {"description": "where the upload stands (offset mismatch)", "schema": {"type": "integer"}},
    "Retry-After": {"description": "seconds to wait (the upload is busy)", "schema": {"type": "integer"}}}

# Route-specific statuses: (method, path) -> {status: description}. A 2xx entry is a second
# success status with the same body as the route's own.
_UPLOAD_REFUSALS = {404: "no such upload in progress (for you)",
                    409: "Upload-Offset is not where the upload stands, the upload is busy, or an upload of this "
                         "sha256 exists with another size or type",
                    413: "larger than allowed", 415: "not a JPEG, PNG or WebP image",
                    422: "not an attachment id, or the finished bytes do not hash to sha256 (upload discarded)",
                    429: "too many unfinished uploads on this device"}
SPECIFIC: dict[tuple[str, str], dict[int, str]] = {
    # auth
    ("POST", "/api/v1/auth/login"): {401: "wrong user name or password, or the account is disabled",
                                     429: "too many failed log-ins: wait Retry-After seconds"},
    ("POST", "/api/v1/auth/pair"): {401: "pairing code wrong, used or expired, or the device is revoked"},
    # administration
    ("POST", "/api/v1/staff"): {409: "a staff member with this id exists", 422: "unknown role or unit"},
    ("POST", "/api/v1/devices"): {422: "unknown kind, or a tablet without an owner on the staff"},
    # work orders
    ("POST", "/api/v1/work-orders"): {422: "unknown address code"},
    ("POST", "/api/v1/work-orders/{number}/comments"): {422: "a comment needs some text"},
    ("POST", "/api/v1/work-orders/{number}/attachments"): {413: "over 10 MiB", 415: "not a JPEG, PNG or WebP image",
                                                           422: "the file cannot be stored (empty, say)"},
    # tasks
    ("POST", "/api/v1/tasks/{task_id}/claim"): {403: "the task is not assigned to you or your groups",
                                                409: "the task is not open, or claimed by someone else"},
    ("POST", "/api/v1/tasks/{task_id}/release"): {403: "the task is not assigned to you or your groups",
                                                  409: "the task is not open, or not claimed by you"},
    ("POST", "/api/v1/tasks/{task_id}/complete"): {403: "the task is not assigned to you or your groups",
                                                   409: "already completed, claimed by someone else, or the "
                                                        "instance moved on",
                                                   422: "form errors, keyed by field"},
    ("POST", "/api/v1/tasks/{task_id}/reassign"): {403: "a unit leader reassigns only within their unit",
                                                   409: "the task is not open",
                                                   422: "the new assignee does not work on tasks"},
    # processes
    ("POST", "/api/v1/processes"): {422: "a file was refused: the problems name the file and element"},
    # incidents
    ("POST", "/api/v1/incidents/{incident_id}/retry"): {409: "already closed, or the parked step no longer fits its "
                                                             "case (resolve it instead)"},
    ("POST", "/api/v1/incidents/{incident_id}/resolve"): {409: "already closed"},
    # camera
    ("POST", "/api/v1/camera/detections"): {422: "time out of range, unknown category or snapshot"},
    ("GET", "/api/v1/camera/detections"): {404: "no such work order"},
    # gas
    ("GET", "/api/v1/gas/households"): {403: "only the gas office's units see gas households"},
    ("GET", "/api/v1/gas/due"): {403: "only the gas office's units see gas households"},
    ("GET", "/api/v1/gas/households/{household_id}"): {403: "only the gas office's units see gas households"},
    ("GET", "/api/v1/gas/households/{household_id}/inspections"): {
        403: "only the gas office's units see gas households"},
    ("POST", "/api/v1/gas/households/{household_id}/inspections"): {
        403: "only the household's deliverer starts an inspection", 409: "an inspection is already open"},
    ("POST", "/api/v1/gas/households/import"): {409: "households changed while importing; nothing was written",
                                                413: "file over 5 MiB", 415: "not CSV (JSON was sent)",
                                                422: "rows with errors (nothing written in all-or-nothing mode)"},
    # attendance
    ("POST", "/api/v1/attendance/contracts"): {409: "the contract exists", 422: "no such unit"},
    ("POST", "/api/v1/attendance/crews"): {409: "the crew exists", 422: "no such contract or supervisor"},
    ("POST", "/api/v1/attendance/cleaners"): {409: "the cleaner exists", 422: "no such crew, or the badge is taken"},
    ("POST", "/api/v1/attendance/badges"): {409: "the badge exists", 422: "bad secret or iBeacon identity"},
    ("POST", "/api/v1/attendance/shifts"): {200: "the same shift again (planning is idempotent)",
                                            404: "no such crew (or not one of yours)",
                                            409: "planned at the same moment by someone else",
                                            422: "the grace period would be over, or too far ahead"},
    ("POST", "/api/v1/attendance/sightings"): {409: "the shifts were busy; send the batch again"},
    ("GET", "/api/v1/attendance/badge-keys"): {404: "no such crew (or not one of yours)",
                                               409: "a badge key cannot be read with this server's key"},
    # sync
    ("POST", "/sync/v1/pull"): {400: "not a pull request, bad cursor, or another protocol version",
                                413: "the message is too large"},
    ("POST", "/sync/v1/push"): {400: "not a push batch, or another protocol version",
                                413: "too large or too many ops"},
    ("POST", "/sync/v1/conflicts/{conflict_id}/resolve"): {409: "already resolved"},
    ("POST", "/sync/v1/attachments"): {200: "the upload exists already (or the photo is stored)", **_UPLOAD_REFUSALS},
    ("GET", "/sync/v1/attachments/{sha256}"): {k: _UPLOAD_REFUSALS[k] for k in (404, 422)},
    ("DELETE", "/sync/v1/attachments/{sha256}"): {k: _UPLOAD_REFUSALS[k] for k in (404, 409, 422)},
    ("PATCH", "/sync/v1/attachments/{sha256}"): {400: "no Upload-Offset header", **_UPLOAD_REFUSALS},
    # Open311
    ("POST", "/open311/v2/requests.{fmt}"): {429: "too many reports from this address: wait Retry-After seconds"},
}

# Success bodies whose media type the route's response class does not tell FastAPI.
_MEDIA = {("GET", "/api/v1/gas/households/import/template"): "text/csv"}

_GENERIC = {
    400: "a value in the request cannot be stored or searched for (e.g. a NUL character), or the body was cut off",
    401: "no valid token: log in (or pair) and send Authorization: Bearer <token>",
    403: "your role may not do this",
    404: "not found (or not visible to you)",
    413: f"the request body is over {MAX_BODY} bytes",
    422: "the request does not match what this endpoint takes; `errors` names the fields",
    503: "the database connection was lost or every connection is busy; nothing was changed, try again",
}
_PUBLIC_401 = "the token sent is not valid (this route needs none: leave Authorization out)"


def permission_of(dependant) -> str | None:
    """The permission a route declares through `allow(...)` (None if it declares none)."""
    for dep in dependant.dependencies:
        found = getattr(dep.call, "permission", None) or permission_of(dep)
        if found:
            return found
    return None


def api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """All API routes of the app, those of included routers too."""
    stack = list(app.routes)
    while stack:
        route = stack.pop(0)
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            stack.extend(route.original_router.routes)


def declared_statuses(route: APIRoute, method: str) -> dict[int, str]:
    """Every status other than the route's own success that this route can answer, with why."""
    permission = permission_of(route.dependant)
    if permission is None:
        raise LookupError(f"{method} {route.path} declares no permission through allow(...)")
    d = route.dependant
    validates = bool(d.path_params or d.query_params or d.header_params or d.cookie_params or route.body_field)
    out = {401: _PUBLIC_401 if ANONYMOUS in PERMISSIONS[permission] else _GENERIC[401], 503: _GENERIC[503]}
    if (STAFF | DEVICES) - PERMISSIONS[permission]:
        out[403] = _GENERIC[403]
    if d.path_params:
        out[404] = _GENERIC[404]
    if validates or method in BODY_METHODS:
        out[400] = _GENERIC[400]
    if validates:
        out[422] = _GENERIC[422]
    if method in BODY_METHODS:
        out[413] = _GENERIC[413]
    for status, why in SPECIFIC.get((method, route.path), {}).items():
        out[status] = why if status not in out or status >= 500 or status < 300 else f"{out[status]}; {why}"
    if route.path.startswith(OPEN311):
        if 422 in out:   # Open311 answers bad input with a 400, as GeoReport v2 says
            out[400] = f"{out[400]}; {out.pop(422)}"
        out.pop(403, None)
    return dict(sorted(out.items()))


def _error_content(route: APIRoute, status: int) -> dict[str, Any]:
    if route.path.startswith(OPEN311) and status not in (413, 503):
        schema = {"anyOf": [{"type": "array", "items": {"$ref": "#/components/schemas/GeoReportError"}},
                            {"$ref": PROBLEM_REF}],
                  "description": "GeoReport errors when the URL names a format, else the server's Problem"}
        return {"application/json": {"schema": schema}, "text/xml": {"schema": {"type": "string"}}}
    if (route.path, status) == ("/api/v1/gas/households/import", 422):
        return {"application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/ImportRejected"},
                                                          {"$ref": PROBLEM_REF}]}}}
    return {"application/json": {"schema": {"$ref": PROBLEM_REF}}}


def _declare(app: FastAPI, doc: dict) -> None:
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        for method in route.methods:
            op = doc["paths"][route.path_format][method.lower()]
            responses = op.setdefault("responses", {})
            own = str(route.status_code or 200)
            statuses = declared_statuses(route, method)
            if own != "200" and "200" in responses and 200 not in statuses:
                # a shared `responses=` documents the success as 200 where this route answers `own`
                success = responses.pop("200")
                responses[own] = {**responses.get(own, {}), **success}
            if route.path.startswith(OPEN311):   # any other format is a 404 (in the server's Problem shape)
                for param in op.get("parameters", []):
                    if param["in"] == "path" and param["name"] == "fmt":
                        param["schema"]["enum"] = ["json", "xml"]
            if (method, route.path) in _MEDIA:
                responses[own]["content"] = {_MEDIA[method, route.path]: {"schema": {"type": "string"}}}
            for key in [k for k in responses if k.isdigit() and int(k) >= 400 and int(k) not in statuses]:
                del responses[key]   # e.g. FastAPI's own 422 where the route answers bad input with a 400
            for status, why in statuses.items():
                key = str(status)
                if status < 300:
                    entry = responses.setdefault(key, {})
                    entry["description"] = entry.get("description") or why
                    if "content" not in entry and "content" in responses.get(own, {}):
                        entry["content"] = responses[own]["content"]
                    continue
                entry = responses.get(key, {})
                written = entry.get("description")
                responses[key] = entry = {
                    "description": written if written and written != "Validation Error" else why,
                    "content": _error_content(route, status)}
                headers = dict(_HEADERS.get(status, {}))
                if route.path.startswith("/sync/v1/attachments") and status == 409:
                    headers.update(_UPLOAD_409_HEADERS)
                if status == 429 and route.path.startswith("/sync/v1/attachments"):
                    headers = _RETRY_AFTER
                if headers:
                    entry["headers"] = headers
            op["responses"] = dict(sorted(responses.items()))


def _components(doc: dict) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, GeoReportError, ImportRejected):
        extra = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in extra.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[model.__name__] = extra
    for unused in ("HTTPValidationError", "ValidationError"):   # FastAPI's 422 schema, now replaced
        if f'"#/components/schemas/{unused}"' not in json.dumps(doc):
            schemas.pop(unused, None)
    doc["components"]["schemas"] = dict(sorted(schemas.items()))


def build(app: FastAPI) -> dict:
    doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                      summary=app.summary, description=app.description, routes=app.routes, tags=app.openapi_tags,
                      servers=app.servers)
    _declare(app, doc)
    _components(doc)
    return doc


def install(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json and /docs) serve the whole truth."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi
