"""Badge keys and registration (plain Python over the database; no HTTP).

A rotating badge has a random 32-byte master key, made on the server (provision_key) and
printed only for the badge programmer (`cityloop badge key`); it is never sent over the
API. At rest it is sealed (Badge.secret = "k1:" + base64url(nonce | key XOR stream | tag),
stream and tag from HMAC-SHA256 under a key-encryption key): that key comes from the settings
(CITYLOOP_BADGE_KEY_SECRET or CITYLOOP_BADGE_KEY_SECRET_FILE: keep it outside the database, the
same for every worker; changing it makes sealed keys unreadable), else from a ServerSecret
row, which protects only against leaks of the badge table alone (logged as a warning). Plain hex
secrets (older rows, fixtures) are still read.
Tablets get derived epoch keys (devices.token.derive_epoch_key), for today and
tomorrow, for their own crews' badges only (epoch_keys). A legacy badge is a static
iBeacon registered by uuid/major/minor; its sightings count as unverified.
Checking sightings is in engine.domain.sightings."""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlmodel import Session, select

from devices import token
from engine import settings
from engine.db.models import ServerSecret
from engine.db.upsert import insert_if_new
from engine.domain.attendance import OPENS_BEFORE
from engine.domain.models import Badge, Cleaner, Crew
from engine.runtime.errors import Conflict, NotFound, ValidationFailed
from engine.settings import Settings

__all__ = ["BadgePolicy", "KEK_ENV", "KEY_BYTES", "KEY_DAYS", "SEALED", "epoch_keys", "master_key", "parse_beacon",
           "provision_key", "register", "registration_errors", "seal"]

KEY_BYTES = 32
KEY_DAYS = 2            # epoch keys handed to a tablet: today and tomorrow (UTC days)
SEALED = "k1:"
_NONCE, _TAG = 12, 12
KEK_ENV = "CITYLOOP_BADGE_KEY_SECRET"
log = logging.getLogger("cityloop.badges")


@dataclass(frozen=True)
class BadgePolicy:
    """How strict verification is: clock-skew window (in token steps either side), the
    distance at which the same badge at two places is a clone, and how long before a shift
    starts its check-in window opens."""
    skew_steps: int = token.SKEW_STEPS
    clone_distance_m: float = token.CLONE_DISTANCE_M
    opens_before: timedelta = OPENS_BEFORE
    max_device_skew: timedelta = timedelta(minutes=5)   # seen_at this far in the server's future is refused

    @property
    def clone_window(self) -> timedelta:
        """Two sightings of one badge this close in time and far apart are a clone."""
        return timedelta(seconds=(2 * self.skew_steps + 1) * token.STEP_SECONDS)

    @classmethod
    def from_settings(cls, config: Settings | None = None) -> "BadgePolicy":
        config = config or settings.current()
        return cls(skew_steps=config.badge_skew_steps, clone_distance_m=config.badge_clone_metres)


# ---- keys ------------------------------------------------------------------------------------------
@functools.cache
def _warn_once() -> None:
    log.warning("badge master keys are sealed with a key kept in the database: set CITYLOOP_BADGE_KEY_SECRET "
                "(or ..._FILE) to keep it apart / 工牌密钥的加密密钥保存在数据库中，请配置 CITYLOOP_BADGE_KEY_SECRET")


def _kek(s: Session) -> bytes:
    """The key-encryption key (read once per transaction: never cached across databases)."""
    cached = s.info.get("badge_kek")
    if cached is None:
        configured = settings.current().secret("badge_key_secret")
        if configured:
            cached = hashlib.sha256(b"cityloop-badge-kek" + configured.encode()).digest()
        else:
            _warn_once()
            insert_if_new(s, ServerSecret, {"name": "badge_keys", "value": secrets.token_hex(32)})  # workers may race
            value = s.exec(select(ServerSecret.value).where(ServerSecret.name == "badge_keys")).one()
            cached = hashlib.sha256(b"cityloop-badge-kek" + value.encode()).digest()
        s.info["badge_kek"] = cached
    return cached


