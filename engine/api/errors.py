"""One error shape for every failure: {"error": code, "message": text, "errors": {field: ...}}.

A client's mistake is a ClientError (engine.runtime.errors) and answers its own 4xx with a
clear message; bodies over the limit are a 413. A process that cannot go on is the server's
problem: a 500 that names the incident, never the process's internals. Anything else is a
bug: logged with its traceback and answered 500 (never mapped to a 4xx)."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError as DBAPIDataError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from engine.auth.service import AuthError
from engine.bpmn.xml import DefinitionError
from engine.runtime.errors import ClientError, ProcessError, TooManyRequests

__all__ = ["BodyLimit", "MAX_BODY", "Problem", "install", "problem", "process_problem"]

log = logging.getLogger("cityloop.api")
MAX_BODY = 16 * 1024 * 1024



class Problem(BaseModel):
    """The one error shape, as `problem()` builds it (documented for every 4xx/5xx answer in
    the OpenAPI document by engine.api.openapi). Some answers add a field of their own, e.g.
    `message_zh` on the sync routes."""
    model_config = ConfigDict(extra="allow", title="Problem")
    error: str = Field(description="machine-readable code, e.g. not_found, invalid, conflict, rate_limited")
    message: str = Field(description="what went wrong, for people")
    errors: dict[str, Any] | None = Field(default=None, description="per field (or element): what is wrong with it")


def problem(status: int, code: str, message: str, errors: dict | None = None, headers=None) -> JSONResponse:
    body = {"error": code, "message": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        return problem(exc.status, exc.code, str(exc), getattr(exc, "errors", None), headers)

    @app.exception_handler(ProcessError)
    async def process_failed(request: Request, exc: ProcessError):
        # (only when nothing of the request could be kept: see engine.runtime.incidents)
        log.error("process error on %s %s: %s", request.method, request.url.path, exc)
        return process_problem(exc)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError):
        return problem(401, exc.code, str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(DefinitionError)
    async def definition_error(request: Request, exc: DefinitionError):
        return problem(422, "invalid_definition", str(exc),
                       {"problems": [{"file": exc.source, "element": el, "message": msg} for el, msg in exc.problems]})

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError):
        errors = {}
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")) or "body"
            errors[where] = err.get("msg", "invalid")
        return problem(422, "invalid", "the request does not match what this endpoint takes", errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return problem(exc.status_code, {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error"),
                       str(exc.detail))

    @app.exception_handler(DBAPIError)
    async def database_unavailable(request: Request, exc: DBAPIError):
        if not exc.connection_invalidated:
            raise exc
        # the database dropped this pooled connection (restart, failover, idle timeout); the
        # transaction never committed and the pool is renewed: the client tries again
        log.warning("database connection lost: %s", str(exc.orig).split("\n")[0])
        return problem(503, "database_unavailable", "the database connection was lost; nothing was changed, try "
                       "again / 数据库连接中断，未做任何更改，请重试", headers={"Retry-After": "1"})

    @app.exception_handler(DBAPIDataError)
    async def database_refused_value(request: Request, exc: DBAPIDataError):
        # e.g. a NUL byte or an out-of-range number that got as far as the database
        return problem(400, "bad_request", "a value in this request cannot be stored or searched for")

    @app.exception_handler(PoolTimeout)
    async def overloaded(request: Request, exc: PoolTimeout):
        # every database connection of this worker stayed busy: nothing was written, try again
        log.warning("database connection pool exhausted: %s", exc)
        return problem(503, "overloaded", "the server is busy; nothing was changed, try again shortly / "
                       "服务器繁忙，未做任何更改，请稍后重试", headers={"Retry-After": "2"})

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect):
        # the device lost its connection before its whole body arrived: nothing was read or
        # written, and nobody is left to answer (a tablet resends its outbox when it can)
        log.info("client went away mid-request: %s %s", request.method, request.url.path)
        return problem(400, "client_disconnected", "the request body was cut off before it arrived")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        # A bug. Starlette re-raises it after this answer, so the server logs the traceback.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return problem(500, "internal_error", "something went wrong on the server; it has been logged "
                       "/ 服务器内部错误，已记录")


def process_problem(exc: ProcessError) -> JSONResponse:
    """A process step failed and nothing could be kept: the caller is not to blame, and the
    designer's expression text is not theirs to see (administrators find it in the incident)."""
    where = f" (incident {exc.incident})" if exc.incident else ""
    return problem(500, "process_error", f"the server could not take the process's next step{where}; nothing was "
                   "kept, try again later / 服务器无法执行流程的下一步，未保存，请稍后重试")


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes (declared or streamed)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0

        async def counting():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counting, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = (b'{"error":"too_large","message":"request body over %d bytes"}' % limit)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
