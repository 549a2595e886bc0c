"""Badge scanning benchmark: the radio side on the fake BlueZ, measured, not asserted.

    .venv/bin/python -m bench.badge_scan [--badges 500] [--rounds 20] [--latency-badges 30]

1. Throughput: `--badges` rotating badges in range of one adapter; the fake BlueZ (in its own
   process, so it does not share the GIL with the scanner) makes every badge advertise
   `--rounds` times as fast as it can; unmodified bleak on the private bus hands each
   advertisement to our BadgeScanner, which decodes it. Printed: advertisements sent, badge
   sightings decoded, lost, and sightings handled per second.
2. Latency: a real server (uvicorn, one worker, SQLite), a paired gateway (GatewayThread) on
   the fake bus. Badges appear one at a time; the time from a badge appearing on the bus to
   the server's answer that its check-in is stored (applied), for two debounce windows.
   It is dominated by the window (a check-in leaves when its window has passed) plus the
   gateway's send interval (0.5 s).
Everything runs on 127.0.0.1 and a private dbus-daemon on this machine's cores."""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta

import httpx

KEY = bytes(range(32))


def table(headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths), *[fmt(r) for r in rows]])


# ---- the fake BlueZ in a child process ----------------------------------------------------------
def _fake_process(address: str, badges: int, conn) -> None:
    from devices.bluez.fake import FakeBluez
    from devices.sim import crowd
    with FakeBluez(address, advertise_every=3600) as fake:
        crowd(fake, badges, KEY)
        conn.send("ready")
        while True:
            cmd, arg = conn.recv()
            if cmd == "stop":
                break
            started = time.perf_counter()
            sent = fake.advertise(arg)
            conn.send((sent, time.perf_counter() - started))


class _Scanning:
    """A BadgeScanner on its own thread and loop, counting what it decodes."""

    def __init__(self):
        import asyncio

        from devices.scanner import BadgeScanner
        self.asyncio, self.last_at, self.n = asyncio, 0.0, 0
        self.scanner = BadgeScanner(self._seen, check_every=5.0)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def _seen(self, _sighting) -> None:
        self.n += 1
        self.last_at = time.perf_counter()

    async def _main(self):
        self.loop, self.stop_event = self.asyncio.get_running_loop(), self.asyncio.Event()
        await self.scanner.run(self.stop_event)

    def start(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while self.scanner.state.value != "available":
            if time.monotonic() > deadline:
                raise RuntimeError(f"scanner not available: {self.scanner.state} {self.scanner.detail}")
            time.sleep(0.05)
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)


def throughput(badges: int, rounds: int) -> list[list]:
    from devices.bluez.bus import PrivateBus
    with PrivateBus() as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_fake_process, args=(bus.address, badges, child), daemon=True)
        proc.start()
        assert parent.recv() == "ready"
        scan = _Scanning().start()
        parent.send(("burst", 1))                      # warm up: every device object created
        parent.recv()
        time.sleep(1.0)
        before = scan.n
        started = time.perf_counter()
        parent.send(("burst", rounds))
        sent, send_seconds = parent.recv()
        while True:                                   # until nothing more arrives for 1 s
            n = scan.n
            time.sleep(1.0)
            if scan.n == n:
                break
        got = scan.n - before
        seconds = max(scan.last_at - started, 1e-9)
        counts = scan.scanner.counts
        scan.stop()
        parent.send(("stop", None))
        proc.join(20)
    return [[f"{badges} badges x {rounds} rounds", sent, f"{sent / send_seconds:,.0f}", got, sent - got,
             f"{100 * (sent - got) / sent:.1f}%", f"{got / seconds:,.0f}", counts.invalid]]


