"""A fake `org.bluez` on a D-Bus bus, written with dbus-fast, good enough for unmodified bleak.

The object tree is BlueZ's: `/org/bluez/hciN` with `org.bluez.Adapter1` (Address, Name,
Alias, Powered, Discovering, Roles, UUIDs; SetDiscoveryFilter, StartDiscovery,
StopDiscovery, RemoveDevice) and, while an adapter discovers, one `org.bluez.Device1` per
badge in range (Address, Alias, Adapter, RSSI, ManufacturerData `a{qv}`, ServiceData ...).
As in BlueZ, a device appears (ObjectManager.InterfacesAdded) when first heard during
discovery, is re-announced by PropertiesChanged on every advertisement (RSSI, and the
manufacturer data when it changed), and disappears (InterfacesRemoved) when it leaves, when
it is removed, or when the adapter is powered off.

`FakeBluez` runs the service on its own event loop in a background thread; every control
method (add_badge, move, set_data, remove, set_powered, advertise ...) is thread-safe and
returns once the bus has the change. It is our *test bed*, not a Bluetooth stack: no GATT,
no pairing."""
import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dbus_fast import BusType, DBusError, Message, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_method, dbus_property

__all__ = ["Adapter1", "BLUEZ", "Device1", "FAILED", "FakeBluez", "NOT_READY", "PACE", "device_path"]

log = logging.getLogger("cityloop.devices.fakebluez")
BLUEZ = "org.bluez"
NOT_READY = "org.bluez.Error.NotReady"
FAILED = "org.bluez.Error.Failed"
PACE = 32                      # announcements between two round trips to the bus
Payload = dict[int, bytes] | Callable[[], dict[int, bytes]]


def device_path(adapter: str, address: str) -> str:
    return f"/org/bluez/{adapter}/dev_{address.upper().replace(':', '_')}"


def _mfr(data: dict[int, bytes]) -> dict[int, Variant]:
    return {int(k): Variant("ay", bytes(v)) for k, v in data.items()}


class Device1(ServiceInterface):
    """One remote device as BlueZ shows it."""

    def __init__(self, adapter_path: str, address: str, name: str | None, rssi: int, data: dict[int, bytes]):
        super().__init__("org.bluez.Device1")
        self.adapter_path, self.address, self.local_name = adapter_path, address.upper(), name
        self.rssi, self.data = rssi, dict(data)

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":
        return self.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> "s":
        return "random"

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> "s":
        return self.local_name or self.address.replace(":", "-")

    @dbus_property(access=PropertyAccess.READ)
    def Adapter(self) -> "o":
        return self.adapter_path

    @dbus_property(access=PropertyAccess.READ)
    def Paired(self) -> "b":
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Connected(self) -> "b":
        return False

    @dbus_property(access=PropertyAccess.READ)
    def ServicesResolved(self) -> "b":
        return False

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> "as":
        return []

    @dbus_property(access=PropertyAccess.READ)
    def RSSI(self) -> "n":
        return self.rssi

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> "a{qv}":
        return _mfr(self.data)

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> "a{sv}":
        return {}