def _stream(kek: bytes, nonce: bytes, n: int) -> bytes:
    blocks = (hmac.new(kek, b"enc" + nonce + bytes([i]), hashlib.sha256).digest() for i in range((n + 31) // 32))
    return b"".join(blocks)[:n]


def _tag(kek: bytes, badge_id: str, nonce: bytes, sealed: bytes) -> bytes:
    return hmac.new(kek, b"tag" + badge_id.encode() + b"\x00" + nonce + sealed, hashlib.sha256).digest()[:_TAG]


def seal(s: Session, badge_id: str, key: bytes) -> str:
    """The stored form of a master key (bound to its badge id)."""
    kek, nonce = _kek(s), secrets.token_bytes(_NONCE)
    sealed = bytes(a ^ b for a, b in zip(key, _stream(kek, nonce, len(key))))
    return SEALED + base64.urlsafe_b64encode(nonce + sealed + _tag(kek, badge_id, nonce, sealed)).decode()


def master_key(s: Session, badge: Badge) -> bytes | None:
    """The badge's master key, or None (legacy, not provisioned, or unreadable)."""
    if badge.kind != "rotating" or not badge.secret:
        return None
    if not badge.secret.startswith(SEALED):
        try:
            return bytes.fromhex(badge.secret)
        except ValueError:
            return None
    try:
        raw = base64.urlsafe_b64decode(badge.secret[len(SEALED):])
    except ValueError:
        return None
    nonce, sealed, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    kek = _kek(s)
    if len(raw) <= _NONCE + _TAG or not hmac.compare_digest(_tag(kek, badge.id, nonce, sealed), tag):
        return None
    return bytes(a ^ b for a, b in zip(sealed, _stream(kek, nonce, len(sealed))))


def provision_key(s: Session, badge_id: str) -> tuple[bytes, bool]:
    """(the master key of a rotating badge, whether it was made just now)."""
    badge = s.get(Badge, badge_id)
    if badge is None:
        raise NotFound(f"no badge {badge_id!r} / 没有该工牌")
    if badge.kind != "rotating":
        raise Conflict(f"badge {badge_id!r} is a legacy iBeacon badge: it has no key / 静态信标工牌没有密钥")
    key = master_key(s, badge)
    if key is not None:
        return key, False
    if badge.secret:
        raise Conflict(f"the key of badge {badge_id!r} cannot be read with this server's key-encryption key "
                       f"(was {KEK_ENV} changed?); it was not replaced / 无法读取工牌密钥")
    key = secrets.token_bytes(KEY_BYTES)
    badge.secret = seal(s, badge_id, key)
    s.add(badge)
    return key, True


def parse_beacon(text: str) -> tuple[UUID, int, int]:
    """"<uuid>:<major>:<minor>" (or "/" separated) -> (uuid, major, minor); ValueError if not."""
    parts = text.replace("/", ":").rsplit(":", 2)
    if len(parts) != 3:
        raise ValueError("an iBeacon identity is <uuid>:<major>:<minor>")
    uuid, major, minor = UUID(parts[0]), int(parts[1]), int(parts[2])
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ValueError("iBeacon major and minor are 0..65535")
    return uuid, major, minor


def _is_hex_bytes(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def registration_errors(badge_id: str, kind: str, secret: str | None,
                        beacon: tuple[UUID, int, int] | None) -> dict[str, str]:
    """What is wrong with a badge registration (empty if nothing)."""
    errors: dict[str, str] = {}
    if kind == "rotating":
        try:
            token.check_badge_id(badge_id)
        except token.TokenError as exc:
            errors["id"] = str(exc)
        if beacon is not None:
            errors["beacon"] = "only a legacy badge has an iBeacon identity / 只有静态信标工牌有 iBeacon 标识"
        if secret is not None and len(secret) < 32:
            errors["secret"] = "a key has at least 16 bytes (32 hex digits)"
        elif secret is not None and not _is_hex_bytes(secret):
            errors["secret"] = "a key is whole bytes in hex: an even number of hex digits / 密钥须为偶数位十六进制数"
    elif kind == "legacy":
        if secret:
            errors["secret"] = "a legacy (static) badge has no key / 静态信标工牌没有密钥"
    else:
        errors["kind"] = "rotating or legacy"
    return errors


def register(s: Session, badge_id: str, kind: str = "rotating", secret: str | None = None,
             beacon: tuple[UUID, int, int] | None = None) -> Badge:
    """Add a badge. A rotating badge without a given key gets one made here."""
    errors = registration_errors(badge_id, kind, secret, beacon)
    if errors:
        raise ValidationFailed(errors)
    if s.get(Badge, badge_id) is not None:
        raise Conflict(f"badge {badge_id!r} already exists")
    ident = token.legacy_id(*beacon) if beacon else None
    if ident and s.exec(select(Badge.id).where(Badge.beacon == ident)).first() is not None:
        raise ValidationFailed({"beacon": f"iBeacon {ident} is already registered to another badge"})
    key = (bytes.fromhex(secret) if secret else secrets.token_bytes(KEY_BYTES)) if kind == "rotating" else None
    badge = Badge(id=badge_id, kind=kind, secret=seal(s, badge_id, key) if key else None, beacon=ident)
    s.add(badge)
    s.flush()
    return badge


def epoch_keys(s: Session, crew_code: str, now: datetime, days: int = KEY_DAYS) -> list[dict]:
    """Derived keys for the crew's active rotating badges, for the UTC days from today:
    [{badge_id, cleaner_id, epoch, valid_from, valid_until, key (hex)}]. Never a master key."""
    if s.get(Crew, crew_code) is None:
        raise NotFound(f"no crew {crew_code!r}")
    rows = s.exec(select(Badge, Cleaner.id).join(Cleaner, Cleaner.badge_id == Badge.id)
                  .where(Cleaner.crew_code == crew_code, Badge.active == True, Badge.kind == "rotating")  # noqa: E712
                  .order_by(Badge.id)).all()
    first = token.epoch_at(now)
    out = []
    for badge, cleaner_id in rows:
        master = master_key(s, badge)
        if master is None:
            continue
        for epoch in range(first, first + days):
            start, end = token.epoch_bounds(epoch)
            out.append(dict(badge_id=badge.id, cleaner_id=cleaner_id, epoch=epoch, valid_from=start,
                            valid_until=end, key=token.derive_epoch_key(master, epoch).hex()))
    return out
