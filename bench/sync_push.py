"""Field sync benchmark: simulated tablets over real HTTP against the real server (2 worker
processes), on PostgreSQL and SQLite.

    .venv/bin/python -m bench.sync_push [--sqlite] [--pg [URL]] [--devices 500] [--completions 20]
                                        [--photo-kb 200] [--concurrency 500] [--spread SECONDS]
                                        [--reuse-port]

Every device (a paired tablet of its own unit worker) has `--completions` open rectify tasks
(work orders seeded in-process first, untimed). Each device then does what a tablet does when
it gets signal back: upload one distinct photo per completion (one PATCH creating the upload on
/sync/v1/attachments, hash verified by the server) and push one batch with all its
complete_task ops (each naming its photo). Each tablet is a thread with its own http.client
keep-alive connection (about 0.5 ms of client CPU per request; httpx cost 1-2 ms, taken from the
server's two cores). Prints: completions/s over the whole run (uploads included), push latency
per batch (p50/p95/p99), one tablet's whole sync, the server's CPU per completion and per worker,
how busy the machine was, bytes each completion put on the wire (request lines, headers and
bodies, counted at the socket), and whether every op was acknowledged "applied" (also checked in
sync_op). A table, not assertions. Load goes only to 127.0.0.1. The PostgreSQL database is wiped
first (DROP SCHEMA public CASCADE): never point --pg at data you care about.

What the latency figures mean. With all tablets at once (default), the work arrives in one
burst of devices x completions, and a tablet's push waits behind everything the server accepted
before it. By Little's law a tablet's whole sync takes about (devices at once x completions) /
throughput: 500 x 20 at 200/s is ~50 s whatever the code does, and the push at its end queues
behind ~500 other tablets' requests, so "push p95 < 2 s with 500 pushing at once" is only
reachable if the server drains the burst in about 2 s (5000 completions/s), not at 200/s.
The figure that says whether the server keeps up is completions/s against the arrival rate:
`--spread S` makes the tablets arrive as a Poisson process over S seconds (offered load
devices x completions / S per second), which is what a city's tablets coming back into signal
look like; below the server's capacity, push p95 is then the service time, not a queue.
`--concurrency C` instead lets only C tablets sync at the same moment (a server-side admission
limit would do the same): push latency then reflects C, not the burst.

`--reuse-port`: the default server is `uvicorn --workers 2`, whose workers share one listening
socket; asyncio accepts up to 100 waiting connections per wake-up, so a burst of tablets
connecting at once lands mostly on one worker and stays there (keep-alive), measured 12.0 s
against 4.6 s of CPU. With --reuse-port, two single-worker uvicorn processes each listen on
their own SO_REUSEPORT socket on the same port and the kernel spreads connections evenly."""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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
    """The server, 2 worker processes, with the settings 500 tablets syncing at once need: a
    listen backlog for them all and keep-alive longer than a tablet's pause.

    reuse_port=False: `uvicorn --workers 2`, as bench.http_api.Server: both workers accept on
    the one socket the parent bound, and asyncio accepts up to 100 pending connections per
    wake-up, so a burst of tablets connecting at once lands mostly on one worker and stays
    there (keep-alive): measured 12.0 s vs 4.6 s of CPU. reuse_port=True: 2 single-worker
    uvicorn processes, each on its own SO_REUSEPORT socket on the same port, so the kernel
    spreads the connections evenly (what gunicorn's --reuse-port does)."""

    def __init__(self, url: str, data_dir: str, workers: int = 2, reuse_port: bool = False):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": url, "CITYLOOP_SCHEDULER": "1", "CITYLOOP_DATA": data_dir}
        self.log = os.path.join(data_dir, "server.log")
        log = open(self.log, "wb")
        if reuse_port:
            cmds = [[sys.executable, "-c", f"from bench.sync_push import serve_one; serve_one({self.port})"]] * workers
        else:
            cmds = [[sys.executable, "-m", "uvicorn", "engine.api.app:create_app", "--factory",
                     "--workers", str(workers), "--host", "127.0.0.1", "--port", str(self.port),
                     "--backlog", "4096", "--timeout-keep-alive", "60", "--log-level", "warning", "--no-access-log"]]
        self.procs = [subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT) for cmd in cmds]
        log.close()
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                    time.sleep(3 if reuse_port else 0)   # (the other processes start meanwhile)
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start")

    def worker_cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) each serving process has used so far, from /proc (the
        workers of `uvicorn --workers`, or the single-worker processes)."""
        tick = os.sysconf("SC_CLK_TCK")
        pids = []
        for proc in self.procs:
            try:
                with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                    children = [int(x) for x in f.read().split()]
            except OSError:
                children = []
            pids += children if len(self.procs) == 1 else [proc.pid]
        out = {}
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[pid] = (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                pass
        return out

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


def machine_cpu() -> tuple[float, float, float]:
    """(busy, iowait, total) jiffies of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal, iowait, user + nice + system + idle + iowait + irq + softirq + steal


