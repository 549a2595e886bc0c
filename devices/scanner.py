"""BLE scanning with bleak: advertisements become sightings, sightings become check-ins.

- `BadgeScanner.run(stop)` scans with bleak's `BleakScanner` (detection callback) and turns
  every advertisement carrying badge manufacturer data into a `Sighting`. Frames that fail to
  decode are counted, never fatal. Whether Bluetooth can be used at all is a
  `BluetoothState` (no bus, no BlueZ, no adapter, adapter off, ...), reported through
  `on_state` and retried, never raised.
- `Debouncer` turns the stream of sightings into check-ins: per badge and frame, one per
  window, first-seen time and strongest RSSI kept; the same frame again only after
  `repeat_after` (rotating badges change frame every token step anyway).

This module knows nothing of HTTP or of the server; verification is the server's job (the
scanner only decodes to know which badge it heard)."""
from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from devices import token

__all__ = ["BadgeScanner", "BluetoothState", "Counts", "Debouncer", "IBEACON_PREFIX", "STATE_TEXT", "Sighting",
           "classify", "probe", "state_of", "system_bus_address", "wait_or_stop"]

log = logging.getLogger("cityloop.devices.scanner")
IBEACON_PREFIX = b"\x02\x15"


class BluetoothState(str, enum.Enum):
    STARTING = "starting"
    AVAILABLE = "available"
    NO_BUS = "no_bus"               # no system D-Bus to talk to
    NO_BLUEZ = "no_bluez"           # the bus has no org.bluez (bluetoothd not running)
    NO_ADAPTER = "no_adapter"       # BlueZ runs but there is no (BLE central) adapter
    ADAPTER_OFF = "adapter_off"     # the adapter is powered off
    DENIED = "denied"               # the system refused us the bus or the adapter
    ERROR = "error"                 # anything else; see the detail

    @property
    def text(self) -> str:
        return STATE_TEXT[self]


STATE_TEXT = {
    BluetoothState.STARTING: "starting Bluetooth / 正在启动蓝牙",
    BluetoothState.AVAILABLE: "Bluetooth scanning / 蓝牙扫描中",
    BluetoothState.NO_BUS: "Bluetooth unavailable: no system D-Bus / 蓝牙不可用：没有系统 D-Bus",
    BluetoothState.NO_BLUEZ: ("Bluetooth unavailable: the Bluetooth service (BlueZ) is not running"
                              " / 蓝牙不可用：蓝牙服务未运行"),
    BluetoothState.NO_ADAPTER: "Bluetooth unavailable: no Bluetooth adapter / 蓝牙不可用：没有蓝牙适配器",
    BluetoothState.ADAPTER_OFF: "Bluetooth is turned off / 蓝牙已关闭",
    BluetoothState.DENIED: "Bluetooth access denied / 无权使用蓝牙",
    BluetoothState.ERROR: "Bluetooth error / 蓝牙错误",
}


@dataclass(frozen=True)
class Sighting:
    """One received badge advertisement (or, after the Debouncer, one check-in)."""
    badge_id: str                  # as decoded from the frame (legacy: the iBeacon id)
    company_id: int
    data: bytes                    # the manufacturer-data payload, for the server to verify
    rssi: int
    seen_at: datetime              # aware, UTC
    address: str = ""
    legacy: bool = False
    count: int = 1                 # advertisements folded into this one

    def item(self, lat: float | None = None, lon: float | None = None) -> dict:
        """The item for POST /api/v1/attendance/sightings."""
        out = {"company_id": self.company_id, "data": self.data.hex(), "rssi": int(self.rssi),
               "seen_at": self.seen_at.astimezone(timezone.utc).isoformat()}
        if lat is not None and lon is not None:
            out.update(lat=lat, lon=lon)
        return out


@dataclass
class Counts:
    advertisements: int = 0        # detection callbacks
    sightings: int = 0             # badge frames decoded
    invalid: int = 0               # frames under our company id (or iBeacon-shaped) that did not decode
    foreign: int = 0               # other manufacturers' data, not ours


