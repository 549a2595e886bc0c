"""Field sync benchmark: simulated tablets over real HTTP against the real server (uvicorn,
2 workers), on PostgreSQL and SQLite.

    .venv/bin/python -m bench.sync_push [--sqlite] [--pg [URL]] [--devices 500] [--completions 20]
                                        [--photo-kb 200] [--concurrency 500]

Every device (a paired tablet of its own unit worker) has `--completions` open rectify tasks
(work orders seeded in-process first, untimed). At once, all devices then do what a tablet
does when it gets signal back: upload one distinct photo per completion (one PATCH creating
the upload on /sync/v1/attachments, hash verified by the server) and push one batch with all their
complete_task ops (each naming its photo). Prints a table: completions/s over the whole run
(uploads included), push latency per batch (p50/p95/p99), bytes sent per completion (request
lines, headers and bodies), and whether every op was acknowledged "applied" (also checked in
sync_op). A table, not assertions. Load goes only to 127.0.0.1. The PostgreSQL database is
wiped first (DROP SCHEMA public CASCADE): never point --pg at data you care about.

`--concurrency C` lets only C tablets sync at the same moment (the rest wait their turn). By
Little's law one tablet's sync takes about C x completions / throughput, and its push queues
behind the others' work: with all 500 at once at ~150 completions/s that is ~65 s per tablet
whatever the code does, so a push p95 under 2 s needs C of about 25 (measured: 1.3 s)."""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

import httpx
from sqlalchemy import func, select
from sqlmodel import Session

from bench.http_api import PG_DEFAULT, UNITS, pct, reset_pg
from engine.auth import service
from engine.clock import utcnow
from engine.db.models import Instance, OpenTask
from engine.domain import workorders
from engine.domain.models import Staff, Unit
from engine.runtime.errors import Actor
from engine.system import build

DISPATCHER = Actor("dispatcher1", {"dispatcher"})


def prepare(url: str, devices: int, per_device: int) -> list[tuple[str, list[tuple[str, int]]]]:
    """Units, one unit worker with a paired tablet per device, and per_device open rectify
    tasks each. Returns [(device token, [(task id, instance version), ...]), ...]."""
    engine = build(url)
    now = utcnow()
    with Session(engine.db) as s:
        for code in UNITS:
            s.add(Unit(code=code, name=code, name_zh=code, kind="bench"))
        s.flush()
        s.add(Staff(id="dispatcher1", name="dispatcher1", role="dispatcher"))
        s.add(Staff(id="admin1", name="admin1", role="admin"))
        for i in range(devices):
            s.add(Staff(id=f"tab{i:04d}", name=f"Field worker {i}", role="unit_worker", unit_code="clean-east"))
        s.commit()
    tokens = []
    for i in range(devices):
        with engine.transaction() as s:
            device, code = service.create_device(s, f"tablet {i}", "tablet", f"tab{i:04d}", "admin1", now)
        with engine.transaction() as s:
            tokens.append(service.pair(s, device.id, code, now))
    for _ in range(devices * per_device):
        workorders.report(engine, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng",
                          description="bench")
    with engine.transaction(write=False) as s:
        tasks = s.exec(select(OpenTask.id, Instance.version).join(Instance, Instance.id == OpenTask.instance_id)
                       .where(OpenTask.name == "Task_rectify").order_by(OpenTask.instance_id)).all()
    engine.db.dispose()
    if len(tasks) < devices * per_device:
        raise RuntimeError(f"seeded {len(tasks)} rectify tasks, wanted {devices * per_device}")
    return [(tokens[i], [tuple(t) for t in tasks[i * per_device:(i + 1) * per_device]]) for i in range(devices)]


class SyncServer:
    """uvicorn with 2 workers, as bench.http_api.Server, with the settings 500 tablets syncing at
    once need: a listen backlog for them all and keep-alive longer than a tablet's pause."""

    def __init__(self, url: str, data_dir: str, workers: int = 2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": url, "CITYLOOP_SCHEDULER": "1", "CITYLOOP_DATA": data_dir}
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "engine.api.app:create_app", "--factory",
                                      "--workers", str(workers), "--host", "127.0.0.1", "--port", str(self.port),
                                      "--backlog", "4096", "--timeout-keep-alive", "60",
                                      "--log-level", "warning", "--no-access-log"],
                                     env=env, stdout=open(os.path.join(data_dir, "server.log"), "wb"),
                                     stderr=subprocess.STDOUT)
        self.log = os.path.join(data_dir, "server.log")
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


class Meter:
    """Bytes the clients put on the wire: request line, headers and body."""

    def __init__(self):
        self.bytes = 0

    async def on_request(self, request: httpx.Request) -> None:
        head = len(request.method) + len(request.url.raw_path) + len(b" HTTP/1.1\r\n") + 2
        head += sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
        self.bytes += head + len(request.content)


