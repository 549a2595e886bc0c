"""Unmodified bleak against the fake BlueZ on a private bus: badges with manufacturer data
are discovered, RSSI changes and rotating frames come through, a badge that leaves stops
being reported; Bluetooth being unavailable is a state, not a crash."""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone

from bleak import BleakScanner

from devices import token
from devices.bluez.fake import FakeBluez
from devices.scanner import BadgeScanner, BluetoothState, Debouncer, Sighting, probe, state_of
from tests.waiting import until

KEY = bytes(range(32))
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)


def frame(badge: str, at: datetime = T0) -> dict[int, bytes]:
    return {token.COMPANY_ID: token.mint(badge, KEY, at)}


async def _until(predicate, timeout=10.0):
    await until(predicate, timeout)


async def _rounds(fake: FakeBluez, n: int) -> None:
    """Wait until the fake has done `n` more advertising rounds (not a fixed time)."""
    start = fake.rounds
    await until(lambda: fake.rounds >= start + n, 10, what=f"{n} advertising rounds")


def test_unmodified_bleak_sees_manufacturer_data_rssi_changes_and_badges_leaving(fake):
    fake.add_badge("C0:FF:EE:00:00:01", frame("B0001"), rssi=-80, name="badge-1")
    fake.add_badge("C0:FF:EE:00:00:02", frame("B0002"), rssi=-60)
    seen: list[tuple[str, int, dict, str | None]] = []
    removed_at = {}

    async def main():
        scanner = BleakScanner(lambda d, adv: seen.append((d.address, adv.rssi, dict(adv.manufacturer_data), d.name)))
        await scanner.start()
        await _until(lambda: {a for a, *_ in seen} == {"C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02"})
        fake.move("C0:FF:EE:00:00:01", -45)
        await _until(lambda: any(a == "C0:FF:EE:00:00:01" and r == -45 for a, r, *_ in seen))
        later = frame("B0001", T0 + timedelta(seconds=token.STEP_SECONDS))
        fake.set_data("C0:FF:EE:00:00:01", later)
        await _until(lambda: any(m == later for _, _, m, _ in seen))
        fake.remove("C0:FF:EE:00:00:02")
        removed_at["n"] = n = len(seen)
        # several advertising rounds of the remaining badge have come through since
        await _until(lambda: sum(a == "C0:FF:EE:00:00:01" for a, *_ in seen[n:]) >= 4)
        await scanner.stop()

    asyncio.run(main())
    by_addr = {a: (m, n) for a, _, m, n in seen}
    assert by_addr["C0:FF:EE:00:00:02"][0] == frame("B0002")
    assert by_addr["C0:FF:EE:00:00:01"][1] == "badge-1"
    assert token.decode(by_addr["C0:FF:EE:00:00:01"][0][token.COMPANY_ID]).badge_id == "B0001"
    after = seen[removed_at["n"] + 1:]   # one announcement may already be in flight
    assert after and {a for a, *_ in after} == {"C0:FF:EE:00:00:01"}


