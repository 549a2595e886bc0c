"""Badge token codec: the rotating BLE advertisement of a staff badge (pure, stdlib only).

A rotating badge advertises manufacturer data under COMPANY_ID (0xFFFF, the Bluetooth SIG
"no company / testing" id). The payload (without the 2-byte company id) is

    offset  size  field
    0       1     version (1)
    1       1     L = length of the badge id (1..ID_MAX)
    2       L     badge id, ASCII, ^[A-Za-z0-9][A-Za-z0-9._-]*$
    2+L     4     counter, big-endian: floor(unix time / STEP_SECONDS)
    6+L     8     mac = HMAC-SHA256(epoch_key, bytes 0 .. 6+L)[:8]

so it is 14 + L <= 24 bytes (fits a legacy advertisement: 31 bytes - flags 3 - AD header 2 -
company id 2). Badge ids of rotating badges are therefore at most ID_MAX = 10 characters.

Keys: every badge has a random master key. The MAC of a counter uses the key of its epoch
(a UTC day, EPOCH_STEPS counters): epoch_key = HMAC-SHA256(master, "cityloop-epoch" ||
epoch as 4 bytes big-endian). A tablet is given only the epoch keys of today and tomorrow,
so it can verify offline without ever holding a master key. verify() works from either.

Legacy badges are static iBeacons (Apple company id 0x004C, payload 02 15 uuid major minor
tx). They carry no secret: decode() returns a legacy Frame whose badge_id is
legacy_id(uuid, major, minor); the server maps it to a registered badge, "unverified".
"""
from __future__ import annotations

import hashlib
import hmac
import math
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Mapping
from uuid import UUID

__all__ = ["CLONE_DISTANCE_M", "COMPANY_ID", "COUNTER_BACK", "CloneWatch", "EPOCH_STEPS", "FORGED", "Frame",
           "IBEACON_COMPANY_ID", "ID_MAX", "INVALID", "LEGACY", "MAC_LEN", "MAX_PAYLOAD", "MESSAGES", "NO_KEY", "OK",
           "OUTSIDE_WINDOW", "Place", "SKEW_STEPS", "STEP_SECONDS", "TokenError", "VERSION", "Verification",
           "check_badge_id", "counter_at", "decode", "derive_epoch_key", "distance_m", "epoch_at", "epoch_bounds",
           "ibeacon", "legacy_id", "mint", "mint_counter", "time_of", "verify"]

COMPANY_ID = 0xFFFF                 # Bluetooth SIG: reserved for testing / no company
IBEACON_COMPANY_ID = 0x004C         # Apple (iBeacon)
VERSION = 1
STEP_SECONDS = 30                   # one counter step
EPOCH_STEPS = 86400 // STEP_SECONDS  # one epoch key per UTC day
SKEW_STEPS = 2                      # default clock-skew window: +-2 steps (+-60 s)
ID_MAX = 10                         # longest badge id a rotating badge can advertise
MAC_LEN = 8
MAX_PAYLOAD = 24
CLONE_DISTANCE_M = 1000.0           # same token this far apart is a clone (default)
_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]*")
_EPOCH_LABEL = b"cityloop-epoch"
_IBEACON_PREFIX = b"\x02\x15"
_UNIX0 = datetime(1970, 1, 1, tzinfo=timezone.utc)

# verification reasons
OK = "ok"
LEGACY = "legacy"                   # a static iBeacon: accepted as unverified, never as verified
INVALID = "invalid"                 # not a badge frame at all
FORGED = "forged"                   # the MAC does not match the badge's key
OUTSIDE_WINDOW = "outside_window"   # a valid token, but not from around this time (replay)
COUNTER_BACK = "counter_back"       # older than a token already accepted from this badge (replay)
NO_KEY = "no_key"                   # no key for this badge / epoch: cannot say
MESSAGES = {
    OK: "verified / 已验证",
    LEGACY: "static iBeacon badge: unverified / 静态信标工牌：未验证",
    INVALID: "not a valid badge frame / 无效的工牌信号",
    FORGED: "forged frame: the code does not match the badge's key / 伪造信号：校验码与工牌密钥不符",
    OUTSIDE_WINDOW: ("token outside its time window (replayed or clock wrong)"
                     " / 令牌不在有效时间窗口内（重放或时钟错误）"),
    COUNTER_BACK: "counter went back (replayed frame) / 计数器倒退（重放信号）",
    NO_KEY: "no key for this badge and day / 没有该工牌当日的密钥",
}


class TokenError(ValueError):
    """The only exception decode() raises: the bytes are not a badge frame."""