async def _send(out: dict, call, *args, **kw) -> httpx.Response:
    """A request, sent again after a transport error (all of these requests are idempotent)."""
    for attempt in range(5):
        try:
            return await call(*args, **kw)
        except httpx.TransportError as exc:
            out["retries"] += 1
            if attempt == 4:
                raise
            await asyncio.sleep(0.2 * 2 ** attempt)
            last = exc
    raise last


async def _upload(client: httpx.AsyncClient, head: dict, data: bytes, out: dict) -> str | None:
    """As sync.uploads_client.upload does it: a photo this small in one request, else (or after
    a failure) ask the offset and send the rest."""
    sha = hashlib.sha256(data).hexdigest()
    try:
        r = await client.patch(f"/sync/v1/attachments/{sha}", content=data, headers={
            **head, "Upload-Offset": "0", "Upload-Length": str(len(data)), "Upload-Type": "image/jpeg"})
        if r.status_code == 200 and r.json()["complete"]:
            return sha
    except httpx.TransportError:
        out["retries"] += 1
    for _ in range(5):
        r = await _send(out, client.post, "/sync/v1/attachments", headers=head,
                        json={"sha256": sha, "size": len(data), "content_type": "image/jpeg"})
        if r.status_code not in (200, 201):
            break
        state = r.json()
        if state["complete"]:
            return sha
        try:
            r = await client.patch(f"/sync/v1/attachments/{sha}", content=data[state["offset"]:],
                                   headers={**head, "Upload-Offset": str(state["offset"])})
        except httpx.TransportError:
            out["retries"] += 1
            continue  # ask the offset again and go on from there
        if r.status_code == 200 and r.json()["complete"]:
            return sha
        if r.status_code != 409:
            break
    out["errors"].append(f"upload {r.status_code}: {r.text[:120]}")
    return None


async def _device(client: httpx.AsyncClient, token: str, tasks: list[tuple[str, int]], photo_bytes: int,
                  base: bytes, gate: asyncio.Semaphore, out: dict) -> None:
    async with gate, client:
        await _sync_device(client, token, tasks, photo_bytes, base, out)


async def _sync_device(client: httpx.AsyncClient, token: str, tasks: list[tuple[str, int]], photo_bytes: int,
                       base: bytes, out: dict) -> None:
    head = {"Authorization": f"Bearer {token}"}
    ops = []
    for task_id, version in tasks:
        data = b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes + base[:photo_bytes - 20]   # a distinct photo each
        u0 = time.perf_counter()
        sha = await _upload(client, head, data, out)
        if sha is None:
            continue
        out["upload"].append(time.perf_counter() - u0)
        ops.append({"op_id": str(uuid.uuid4()), "kind": "complete_task", "task_id": task_id,
                    "based_on_version": version, "payload": {"action": "fixed", "after_photos": [sha]},
                    "device_time": datetime.now(timezone.utc).isoformat(), "attachments": [sha],
                    "gps": {"lat": 31.2, "lon": 121.4, "accuracy": 8}})
    body = {"protocol": 1, "sent_at": datetime.now(timezone.utc).isoformat(), "ops": ops}
    t0 = time.perf_counter()
    r = await _send(out, client.post, "/sync/v1/push", headers=head, json=body)
    out["batch"].append(time.perf_counter() - t0)
    if r.status_code != 200:
        out["errors"].append(f"push {r.status_code}: {r.text[:120]}")
        return
    for v in r.json()["verdicts"]:
        key = v["verdict"] if v["verdict"] != "duplicate" else f"duplicate of {v.get('original')}"
        out["verdicts"][key] = out["verdicts"].get(key, 0) + 1


async def _run_devices(base_url: str, plan, photo_bytes: int, concurrency: int) -> dict:
    meter = Meter()
    out = {"batch": [], "upload": [], "errors": [], "verdicts": {}, "retries": 0}
    base = os.urandom(photo_bytes)
    gate = asyncio.Semaphore(concurrency)
    # One client (one connection) per tablet, as on the devices: a single shared pool of 500
    # connections costs httpx far more CPU per request. Plain HTTP to 127.0.0.1: no TLS context.
    clients = [httpx.AsyncClient(base_url=base_url, timeout=300, verify=False,
                                 limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                 event_hooks={"request": [meter.on_request]}) for _ in plan]
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_device(client, token, tasks, photo_bytes, base, gate, out)
                           for client, (token, tasks) in zip(clients, plan)))
    out["wall"], out["client_cpu"] = time.perf_counter() - t0, time.process_time() - cpu0
    out["bytes"] = meter.bytes
    return out


