"""Log-in, tokens, device pairing and revocation: plain functions over the database.

Passwords are hashed with Argon2id (memory-hard). Staff get short-lived signed access
tokens (JWT, HS256, key shared through the database). Devices get a random opaque token
stored only as its SHA-256; every request looks it up, so a revoked device is refused on its
very next request."""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, bindparam, delete, update
from sqlmodel import Session, select

from engine import settings
from engine.auth.models import Account, Device, LoginAttempt, PairingCode
from engine.clock import from_db, to_db
from engine.db import direct
from engine.db.models import ServerSecret
from engine.db.upsert import insert_if_new
from engine.domain.models import Staff
from engine.runtime.errors import ClientError, NotFound, TooManyRequests, ValidationFailed

__all__ = ["ACCESS_TTL", "AuthError", "DEVICE_KINDS", "FAILURE_WINDOW", "HASHING", "HASH_SLOTS", "HASH_WAIT_SECONDS",
           "IAT_LEEWAY_SECONDS", "LAST_SEEN_EVERY", "LoginBusy", "MAX_ADDRESS_FAILURES", "MAX_FAILURES",
           "PAIRING_TTL", "Principal", "ROLES", "RateLimited", "SESSION_MAX", "authenticate", "client_address",
           "create_device", "forget_keys", "hash_password", "issue_token", "login", "mark_seen", "pair",
           "prune_login_attempts", "refresh", "revoke", "set_password"]

log = logging.getLogger("cityloop.auth")
ACCESS_TTL = timedelta(minutes=30)
SESSION_MAX = timedelta(hours=12)   # a refreshed token never outlives its log-in by more (a working day)
IAT_LEEWAY_SECONDS = 60       # workers' clocks may differ a little
LAST_SEEN_EVERY = timedelta(minutes=1)  # a device's last-seen time is written at most this often
PAIRING_TTL = timedelta(minutes=15)
# Failed log-ins are limited per account at one address and per address (any accounts),
# both counted in the database so every worker on it shares them. An account allows a few
# typos; an address allows 20 failures per window: a street office's staff behind one NAT
# mistyping now and then stay far below it, while a guesser cycling user names gets 20
# Argon2 runs per address per 15 minutes (80 an hour) and then a database read per try.
_LIMITS = settings.current()   # (CITYLOOP_LOGIN_*; read once, at start)
MAX_FAILURES = _LIMITS.login_account_failures           # per account at one address within the window (5)
MAX_ADDRESS_FAILURES = _LIMITS.login_address_failures   # per address, whatever the accounts (20)
FAILURE_WINDOW = timedelta(minutes=_LIMITS.login_window_minutes)   # (15 minutes)
# Argon2id takes 64 MiB and ~150 ms of one core per check. At most HASH_SLOTS checks run at
# once per process: measured, 8 request threads checking at once peaked at 526 MiB of RSS,
# 2 slots at 142 MiB, for the same throughput on 2 cores. A log-in waits at most
# HASH_WAIT_SECONDS for a slot, then answers 503 (LoginBusy): a flood of log-ins from many
# addresses is shed instead of queueing hashing work for clients that gave up. (2 s was too
# short on a loaded machine: 8 log-ins at once, each check slowed to over a second.)
HASH_SLOTS = _LIMITS.login_hash_slots              # (2)
HASH_WAIT_SECONDS = _LIMITS.login_hash_wait_seconds   # (5 s)
ROLES = ("admin", "designer", "dispatcher", "reviewer", "unit_worker", "unit_leader", "deliverer", "supervisor")
DEVICE_KINDS = ("tablet", "gateway", "camera")
_HASHER = PasswordHasher()    # argon2id, library defaults (64 MiB, 3 passes)
_DUMMY = _HASHER.hash("not a password")


class AuthError(ClientError):
    """Credentials or token refused (401)."""
    code = "unauthorized"
    status = 401


class RateLimited(TooManyRequests):
    """Too many failed log-ins (429); `retry_after`: seconds until a failure leaves the window."""

    def __init__(self, retry_after: int):
        retry_after = max(1, int(retry_after))
        super().__init__(f"too many failed log-ins; try again in {retry_after} s / "
                         f"登录失败次数过多，请 {retry_after} 秒后重试", retry_after)