def classify(manufacturer_data: dict[int, bytes], rssi: int, seen_at: datetime, address: str,
             counts: Counts) -> list[Sighting]:
    """The badge sightings in one advertisement; counts what is not ours or not valid."""
    out = []
    for company_id, data in manufacturer_data.items():
        data = bytes(data)
        if company_id == token.IBEACON_COMPANY_ID and not data.startswith(IBEACON_PREFIX):
            counts.foreign += 1           # other Apple advertisements (AirPods, Find My, ...)
            continue
        if company_id not in (token.COMPANY_ID, token.IBEACON_COMPANY_ID):
            counts.foreign += 1
            continue
        try:
            frame = token.decode(data, company_id)
        except token.TokenError as exc:
            counts.invalid += 1
            log.debug("undecodable frame from %s: %s", address, exc)
            continue
        counts.sightings += 1
        out.append(Sighting(frame.badge_id, company_id, data, int(rssi), seen_at, address, frame.legacy))
    return out


class Debouncer:
    """Per badge and frame: the first sighting opens a window; when it has passed, one
    check-in leaves with the first-seen time and the strongest RSSI of the window. The same
    frame is not sent again for `repeat_after` (a static iBeacon never changes frame)."""

    def __init__(self, window: float = 2.0, repeat_after: float = 300.0, max_open: int = 10000):
        self.window, self.repeat_after = timedelta(seconds=window), timedelta(seconds=repeat_after)
        self.max_open, self.dropped = max_open, 0   # a flood of made-up frames cannot eat the memory
        self._open: dict[tuple[str, bytes], Sighting] = {}
        self._sent: dict[tuple[str, bytes], datetime] = {}

    def add(self, s: Sighting) -> None:
        key = (s.badge_id, s.data)
        sent = self._sent.get(key)
        if sent is not None and s.seen_at - sent < self.repeat_after:
            return
        best = self._open.get(key)
        if best is None:
            if len(self._open) >= self.max_open:
                self.dropped += 1
                return
            self._open[key] = s
        else:
            strongest = s if s.rssi > best.rssi else best
            self._open[key] = replace(strongest, seen_at=min(best.seen_at, s.seen_at), count=best.count + 1)

    def due(self, now: datetime, everything: bool = False) -> list[Sighting]:
        """Check-ins whose window has passed at `now` (all open ones with everything=True)."""
        out = []
        for key, s in list(self._open.items()):
            if everything or now - s.seen_at >= self.window:
                out.append(self._open.pop(key))
                self._sent[key] = s.seen_at
        if len(self._sent) > 20000:     # forget frames that can no longer repeat
            horizon = now - self.repeat_after
            self._sent = {k: t for k, t in self._sent.items() if t >= horizon}
        return sorted(out, key=lambda s: s.seen_at)

    def pending(self) -> int:
        return len(self._open)


# ---- Bluetooth state -------------------------------------------------------------------------
async def probe(adapter: str | None = None) -> tuple[BluetoothState, str]:
    """Ask the system bus whether BlueZ and a powered BLE adapter are there; never raises."""
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus
    try:
        bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), 5)
    except (OSError, EOFError, asyncio.TimeoutError) as exc:
        return BluetoothState.NO_BUS, f"{system_bus_address()}: {type(exc).__name__}: {exc}"
    except Exception as exc:  # dbus-fast: invalid address, auth refused, ...
        state = BluetoothState.DENIED if "auth" in type(exc).__name__.lower() else BluetoothState.NO_BUS
        return state, f"{system_bus_address()}: {type(exc).__name__}: {exc}"
    try:
        reply = await asyncio.wait_for(bus.call(Message(
            destination="org.bluez", path="/", interface="org.freedesktop.DBus.ObjectManager",
            member="GetManagedObjects")), 5)
    except Exception as exc:
        return BluetoothState.ERROR, f"{type(exc).__name__}: {exc}"
    finally:
        bus.disconnect()
    if reply.message_type == MessageType.ERROR:
        if reply.error_name in ("org.freedesktop.DBus.Error.ServiceUnknown",
                                "org.freedesktop.DBus.Error.NameHasNoOwner"):
            return BluetoothState.NO_BLUEZ, reply.error_name
        if reply.error_name == "org.freedesktop.DBus.Error.AccessDenied":
            return BluetoothState.DENIED, reply.error_name
        return BluetoothState.ERROR, f"{reply.error_name}: {reply.body}"
    adapters = {path.rsplit("/", 1)[-1]: ifaces["org.bluez.Adapter1"]
                for path, ifaces in reply.body[0].items() if "org.bluez.Adapter1" in ifaces}
    if adapter is not None:
        adapters = {k: v for k, v in adapters.items() if k == adapter}
    central = {k: v for k, v in adapters.items()   # BlueZ before 5.60 has no Roles: LE central then
               if "central" in (v["Roles"].value if "Roles" in v else ["central"])}
    if not central:
        return BluetoothState.NO_ADAPTER, f"no adapter {adapter}" if adapter else "no BLE adapter"
    if not any(v["Powered"].value for v in central.values()):
        return BluetoothState.ADAPTER_OFF, ", ".join(sorted(central))
    return BluetoothState.AVAILABLE, ", ".join(sorted(k for k, v in central.items() if v["Powered"].value))