def serve_one(port: int) -> None:
    """One single-worker uvicorn on its own SO_REUSEPORT socket (see SyncServer)."""
    import uvicorn
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config("engine.api.app:create_app", factory=True, backlog=4096, timeout_keep_alive=60,
                            log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


class Conn(http.client.HTTPConnection):
    """One tablet's keep-alive connection (http.client: a fraction of httpx's CPU per request,
    see bench.http_client), counting every byte it puts on the wire: request line, headers, body."""

    def __init__(self, port: int):
        super().__init__("127.0.0.1", port, timeout=300)
        self.sent = 0

    def send(self, data) -> None:
        self.sent += len(data)
        super().send(data)

    def call(self, method: str, path: str, body: bytes, headers: dict, out: dict) -> tuple[int, dict, bytes]:
        """(status, headers, body); a request cut by a transport error is sent again on a new
        connection (every request here is idempotent)."""
        for attempt in range(5):
            try:
                self.request(method, path, body=body, headers=headers)
                r = self.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            except (OSError, http.client.HTTPException):
                out["retries"] += 1
                self.close()
                if attempt == 4:
                    raise
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")


def _upload(conn: Conn, auth: str, data: bytes, out: dict) -> str | None:
    """As sync.uploads_client.upload does it: a photo this small in one PATCH that creates the
    upload; after a failure, ask the offset (POST) and send the rest."""
    sha = hashlib.sha256(data).hexdigest()
    path = f"/sync/v1/attachments/{sha}"
    status, _, body = conn.call("PATCH", path, data, {"Authorization": auth, "Upload-Offset": "0",
                                                      "Upload-Length": str(len(data)), "Upload-Type": "image/jpeg"},
                                out)
    for _ in range(5):
        if status == 200 and json.loads(body)["complete"]:
            return sha
        status, _, body = conn.call("POST", "/sync/v1/attachments", json.dumps(
            {"sha256": sha, "size": len(data), "content_type": "image/jpeg"}).encode(),
            {"Authorization": auth, "Content-Type": "application/json"}, out)
        if status not in (200, 201):
            break
        state = json.loads(body)
        if state["complete"]:
            return sha
        status, _, body = conn.call("PATCH", path, data[state["offset"]:],
                                    {"Authorization": auth, "Upload-Offset": str(state["offset"])}, out)
    out["errors"].append(f"upload {status}: {body[:120]!r}")
    return None


def _sync_device(port: int, token: str, tasks: list[tuple[str, int]], photo_bytes: int, base: bytes,
                 out: dict) -> None:
    """What a tablet does when it gets signal back: upload its photos, then push one batch."""
    conn, auth = Conn(port), f"Bearer {token}"
    s0 = time.perf_counter()
    try:
        ops = []
        for task_id, version in tasks:
            data = b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes + base[:photo_bytes - 20]   # a distinct photo each
            u0 = time.perf_counter()
            sha = _upload(conn, auth, data, out)
            if sha is None:
                continue
            out["upload"].append(time.perf_counter() - u0)
            ops.append({"op_id": str(uuid.uuid4()), "kind": "complete_task", "task_id": task_id,
                        "based_on_version": version, "payload": {"action": "fixed", "after_photos": [sha]},
                        "device_time": datetime.now(timezone.utc).isoformat(), "attachments": [sha],
                        "gps": {"lat": 31.2, "lon": 121.4, "accuracy": 8}})
        body = json.dumps({"protocol": 1, "sent_at": datetime.now(timezone.utc).isoformat(), "ops": ops}).encode()
        t0 = time.perf_counter()
        status, _, reply = conn.call("POST", "/sync/v1/push", body, {"Authorization": auth,
                                                                      "Content-Type": "application/json"}, out)
        out["batch"].append(time.perf_counter() - t0)
        out["device"].append(time.perf_counter() - s0)
        if status != 200:
            out["errors"].append(f"push {status}: {reply[:120]!r}")
            return
        for v in json.loads(reply)["verdicts"]:
            key = v["verdict"] if v["verdict"] != "duplicate" else f"duplicate of {v.get('original')}"
            with out["lock"]:
                out["verdicts"][key] = out["verdicts"].get(key, 0) + 1
    except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
        out["errors"].append(f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()
        with out["lock"]:
            out["bytes"] += conn.sent


def _run_devices(port: int, plan, photo_bytes: int, concurrency: int, spread: float) -> dict:
    """Threads, one per tablet syncing at the moment (at most `concurrency`), each with its own
    connection. spread = 0: all start at once; else tablets arrive as a Poisson process over
    `spread` seconds (exponential gaps), as they would coming back into signal one by one."""
    out = {"batch": [], "upload": [], "device": [], "errors": [], "verdicts": {}, "retries": 0, "bytes": 0,
           "lock": threading.Lock()}
    base = os.urandom(photo_bytes)
    rng = random.Random(4)
    starts, at = [], 0.0
    for _ in plan:
        starts.append(at)
        at += rng.expovariate(len(plan) / spread) if spread else 0.0
    gate = threading.Semaphore(concurrency)
    go = threading.Barrier(len(plan) + 1)

    def tablet(i: int, token: str, tasks) -> None:
        go.wait()
        delay = t0 + starts[i] - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with gate:
            _sync_device(port, token, tasks, photo_bytes, base, out)

    threading.stack_size(512 * 1024)
    threads = [threading.Thread(target=tablet, args=(i, token, tasks), daemon=True)
               for i, (token, tasks) in enumerate(plan)]
    for th in threads:
        th.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    go.wait()
    for th in threads:
        th.join()
    out["wall"], out["client_cpu"] = time.perf_counter() - t0, time.process_time() - cpu0
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
        server = SyncServer(url, data_dir, reuse_port=args.reuse_port)
        try:
            cpu0, m0 = server.worker_cpu(), machine_cpu()
            out = _run_devices(server.port, plan, args.photo_kb * 1024, args.concurrency, args.spread)
            cpu = {pid: used - cpu0.get(pid, 0.0) for pid, used in server.worker_cpu().items()}
            busy, iowait, whole = (b - a for a, b in zip(m0, machine_cpu()))
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
        dev = out["device"]
        per_worker = sorted((v for v in cpu.values() if v >= 0.05), reverse=True)   # (not the resource tracker)
        print(f"  {backend}: server CPU {sum(cpu.values()):.1f} s = {sum(cpu.values()) / args.devices / args.completions * 1000:.1f}"
              f" ms per completion; by worker: {', '.join(f'{v:.1f} s' for v in per_worker)} "
              f"(of {out['wall']:.1f} s wall each); the whole machine (PostgreSQL, these tablets and anything else "
              f"running) was {busy / whole * 100:.0f}% busy, {iowait / whole * 100:.0f}% waiting for the disk")
        print(f"  {backend}: one tablet's whole sync (uploads + push) p50 {statistics.median(dev):.1f} s, p95 "
              f"{pct(dev, 0.95):.1f} s, max {max(dev):.1f} s" if dev else f"  {backend}: no tablet finished")
        print(f"  {backend}: photo upload p50 {statistics.median(ups):.0f} ms, p95 {pct(ups, 0.95):.0f} ms;"
              f" {out['retries']} requests sent again after a transport error; the simulated tablets themselves used "
              f"{out['client_cpu']:.0f} s of CPU ({out['client_cpu'] / out['wall'] * 100:.0f}% of one core)")
        return (backend, args.devices, total, applied, applied / out["wall"], statistics.median(ms) if ms else float("nan"),
                pct(ms, 0.95), pct(ms, 0.99), out["bytes"] / max(1, total), all_acked, out["wall"],
                {k: v for k, v in out["verdicts"].items() if k != "applied"})
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _pattern(args) -> str:
    if args.spread:
        return f"arriving over {args.spread:g} s, Poisson, at most {args.concurrency} at once"
    return "all at once" if args.concurrency >= args.devices else f"{args.concurrency} at once"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sqlite", action="store_true")
    p.add_argument("--pg", nargs="?", const=PG_DEFAULT)
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--completions", type=int, default=20, help="completions per device (one batch)")
    p.add_argument("--photo-kb", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=500, help="devices syncing at the same moment")
    p.add_argument("--reuse-port", action="store_true",
                   help="2 single-worker processes on SO_REUSEPORT sockets instead of uvicorn --workers 2")
    p.add_argument("--spread", type=float, default=0.0,
                   help="seconds over which the tablets arrive (Poisson); 0: all at once")
    args = p.parse_args(argv)
    backends = []
    if args.pg or not args.sqlite:
        url = args.pg or PG_DEFAULT
        if reset_pg(url):
            backends.append(("postgres", url))
    if args.sqlite or not args.pg:
        backends.append(("sqlite", f"sqlite:///{tempfile.mkdtemp(prefix='cityloop-syncbench-')}/bench.db"))
    server = "2 uvicorn processes on SO_REUSEPORT sockets" if args.reuse_port else "uvicorn --workers 2"
    print(f"cityloop sync benchmark: {server} on this {os.cpu_count()}-core machine; "
          f"{args.devices} simulated tablets ({_pattern(args)}; threads + http.client keep-alive in this process), "
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
