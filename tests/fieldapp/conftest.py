"""The field app under test: a real Kivy window (offscreen SDL), driven with touches.

Kivy reads its environment once, on first import: it is set here, before anything imports
Kivy, with a temporary KIVY_HOME so the user's Kivy config is never read or written."""
from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
os.environ["KIVY_NO_ARGS"] = "1"
os.environ["KIVY_LOG_MODE"] = "PYTHON"
os.environ["KIVY_NO_FILELOG"] = "1"
os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kivy-home-")

import pytest  # noqa: E402

from fieldapp.ui.boot import prepare  # noqa: E402

prepare((1280, 800))

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