def state_of(exc: BaseException) -> tuple[BluetoothState, str]:
    """What a failure of bleak means for the user."""
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError
    from bleak.exc import BleakBluetoothNotAvailableReason as R
    if isinstance(exc, BleakBluetoothNotAvailableError):
        state = {R.POWERED_OFF: BluetoothState.ADAPTER_OFF, R.NO_BLUETOOTH: BluetoothState.NO_ADAPTER,
                 R.NO_BLE_CENTRAL_ROLE: BluetoothState.NO_ADAPTER, R.DENIED_BY_USER: BluetoothState.DENIED,
                 R.DENIED_BY_SYSTEM: BluetoothState.DENIED}.get(exc.reason, BluetoothState.ERROR)
        return state, str(exc)
    if isinstance(exc, BleakDBusError):
        if "ServiceUnknown" in exc.dbus_error or "NameHasNoOwner" in exc.dbus_error:
            return BluetoothState.NO_BLUEZ, str(exc)
        if exc.dbus_error == "org.bluez.Error.NotReady":
            return BluetoothState.ADAPTER_OFF, str(exc)
        return BluetoothState.ERROR, str(exc)
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError, EOFError)):
        return BluetoothState.NO_BUS, f"{type(exc).__name__}: {exc}"
    return BluetoothState.ERROR, f"{type(exc).__name__}: {exc}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class BadgeScanner:
    """Scans until `stop` is set; `on_sighting` gets every decoded badge advertisement,
    `on_state(state, detail)` every change of Bluetooth state. Runs on the caller's event
    loop (bleak keeps one BlueZ connection per loop)."""

    def __init__(self, on_sighting: Callable[[Sighting], None], *, adapter: str | None = None,
                 on_state: Callable[[BluetoothState, str], None] | None = None,
                 check_every: float = 2.0, clock: Callable[[], datetime] = _utcnow):
        self.on_sighting, self.adapter, self.on_state = on_sighting, adapter, on_state
        self.check_every, self.clock = check_every, clock
        self.counts = Counts()
        self.state, self.detail = BluetoothState.STARTING, ""

    def _set_state(self, state: BluetoothState, detail: str = "") -> None:
        if state != self.state or (detail and detail != self.detail and state != BluetoothState.AVAILABLE):
            log.debug("%s (%s)", state.text, detail or "-")
            self.state, self.detail = state, detail
            if self.on_state:
                self.on_state(state, detail)

    def _detected(self, device, adv) -> None:
        self.counts.advertisements += 1
        for s in classify(adv.manufacturer_data, adv.rssi, self.clock(), device.address, self.counts):
            self.on_sighting(s)

    async def run(self, stop: asyncio.Event) -> None:
        from bleak import BleakScanner
        while not stop.is_set():
            state, detail = await probe(self.adapter)
            if state != BluetoothState.AVAILABLE:
                self._set_state(state, detail)
                await wait_or_stop(stop, self.check_every)
                continue
            scanner = BleakScanner(self._detected, bluez={"adapter": self.adapter} if self.adapter else {})
            try:
                await scanner.start()
            except Exception as exc:
                self._set_state(*state_of(exc))
                await wait_or_stop(stop, self.check_every)
                continue
            self._set_state(BluetoothState.AVAILABLE, detail)
            try:
                while not stop.is_set():
                    await wait_or_stop(stop, self.check_every)
                    state, detail = await probe(self.adapter)
                    if state != BluetoothState.AVAILABLE:
                        self._set_state(state, detail)
                        break
            finally:
                try:
                    await scanner.stop()
                except Exception as exc:   # the adapter went away under us: nothing to stop
                    log.debug("stopping the scan: %s", exc)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds` or until `stop` is set, whichever comes first."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/var/run/dbus/system_bus_socket")