def test_badge_scanner_decodes_counts_bad_frames_and_follows_the_adapter(fake):
    legacy = token.ibeacon("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 7, 42)
    fake.add_badge("C0:FF:EE:00:00:01", frame("B0001"), rssi=-70)
    fake.add_badge("C0:FF:EE:00:00:03", {token.IBEACON_COMPANY_ID: legacy}, rssi=-65)
    fake.add_badge("C0:FF:EE:00:00:04", {token.COMPANY_ID: b"\x01\x05garbage"}, rssi=-50)
    fake.add_badge("C0:FF:EE:00:00:05", {0x0006: b"\x01\x09\x20\x02", token.IBEACON_COMPANY_ID: b"\x10\x05\x01"})
    sightings: list[Sighting] = []
    states: list[BluetoothState] = []

    async def main():
        stop = asyncio.Event()
        scanner = BadgeScanner(sightings.append, on_state=lambda s, d: states.append(s), check_every=0.2)
        task = asyncio.create_task(scanner.run(stop))
        await _until(lambda: {s.badge_id for s in sightings}
                     >= {"B0001", "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e/7/42"})
        await _until(lambda: scanner.counts.invalid >= 1 and scanner.counts.foreign >= 2)
        fake.set_powered("hci0", False)
        await _until(lambda: scanner.state == BluetoothState.ADAPTER_OFF)
        n = len(sightings)
        await _rounds(fake, 4)     # rounds in which the badges would have advertised
        assert len(sightings) == n, "no sightings while the adapter is off"
        fake.set_powered("hci0", True)
        await _until(lambda: scanner.state == BluetoothState.AVAILABLE)
        await _until(lambda: len(sightings) > n)
        stop.set()
        await asyncio.wait_for(task, 10)
        return scanner

    scanner = asyncio.run(main())
    assert states[:3] == [BluetoothState.AVAILABLE, BluetoothState.ADAPTER_OFF, BluetoothState.AVAILABLE]
    legacy_seen = [s for s in sightings if s.legacy]
    assert legacy_seen and legacy_seen[0].company_id == token.IBEACON_COMPANY_ID and legacy_seen[0].rssi == -65
    rotating = next(s for s in sightings if s.badge_id == "B0001")
    assert rotating.data == frame("B0001")[token.COMPANY_ID] and rotating.address == "C0:FF:EE:00:00:01"
    assert rotating.item()["data"] == rotating.data.hex() and rotating.item()["seen_at"].endswith("+00:00")
    assert scanner.counts.sightings == len(sightings)
    assert {s.badge_id for s in sightings} <= {"B0001", legacy_seen[0].badge_id}


def test_no_system_bus_is_a_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-socket")
    states = []

    async def main():
        stop = asyncio.Event()
        scanner = BadgeScanner(lambda s: None, on_state=lambda s, d: states.append((s, d)), check_every=0.1)
        task = asyncio.create_task(scanner.run(stop))
        await _until(lambda: states)
        stop.set()
        await task
        with_bleak = None
        try:
            await BleakScanner(lambda d, a: None).start()
        except Exception as exc:    # what bleak itself raises without a bus
            with_bleak = state_of(exc)
        return with_bleak

    with_bleak = asyncio.run(main())
    assert states[0][0] == BluetoothState.NO_BUS and "no-such-socket" in states[0][1]
    assert with_bleak[0] == BluetoothState.NO_BUS
    assert "D-Bus" in BluetoothState.NO_BUS.text and "蓝牙" in BluetoothState.NO_BUS.text


def test_bus_without_bluez_and_bluez_without_adapter_are_states(bus):
    async def main():
        without_bluez = await probe()
        try:
            await BleakScanner(lambda d, a: None).start()
        except Exception as exc:
            bleak_says = state_of(exc)
        with FakeBluez(bus.address, adapters=()) as empty:
            no_adapter = await probe()
            empty.add_adapter("hci0", powered=False)
            off = await probe()
            wrong = await probe("hci7")
            empty.set_powered("hci0", True)
            on = await probe()
        return without_bluez, bleak_says, no_adapter, off, wrong, on

    without_bluez, bleak_says, no_adapter, off, wrong, on = asyncio.run(main())
    assert without_bluez[0] == BluetoothState.NO_BLUEZ and "ServiceUnknown" in without_bluez[1]
    assert bleak_says[0] == BluetoothState.NO_BLUEZ
    assert no_adapter[0] == BluetoothState.NO_ADAPTER
    assert off == (BluetoothState.ADAPTER_OFF, "hci0")
    assert wrong[0] == BluetoothState.NO_ADAPTER and "hci7" in wrong[1]
    assert on == (BluetoothState.AVAILABLE, "hci0")


def test_bleak_refused_by_a_powered_off_adapter_maps_to_adapter_off(fake):
    fake.set_powered("hci0", False)

    async def main():
        try:
            await BleakScanner(lambda d, a: None).start()
        except Exception as exc:
            return state_of(exc)

    state, detail = asyncio.run(main())
    assert state == BluetoothState.ADAPTER_OFF and "powered" in detail.lower()


# ---- the debouncer (pure) ----------------------------------------------------------------------
def _s(badge: str, rssi: int, second: float, data: bytes = b"f1") -> Sighting:
    return Sighting(badge, token.COMPANY_ID, data, rssi, T0 + timedelta(seconds=second))


def test_debouncer_keeps_first_time_and_strongest_rssi_per_badge_and_frame():
    d = Debouncer(window=2.0, repeat_after=60)
    for s in (_s("A", -80, 0.0), _s("A", -55, 0.5), _s("A", -70, 1.0), _s("B", -90, 1.5),
              _s("A", -60, 0.7, data=b"replayed")):
        d.add(s)
    assert d.due(T0 + timedelta(seconds=1.9)) == []
    out = d.due(T0 + timedelta(seconds=2.0))
    assert [(s.badge_id, s.data, s.rssi, s.seen_at, s.count) for s in out] == [("A", b"f1", -55, T0, 3)]
    out = d.due(T0 + timedelta(seconds=2.7))          # another frame of the same badge: its own check-in
    assert [(s.badge_id, s.data, s.rssi, s.seen_at) for s in out] == [
        ("A", b"replayed", -60, T0 + timedelta(seconds=0.7))]
    assert d.pending() == 1
    d.add(_s("A", -40, 10))                           # same frame again, within repeat_after
    assert [s.badge_id for s in d.due(T0 + timedelta(seconds=20))] == ["B"]
    d.add(_s("A", -40, 61))                           # same frame after repeat_after: once more
    d.add(_s("A", -50, 30, data=b"f2"))               # the next token step: a new check-in
    out = d.due(T0 + timedelta(seconds=100))
    assert [(s.data, s.rssi) for s in out] == [(b"f2", -50), (b"f1", -40)]
    d.add(_s("C", -70, 200))
    assert [s.badge_id for s in d.due(T0 + timedelta(seconds=200), everything=True)] == ["C"]


def test_debouncer_is_bounded_against_a_flood_of_made_up_frames():
    d = Debouncer(window=2.0, max_open=100)
    for i in range(1000):
        d.add(_s(f"X{i}", -60, 0.0, data=i.to_bytes(4, "big")))
    assert d.pending() == 100 and d.dropped == 900
    assert len(d.due(T0 + timedelta(seconds=2))) == 100 and d.pending() == 0


def test_the_test_bed_is_not_the_real_system_bus(bus):
    assert os.environ["DBUS_SYSTEM_BUS_ADDRESS"] == bus.address
    assert bus.address.startswith("unix:path=") and str(bus.directory) in bus.address