@dataclass(frozen=True)
class Frame:
    version: int                    # 0 for legacy iBeacon frames
    badge_id: str                   # for legacy frames: legacy_id(uuid, major, minor)
    counter: int                    # 0 for legacy frames
    mac: bytes                      # b"" for legacy frames
    legacy: bool = False
    uuid: UUID | None = None        # legacy only
    major: int | None = None
    minor: int | None = None
    tx_power: int | None = None
    signed: bytes = field(default=b"", repr=False)   # the bytes the MAC covers

    @property
    def token(self) -> str:
        """What identifies this one token (for the two-places check): id, counter and mac."""
        return self.badge_id if self.legacy else f"{self.badge_id}/{self.counter}/{self.mac.hex()}"

    @property
    def epoch(self) -> int:
        return self.counter // EPOCH_STEPS


@dataclass(frozen=True)
class Verification:
    ok: bool                        # True only for a rotating frame that verified
    reason: str                     # one of OK, LEGACY, INVALID, FORGED, OUTSIDE_WINDOW, COUNTER_BACK, NO_KEY
    frame: Frame | None = None
    drift: int | None = None        # frame counter minus the counter at `at`, in steps
    detail: str = ""

    @property
    def message(self) -> str:
        return MESSAGES[self.reason] + (f" ({self.detail})" if self.detail else "")


# ---- time --------------------------------------------------------------------------------------
def counter_at(at: datetime) -> int:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise TokenError("a time with a UTC offset is needed")
    return math.floor((at - _UNIX0) / timedelta(seconds=STEP_SECONDS))


def epoch_at(at: datetime) -> int:
    return counter_at(at) // EPOCH_STEPS


def epoch_bounds(epoch: int) -> tuple[datetime, datetime]:
    """[start, end) of an epoch key's validity, UTC."""
    start = _UNIX0 + timedelta(seconds=epoch * EPOCH_STEPS * STEP_SECONDS)
    return start, start + timedelta(seconds=EPOCH_STEPS * STEP_SECONDS)


def time_of(counter: int) -> datetime:
    return _UNIX0 + timedelta(seconds=counter * STEP_SECONDS)


# ---- keys and minting ----------------------------------------------------------------------------
def derive_epoch_key(master: bytes, epoch: int) -> bytes:
    if not 0 <= epoch < 2**32:
        raise TokenError(f"epoch {epoch} out of range")
    return hmac.new(bytes(master), _EPOCH_LABEL + epoch.to_bytes(4, "big"), hashlib.sha256).digest()


def check_badge_id(badge_id: str) -> str:
    """The id a rotating badge can advertise, or TokenError with a clear message."""
    raw = badge_id.encode("ascii", "replace") if isinstance(badge_id, str) else b""
    if not raw or len(raw) > ID_MAX or _ID.fullmatch(raw) is None:
        raise TokenError(f"a rotating badge id must be 1 to {ID_MAX} characters of A-Z a-z 0-9 . _ - "
                         f"starting with a letter or digit, got {badge_id!r} "
                         f"/ 轮换工牌编号须为1至{ID_MAX}个字母、数字或 . _ -")
    return badge_id


def _signed(badge_id: str, counter: int) -> bytes:
    raw = check_badge_id(badge_id).encode("ascii")
    if not 0 <= counter < 2**32:
        raise TokenError(f"counter {counter} out of range")
    return bytes((VERSION, len(raw))) + raw + counter.to_bytes(4, "big")


def _mac(epoch_key: bytes, signed: bytes) -> bytes:
    return hmac.new(epoch_key, signed, hashlib.sha256).digest()[:MAC_LEN]


