"""Finding the server on the LAN: mDNS / DNS-SD `_cityloop._tcp.local.` (python-zeroconf).

The server advertises its port with TXT records `path` (the sync API path), `v` (the sync
protocol version), `id` (a stable server id) and `scheme`. The tablet browses for a moment and
takes a server that speaks its protocol (and, once paired, the server it was paired with);
when none answers it falls back to the configured URL, and says which it used.

Pass `interfaces=["127.0.0.1"]` to keep everything on loopback (what the tests do): mDNS then
never leaves the machine. `None` means all interfaces (a real server or tablet)."""
from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from sync.protocol import PROTOCOL_VERSION

__all__ = ["API_PATH", "Advertisement", "Advertiser", "Endpoint", "Resolved", "SERVICE_TYPE", "advertise", "browse",
           "resolve_server", "resolve_server_blocking", "server_id"]

SERVICE_TYPE = "_cityloop._tcp.local."
API_PATH = "/sync/v1"


@dataclass(frozen=True)
class Endpoint:
    url: str                  # the sync API base, e.g. http://192.168.1.5:8000/sync/v1
    host: str
    port: int
    path: str
    version: int | None
    server_id: str | None
    name: str                 # the DNS-SD instance name


@dataclass(frozen=True)
class Resolved:
    url: str
    source: str               # "discovered" | "configured"
    message: str              # what was used and why, English / Chinese
    endpoint: Endpoint | None = None


def server_id(data_dir: str | os.PathLike = "data", configured: str | None = None) -> str:
    """This server's id: the configured one, else one made once and kept in the data directory."""
    if configured:
        return configured[:32]
    path = Path(data_dir) / "server-id"
    try:
        return path.read_text().strip()[:32]
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        value = uuid.uuid4().hex[:12]
        path.write_text(value + "\n")
        return value


def _zeroconf(interfaces: list[str] | None) -> AsyncZeroconf:
    if interfaces:
        return AsyncZeroconf(interfaces=list(interfaces), ip_version=IPVersion.V4Only)
    return AsyncZeroconf(ip_version=IPVersion.V4Only)


def _local_addresses() -> list[str]:
    import ifaddr
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                found.append(ip.ip)
    return found or ["127.0.0.1"]


class Advertisement:
    """A registered service; `await aclose()` withdraws it (goodbye packets) and stops mDNS."""

    def __init__(self, azc: AsyncZeroconf, info: AsyncServiceInfo):
        self.azc, self.info = azc, info

    @property
    def name(self) -> str:
        return self.info.name

    async def aclose(self) -> None:
        try:
            await self.azc.async_unregister_service(self.info)
        finally:
            await self.azc.async_close()


async def advertise(port: int, api_path: str = API_PATH, version: int = PROTOCOL_VERSION,
                    interfaces: list[str] | None = None, server: str | None = None,
                    addresses: list[str] | None = None, scheme: str = "http") -> Advertisement:
    """Register `_cityloop._tcp.local.` for a server listening on `port` at `addresses`
    (default: the interfaces given, else every non-loopback IPv4 address of this machine)."""
    sid = server or server_id()
    addresses = addresses or [a for a in (interfaces or []) if _is_ipv4(a)] or _local_addresses()
    info = AsyncServiceInfo(
        SERVICE_TYPE, f"cityloop-{sid}.{SERVICE_TYPE}", port=port,
        properties={"path": api_path, "v": str(version), "id": sid, "scheme": scheme},
        server=f"cityloop-{sid}.local.", addresses=[socket.inet_aton(a) for a in addresses])
    azc = _zeroconf(interfaces)
    try:
        await azc.async_register_service(info, allow_name_change=True)
    except BaseException:
        await azc.async_close()
        raise
    return Advertisement(azc, info)


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def _endpoint(info: AsyncServiceInfo) -> Endpoint | None:
    props = info.decoded_properties
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not addresses or not info.port:
        return None
    path = props.get("path") or API_PATH
    if not path.startswith("/"):
        return None
    scheme = props.get("scheme") if props.get("scheme") in ("http", "https") else "http"
    version = props.get("v")
    host = addresses[0]
    return Endpoint(url=f"{scheme}://{host}:{info.port}{path}", host=host, port=info.port, path=path,
                    version=int(version) if version and version.isdigit() else None,
                    server_id=props.get("id"), name=info.name)