class Adapter1(ServiceInterface):
    """One local adapter; its discovery session drives the advertisements."""

    def __init__(self, fake: "FakeBluez", name: str, address: str, powered: bool):
        super().__init__("org.bluez.Adapter1")
        self.fake, self.adapter, self.address = fake, name, address
        self.powered, self.discovering, self.filter = powered, False, {}

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":
        return self.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> "s":
        return "public"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":
        return f"cityloop-fake-{self.adapter}"

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> "s":
        return f"cityloop-fake-{self.adapter}"

    @dbus_property()
    def Powered(self) -> "b":
        return self.powered

    @Powered.setter
    def Powered(self, value: "b"):
        self.fake._power(self.adapter, bool(value))

    @dbus_property(access=PropertyAccess.READ)
    def Discovering(self) -> "b":
        return self.discovering

    @dbus_property(access=PropertyAccess.READ)
    def Roles(self) -> "as":
        return ["central", "peripheral"]

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> "as":
        return []

    @dbus_method()
    def SetDiscoveryFilter(self, properties: "a{sv}"):
        self.filter = {k: v.value for k, v in properties.items()}

    @dbus_method()
    def GetDiscoveryFilters(self) -> "as":
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable", "Pattern"]

    @dbus_method()
    def StartDiscovery(self):
        if not self.powered:
            raise DBusError(NOT_READY, "Resource Not Ready")
        if not self.discovering:
            self.discovering = True
            self.emit_properties_changed({"Discovering": True})
            self.fake._kick()

    @dbus_method()
    def StopDiscovery(self):
        if not self.powered:
            raise DBusError(NOT_READY, "Resource Not Ready")
        if not self.discovering:
            raise DBusError(FAILED, "No discovery started")
        self.discovering = False
        self.emit_properties_changed({"Discovering": False})

    @dbus_method()
    def RemoveDevice(self, device: "o"):
        self.fake._forget(self.adapter, device)


@dataclass
class _Badge:
    """A transmitter in range of one adapter; `exported` once BlueZ has 'heard' it."""
    address: str
    payload: Payload
    rssi: int
    name: str | None
    device: Device1 | None = None
    last: dict[int, bytes] = field(default_factory=dict)

    def data(self) -> dict[int, bytes]:
        return dict(self.payload() if callable(self.payload) else self.payload)


