"""The one server: the case engine behind FastAPI (OpenAPI docs at /docs).

`create_app()` builds the engine from DATABASE_URL (embedded SQLite by default) when none
is given. Run several workers against one PostgreSQL with
`uvicorn engine.api.app:create_app --factory --workers N`; each runs the timer sweep, and
SKIP LOCKED keeps them from firing a timer twice."""
from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from engine import settings
from engine.api import console, errors, openapi
from engine.api.routes import (
    admin,
    attendance,
    auth,
    camera,
    checkins,
    dashboards,
    gas,
    incidents,
    mapdata,
    open311,
    processes,
    sync_uploads,
    tasks,
    units,
    workorders,
)
from engine.api.routes import badges as badge_routes
from engine.api.routes import sync as sync_routes

__all__ = ["ROUTERS", "TAGS", "WorkerHeader", "create_app"]

log = logging.getLogger("cityloop.api")
# Requests are matched against routes in this order: the busiest (task completions, sync
# pushes and photo uploads) first. (Those under /api/v1/attendance keep their order.)
ROUTERS = tuple(m.router for m in (tasks, sync_routes, sync_uploads, auth, admin, workorders, processes, open311,
                                   camera, gas, attendance, checkins, dashboards, badge_routes, incidents,
                                   units, mapdata, console))
# The docs list the tags in this order, whatever the routers' order.
TAGS = [{"name": t} for t in ("auth", "administration", "work-orders", "tasks", "processes", "incidents", "open311",
                              "camera", "gas", "attendance", "dashboards", "sync", "console")]


class WorkerHeader:
    """Pure ASGI middleware naming the process that answered (X-Cityloop-Worker); cheaper
    than an @app.middleware function, which wraps every response in extra tasks."""

    def __init__(self, app):
        self.app, self.pid = app, str(os.getpid()).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-cityloop-worker", self.pid)]
            await send(message)

        await self.app(scope, receive, send_with_header)


def _tune_worker() -> None:
    """Route handlers run in anyio's thread pool, 40 threads by default. With two cores, a
    worker gains nothing from more than a few threads running Python at once: they only queue
    on the GIL, and each thread back from a database round trip waits its turn again. Measured
    with bench.http_api on PostgreSQL (2 workers, 16 clients): 8 threads gave 398 and 381
    completions/s where 40 gave 320 and 312; on 2026-12-05, 1,200 completions a run, 2 to 4
    threads gave 443-485/s (p95 43-53 ms, 2.8-2.9 ms of worker CPU per completion) where 6 and 8
    gave 358-403/s (p95 56-69 ms, 3.1-3.5 ms). A database farther away (more time per round
    trip) may want more. CITYLOOP_THREADS sets it."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.current().threads


def create_app(engine=None, *, scheduler: bool | None = None, demo: bool | None = None) -> FastAPI:
    config = settings.current()
    scheduler = config.scheduler if scheduler is None else scheduler
    demo = config.demo if demo is None else demo

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal engine
        if engine is None:
            from engine.system import build
            engine = build()
        if demo:
            from engine.demo import is_seeded, seed_database
            if not is_seeded(engine):
                seed_database(engine.db.url.render_as_string(hide_password=False))
        app.state.engine = engine
        _tune_worker()
        sched = None
        if scheduler:
            from engine.scheduler import start_scheduler
            from engine.storage import app_store
            sched = start_scheduler(engine, photos_exist=lambda sha: app_store(app).exists(sha))
        try:
            yield
        finally:
            if sched is not None:
                sched.shutdown(wait=False)

    app = FastAPI(title="cityloop", version="0.1.0", lifespan=lifespan, openapi_tags=TAGS,
                  description="City operations case management: work orders, gas safety, crew attendance.")
    errors.install(app)
    app.add_middleware(errors.BodyLimit)
    app.add_middleware(WorkerHeader)
    for router in ROUTERS:
        app.include_router(router)
    openapi.install(app)
    console.install(app)
    if engine is not None:
        app.state.engine = engine
    return app
