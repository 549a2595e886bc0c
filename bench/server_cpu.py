"""Server CPU per request: one uvicorn worker, one client sending one request at a time.

    .venv/bin/python -m bench.server_cpu [--sqlite] [--pg [URL]] [--n 300] [--devices 20]

The throughput benchmarks (bench.http_api, bench.sync_push) load two cores with the server,
the database and the load generator at once, and on a shared machine their figures move by
a quarter from run to run. This one measures what a change to the server's code does: the
CPU time the worker process used (from /proc, user + system) divided by the requests it
answered, for each kind of request the field runs on:

- a work-order rectify completion and a review completion over /api/v1/tasks (user tokens);
- a sync push of 20 complete_task ops whose photos are not uploaded yet (acknowledged
  'waiting', device token);
- a 200 KB photo upload in one PATCH that releases nothing, and one that applies the op
  waiting for it.

On PostgreSQL the worker reaches the database through bench/pgwire.py, a proxy that reads the
protocol the driver sends: beside the CPU the table gives database round trips (the times the
server waited for PostgreSQL: each Sync, simple Query, or mid-pipeline Flush), statements
(Execute + Query messages) and parses (Parse messages: statements not prepared on that
connection) per request. The proxy hop adds to the wall ms (not to the server's CPU);
--direct leaves it out, and the round-trip columns empty.

Compare two commits by running it on each, alternately, more than once. A table, not
assertions. The PostgreSQL database is wiped first: never point --pg at data you care about."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

import httpx

from bench import http_api, sync_push
from bench.http_client import LeanClient
from bench.pgwire import Tally, WireProxy, figures
from bench.sync_tablet import Conn, upload

__all__ = ["main"]

PHOTO = 200 * 1024


class Worker:
    """One uvicorn worker, no scheduler, and the CPU it has used so far. `tally` counts the
    PostgreSQL messages it sends when it was given a proxy (bench/pgwire.py)."""

    def __init__(self, url: str, tally: Tally | None = None):
        self.tally = tally
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": url, "CITYLOOP_SCHEDULER": "0",
               "CITYLOOP_DATA": tempfile.mkdtemp(prefix="cityloop-cpu-")}
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "engine.api.app:create_app", "--factory",
                                      "--port", str(self.port), "--log-level", "warning", "--no-access-log"], env=env)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            try:
                if httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start")

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def measure(worker: Worker, requests: list, send) -> tuple[float, float, int, dict[str, float] | None]:
    """(server CPU ms, wall ms) per request, how many were sent, and the database round trips,
    statements and parses per request (None without a proxy)."""
    w0 = worker.tally.snapshot() if worker.tally else None
    c0, t0 = worker.cpu(), time.perf_counter()
    for r in requests:
        send(r)
    c1, t1 = worker.cpu(), time.perf_counter()
    wire = figures(w0, worker.tally.snapshot(), len(requests)) if worker.tally and w0 is not None else None
    n = max(1, len(requests))
    return (c1 - c0) / n * 1000, (t1 - t0) / n * 1000, len(requests), wire


def http_rows(url: str, n: int, proxy: WireProxy | None = None) -> list[tuple]:
    http_api.prepare(url, 40, 40)
    worker = Worker(proxy.url, proxy.tally) if proxy else Worker(url)
    try:
        with httpx.Client(base_url=worker.base, timeout=60) as c:
            heads = {u: {"Authorization": f"Bearer {http_api.token(c, u)}"}
                     for u in ("dispatcher1", "reviewer1", "worker.clean-east.1")}
            first = c.post("/api/v1/work-orders", headers=heads["dispatcher1"],
                           json={"category": "exposed_garbage", "area": "dongcheng", "description": "photo"}).json()
            photo = c.post(f"/api/v1/work-orders/{first['number']}/attachments", headers=heads["worker.clean-east.1"],
                           files={"file": ("after.png", http_api.tiny_png(), "image/png")},
                           data={"kind": "after"}).json()["sha256"]
        lean = LeanClient(worker.base)
        for _ in range(n):
            lean.post("/api/v1/work-orders", headers=heads["dispatcher1"],
                      json_body={"category": "exposed_garbage", "area": "dongcheng", "description": "cpu"})
        rows = []
        for who, what, data in (("worker.clean-east.1", "HTTP rectify completion", {"action": "fixed",
                                                                                   "after_photos": [photo]}),
                                ("reviewer1", "HTTP review completion", {"decision": "approve"})):
            ids, offset = [], 0
            while True:
                page = lean.get("/api/v1/tasks", params={"process": "work_order", "limit": 500, "offset": offset},
                                headers=heads[who]).json()
                ids += [t["id"] for t in page["items"]]
                if not page["has_more"]:
                    break
                offset += 500

            def complete(task_id, who=who, data=data):
                r = lean.post(f"/api/v1/tasks/{task_id}/complete", headers=heads[who], json_body={"data": data})
                if r.status != 200:
                    raise RuntimeError(f"completion answered {r.status}")
            rows.append((what, *measure(worker, ids, complete)))
        return rows
    finally:
        worker.stop()


def sync_rows(url: str, devices: int, proxy: WireProxy | None = None) -> list[tuple]:
    plan = sync_push.prepare(url, devices, 20)
    worker = Worker(proxy.url, proxy.tally) if proxy else Worker(url)
    out = {"retries": 0, "errors": []}
    base = os.urandom(PHOTO)
    try:
        conn = Conn(worker.port)
        pushes, waited, alone = [], [], []
        for token, tasks in plan:
            ops = []
            for task_id, version in tasks:
                data = b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes + base[:PHOTO - 20]
                sha = hashlib.sha256(data).hexdigest()
                waited.append((token, data))
                ops.append({"op_id": str(uuid.uuid4()), "kind": "complete_task", "task_id": task_id,
                            "based_on_version": version, "payload": {"action": "fixed", "after_photos": [sha]},
                            "attachments": [sha], "device_time": datetime.now(timezone.utc).isoformat(),
                            "gps": {"lat": 31.2, "lon": 121.4, "accuracy": 8}})
            pushes.append((token, json.dumps({"protocol": 1, "sent_at": datetime.now(timezone.utc).isoformat(),
                                              "ops": ops}).encode()))
            alone += [(token, b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes + base[:PHOTO - 20]) for _ in range(20)]

        def push(item):
            token, body = item
            status, _, reply = conn.call("POST", "/sync/v1/push", body, {"Authorization": f"Bearer {token}",
                                                                          "Content-Type": "application/json"}, out)
            if status != 200 or {v["verdict"] for v in json.loads(reply)["verdicts"]} != {"waiting"}:
                raise RuntimeError(f"push answered {status}: {reply[:200]!r}")

        def send_photo(item):
            token, data = item
            if upload(conn, f"Bearer {token}", data, out) is None:
                raise RuntimeError(f"upload failed: {out['errors'][-1:]}")
        push(pushes[0])             # (warm-up: first statements prepared, caches filled)
        send_photo(alone[0])
        return [("sync push of 20 waiting ops", *measure(worker, pushes[1:], push)),
                ("200 KB photo, nothing waiting", *measure(worker, alone[1:], send_photo)),
                ("200 KB photo applying its op", *measure(worker, waited, send_photo))]
    finally:
        worker.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sqlite", action="store_true")
    p.add_argument("--pg", nargs="?", const=http_api.PG_DEFAULT)
    p.add_argument("--n", type=int, default=300, help="work orders completed over HTTP (rectify, then review)")
    p.add_argument("--devices", type=int, default=20, help="tablets pushing 20 ops each (CPU is read in 10 ms ticks)")
    p.add_argument("--direct", action="store_true",
                   help="PostgreSQL without the counting proxy (wall ms without its hop; no round trips)")
    args = p.parse_args(argv)
    backends = []
    if args.pg or not args.sqlite:
        backends.append(("postgres", args.pg or http_api.PG_DEFAULT))
    if args.sqlite or not args.pg:
        backends.append(("sqlite", None))
    print(f"cityloop server CPU per request: 1 uvicorn worker, 1 sequential client, {os.cpu_count()} cores")
    rows = []
    for backend, url in backends:
        for part in (http_rows, sync_rows):
            if url is None or backend == "sqlite":
                url = f"sqlite:///{tempfile.mkdtemp(prefix='cityloop-cpu-')}/bench.db"
            elif not http_api.reset_pg(url):
                break
            size = args.n if part is http_rows else args.devices
            if backend == "postgres" and not args.direct:
                with WireProxy(url) as proxy:    # the worker talks to PostgreSQL through it
                    rows += [(backend, *row) for row in part(url, size, proxy)]
                    if proxy.errors:
                        print(f"  pgwire proxy errors: {proxy.errors[:3]}")
            else:
                rows += [(backend, *row) for row in part(url, size)]
    print(f"\n{'backend':9} {'request':32} {'server CPU ms':>13} {'wall ms':>8} {'n':>5} "
          f"{'DB round trips':>14} {'statements':>10} {'parses':>6}")
    for backend, what, cpu, wall, n, wire in rows:
        db = (f"{wire['round_trips']:14.2f} {wire['statements']:10.2f} {wire['parses']:6.2f}" if wire
              else f"{'-':>14} {'-':>10} {'-':>6}")
        print(f"{backend:9} {what:32} {cpu:13.2f} {wall:8.2f} {n:5d} {db}")
    if any(wire for *_, wire in rows):
        print("\nDB round trips: times the server waited for PostgreSQL per request (Sync, simple Query, or a Flush"
              " mid-pipeline, counted on the wire by bench/pgwire.py); statements: Execute + Query messages;"
              " parses: Parse messages (statements not yet prepared on that connection). Wall ms includes the"
              " proxy hop (--direct leaves it out).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