class FakeBluez:
    """The fake service on the bus at `bus_address` (a PrivateBus's address)."""

    def __init__(self, bus_address: str, adapters: tuple[str, ...] = ("hci0",), advertise_every: float = 0.5):
        self.bus_address, self.advertise_every = bus_address, advertise_every
        self.announcements = 0            # PropertiesChanged/InterfacesAdded sent for devices
        self.rounds = 0                   # advertising rounds done (a test's "time has passed" is rounds)
        self._initial = adapters
        self._adapters: dict[str, Adapter1] = {}
        self._badges: dict[str, dict[str, _Badge]] = {}   # adapter -> address -> badge
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-bluez", daemon=True)
        self._bus: MessageBus | None = None
        self._wake: asyncio.Event | None = None
        self._ticker: asyncio.Task | None = None

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> "FakeBluez":
        self._thread.start()
        self._run(self._connect())
        self._run(self._claim_name())
        for name in self._initial:
            self.add_adapter(name)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._disconnect())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> "FakeBluez":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _connect(self) -> None:
        self._bus = await MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM).connect()
        self._wake = asyncio.Event()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _claim_name(self) -> None:
        await self._bus.request_name(BLUEZ)

    async def _disconnect(self) -> None:
        if self._ticker:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._bus:
            self._bus.disconnect()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _call(self, fn, *args):
        async def wrapper():
            return fn(*args)
        return self._run(wrapper())

    # ---- control (any thread) --------------------------------------------------------------
    def add_adapter(self, name: str, powered: bool = True, address: str | None = None) -> None:
        """Export /org/bluez/<name> (InterfacesAdded, as when a USB dongle is plugged in)."""
        address = address or f"00:1A:7D:DA:71:{len(self._adapters) + 1:02X}"

        def add():
            adapter = Adapter1(self, name, address, powered)
            self._adapters[name] = adapter
            self._badges.setdefault(name, {})
            self._bus.export(f"/org/bluez/{name}", adapter)
        self._call(add)

    def set_powered(self, adapter: str, on: bool) -> None:
        self._call(self._power, adapter, on)

    def add_badge(self, address: str, payload: Payload, rssi: int = -60, adapter: str = "hci0",
                  name: str | None = None) -> None:
        """A transmitter comes into range of `adapter`. `payload` is the manufacturer data
        ({company id: bytes}) or a function returning it at each advertisement."""
        def add():
            self._badges[adapter][address.upper()] = _Badge(address.upper(), payload, rssi, name)
        self._call(add)

    def move(self, address: str, rssi: int, adapter: str = "hci0") -> None:
        """The badge came nearer or went further: its next advertisements have this RSSI."""
        self._call(lambda: setattr(self._badges[adapter][address.upper()], "rssi", rssi))

    def set_data(self, address: str, payload: Payload, adapter: str = "hci0") -> None:
        self._call(lambda: setattr(self._badges[adapter][address.upper()], "payload", payload))

    def remove(self, address: str, adapter: str = "hci0") -> None:
        """The badge leaves range; BlueZ drops the device (InterfacesRemoved)."""
        def drop():
            badge = self._badges[adapter].pop(address.upper(), None)
            if badge and badge.device:
                self._bus.unexport(device_path(adapter, badge.address))
        self._call(drop)

    def clear(self) -> None:
        """Every badge leaves range at once (between two advertising rounds)."""
        def drop_all():
            for adapter, badges in self._badges.items():
                for badge in badges.values():
                    if badge.device is not None:
                        self._bus.unexport(device_path(adapter, badge.address))
                badges.clear()
        self._call(drop_all)

    def in_range(self, adapter: str = "hci0") -> list[str]:
        return self._call(lambda: sorted(self._badges[adapter]))

    def advertise(self, rounds: int = 1) -> int:
        """Every badge in range of a discovering adapter advertises `rounds` times now.
        Returns the number of announcements sent."""
        async def burst():
            sent = 0
            for _ in range(rounds):
                sent += await self._round()
            return sent
        return self._run(burst())

    # ---- inside the loop ---------------------------------------------------------------------
    def _kick(self) -> None:
        if self._wake:
            self._wake.set()

    async def _tick_forever(self) -> None:
        while True:
            await self._round()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.advertise_every)
            except asyncio.TimeoutError:
                pass

    async def _round(self) -> int:
        """One advertisement of every badge in range of a discovering adapter. Paced by a
        round trip to the bus every PACE messages: dbus-fast drops the connection when a
        write finds the socket full (BlockingIOError), so never let it fill."""
        sent = 0
        for name, adapter in list(self._adapters.items()):
            for badge in list(self._badges[name].values()):
                if not (adapter.powered and adapter.discovering) or badge.address not in self._badges[name]:
                    continue
                try:
                    sent += self._announce(name, badge)
                except Exception:  # a payload function failing must not stop the radio
                    log.exception("badge %s could not advertise", badge.address)
                if sent % PACE == 0:
                    await self._bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                                 interface="org.freedesktop.DBus.Peer", member="Ping"))
        self.announcements += sent
        self.rounds += 1
        return sent

    def _announce(self, adapter: str, badge: _Badge) -> int:
        data = badge.data()
        if badge.device is None:
            badge.device = Device1(f"/org/bluez/{adapter}", badge.address, badge.name, badge.rssi, data)
            badge.last = data
            self._bus.export(device_path(adapter, badge.address), badge.device)
            return 1
        changed = {"RSSI": badge.rssi}
        badge.device.rssi = badge.rssi
        if data != badge.last:
            badge.device.data, badge.last = data, data
            changed["ManufacturerData"] = _mfr(data)
        badge.device.emit_properties_changed(changed)
        return 1

    def _power(self, name: str, on: bool) -> None:
        adapter = self._adapters[name]
        if adapter.powered == on:
            return
        adapter.powered = on
        changed = {"Powered": on}
        if not on:
            if adapter.discovering:
                adapter.discovering = False
                changed["Discovering"] = False
            for badge in self._badges[name].values():   # BlueZ forgets temporary devices
                if badge.device is not None:
                    self._bus.unexport(device_path(name, badge.address))
                    badge.device = None
        adapter.emit_properties_changed(changed)

    def _forget(self, adapter: str, path: str) -> None:
        for badge in self._badges[adapter].values():
            if badge.device is not None and device_path(adapter, badge.address) == path:
                self._bus.unexport(path)
                badge.device = None
                return
        raise DBusError("org.bluez.Error.DoesNotExist", "Does Not Exist")

