"""The Android package: buildozer.spec asks for the permissions the app needs and lists the
libraries it imports, and the staged copy holds every module of ours the app imports (a
module missing from the APK would be a crash on the tablet)."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

from fieldapp.android import stage as staging

SPEC = Path(staging.__file__).with_name("buildozer.spec")
PURE_SERVER_MODULES = {"engine", "engine.forms", "engine.forms_feel", "engine.bpmn", "engine.bpmn.expressions",
                       "engine.bpmn.expr_ops", "engine.bpmn.decision_table"}
REQUIREMENT_OF = {"PIL": "pillow", "kivy": "kivy==2.3.1", "dbus_fast": "dbus-fast"}


def spec() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(SPEC)
    return parser


def test_the_spec_asks_for_bluetooth_location_camera_storage_and_network():
    permissions = spec()["app"]["android.permissions"]
    for needed in ("BLUETOOTH_SCAN", "BLUETOOTH_CONNECT", "android.permission.BLUETOOTH;", "ACCESS_FINE_LOCATION",
                   "CAMERA", "READ_MEDIA_IMAGES", "READ_EXTERNAL_STORAGE", "INTERNET",
                   "CHANGE_WIFI_MULTICAST_STATE", "POST_NOTIFICATIONS"):
        assert needed in permissions, needed


def test_every_library_the_app_imports_is_required_or_known_missing():
    requirements = {r.strip() for r in spec()["app"]["requirements"].split(",")}
    modules, others = staging.closure()
    assert "fieldapp.ui.screens.settings" in modules and "sync.client" in modules
    for top in others:
        wanted = REQUIREMENT_OF.get(top, top)
        assert wanted in requirements or top in staging.NOT_PACKAGED, f"{top} is imported but not in buildozer.spec"


def test_of_the_server_the_app_carries_only_the_pure_shared_modules():
    modules, _ = staging.closure()
    server = {m for m in modules if m.split(".")[0] == "engine"}
    assert server <= PURE_SERVER_MODULES, server - PURE_SERVER_MODULES


def test_the_staged_copy_runs_from_its_own_files(tmp_path):
    out = staging.stage(tmp_path / "android")
    assert (out / "main.py").is_file() and (out / "buildozer.spec").is_file()
    assert (out / "fieldapp" / "ui" / "app.kv").is_file()
    # Import the app from the staged copy only: a module of ours loaded from elsewhere is a gap in the APK.
    modules, _ = staging.closure()
    check = ("import importlib, sys\n"
             "for name in sys.argv[2:]: importlib.import_module(name)\n"
             "ours = [m for m in sys.modules if m.split('.')[0] in ('fieldapp','sync','devices','engine')]\n"
             "outside = [m for m in ours if getattr(sys.modules[m], '__file__', None) and "
             "not sys.modules[m].__file__.startswith(sys.argv[1])]\n"
             "print(len(ours)); assert not outside, outside\n")
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1", "KIVY_LOG_MODE": "PYTHON",
           "KIVY_NO_FILELOG": "1", "KIVY_HOME": str(tmp_path / "kivy"), "PYTHONPATH": str(out)}
    run = subprocess.run([sys.executable, "-c", check, str(out), *sorted(modules)], cwd=out, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert int(run.stdout.split()[-1]) == len(modules)
