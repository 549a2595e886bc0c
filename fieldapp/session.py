"""Connecting the tablet: find the server on the LAN, pair with the one-time code, sign a
person in and out. Plain Python (no Kivy); every call here blocks or is a coroutine, so the
screens run them with `app.bg.call` / `app.bg.spawn`, never on the UI thread.

- `find_servers(config, on_found)`: browse `_cityloop._tcp.local.` on `config.discovery_interfaces`
  and call `on_found(server)` for each server as it answers (a coroutine, for `bg.spawn`).
- `pair(config, store, address, device_id, code)`: exchange the code an administrator got
  for the device token (kept in `config.token_path`, mode 0600) and remember the server and
  device in `store["pairing"]`.
- `sign_in(config, store, username, password)`: the person's password is checked by the
  server, and the tablet's token must act for that same person (a tablet is registered to one
  owner); the session is `store["session"] = {"server", "device_id", "user": {id, role, unit_code}}`.
- `sign_out(store)`: forgets the session only: the outbox, drafts, photos and the device
  token stay, so the owner can sign in again and nothing waiting is lost.

Every failure a person can meet is a `SessionError` subclass with a message in Chinese and
English (`exc.text(lang)`)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import httpx
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from devices.pairing import PairingFailed, load_token, save_token
from fieldapp import i18n
from fieldapp.config import FieldConfig
from fieldapp.store import LocalStore
from sync.discovery import API_PATH, SERVICE_TYPE
from sync.protocol import PROTOCOL_VERSION

__all__ = ["BadAddress", "Busy", "CodeRefused", "FoundServer", "LockedOut", "MissingInput", "NotOwner", "NotPaired",
           "Revoked", "ServerTrouble", "SessionError", "Unreachable", "WrongPassword", "find_servers", "forget_token",
           "normalize_address", "pair", "paired", "sign_in", "sign_out"]

i18n.add({
    "session.bad_address": ("服务器地址无效：{address}（例如 http://192.168.1.5:8000）",
                            "Not a server address: {address} (for example http://192.168.1.5:8000)"),
    "session.bad_code": ("配对码是 8 位数字", "The pairing code has 8 digits"),
    "session.no_device": ("请填写设备编号", "Enter the device id"),
    "session.code_refused": ("配对码错误、已用过或已过期（有效期 15 分钟）。"
                             "请核对设备编号和配对码，或请管理员重新生成。",
                             "The pairing code is wrong, already used or expired (it lasts 15 minutes). "
                             "Check the device id and code, or ask the administrator for a new one."),
    "session.revoked": ("此平板已被管理员吊销，请向管理员申请新的设备编号和配对码。",
                        "This tablet was revoked by an administrator. Ask them for a new device id and pairing code."),
    "session.unreachable": ("无法连接服务器 {server}。请检查网络（Wi-Fi）后重试。",
                            "Cannot reach the server {server}. Check the network (Wi-Fi) and try again."),
    "session.server_trouble": ("服务器出错（{status}），请稍后重试。",
                               "The server had a problem ({status}); try again later."),
    "session.wrong_password": ("用户名或密码错误", "Wrong user name or password"),
    "session.locked": ("登录失败次数过多，请 {minutes} 分钟后再试。",
                       "Too many failed sign-ins: try again in {minutes} min."),
    "session.busy": ("同时登录的人太多，请稍后重试。", "Too many sign-ins at once; try again in a moment."),
    "session.not_owner": ("此平板登记给 {owner} 使用，{user} 不能在此平板上登录。"
                          "请使用自己的平板，或请管理员为您登记。",
                          "This tablet is registered to {owner}; {user} cannot sign in on it. Use your own tablet "
                          "or ask the administrator to register this one to you."),
    "session.not_paired": ("此平板尚未配对，请先配对。", "This tablet is not paired yet: pair it first."),
    "session.missing": ("请填写用户名和密码", "Enter your user name and password"),
})


class SessionError(Exception):
    """A failure to show to the person: `text(lang)` in Chinese or English."""
    key = "session.server_trouble"

    def __init__(self, detail: str = "", **values):
        self.values = values
        super().__init__(f"{i18n.t(self.key, 'en', **values)} {detail}".strip())

    def text(self, lang: str | None = None) -> str:
        return i18n.t(self.key, lang, **self.values)


class BadAddress(SessionError):
    key = "session.bad_address"


class CodeRefused(SessionError):
    key = "session.code_refused"


class Revoked(SessionError):
    key = "session.revoked"


class Unreachable(SessionError):
    key = "session.unreachable"


class ServerTrouble(SessionError):
    key = "session.server_trouble"


class WrongPassword(SessionError):
    key = "session.wrong_password"


class LockedOut(SessionError):
    key = "session.locked"

    def __init__(self, retry_after: int, detail: str = ""):
        self.retry_after = retry_after
        super().__init__(detail, minutes=max(1, -(-retry_after // 60)))


class Busy(SessionError):
    """Every password-checking slot of the server was busy (503): try again in a moment."""
    key = "session.busy"


class NotOwner(SessionError):
    key = "session.not_owner"


class NotPaired(SessionError):
    key = "session.not_paired"


class MissingInput(SessionError):
    """Something the form needs is empty or malformed (key chosen per case)."""

    def __init__(self, key: str):
        self.key = key
        super().__init__()


@dataclass(frozen=True)
class FoundServer:
    """A server that answered on the LAN: `address` is its root URL (what `pair` takes)."""
    address: str
    name: str
    server_id: str | None
    version: int | None

    @property
    def compatible(self) -> bool:
        return self.version == PROTOCOL_VERSION


def normalize_address(text: str) -> str:
    """'10.0.0.5:8000' -> 'http://10.0.0.5:8000'; the sync API path and slashes are dropped."""
    address = (text or "").strip().rstrip("/")
    if address and "://" not in address:
        address = "http://" + address
    if address.endswith(API_PATH):
        address = address[: -len(API_PATH)]
    parts = urlsplit(address)
    try:
        parts.port   # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise BadAddress(address=text) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise BadAddress(address=text)
    return address


# ---- finding the server ---------------------------------------------------------------------------
async def find_servers(config: FieldConfig, on_found: Callable[[FoundServer], None] | None = None,
                       timeout: float | None = None) -> list[FoundServer]:
    """Browse for `timeout` seconds (default config.discovery_timeout); `on_found` is called
    (on the loop's thread) for each server as soon as it resolves. Returns all found."""
    interfaces = config.discovery_interfaces
    azc = (AsyncZeroconf(interfaces=list(interfaces), ip_version=IPVersion.V4Only) if interfaces
           else AsyncZeroconf(ip_version=IPVersion.V4Only))
    found: dict[str, FoundServer] = {}
    pending: set[asyncio.Task] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (config.discovery_timeout if timeout is None else timeout)

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(azc.zeroconf, max(200.0, (deadline - loop.time()) * 1000)):
            return
        server = _found(info)
        if server is not None and name not in found:
            found[name] = server
            if on_found is not None:
                on_found(server)

    def on_change(zeroconf, service_type, name, state_change) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated) and name not in found:
            task = loop.create_task(resolve(name))
            pending.add(task)
            task.add_done_callback(pending.discard)

    browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        if pending:
            await asyncio.wait(list(pending), timeout=1.0)
    finally:
        for task in list(pending):
            task.cancel()
        await browser.async_cancel()
        await azc.async_close()
    return sorted(found.values(), key=lambda s: s.name)


