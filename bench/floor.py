"""The floor under bench.http_api: what a FastAPI route that does (almost) nothing answers
on this machine, with the same server layout and the same load generator.

    .venv/bin/python -m bench.floor [--pg URL] [--requests 6000] [--clients 16]

Two uvicorn workers serve a minimal app (below, no cityloop code) on PostgreSQL; 16 client
threads in this process post a small JSON body on keep-alive connections, as
bench.http_api does. Routes: no database; one `SELECT 1` in a transaction; ten of them
through SQLAlchemy; ten on the driver's cursor. A task completion needs about a dozen
statements plus authentication, the BPMN step and its JSON, so the ten-statement rows bound
what bench.http_api can show here; bench.http_api measures the one-SELECT route in its own
run on PostgreSQL (`measure`) and prints its completions/s as a share of it. A table, not
assertions."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.http_client import LeanClient

__all__ = ["ONE_SELECT", "ROUTES", "create_app", "main", "measure"]

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
ONE_SELECT = "/one"
ROUTES = (("/plain", "no database"), (ONE_SELECT, "1 SELECT 1, SQLAlchemy"), ("/ten", "10 x SELECT 1, SQLAlchemy"),
          ("/ten-cursor", "10 x SELECT 1, driver cursor"))


def create_app():
    """The minimal app (uvicorn --factory), as many threads per worker as cityloop's
    (CITYLOOP_THREADS, engine.settings)."""
    from contextlib import asynccontextmanager

    import anyio.to_thread
    from fastapi import FastAPI
    from sqlalchemy import create_engine, text

    from engine import settings
    from engine.db.session import normalize_url
    db = create_engine(normalize_url(os.environ["FLOOR_DATABASE_URL"]), pool_size=10)

    @asynccontextmanager
    async def lifespan(app):
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.current().threads
        yield
        db.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/plain")
    def plain(body: dict):
        return {"ok": True}

    @app.post("/one")
    def one(body: dict):
        with db.begin() as conn:
            return {"v": conn.execute(text("SELECT 1")).scalar()}

    @app.post("/ten")
    def ten(body: dict):
        with db.begin() as conn:
            for _ in range(10):
                conn.execute(text("SELECT 1")).scalar()
        return {"ok": True}

    @app.post("/ten-cursor")
    def ten_cursor(body: dict):
        with db.connect() as conn:
            raw = conn.connection.driver_connection
            with raw.transaction():
                cur = raw.cursor()
                for _ in range(10):
                    cur.execute("SELECT 1", prepare=True)
                    cur.fetchone()
        return {"ok": True}

    return app


def measure(url: str, paths: tuple[str, ...] | None = None, requests: int = 6000,
            clients: int = 16) -> list[tuple[str, str, float]]:
    """Start the floor server on `url` (2 workers), load each route in `paths` (all when None;
    300 warm-up requests, then `requests` timed ones from `clients` threads) and stop it:
    (path, what, requests/s) per route. bench.http_api calls it for the one-SELECT route in
    its own run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.floor:create_app", "--factory",
                               "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
                               "--log-level", "warning", "--no-access-log"],
                              env={**os.environ, "FLOOR_DATABASE_URL": url})
    http = LeanClient(f"http://127.0.0.1:{port}")
    rates = []
    try:
        for _ in range(300):
            try:
                if httpx.post(f"http://127.0.0.1:{port}/plain", json={}, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the floor server did not start")
        body = {"data": {"decision": "approve"}}
        for path, what in ROUTES:
            if paths is not None and path not in paths:
                continue

            def call(_, path=path):
                r = http.post(path, json_body=body)
                if r.status != 200:
                    raise RuntimeError(f"{path} answered {r.status}: {r.body[:200]!r}")
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(call, range(300)))            # warm-up: connections, prepared statements
                t0 = time.perf_counter()
                list(pool.map(call, range(requests)))
            rates.append((path, what, requests / (time.perf_counter() - t0)))
    finally:
        server.terminate()
        server.wait(30)
    return rates


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=PG_DEFAULT)
    p.add_argument("--requests", type=int, default=6000)
    p.add_argument("--clients", type=int, default=16)
    args = p.parse_args(argv)
    print(f"FastAPI floor: uvicorn --workers 2 on this {os.cpu_count()}-core machine, "
          f"{args.clients} client threads in this process, PostgreSQL at {args.pg}\n")
    print(f"{'route':32} {'requests/s':>10}")
    for _, what, rate in measure(args.pg, requests=args.requests, clients=args.clients):
        print(f"{what:32} {rate:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