def mint_counter(badge_id: str, key: bytes, counter: int) -> bytes:
    """The payload for a given counter (the badge firmware's job; also for simulators)."""
    signed = _signed(badge_id, counter)
    return signed + _mac(derive_epoch_key(key, counter // EPOCH_STEPS), signed)


def mint(badge_id: str, key: bytes, at: datetime) -> bytes:
    """The manufacturer-data payload (without the company id) a badge advertises at `at`."""
    return mint_counter(badge_id, key, counter_at(at))


def ibeacon(uuid: UUID, major: int, minor: int, tx_power: int = -59) -> bytes:
    """The payload (under IBEACON_COMPANY_ID) of a static legacy badge."""
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF and -128 <= tx_power <= 127):
        raise TokenError("iBeacon major/minor are 0..65535 and tx power -128..127")
    return _IBEACON_PREFIX + UUID(str(uuid)).bytes + struct.pack(">HHb", major, minor, tx_power)


def legacy_id(uuid: UUID, major: int, minor: int) -> str:
    return f"ibeacon:{UUID(str(uuid))}/{major}/{minor}"


# ---- decoding and verifying -------------------------------------------------------------------------
def decode(payload: bytes, company_id: int = COMPANY_ID) -> Frame:
    """Parse a payload; TokenError (and nothing else) if it is not a badge frame."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TokenError("payload must be bytes")
    data = bytes(payload)
    if company_id == IBEACON_COMPANY_ID:
        if len(data) != 23 or data[:2] != _IBEACON_PREFIX:
            raise TokenError("not an iBeacon frame (02 15, 23 bytes)")
        uuid = UUID(bytes=data[2:18])
        major, minor, tx = struct.unpack(">HHb", data[18:23])
        return Frame(0, legacy_id(uuid, major, minor), 0, b"", True, uuid, major, minor, tx)
    if company_id != COMPANY_ID:
        raise TokenError(f"not a badge frame: company id 0x{company_id:04X}" if isinstance(company_id, int)
                         and not isinstance(company_id, bool) else "company id must be an integer")
    if len(data) < 2 or data[0] != VERSION:
        raise TokenError(f"unknown frame version (expected {VERSION})" if data else "empty payload")
    n = data[1]
    if not 1 <= n <= ID_MAX:
        raise TokenError(f"badge id length {n} (1..{ID_MAX})")
    if len(data) != 2 + n + 4 + MAC_LEN:
        raise TokenError(f"frame length {len(data)}, expected {2 + n + 4 + MAC_LEN}")
    raw = data[2:2 + n]
    if _ID.fullmatch(raw) is None:
        raise TokenError("badge id has characters outside A-Z a-z 0-9 . _ -")
    counter = int.from_bytes(data[2 + n:6 + n], "big")
    return Frame(VERSION, raw.decode("ascii"), counter, data[6 + n:], False, signed=data[:6 + n])


def verify(payload: bytes | Frame, at: datetime, *, key: bytes | None = None,
           epoch_keys: Mapping[int, bytes] | None = None, company_id: int = COMPANY_ID,
           skew_steps: int = SKEW_STEPS, last_counter: int | None = None) -> Verification:
    """Check a frame seen at `at` with the badge's master `key` or its `epoch_keys`
    ({epoch: key}). ok only if the MAC matches, the counter is within +-skew_steps of the
    counter at `at` and not below `last_counter`. Never raises on bad input."""
    try:
        frame = payload if isinstance(payload, Frame) else decode(payload, company_id)
    except TokenError as exc:
        return Verification(False, INVALID, detail=str(exc))
    if frame.legacy:
        return Verification(False, LEGACY, frame)
    try:
        drift = frame.counter - counter_at(at)
    except (TokenError, OverflowError) as exc:
        return Verification(False, INVALID, frame, detail=str(exc))
    epoch_key = None
    try:
        if key is not None:
            epoch_key = derive_epoch_key(key, frame.epoch)
        elif epoch_keys is not None:
            epoch_key = epoch_keys.get(frame.epoch)
    except (TokenError, TypeError):
        epoch_key = None
    if epoch_key is not None and not hmac.compare_digest(_mac(epoch_key, frame.signed), frame.mac):
        return Verification(False, FORGED, frame, drift)
    if abs(drift) > skew_steps:
        return Verification(False, OUTSIDE_WINDOW, frame, drift,
                            f"{drift * STEP_SECONDS:+d} s from the time it was seen")
    if epoch_key is None:
        return Verification(False, NO_KEY, frame, drift)
    if last_counter is not None and frame.counter < last_counter:
        return Verification(False, COUNTER_BACK, frame, drift,
                            f"counter {frame.counter} after {last_counter}")
    return Verification(True, OK, frame, drift)


# ---- the two-places check ---------------------------------------------------------------------------
def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Place:
    lat: float
    lon: float
    at: datetime
    source: str = ""


class CloneWatch:
    """Remembers where each token was seen (in memory, for a tablet or gateway working
    offline; the server keeps its own table). seen() returns the earlier place if the same
    token now appears at least `threshold_m` away, else None."""

    def __init__(self, threshold_m: float = CLONE_DISTANCE_M, keep_steps: int = 2 * SKEW_STEPS + 2):
        self.threshold_m, self.keep_steps = threshold_m, keep_steps
        self._places: dict[str, Place] = {}

    def seen(self, frame: Frame, place: Place) -> Place | None:
        if len(self._places) >= 4096:
            self._forget(frame.counter)
        earlier = self._places.get(frame.token)
        if earlier is None:
            self._places[frame.token] = place
            return None
        if distance_m(earlier.lat, earlier.lon, place.lat, place.lon) >= self.threshold_m:
            return earlier
        return None

    def _forget(self, counter: int) -> None:
        for token in [t for t in self._places if not t.startswith("ibeacon:")
                      and int(t.split("/")[1]) < counter - self.keep_steps]:
            del self._places[token]