class LoginBusy(Exception):
    """Every password-checking slot of this process stayed busy (503); nothing was counted."""
    retry_after = 1

    def __init__(self):
        super().__init__("too many log-ins at once; try again in a moment / 同时登录的人太多，请稍后重试")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a person, or a device (a tablet acts for its owner)."""
    id: str                 # staff id, or device id for gateways and cameras
    kind: str               # user | device
    role: str               # a staff role, or gateway / camera
    unit_code: str | None = None
    device_id: str | None = None
    # A device whose last-seen time is older than LAST_SEEN_EVERY: the caller records it
    # (mark_seen) after its read transaction, never inside it (see mark_seen).
    seen_due: bool = field(default=False, compare=False)


def hash_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < 8 or len(password) > 256:
        raise ValidationFailed({"password": "a password has 8 to 256 characters / 密码长度为 8 到 256 个字符"})
    return _HASHER.hash(password)


def set_password(s: Session, staff_id: str, password: str, now: datetime) -> None:
    account = s.get(Account, staff_id)
    if account is None:
        s.add(Account(staff_id=staff_id, password_hash=hash_password(password), changed_at=to_db(now)))
    else:
        account.password_hash, account.changed_at = hash_password(password), to_db(now)


_SECRETS: dict[str, str] = {}  # by database URL: the key never changes once made


def _secret(s: Session) -> str:
    """The token-signing key: from the settings (CITYLOOP_TOKEN_KEY or ..._FILE, the same for
    every worker), else one kept in the database, made by whichever worker asks first (said
    in the log: a database dump then holds what forges tokens)."""
    cache_key = _secret_key(s.get_bind())
    if cache_key in _SECRETS:
        return _SECRETS[cache_key]
    value = settings.current().secret("token_key")
    if value is not None and len(value.encode()) < 32:
        raise RuntimeError("CITYLOOP_TOKEN_KEY needs at least 32 bytes (e.g. `openssl rand -hex 32`)")
    if value is None:
        log.warning("access tokens are signed with a key kept in the database: set CITYLOOP_TOKEN_KEY "
                    "(or CITYLOOP_TOKEN_KEY_FILE) to keep it apart "
                    "/ 令牌签名密钥保存在数据库中，请配置 CITYLOOP_TOKEN_KEY")
        insert_if_new(s, ServerSecret, {"name": "jwt", "value": secrets.token_hex(32)})  # two workers may race here
        value = s.exec(select(ServerSecret.value).where(ServerSecret.name == "jwt")).one()
    _SECRETS[cache_key] = value
    return value


def forget_keys() -> None:
    """Read the signing key again (after the settings changed)."""
    _SECRETS.clear()
    _VERIFIED.clear()


def _secret_key(bind) -> str:
    return str(bind.url)     # the URL without its password is enough to tell databases apart


def client_address(host: str) -> str:
    """What the per-address limit counts: the client's IP address, or for IPv6 its /64
    network (one host usually holds a whole /64, so single addresses would be free to take)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


# Password checks running now in this process (see HASH_SLOTS).
HASHING = threading.BoundedSemaphore(HASH_SLOTS)


def login(engine, username: str, password: str, host: str) -> tuple[str, int]:
    """(access token, seconds valid) for a staff member's user name and password, asked from
    `host`. `engine`: the CaseEngine (its transactions and clock).

    The limits are read first, so a limited caller costs one indexed read and no Argon2 work
    (RateLimited, with the true time to wait). The password is checked outside any
    transaction (no connection or SQLite writer lock held for its ~150 ms), in one of
    HASH_SLOTS (else LoginBusy). A failure is recorded (AuthError); a success clears the
    account's failures from this address for the account limit, while the address still
    counts them."""
    address, now = client_address(host), engine.clock()
    with engine.transaction(write=False) as s:
        retry_after, account_failures = _limits(s, username, address, now)
        if retry_after:
            raise RateLimited(retry_after)
        staff = s.get(Staff, username) if username else None
        account = s.get(Account, username) if staff is not None and staff.active else None
        password_hash = account.password_hash if account is not None else None
    if not _password_matches(password_hash, password):
        with engine.transaction() as s:
            _record_failure(s, username, address, now)
        raise AuthError("wrong user name or password")
    with engine.transaction(write=account_failures > 0) as s:
        if account_failures:
            s.execute(update(LoginAttempt).where(LoginAttempt.address == address, LoginAttempt.username == username)
                      .values(username=None))
        return issue_token(s, staff, now), int(ACCESS_TTL.total_seconds())


