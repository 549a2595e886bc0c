"""The server's settings, in one place (pydantic-settings).

Every setting comes from the environment: `DATABASE_URL`, and `CITYLOOP_<NAME>` for the
others (the table in README.md). A bad value stops the server at start with a message naming
the variable, instead of a default used quietly. Secrets (the token-signing key, the
badge-key sealing secret) come from a variable or from a file named by `..._FILE` (a Docker
or systemd secret); a server with neither falls back to a key it keeps in the database, and
says so in its log at start.

`current()` is read once per process (tests that change the environment call `reset()`)."""
from __future__ import annotations

import functools
import logging
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "current", "reset"]

log = logging.getLogger("cityloop.settings")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYLOOP_", extra="ignore", frozen=True)

    # ---- where things are --------------------------------------------------------------
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"),
                                     description="the database; embedded SQLite under the data directory if unset")
    data: Path = Field(default=Path("data"), description="attachments, upload parts, the SQLite file")
    timezone: str = Field(default="Asia/Shanghai", description="the district's time zone (calendar days, shifts)")

    # ---- the server process ------------------------------------------------------------
    threads: int = Field(default=4, ge=1, le=256, description="request threads per worker")
    upload_threads: int = Field(default=3, ge=1, le=64, description="threads per worker for tablet photo uploads")
    upload_idle_seconds: float = Field(default=30.0, gt=0, le=3600,
                                       description="a photo upload silent this long is taken as cut off")
    scheduler: bool = Field(default=True, description="run the timer sweep and calendar jobs in this process")
    demo: bool = Field(default=False, description="seed the demo district into an empty database at start")
    advertise: bool = Field(default=False, description="announce the sync API on the LAN (mDNS)")
    server_id: str | None = Field(default=None, max_length=32, description="the id announced on the LAN")
    debug: bool = False
    live_workflows: int = Field(default=1000, ge=0, le=100_000,
                                description="workflows of recent steps each worker keeps in memory (0: none)")

    # ---- log-in limits (engine.auth.service explains the numbers) ------------------------
    login_account_failures: int = Field(default=5, ge=1, le=1000, description="failures per account at one address")
    login_address_failures: int = Field(default=20, ge=1, le=100_000, description="failures per address")
    login_window_minutes: float = Field(default=15, gt=0, le=24 * 60, description="how long a failure counts")
    login_hash_slots: int = Field(default=2, ge=1, le=64, description="password checks at once per process")
    login_hash_wait_seconds: float = Field(default=5.0, gt=0, le=60, description="wait for a slot, then 503")

    # ---- intake ------------------------------------------------------------------------
    open311_per_hour: int = Field(default=20, ge=1, le=1_000_000,
                                  description="anonymous Open311 reports per sender address per hour")
    camera_min_confidence: float = Field(default=0.6, ge=0, le=1)
    camera_radius_m: float = Field(default=50.0, ge=1, le=10_000)
    camera_window_hours: float = Field(default=24.0, ge=0.01, le=24 * 30)
    intake_max_distance_m: float = Field(default=1000.0, ge=1, le=100_000)
    intake_default_area: str = Field(default="unlocated", min_length=1, max_length=40)

    # ---- field sync and badges ---------------------------------------------------------
    sync_skew_seconds: int = Field(default=300, ge=1, le=86_400, description="a tablet clock off by more is flagged")
    badge_skew_steps: int = Field(default=2, ge=0, le=20, description="badge token window, in 30 s steps")
    badge_clone_metres: float = Field(default=1000.0, ge=10, le=1_000_000)

    # ---- the web console ---------------------------------------------------------------
    console_dir: Path | None = Field(default=None,
                                     description="the built console (console/dist beside the code if unset)")
    map_tiles: str = Field(default="", max_length=500,
                           description="map tile URL template ({z}/{x}/{y}); empty: a plain background, no tiles")
    map_attribution: str = Field(default="", max_length=300, description="the tile provider's credit line")

    @field_validator("map_tiles")
    @classmethod
    def _tile_template(cls, value: str) -> str:
        placeholders = all(k in value for k in ("{z}", "{x}", "{y}"))
        if value and not (value.startswith(("https://", "http://", "/")) and placeholders):
            raise ValueError("a tile URL template is http(s)://... or /... with {z}, {x} and {y}")
        return value

    # ---- secrets -----------------------------------------------------------------------
    token_key: SecretStr | None = Field(default=None, description="signs access tokens (every worker the same)")
    token_key_file: Path | None = None
    badge_key_secret: SecretStr | None = Field(default=None, description="seals badge master keys at rest")
    badge_key_secret_file: Path | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)") from None
        return value

    @property
    def district_tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def camera_window(self) -> timedelta:
        return timedelta(hours=self.camera_window_hours)

    def secret(self, name: str) -> str | None:
        """A secret's text from its variable or its file (`token_key`, `badge_key_secret`),
        or None when neither is set. An unreadable or empty file is an error, not a None."""
        value: SecretStr | None = getattr(self, name)
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        path: Path | None = getattr(self, f"{name}_file")
        if path is None:
            return None
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise RuntimeError(f"CITYLOOP_{name.upper()}_FILE={path}: cannot read it ({exc.strerror})") from None
        if not text:
            raise RuntimeError(f"CITYLOOP_{name.upper()}_FILE={path} is empty")
        return text


@functools.cache
def current() -> Settings:
    """This process's settings, read from the environment once."""
    return Settings()


def reset() -> None:
    """Read the environment again on the next `current()` (tests that change it)."""
    current.cache_clear()
