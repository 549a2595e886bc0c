"""Field sync benchmark: simulated tablets over real HTTP against the real server (2 worker
processes), on PostgreSQL and SQLite.

    .venv/bin/python -m bench.sync_push [--sqlite] [--pg [URL]] [--devices 500] [--completions 20]
                                        [--photo-kb 200] [--concurrency 500] [--spread SECONDS]
                                        [--reuse-port]

Every device (a paired tablet of its own unit worker) has `--completions` open rectify tasks
(work orders seeded in-process first, untimed). Each device then does what sync.client does when
a tablet gets signal back (bench/sync_tablet.py): push its complete_task ops in one batch first
(each names a photo the server does not have yet, so it is acknowledged "waiting": stored
durably, applied when the photo arrives), upload one distinct photo per op (one PATCH creating
the upload on /sync/v1/attachments; the server verifies the hash, stores it and applies the op
that waited for it), then push the ops again to collect their final verdicts. Prints:
completions/s over the whole run (uploads included), push latency per batch (p50/p95/p99, both
pushes; and each kind), one tablet's whole sync, the server's CPU per completion and per worker,
how busy the machine was, bytes each completion put on the wire (request lines, headers and
bodies, counted at the socket), and whether every op ended "applied" (also checked in sync_op).
A table, not assertions. Load goes only to 127.0.0.1. The PostgreSQL database is wiped first
(DROP SCHEMA public CASCADE): never point --pg at data you care about.

What the latency figures mean. A push is a tablet's work: it is small, and it is acknowledged
once stored, before the photos. Photos are the bulk (200 KB per op against ~0.5 KB), and the
server gives their uploads threads of their own, so a push does not queue behind hundreds of
photos. A tablet's whole sync is another matter: with all tablets at once (default) the work
arrives as one burst of devices x completions, and by Little's law a tablet's whole sync takes
about (devices at once x completions) / throughput, 500 x 20 at 200/s is ~50 s, whatever the
code does. `--spread S` makes the tablets arrive as a Poisson process over S seconds (offered
load devices x completions / S per second), which is what a city's tablets coming back into
signal look like. `--concurrency C` lets only C tablets sync at the same moment.

`--reuse-port`: the default server is `uvicorn --workers 2`, whose workers share one listening
socket; asyncio accepts up to 100 waiting connections per wake-up, so a burst of tablets
connecting at once lands mostly on one worker and stays there (keep-alive), measured 12.0 s
against 4.6 s of CPU. With --reuse-port, two single-worker uvicorn processes each listen on
their own SO_REUSEPORT socket on the same port and the kernel spreads connections evenly."""
from __future__ import annotations

import argparse
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

import httpx
from sqlalchemy import func, select
from sqlmodel import Session

from bench.http_api import PG_DEFAULT, UNITS, pct, reset_pg
from bench.sync_tablet import sync_device
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
    return (user + nice + system + irq + softirq + steal, iowait,
            user + nice + system + idle + iowait + irq + softirq + steal)


def serve_one(port: int) -> None:
    """One single-worker uvicorn on its own SO_REUSEPORT socket (see SyncServer)."""
    import uvicorn
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config("engine.api.app:create_app", factory=True, backlog=4096, timeout_keep_alive=60,
                            log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _run_devices(port: int, plan, photo_bytes: int, concurrency: int, spread: float) -> dict:
    """Threads, one per tablet syncing at the moment (at most `concurrency`), each with its own
    connection. spread = 0: all start at once; else tablets arrive as a Poisson process over
    `spread` seconds (exponential gaps), as they would coming back into signal one by one."""
    out = {"batch": [], "ack": [], "final": [], "upload": [], "device": [], "errors": [], "verdicts": {},
           "retries": 0, "bytes": 0, "lock": threading.Lock()}
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
            sync_device(port, token, tasks, photo_bytes, base, out)

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
                ours = [ln.strip() for ln in e.splitlines()
                        if ln.strip().startswith('File "') and "/site-packages/" not in ln]
                raised = [ln for ln in e.splitlines() if re.match(r"^[\w.]+(Error|Exception|Exit)\b", ln)]
                key = (ours[-1] if ours else "?") + " -> " + (raised[-1][:110] if raised else "?")
                where[key] = where.get(key, 0) + 1
            print(f"  {backend}: the server logged {len(errors)} errors:")
            for key, n in sorted(where.items(), key=lambda kv: -kv[1])[:4]:
                print(f"    {n} x {key}")
        ups = [x * 1000 for x in out["upload"]]
        dev = out["device"]
        per_worker = sorted((v for v in cpu.values() if v >= 0.05), reverse=True)   # (not the resource tracker)
        print(f"  {backend}: server CPU {sum(cpu.values()):.1f} s = "
              f"{sum(cpu.values()) / args.devices / args.completions * 1000:.1f}"
              f" ms per completion; by worker: {', '.join(f'{v:.1f} s' for v in per_worker)} "
              f"(of {out['wall']:.1f} s wall each); the whole machine (PostgreSQL, these tablets and anything else "
              f"running) was {busy / whole * 100:.0f}% busy, {iowait / whole * 100:.0f}% waiting for the disk")
        print(f"  {backend}: one tablet's whole sync (uploads + push) p50 {statistics.median(dev):.1f} s, p95 "
              f"{pct(dev, 0.95):.1f} s, max {max(dev):.1f} s" if dev else f"  {backend}: no tablet finished")
        for kind, what in (("ack", "first push (ops acknowledged)"), ("final", "second push (final verdicts)")):
            got = [x * 1000 for x in out[kind]]
            if got:
                print(f"  {backend}: {what}: {len(got)} batches, p50 {statistics.median(got):.0f} ms, "
                      f"p95 {pct(got, 0.95):.0f} ms, p99 {pct(got, 0.99):.0f} ms, max {max(got):.0f} ms")
        print(f"  {backend}: photo upload p50 {statistics.median(ups):.0f} ms, p95 {pct(ups, 0.95):.0f} ms;"
              f" {out['retries']} requests sent again after a transport error; the simulated tablets themselves used "
              f"{out['client_cpu']:.0f} s of CPU ({out['client_cpu'] / out['wall'] * 100:.0f}% of one core)")
        return (backend, args.devices, total, applied, applied / out["wall"],
                statistics.median(ms) if ms else float("nan"), pct(ms, 0.95), pct(ms, 0.99),
                out["bytes"] / max(1, total), all_acked, out["wall"],
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
          "batch (both pushes of every tablet). Completions/s counts the whole sync (photo uploads included).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