def _found(info: AsyncServiceInfo) -> FoundServer | None:
    props = info.decoded_properties
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not addresses or not info.port:
        return None
    scheme = props.get("scheme") if props.get("scheme") in ("http", "https") else "http"
    version = props.get("v")
    return FoundServer(address=f"{scheme}://{addresses[0]}:{info.port}", name=info.name.split(".")[0],
                       server_id=props.get("id"), version=int(version) if version and version.isdigit() else None)


# ---- pairing and signing in ----------------------------------------------------------------------------
def _request(method: str, url: str, server: str, timeout: float, **kw) -> httpx.Response:
    try:
        return httpx.request(method, url, timeout=timeout, **kw)
    except httpx.HTTPError as exc:
        raise Unreachable(str(exc), server=server) from None


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message") or r.text)[:300]
    except ValueError:
        return r.text[:300]


def pair(config: FieldConfig, store: LocalStore, address: str, device_id: str, code: str,
         timeout: float = 20.0) -> dict:
    """Pair this tablet; returns the pairing {"server", "device_id"} (also kept in the store)."""
    server = normalize_address(address)
    device_id, code = (device_id or "").strip(), (code or "").strip().replace(" ", "")
    if not device_id:
        raise MissingInput("session.no_device")
    if len(code) != 8 or not code.isdigit():
        raise MissingInput("session.bad_code")
    r = _request("POST", f"{server}/api/v1/auth/pair", server, timeout, json={"device_id": device_id, "code": code})
    if r.status_code == 401:
        if "revoked" in _message(r):
            raise Revoked(_message(r))
        raise CodeRefused(_message(r))
    if r.status_code == 422:
        raise CodeRefused(_message(r))
    if r.status_code != 200:
        raise ServerTrouble(_message(r), status=r.status_code)
    save_token(config.token_path, r.json()["access_token"])
    pairing = {"server": server, "device_id": device_id}
    store.put("pairing", pairing)
    store.put("revoked", None)
    store.put("session", None)      # a new pairing: whoever was signed in signs in again
    return pairing


