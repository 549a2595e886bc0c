"""The field app's settings: where it keeps its data, which server it falls back to when
none is found on the LAN, its language. Read from the command line and the environment
(CITYLOOP_FIELD_*), never from the server's settings."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FieldConfig", "parse_args"]


@dataclass
class FieldConfig:
    data_dir: Path
    server: str | None = None             # typed or configured address; LAN discovery is tried first
    lang: str = "zh"
    sync_interval: float = 30.0           # seconds between background syncs while online
    discovery_timeout: float = 3.0
    discovery_interfaces: list[str] | None = None   # e.g. ["127.0.0.1"] in tests; None: the default ones
    location: str | None = None           # "lat,lon" when the device has no GPS (desktop)
    window_size: tuple[int, int] = (1280, 800)
    extra: dict = field(default_factory=dict)

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.db"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "field.db"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "device.token"


def parse_args(argv: list[str] | None = None, env: dict | None = None) -> FieldConfig:
    env = dict(os.environ if env is None else env)
    p = argparse.ArgumentParser(prog="python -m fieldapp", description="cityloop field app / 城运通外勤应用")
    p.add_argument("--data", default=env.get("CITYLOOP_FIELD_DATA", "field-data"),
                   help="where the app keeps its drafts, outbox and photos (default ./field-data)")
    p.add_argument("--server", default=env.get("CITYLOOP_FIELD_SERVER"),
                   help="server address to use when none is found on the LAN, e.g. http://10.0.0.5:8000")
    p.add_argument("--lang", choices=("zh", "en"), default=env.get("CITYLOOP_FIELD_LANG", "zh"))
    p.add_argument("--sync-interval", type=float, default=float(env.get("CITYLOOP_FIELD_SYNC_SECONDS", "30")))
    p.add_argument("--location", default=env.get("CITYLOOP_LOCATION"),
                   help="lat,lon to use where the device has no GPS (desktop)")
    p.add_argument("--lan", default=env.get("CITYLOOP_FIELD_LAN"),
                   help="comma-separated interface addresses to browse for the server (default: all)")
    p.add_argument("--size", default=env.get("CITYLOOP_FIELD_SIZE", "1280x800"), help="window size WxH")
    a = p.parse_args(argv)
    try:
        w, h = (int(x) for x in a.size.lower().split("x"))
    except ValueError:
        p.error(f"--size must look like 1280x800, not {a.size!r}")
    return FieldConfig(data_dir=Path(a.data).absolute(), server=a.server, lang=a.lang, sync_interval=a.sync_interval,
                       location=a.location, discovery_interfaces=a.lan.split(",") if a.lan else None,
                       window_size=(w, h))