# ---- latency through the gateway to a real server -----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(tmp: str, n: int) -> tuple[subprocess.Popen, str, str, int]:
    """A fresh SQLite database with one crew of `n` badges and a shift in an hour; uvicorn on it."""
    from sqlmodel import Session

    from engine.auth import service
    from engine.clock import utcnow
    from engine.domain import attendance
    from engine.domain.models import Badge, Cleaner, Contract, Crew, Staff, Unit
    from engine.system import build
    url = f"sqlite:///{tmp}/bench.db"
    engine = build(url)
    with Session(engine.db) as s:
        s.add(Unit(code="clean-east", name="East", name_zh="东", kind="cleaning"))
        s.add(Staff(id="admin1", name="Admin", role="admin"))
        s.flush()
        s.add(Contract(code="C-1", contractor="Bench Cleaning", unit_code="clean-east"))
        s.flush()
        s.add(Crew(code="crew-1", contract_code="C-1", muster_point="depot", shift_start="06:00"))
        s.flush()
        for i in range(n):
            s.add(Badge(id=f"L{i:04d}", secret=KEY.hex()))
            s.add(Cleaner(id=f"cl{i:04d}", name=f"Cleaner {i}", crew_code="crew-1", badge_id=f"L{i:04d}"))
        s.commit()
        admin = service.issue_token(s, s.get(Staff, "admin1"), utcnow())
        s.commit()
    shift = attendance.plan_shift(engine, "crew-1", utcnow() + timedelta(hours=1)).id
    engine.db.dispose()
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "CITYLOOP_SCHEDULER": "0", "CITYLOOP_DATA": tmp}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "engine.api.app:create_app", "--factory",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.2)
    dev = httpx.post(f"{base}/api/v1/devices", json={"name": "bench gateway", "kind": "gateway"},
                     headers={"Authorization": f"Bearer {admin}"}, timeout=30).json()
    from devices.pairing import pair
    return proc, base, pair(base, dev["id"], dev["pairing_code"]), shift


def latency(n: int, windows: list[float]) -> list[list]:
    from devices.bluez.bus import PrivateBus
    from devices.bluez.fake import FakeBluez
    from devices.gateway import Gateway, GatewayThread
    from devices.sim import address_for, rotating
    rows = []
    with tempfile.TemporaryDirectory() as tmp, PrivateBus() as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        proc, base, token, _shift = _server(tmp, n * len(windows))
        try:
            with FakeBluez(bus.address, advertise_every=0.1) as fake:
                for w, window in enumerate(windows):
                    gw = GatewayThread(Gateway(base, token, f"{tmp}/buf{w}", source="bench", window=window,
                                               check_every=5.0)).start()
                    while gw.gateway.status.bluetooth.value != "available":
                        time.sleep(0.05)
                    waits = []
                    for i in range(n):
                        badge = f"L{w * n + i:04d}"
                        appeared = time.perf_counter()
                        fake.add_badge(address_for(badge), rotating(badge, KEY), rssi=-60)
                        while not any(r.get("badge_id") == badge and r.get("verdict") == "applied"
                                      for r in gw.gateway.results[-50:]):
                            if time.perf_counter() - appeared > 30:
                                raise RuntimeError(f"{badge} not checked in: {gw.gateway.status}")
                            time.sleep(0.002)
                        waits.append(time.perf_counter() - appeared)
                    gw.stop()
                    q = statistics.quantiles(waits, n=20)
                    rows.append([f"window {window:g} s", n, f"{statistics.median(waits) * 1000:,.0f}",
                                 f"{q[18] * 1000:,.0f}", f"{max(waits) * 1000:,.0f}"])
        finally:
            proc.terminate()
            proc.wait(30)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--badges", type=int, default=500)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--latency-badges", type=int, default=30)
    args = p.parse_args(argv)
    print(f"badge scanning on the fake BlueZ (bleak, dbus-fast, private dbus-daemon; {os.cpu_count()} cores)\n")
    print("1. advertisements through unmodified bleak to decoded sightings")
    print(table(["scenario", "adverts sent", "sent/s", "sightings", "lost", "lost %", "sightings/s", "bad frames"],
                throughput(args.badges, args.rounds)))
    print("\n2. badge appears on the bus -> its check-in stored on the server (HTTP 200, applied), ms")
    print(table(["gateway", "badges", "p50", "p95", "max"], latency(args.latency_badges, [0.5, 2.0])))


if __name__ == "__main__":
    main()