def _limits(s: Session, username: str, address: str, now: datetime) -> tuple[int, int]:
    """(seconds to wait, 0 when neither limit is reached; the account's failures from here)."""
    at_address = s.exec(select(LoginAttempt.username, LoginAttempt.at)
                        .where(LoginAttempt.address == address, LoginAttempt.at > to_db(now - FAILURE_WINDOW))
                        .order_by(LoginAttempt.at.desc())
                        .limit(MAX_ADDRESS_FAILURES)).all()    # the newest: all that can decide
    mine = [at for who, at in at_address if who == username]
    wait = 0.0
    # Limited while `limit` failures are in the window: until the limit-th newest leaves it.
    for times, limit in ((mine, MAX_FAILURES), ([at for _, at in at_address], MAX_ADDRESS_FAILURES)):
        if len(times) >= limit:
            wait = max(wait, (from_db(times[limit - 1]) + FAILURE_WINDOW - now).total_seconds())
    return math.ceil(wait), len(mine)


def _password_matches(password_hash: str | None, password: str) -> bool:
    """Argon2id against the account's hash, or a dummy one for no account (the same time
    either way, so the answer does not tell which user names exist)."""
    if not HASHING.acquire(timeout=HASH_WAIT_SECONDS):
        raise LoginBusy()
    try:
        _HASHER.verify(password_hash or _DUMMY, password)
        return password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
    finally:
        HASHING.release()


def _record_failure(s: Session, username: str, address: str, now: datetime) -> None:
    # this address's expired rows go now (a few, by index); prune_login_attempts sweeps the rest
    s.execute(delete(LoginAttempt).where(LoginAttempt.address == address,
                                         LoginAttempt.at <= to_db(now - FAILURE_WINDOW)))
    s.add(LoginAttempt(address=address, username=username[:64] or None, at=to_db(now)))


def prune_login_attempts(s: Session, now: datetime) -> int:
    """Delete failed log-ins older than the window (they no longer count); how many went."""
    return s.execute(delete(LoginAttempt).where(LoginAttempt.at <= to_db(now - FAILURE_WINDOW))).rowcount


def issue_token(s: Session, staff: Staff, now: datetime, auth_time: int | None = None) -> str:
    """A staff access token for ACCESS_TTL; `auth_time` is when the person logged in (now,
    unless the token renews an earlier one: see refresh)."""
    claims = {"sub": staff.id, "role": staff.role, "unit": staff.unit_code, "iat": int(now.timestamp()),
              "exp": int((now + ACCESS_TTL).timestamp()), "jti": uuid.uuid4().hex,
              "auth_time": int(now.timestamp()) if auth_time is None else auth_time}
    return jwt.encode(claims, _secret(s), algorithm="HS256")


def refresh(s: Session, token: str, now: datetime) -> str:
    """A fresh access token for a staff token still valid (a person at a desk all day is not
    sent back to the log-in every 30 minutes), with the account's current role. Refused for
    device tokens, disabled accounts, and SESSION_MAX after the log-in: then log in again."""
    if not token or token.startswith("dev_") or len(token) > 4096:
        raise AuthError("only a person's access token can be renewed")
    try:
        claims = _decode(s.connection(), token, now)
    except jwt.PyJWTError as exc:
        raise AuthError(f"token refused: {exc}") from None
    staff = s.get(Staff, claims["sub"])
    if staff is None or not staff.active:
        raise AuthError("account disabled")
    auth_time = claims.get("auth_time", claims.get("iat"))
    if not isinstance(auth_time, int) or now.timestamp() - auth_time > SESSION_MAX.total_seconds():
        raise AuthError(f"the session is over {SESSION_MAX.total_seconds() / 3600:.0f} hours old: log in again")
    return issue_token(s, staff, now, auth_time=auth_time)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(conn: Connection, token: str, now: datetime) -> Principal:
    """The principal behind a bearer token (a staff JWT or a device token). `conn`: a
    connection for reads (CaseEngine.reading)."""
    if not token or len(token) > 4096:
        raise AuthError("missing or malformed token")
    if token.startswith("dev_"):
        device = direct.execute(conn, _DEVICE_BY_TOKEN, {"hash": _hash_token(token)}).first()
        if device is None or device.revoked_at is not None:
            raise AuthError("device token revoked or unknown")
        due = device.last_seen_at is None or to_db(now) - device.last_seen_at > LAST_SEEN_EVERY
        if device.kind == "tablet":
            if device.owner is None or not device.owner_active:
                raise AuthError("the tablet's owner is not an active account")
            return Principal(device.owner, "device", device.owner_role, device.owner_unit, device.id, seen_due=due)
        return Principal(device.id, "device", device.kind, None, device.id, seen_due=due)
    try:
        claims = _decode(conn, token, now)
    except jwt.PyJWTError as exc:
        raise AuthError(f"token refused: {exc}") from None
    staff = direct.execute(conn, _STAFF_BY_ID, {"id": claims["sub"]}).first()
    if staff is None or not staff.active:
        raise AuthError("account disabled")
    return Principal(staff.id, "user", staff.role, staff.unit_code)


