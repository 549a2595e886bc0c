"""The field app under test: a real Kivy window (offscreen SDL), driven with touches.

Kivy reads its environment once, on first import: it is set here, before anything imports
Kivy, with a temporary KIVY_HOME so the user's Kivy config is never read or written."""
from __future__ import annotations

import os
import tempfile

os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kivy-home-")   # this run's own, whatever the environment says

from fieldapp.ui.boot import headless  # noqa: E402  (no Kivy imported by it)

headless((1280, 800))

import pytest  # noqa: E402

from tests.fieldapp.driver import Driver, make_config  # noqa: E402


@pytest.fixture
def field_data(tmp_path):
    return tmp_path / "tablet"


@pytest.fixture
def start_app(field_data):
    """start_app(**config) -> Driver with the app running; stopped after the test."""
    drivers: list[Driver] = []

    def start(**overrides) -> Driver:
        from fieldapp.ui.app import FieldApp
        config = make_config(overrides.pop("data_dir", field_data), **overrides)
        d = Driver(FieldApp(config)).start()
        drivers.append(d)
        return d

    yield start
    for d in drivers:
        d.stop()


# ---- a real server for the connecting tests (additions for pair / sign-in / sync) ------------------
from datetime import datetime, timezone  # noqa: E402

from tests.api.conftest import PASSWORD, app  # noqa: E402,F401  (fixture: the seeded app with one account per role)
from tests.devices.conftest import LiveServer  # noqa: E402

TABLET_OWNER = "worker.clean-east.1"      # the unit_worker account of tests.api.conftest


@pytest.fixture
def field_server(app, clock):  # noqa: F811
    """The real app served over HTTP on 127.0.0.1 (uvicorn in a thread), its clock at the real
    time (the tablet stamps its entries with the real clock)."""
    clock.set(datetime.now(timezone.utc).replace(microsecond=0))
    live = LiveServer(app).start()
    yield live
    live.stop()


def register_tablet(system, owner: str = TABLET_OWNER, name: str = "tablet") -> tuple[str, str]:
    """What an administrator does (the server's own service): (device id, one-time code)."""
    from engine.auth import service
    with system.transaction() as s:
        device, code = service.create_device(s, name, "tablet", owner, "admin1", system.clock())
        return device.id, code


def revoke_tablet(system, device_id: str) -> None:
    from engine.auth import service
    with system.transaction() as s:
        service.revoke(s, device_id, system.clock())
