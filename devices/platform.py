"""Platform services for the field app and the gateway: location, photo, notification and a
stable device id, through plyer where the platform has them, with desktop fallbacks.

Every answer says where it came from (`source`), so the UI can tell the user "location from
settings, not GPS" and the server can weigh it:

| service      | plyer (Android/iOS)      | fallback on desktop Linux                                |
|--------------|--------------------------|----------------------------------------------------------|
| location     | gps                      | the configured location (settings / CITYLOOP_LOCATION)    |
| photo        | camera                   | a file chooser (the app's own, else plyer's: zenity ...)  |
| notification | notification             | an in-app message (the app drains `messages`)             |
| device id    | --                       | a UUID made once and stored under the data directory      |

plyer on desktop Linux has no GPS or camera (NotImplementedError), needs notify-send or
dbus-python for notifications, and its uniqueid is a MAC read with lshw, not a stable id; it
also picks a backend on first use and keeps it. No plyer failure ever escapes this module."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DeviceId", "Location", "Notice", "Photo", "Platform", "parse_location"]

log = logging.getLogger("cityloop.devices.platform")


@dataclass(frozen=True)
class Location:
    lat: float | None
    lon: float | None
    source: str                  # gps | configured | none
    accuracy_m: float | None = None
    message: str = ""

    @property
    def known(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class Photo:
    path: str | None
    source: str                  # camera | file_chooser | none
    message: str = ""


@dataclass(frozen=True)
class Notice:
    source: str                  # notification | in_app
    title: str
    message: str


@dataclass(frozen=True)
class DeviceId:
    id: str
    source: str                  # stored | created
    path: str


def _quiet(fn):
    """Call a plyer function; plyer prints tracebacks of backends it fails to import and
    warns about missing tools: we report the fallback ourselves."""
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def parse_location(text: str | None) -> tuple[float, float] | None:
    """"31.23,121.47" -> (31.23, 121.47); None if absent or not a valid place."""
    if not text:
        return None
    try:
        lat, lon = (float(x) for x in text.split(","))
    except ValueError:
        return None
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


class Platform:
    def __init__(self, data_dir: str | Path, configured_location: tuple[float, float] | None = None,
                 choose_file: Callable[[], str | None] | None = None, gps_timeout: float = 10.0):
        self.data_dir = Path(data_dir)
        self.configured = configured_location or parse_location(os.environ.get("CITYLOOP_LOCATION"))
        self.choose_file, self.gps_timeout = choose_file, gps_timeout
        self.messages: deque[Notice] = deque(maxlen=50)   # in-app messages for the UI to show

    # ---- location -----------------------------------------------------------------------------
    def location(self) -> Location:
        fix = self._gps_fix()
        if fix is not None:
            return fix
        if self.configured:
            return Location(*self.configured, "configured",
                            message="location from settings, not GPS / 位置来自设置，非 GPS")
        return Location(None, None, "none", message="no GPS and no configured location / 无 GPS，也未设置位置")

    def _gps_fix(self) -> Location | None:
        got, done = {}, threading.Event()

        def on_location(**kw):
            got.update(kw)
            done.set()
        try:
            from plyer import gps
            _quiet(lambda: gps.configure(on_location=on_location))
            _quiet(lambda: gps.start(minTime=1000, minDistance=0))
        except Exception as exc:           # NotImplementedError on desktop; anything from a backend
            log.debug("no GPS: %r", exc)
            return None
        try:
            if not done.wait(self.gps_timeout):
                return None
        finally:
            with contextlib.suppress(Exception):
                _quiet(gps.stop)
        try:
            return Location(float(got["lat"]), float(got["lon"]), "gps", float(got.get("accuracy") or 0) or None)
        except (KeyError, TypeError, ValueError):
            return None

    # ---- photo ----------------------------------------------------------------------------------
    def photo(self, filename: str) -> Photo:
        target = self.data_dir / "photos" / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        taken = self._camera(target)
        if taken is not None:
            return taken
        chosen = None
        try:
            chosen = self.choose_file() if self.choose_file else self._plyer_chooser()
        except Exception as exc:
            log.debug("file chooser failed: %r", exc)
        if chosen:
            return Photo(str(chosen), "file_chooser", "no camera: photo chosen from a file / 无相机：从文件选择照片")
        return Photo(None, "none", "no camera and no file chosen / 无相机，也未选择文件")

    def _camera(self, target: Path) -> Photo | None:
        done, result = threading.Event(), {}

        def on_complete(path):
            result["path"] = path
            done.set()
            return False
        try:
            from plyer import camera
            _quiet(lambda: camera.take_picture(filename=str(target), on_complete=on_complete))
        except Exception as exc:
            log.debug("no camera: %r", exc)
            return None
        if done.wait(120) and result.get("path") and Path(result["path"]).exists():
            return Photo(str(result["path"]), "camera")
        return None

    @staticmethod
    def _plyer_chooser() -> str | None:
        from plyer import filechooser
        chosen = _quiet(lambda: filechooser.open_file(title="Choose a photo / 选择照片",
                                                      filters=[["Images", "*.jpg", "*.jpeg", "*.png"]]))
        return chosen[0] if chosen else None

    # ---- notification -----------------------------------------------------------------------------
    def notify(self, title: str, message: str) -> Notice:
        try:
            from plyer import notification
            _quiet(lambda: notification.notify(title=title, message=message, app_name="cityloop", timeout=10))
            return Notice("notification", title, message)
        except Exception as exc:
            log.debug("no system notification: %r", exc)
        notice = Notice("in_app", title, message)
        self.messages.append(notice)
        return notice

    # ---- device id ----------------------------------------------------------------------------------
    def device_id(self) -> DeviceId:
        """A UUID made on first use and kept under the data directory (stable across restarts
        and updates; a reinstall that wipes the data directory makes a new one)."""
        path = self.data_dir / "device-id"
        damaged = False
        try:
            return DeviceId(str(uuid.UUID(path.read_text().strip())), "stored", str(path))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("device id file %s unreadable (%r): making a new id", path, exc)
            damaged = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        new = str(uuid.uuid4())
        tmp = path.with_name(f"device-id.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            f.write(new + "\n")
            f.flush()
            os.fsync(f.fileno())
        if damaged:
            os.replace(tmp, path)
            return DeviceId(new, "created", str(path))
        try:
            os.link(tmp, path)                 # of two racing first uses, one wins
        except FileExistsError:
            return self.device_id()
        finally:
            tmp.unlink()
        return DeviceId(new, "created", str(path))