# Read on every request: prebuilt Core statements, not ORM gets (about 3x cheaper).
_STAFF_BY_ID = (select(Staff.id, Staff.role, Staff.unit_code, Staff.active)
                .where(Staff.id == bindparam("id")))
_DEVICE_BY_TOKEN = (select(Device.id, Device.kind, Device.revoked_at, Device.last_seen_at,
                           Staff.id.label("owner"), Staff.role.label("owner_role"),
                           Staff.unit_code.label("owner_unit"), Staff.active.label("owner_active"))
                    .outerjoin(Staff, Staff.id == Device.owner_id)
                    .where(Device.token_hash == bindparam("hash")))


def mark_seen(db, device_id: str, now: datetime) -> None:
    """Record a device's last request, in its own short write transaction (rarely: see
    LAST_SEEN_EVERY). Call it with no other connection of this thread open: taking a second
    pooled connection while holding one can starve the pool (every thread holding one and
    waiting for another) and, on SQLite, waits on the writer lock while holding a reader."""
    with db.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            conn.execute(update(Device).where(Device.id == device_id).values(last_seen_at=to_db(now)))


def _decode(conn: Connection, token: str, now: datetime) -> dict:
    secret = _SECRETS.get(_secret_key(conn.engine))
    if secret is None:   # (once per process: made or read in a transaction of its own)
        with Session(conn.engine) as s, s.begin():
            secret = _secret(s)
    claims = _VERIFIED.get((secret, token))
    if claims is None:
        # Times are checked below against the engine clock (which tests move), not PyJWT's wall clock.
        claims = jwt.decode(token, secret, algorithms=["HS256"],
                            options={"require": ["exp", "sub"], "verify_exp": False, "verify_iat": False,
                                     "verify_nbf": False})
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[(secret, token)] = claims
    if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now.timestamp():
        raise jwt.ExpiredSignatureError("token expired")
    if isinstance(claims.get("iat"), (int, float)) and claims["iat"] > now.timestamp() + IAT_LEEWAY_SECONDS:
        raise jwt.ImmatureSignatureError("token issued in the future")
    return claims


# Tokens whose signature this process has checked against a key, with their claims: a
# token's text fixes its claims, so a repeat request skips the decode (expiry is still
# checked every time).
_VERIFIED: dict[tuple[str, str], dict] = {}
_VERIFIED_MAX = 20_000


def create_device(s: Session, name: str, kind: str, owner_id: str | None, created_by: str,
                  now: datetime) -> tuple[Device, str]:
    """A device to pair, and its one-time pairing code (shown once)."""
    if kind not in DEVICE_KINDS:
        raise ValidationFailed({"kind": f"kind must be one of {', '.join(DEVICE_KINDS)}"})
    if kind == "tablet" and (owner_id is None or s.get(Staff, owner_id) is None):
        raise ValidationFailed({"owner_id": "a tablet needs an owner who is a staff member"})
    device = Device(id=f"d-{uuid.uuid4().hex[:12]}", name=name[:120], kind=kind,
                    owner_id=owner_id if kind == "tablet" else None, created_at=to_db(now), created_by=created_by)
    s.add(device)
    s.flush()
    code = f"{secrets.randbelow(10**8):08d}"
    s.add(PairingCode(code_hash=_hash_token(f"{device.id}:{code}"), device_id=device.id,
                      expires_at=to_db(now + PAIRING_TTL)))
    return device, code


def pair(s: Session, device_id: str, code: str, now: datetime) -> str:
    """Exchange a one-time code for the device's token (shown once)."""
    row = s.get(PairingCode, _hash_token(f"{device_id}:{code}"))
    if row is None or row.used_at is not None or to_db(now) > row.expires_at:
        raise AuthError("pairing code wrong, used or expired")
    device = s.get(Device, device_id)
    if device is None or device.revoked_at is not None:
        raise AuthError("device revoked")
    row.used_at = to_db(now)
    token = "dev_" + secrets.token_urlsafe(32)
    device.token_hash, device.paired_at = _hash_token(token), to_db(now)
    return token


def revoke(s: Session, device_id: str, now: datetime) -> Device:
    device = s.get(Device, device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    device.revoked_at = to_db(now)
    return device