def _applied_in_db(url: str) -> int:
    from sync.server.models import SyncOp
    engine = build(url, deploy_bundled=False)
    with engine.transaction(write=False) as s:
        n = s.scalar(select(func.count()).select_from(SyncOp).where(SyncOp.verdict == "applied"))
    engine.db.dispose()
    return n


def run(backend: str, url: str, args) -> tuple:
    data_dir = tempfile.mkdtemp(prefix="cityloop-syncbench-")
    try:
        t = time.perf_counter()
        plan = prepare(url, args.devices, args.completions)
        print(f"  {backend}: seeded {args.devices} tablets x {args.completions} open tasks in "
              f"{time.perf_counter() - t:.1f} s")
        server = SyncServer(url, data_dir)
        try:
            out = asyncio.run(_run_devices(server.base, plan, args.photo_kb * 1024, args.concurrency))
        finally:
            server.stop()
        total = args.devices * args.completions
        applied = out["verdicts"].get("applied", 0) + out["verdicts"].get("duplicate of applied", 0)
        stored = _applied_in_db(url)
        if stored != applied:
            print(f"  {backend}: {applied} ops answered applied but {stored} recorded so in sync_op")
        for e in out["errors"][:5]:
            print(f"  {backend}: error: {e}")
        ms = [x * 1000 for x in out["batch"]]
        all_acked = applied == total and stored == total and not out["errors"]
        with open(server.log, "rb") as f:
            log = f.read().decode(errors="replace")
        if "Traceback" in log:
            errors = log.split("Traceback")[1:]
            where = {}
            for e in errors:
                ours = [ln.strip() for ln in e.splitlines() if ln.strip().startswith('File "') and "/site-packages/" not in ln]
                raised = [ln for ln in e.splitlines() if re.match(r"^[\w.]+(Error|Exception|Exit)\b", ln)]
                key = (ours[-1] if ours else "?") + " -> " + (raised[-1][:110] if raised else "?")
                where[key] = where.get(key, 0) + 1
            print(f"  {backend}: the server logged {len(errors)} errors:")
            for key, n in sorted(where.items(), key=lambda kv: -kv[1])[:4]:
                print(f"    {n} x {key}")
        ups = [x * 1000 for x in out["upload"]]
        print(f"  {backend}: photo upload p50 {statistics.median(ups):.0f} ms, p95 {pct(ups, 0.95):.0f} ms;"
              f" {out['retries']} requests sent again after a transport error; the simulated tablets themselves used "
              f"{out['client_cpu']:.0f} s of CPU ({out['client_cpu'] / out['wall'] * 100:.0f}% of one core)")
        return (backend, args.devices, total, applied, applied / out["wall"], statistics.median(ms) if ms else float("nan"),
                pct(ms, 0.95), pct(ms, 0.99), out["bytes"] / max(1, total), all_acked, out["wall"],
                {k: v for k, v in out["verdicts"].items() if k != "applied"})
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sqlite", action="store_true")
    p.add_argument("--pg", nargs="?", const=PG_DEFAULT)
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--completions", type=int, default=20, help="completions per device (one batch)")
    p.add_argument("--photo-kb", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=500, help="devices syncing at the same moment")
    args = p.parse_args(argv)
    backends = []
    if args.pg or not args.sqlite:
        url = args.pg or PG_DEFAULT
        if reset_pg(url):
            backends.append(("postgres", url))
    if args.sqlite or not args.pg:
        backends.append(("sqlite", f"sqlite:///{tempfile.mkdtemp(prefix='cityloop-syncbench-')}/bench.db"))
    print(f"cityloop sync benchmark: uvicorn --workers 2 on this {os.cpu_count()}-core machine; "
          f"{args.devices} simulated tablets ({args.concurrency} at once, asyncio + httpx in this process), "
          f"{args.completions} completions each with one {args.photo_kb} KB photo; all on 127.0.0.1")
    rows = [run(backend, url, args) for backend, url in backends]
    print(f"\n{'backend':9} {'devices':>7} {'completions':>11} {'applied':>8} {'per s':>7} {'batch p50 ms':>12} "
          f"{'p95 ms':>8} {'p99 ms':>8} {'bytes/completion':>16} {'all acked':>9} {'wall s':>7}")
    for b, dev, total, applied, rate, p50, p95, p99, per, acked, wall, other in rows:
        print(f"{b:9} {dev:7d} {total:11d} {applied:8d} {rate:7.1f} {p50:12.1f} {p95:8.1f} {p99:8.1f} {per:16.0f} "
              f"{'yes' if acked else 'NO':>9} {wall:7.1f}" + (f"  other verdicts: {other}" if other else ""))
    print("\nTargets (printed, not asserted): every op acknowledged, >= 200 completions/s, push p95 < 2000 ms per "
          "batch. Completions/s counts the whole sync (photo uploads included).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
