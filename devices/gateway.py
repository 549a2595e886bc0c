"""The headless badge gateway of a depot: scan badges, push check-ins to the server.

    scanner (bleak) -> Debouncer -> Buffer (SQLite on disk) -> POST /api/v1/attendance/sightings

Check-ins are stored on disk before anything is sent, so nothing is lost while the server
is unreachable; they are deleted only once the server has answered for their batch. A batch
is fixed before it is sent, so after a crash the same batch goes again (the server takes a
repeated sighting of a badge already present as "ignored"). Bluetooth trouble and server
trouble are states reported through `on_event`, never crashes. The gateway talks to the
server only over HTTP, with its device token (`dev_...`, from pairing)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

from devices.buffer import Buffer
from devices.scanner import BadgeScanner, BluetoothState, Debouncer, Sighting, wait_or_stop

__all__ = ["Gateway", "GatewayStatus", "GatewayThread", "MAX_BACKOFF", "PATH"]

log = logging.getLogger("cityloop.devices.gateway")
PATH = "/api/v1/attendance/sightings"
MAX_BACKOFF = 30.0


@dataclass
class GatewayStatus:
    bluetooth: BluetoothState = BluetoothState.STARTING
    bluetooth_detail: str = ""
    server: str = "unknown"          # online | offline | unauthorized | unknown
    server_detail: str = ""
    pending: int = 0
    sent: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    heard: int = 0

    def line(self) -> str:
        server = {"online": "server online / 服务器在线",
                  "offline": "server unreachable, buffering / 服务器不可达，本地缓存",
                  "unauthorized": "token refused: pair this gateway again / 令牌被拒绝：请重新配对",
                  "unknown": "server not contacted yet / 尚未连接服务器"}[self.server]
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()) if v) or "-"
        return (f"{self.bluetooth.text}; {server}; heard {self.heard}, buffered {self.pending}, sent {self.sent} "
                f"({verdicts}) / 收到 {self.heard}，缓存 {self.pending}，已发送 {self.sent}")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Gateway:
    def __init__(self, server: str, token: str, buffer_dir: str | Path, *, source: str = "gateway",
                 lat: float | None = None, lon: float | None = None, adapter: str | None = None,
                 window: float = 2.0, repeat_after: float = 300.0, batch_size: int = 500,
                 send_every: float = 0.5, check_every: float = 2.0,
                 on_event: Callable[[str, GatewayStatus], None] | None = None,
                 clock: Callable[[], datetime] = _utcnow, transport: httpx.AsyncBaseTransport | None = None):
        self.server, self.token, self.source = server.rstrip("/"), token.strip(), source[:64]
        self.lat, self.lon = lat, lon
        self.batch_size, self.send_every, self.clock = max(1, min(batch_size, 1000)), send_every, clock
        self.buffer = Buffer(buffer_dir)
        self.debouncer = Debouncer(window, repeat_after)
        self.scanner = BadgeScanner(self._heard, adapter=adapter, on_state=self._bluetooth,
                                    check_every=check_every, clock=clock)
        self.status = GatewayStatus(pending=self.buffer.pending())
        self.results: list[dict] = []     # the server's verdicts, most recent last (bounded)
        self.last_results: list[dict] = []
        self.on_event, self._transport = on_event, transport
        self._stored: asyncio.Event | None = None

    # ---- events ----------------------------------------------------------------------------
    def summary(self) -> str:
        """The last batch's verdicts with their reasons, e.g. 'applied 3; flagged 2 (clone, replay)'."""
        by: dict[str, list[str]] = {}
        for r in self.last_results:
            by.setdefault(str(r.get("verdict")), []).append(str(r.get("reason") or r.get("message") or "")[:60])
        parts = []
        for verdict, reasons in sorted(by.items()):
            named = sorted({x for x in reasons if x})
            parts.append(f"{verdict} {len(reasons)}" + (f" ({', '.join(named)})" if named else ""))
        return "; ".join(parts) or "-"

    def _emit(self, what: str) -> None:
        self.status.pending = self.buffer.pending()
        if self.on_event:
            self.on_event(what, self.status)

    def _bluetooth(self, state: BluetoothState, detail: str) -> None:
        self.status.bluetooth, self.status.bluetooth_detail = state, detail
        self._emit("bluetooth")

    def _server(self, state: str, detail: str = "") -> None:
        changed = state != self.status.server
        self.status.server, self.status.server_detail = state, detail
        if changed:
            self._emit("server")

    def _heard(self, s: Sighting) -> None:
        self.status.heard += 1
        self.debouncer.add(s)

    # ---- the three loops -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, drain_timeout: float = 5.0) -> GatewayStatus:
        """Until `stop`: scan, collect, send. Then store what is still open and try to send
        the rest for up to `drain_timeout` seconds; what is left stays buffered on disk."""
        self._stored = asyncio.Event()
        scanning = asyncio.create_task(self.scanner.run(stop))
        collecting = asyncio.create_task(self._collect(stop))
        try:
            await self._send(stop, drain_timeout)
        finally:
            await asyncio.gather(scanning, collecting, return_exceptions=True)
            self._store(self.debouncer.due(self.clock(), everything=True))
            self.status.pending = self.buffer.pending()
            self.buffer.close()
        return self.status

    def _store(self, checkins: list[Sighting]) -> None:
        if checkins:
            self.buffer.add([s.item(self.lat, self.lon) for s in checkins])
            if self._stored is not None:
                self._stored.set()          # wake the sender now rather than at its next tick

    async def _collect(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._store(self.debouncer.due(self.clock()))
            await wait_or_stop(stop, min(0.25, self.debouncer.window.total_seconds() / 4 or 0.25))
        self._store(self.debouncer.due(self.clock(), everything=True))

    async def _send(self, stop: asyncio.Event, drain_timeout: float) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        backoff = self.send_every
        deadline = None
        async with httpx.AsyncClient(base_url=self.server, headers=headers, timeout=30,
                                     transport=self._transport) as http:
            while True:
                if stop.is_set():
                    loop_time = asyncio.get_running_loop().time()
                    deadline = deadline or loop_time + drain_timeout
                    await asyncio.sleep(0)      # let the collector store what is still open
                    if loop_time > deadline:
                        return
                self._stored.clear()
                batch = self.buffer.next_batch(self.batch_size)
                if batch is None:
                    if stop.is_set() and self.debouncer.pending() == 0:
                        return
                    await wait_or_stop(self._stored, self.send_every)
                    continue
                ok = await self._post(http, *batch)
                if ok:
                    backoff = self.send_every
                    continue
                if stop.is_set():
                    return                      # the server is away: keep the rest on disk
                await wait_or_stop(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _post(self, http: httpx.AsyncClient, batch: str, items: list[dict]) -> bool:
        body = {"source": self.source, "lat": self.lat, "lon": self.lon, "items": items}
        try:
            r = await http.post(PATH, json=body, headers={"Idempotency-Key": batch})
        except httpx.HTTPError as exc:
            self._server("offline", f"{type(exc).__name__}: {exc}")
            return False
        if r.status_code == 200:
            answer = _json(r)
            tally = {k: int(answer.get(k, 0)) for k in ("applied", "ignored", "flagged", "invalid")}
            sent = self.buffer.ack(batch, tally)
            self.status.sent += sent
            for k, v in tally.items():
                self.status.verdicts[k] = self.status.verdicts.get(k, 0) + v
            self.last_results = list(answer.get("results") or [])
            self.results = (self.results + self.last_results)[-2000:]
            self._server("online")
            self._emit("sent")
            return True
        detail = f"HTTP {r.status_code}: {_message(r)}"
        if r.status_code in (401, 403):
            self._server("unauthorized", detail)
            return False
        if r.status_code in (408, 425, 429) or r.status_code >= 500:
            self._server("offline", detail)
            return False
        n = self.buffer.reject(batch, detail)      # the server will never take this batch
        log.error("server refused a batch of %d check-ins, kept aside in %s: %s", n, self.buffer.path, detail)
        self._server("online", detail)
        self._emit("rejected")
        return True


def _json(r: httpx.Response) -> dict:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(r: httpx.Response) -> str:
    body = _json(r)
    return str(body.get("message") or body.get("detail") or body.get("error") or r.text[:300])


class GatewayThread:
    """A gateway on its own thread and event loop (bleak opens its BlueZ connection per
    loop, on the bus DBUS_SYSTEM_BUS_ADDRESS names when it starts)."""

    def __init__(self, gateway: Gateway):
        import threading
        self.gateway, self.final = gateway, None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="badge-gateway", daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        self.final = await self.gateway.run(self._stop)

    def start(self) -> "GatewayThread":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self, timeout: float = 30) -> GatewayStatus:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the gateway did not stop")
        return self.final