async def browse(timeout: float = 3.0, interfaces: list[str] | None = None, service_type: str = SERVICE_TYPE,
                 settle: float = 0.5) -> list[Endpoint]:
    """The servers that answer within `timeout` seconds (returns `settle` s after the first one)."""
    azc = _zeroconf(interfaces)
    names: list[str] = []
    seen = asyncio.Event()

    def on_change(zeroconf, service_type, name, state_change):
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated) and name not in names:
            names.append(name)
            seen.set()

    browser = AsyncServiceBrowser(azc.zeroconf, service_type, handlers=[on_change])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: dict[str, Endpoint] = {}
    try:
        try:
            await asyncio.wait_for(seen.wait(), timeout)
        except asyncio.TimeoutError:
            return []
        await asyncio.sleep(max(0.0, min(settle, deadline - loop.time())))
        for name in list(names):
            info = AsyncServiceInfo(service_type, name)
            left = max(0.2, deadline - loop.time())
            if await info.async_request(azc.zeroconf, left * 1000):
                ep = _endpoint(info)
                if ep is not None:
                    found[name] = ep
    finally:
        await browser.async_cancel()
        await azc.async_close()
    return sorted(found.values(), key=lambda e: e.name)


async def resolve_server(configured_url: str | None, timeout: float = 3.0, interfaces: list[str] | None = None,
                         server: str | None = None, version: int = PROTOCOL_VERSION,
                         service_type: str = SERVICE_TYPE) -> Resolved:
    """A discovered server speaking `version` (and with id `server`, if given), else the
    configured URL. Raises LookupError when neither is there."""
    endpoints = await browse(timeout, interfaces, service_type)
    fitting = [e for e in endpoints if e.version == version and (server is None or e.server_id == server)]
    if fitting:
        e = fitting[0]
        return Resolved(e.url, "discovered", f"found server {e.server_id} at {e.url} on the local network "
                        f"/ 在局域网发现服务器 {e.url}", e)
    others = f" ({len(endpoints)} other server(s) did not match)" if endpoints else ""
    if configured_url:
        url = configured_url.rstrip("/")
        if urlsplit(url).scheme not in ("http", "https"):
            raise LookupError(f"the configured server URL {configured_url!r} is not an http(s) URL")
        return Resolved(url, "configured", f"no server answered on the local network{others}; using the configured "
                        f"{url} / 局域网未发现服务器，使用配置的地址 {url}")
    raise LookupError(f"no server answered on the local network{others} and none is configured "
                      "/ 局域网未发现服务器，且未配置服务器地址")


def resolve_server_blocking(configured_url: str | None, timeout: float = 3.0, **kw) -> Resolved:
    """resolve_server for code without an event loop (the CLI, sync tests)."""
    return asyncio.run(resolve_server(configured_url, timeout, **kw))


class Advertiser:
    """Keeps an advertisement up from synchronous code (e.g. `cityloop serve --advertise`): its
    own event loop in a daemon thread."""

    def __init__(self, port: int, **kw):
        self.port, self.kw = port, kw
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cityloop-mdns", daemon=True)
        self.advertisement: Advertisement | None = None

    def start(self, timeout: float = 10.0) -> "Advertiser":
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(advertise(self.port, **self.kw), self.loop)
        try:
            self.advertisement = future.result(timeout)
        except BaseException:
            self._stop_loop()
            raise
        return self

    def close(self, timeout: float = 5.0) -> None:
        if self.advertisement is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.advertisement.aclose(), self.loop).result(timeout)
            finally:
                self.advertisement = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()

