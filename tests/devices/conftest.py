"""The radio test bed: a private dbus-daemon per test and the fake org.bluez on it. bleak is
pointed at it only through DBUS_SYSTEM_BUS_ADDRESS, and runs in a fresh event loop per test
(it keeps one BlueZ connection per loop)."""
from __future__ import annotations

import pytest

from devices.bluez.bus import PrivateBus
from devices.bluez.fake import FakeBluez


@pytest.fixture
def bus(tmp_path, monkeypatch):
    with PrivateBus(tmp_path / "dbus") as b:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", b.address)
        yield b


@pytest.fixture
def fake(bus):
    with FakeBluez(bus.address, advertise_every=0.1) as f:
        yield f


# ---- a real HTTP server (the in-process app, whose clock the test controls) --------------------
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from tests.api.conftest import app, bearer, tokens  # noqa: E402,F401  (fixtures)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving the app on 127.0.0.1:port in a thread; start/stop at will (to play
    an unreachable server)."""

    def __init__(self, app, port: int | None = None):  # noqa: F811
        self.app, self.port = app, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = self._thread = None

    def start(self) -> "LiveServer":
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning", access_log=False, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(20)
            self._server = None


@pytest.fixture
def now_clock(clock):
    """The engine's clock at the real time: gateways stamp sightings with the real clock."""
    clock.set(datetime.now(timezone.utc).replace(microsecond=0))
    return clock


@pytest.fixture
def live_tokens(now_clock, tokens):  # noqa: F811
    """Access tokens issued at the real time (now_clock first, then tokens)."""
    return tokens


@pytest.fixture
def server(app, now_clock):  # noqa: F811
    live = LiveServer(app)
    yield live
    live.stop()


def pair_gateway(url: str, admin_token: str, name: str) -> str:
    """Register a gateway device as the admin and pair it: its `dev_...` token."""
    dev = httpx.post(f"{url}/api/v1/devices", json={"name": name, "kind": "gateway"},
                     headers=bearer(admin_token), timeout=30)
    assert dev.status_code == 201, dev.text
    from devices.pairing import pair
    return pair(url, dev.json()["id"], dev.json()["pairing_code"])


def plan_shift(url: str, supervisor_token: str, starts_at: datetime, crew: str = "crew-e1") -> dict:
    r = httpx.post(f"{url}/api/v1/attendance/shifts", json={"crew_code": crew, "starts_at": starts_at.isoformat()},
                   headers=bearer(supervisor_token), timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


KEY = bytes.fromhex("00" * 16)      # tests/district.py gives every badge this key