def paired(config: FieldConfig, store: LocalStore) -> dict | None:
    """The pairing {"server", "device_id"} when this tablet holds a device token, else None."""
    pairing = store.get("pairing")
    if not pairing:
        return None
    try:
        load_token(config.token_path)
    except PairingFailed:
        return None
    return pairing


def sign_in(config: FieldConfig, store: LocalStore, username: str, password: str, timeout: float = 20.0) -> dict:
    """Check the person's password with the server and that this tablet is theirs; returns
    the session (also kept in the store)."""
    pairing = paired(config, store)
    if pairing is None:
        raise NotPaired()
    username = (username or "").strip()
    if not username or not password:
        raise MissingInput("session.missing")
    server = pairing["server"]
    r = _request("POST", f"{server}/api/v1/auth/login", server, timeout,
                 json={"username": username, "password": password})
    if r.status_code == 401:
        raise WrongPassword(_message(r))
    if r.status_code == 429:
        raise LockedOut(_retry_after(r), _message(r))
    if r.status_code == 503:
        raise Busy(_message(r))
    if r.status_code == 422:
        raise WrongPassword(_message(r))
    if r.status_code != 200:
        raise ServerTrouble(_message(r), status=r.status_code)
    person = _me(server, r.json()["access_token"], timeout)
    try:
        device = _me(server, load_token(config.token_path), timeout, device=True)
    except Revoked:
        forget_token(config, store, pairing["device_id"])
        raise
    if device["id"] != person["id"]:
        raise NotOwner(owner=device["id"], user=person["id"])
    session = {"server": server, "device_id": pairing["device_id"],
               "user": {"id": person["id"], "role": person["role"], "unit_code": person.get("unit_code"),
                        "name": person["id"]}}
    store.put("session", session)
    return session


def _retry_after(r: httpx.Response) -> int:
    try:
        return max(1, int(r.headers.get("Retry-After", "60")))
    except ValueError:
        return 60


def _me(server: str, token: str, timeout: float, device: bool = False) -> dict:
    r = _request("GET", f"{server}/api/v1/auth/me", server, timeout, headers={"Authorization": f"Bearer {token}"})
    if r.status_code == 401 and device:
        raise Revoked(_message(r))
    if r.status_code == 401:
        raise WrongPassword(_message(r))
    if r.status_code != 200:
        raise ServerTrouble(_message(r), status=r.status_code)
    return r.json()


def forget_token(config: FieldConfig, store: LocalStore, device_id: str | None) -> None:
    """The server refused this tablet's token: drop it and the session, remember why (the
    pair screen says so). The pairing's server address stays to pair again."""
    try:
        config.token_path.unlink()
    except FileNotFoundError:
        pass
    store.put("session", None)
    store.put("revoked", {"device_id": device_id})


def sign_out(store: LocalStore) -> None:
    """Forget who is signed in; outbox, drafts, photos and the device token stay."""
    store.put("session", None)
