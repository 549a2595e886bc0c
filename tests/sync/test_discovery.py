"""LAN discovery over real mDNS, bound to 127.0.0.1 only (nothing goes out on the machine's
real interfaces). Every test uses its own server id (or service type), so concurrent runs on
this machine do not see each other's servers as theirs."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from sync.discovery import API_PATH, SERVICE_TYPE, advertise, browse, resolve_server, resolve_server_blocking
from sync.protocol import PROTOCOL_VERSION
from tests.sync.servers import ROOT, free_port

pytestmark = pytest.mark.slow     # zeroconf announce/browse round trips and a real `cityloop serve`

LOOPBACK = ["127.0.0.1"]


def _id() -> str:
    return uuid.uuid4().hex[:12]


def test_an_advertised_server_is_found_and_withdrawn():
    sid, port = _id(), free_port()

    async def scenario():
        ad = await advertise(port, interfaces=LOOPBACK, server=sid)
        try:
            found = [e for e in await browse(5, interfaces=LOOPBACK) if e.server_id == sid]
            chosen = await resolve_server("http://fallback.invalid:1/sync/v1", 5, interfaces=LOOPBACK, server=sid)
        finally:
            await ad.aclose()
        after = [e for e in await browse(1.5, interfaces=LOOPBACK) if e.server_id == sid]
        return ad.name, found, chosen, after

    name, found, chosen, after = asyncio.run(scenario())
    assert name == f"cityloop-{sid}.{SERVICE_TYPE}"
    assert [(e.url, e.port, e.path, e.version) for e in found] == [
        (f"http://127.0.0.1:{port}{API_PATH}", port, API_PATH, PROTOCOL_VERSION)]
    assert chosen.source == "discovered" and chosen.url == f"http://127.0.0.1:{port}/sync/v1"
    assert sid in chosen.message and chosen.endpoint.server_id == sid
    assert after == []                                   # the goodbye withdrew it


def test_falls_back_to_the_configured_url_when_nothing_answers():
    lonely_type = f"_cl{uuid.uuid4().hex[:8]}._tcp.local."   # a type nobody advertises
    t0 = time.monotonic()
    chosen = resolve_server_blocking("http://10.0.0.5:8000/sync/v1/", 1.0, interfaces=LOOPBACK,
                                     service_type=lonely_type)
    assert time.monotonic() - t0 < 5
    assert (chosen.source, chosen.url, chosen.endpoint) == ("configured", "http://10.0.0.5:8000/sync/v1", None)
    assert "no server answered" in chosen.message and "使用配置的地址" in chosen.message
    with pytest.raises(LookupError, match="none is configured"):
        resolve_server_blocking(None, 0.5, interfaces=LOOPBACK, service_type=lonely_type)
    with pytest.raises(LookupError, match="not an http"):
        resolve_server_blocking("file:///etc/passwd", 0.5, interfaces=LOOPBACK, service_type=lonely_type)


def test_a_server_of_another_protocol_or_id_is_not_taken():
    sid = _id()

    async def scenario():
        ad = await advertise(free_port(), interfaces=LOOPBACK, server=sid, version=PROTOCOL_VERSION + 1)
        try:
            seen = [e for e in await browse(5, interfaces=LOOPBACK) if e.server_id == sid]
            newer = await resolve_server("http://configured.invalid/sync/v1", 3, interfaces=LOOPBACK, server=sid)
            stranger = await resolve_server("http://configured.invalid/sync/v1", 3, interfaces=LOOPBACK,
                                            server=_id())
        finally:
            await ad.aclose()
        return seen, newer, stranger

    seen, newer, stranger = asyncio.run(scenario())
    assert [e.version for e in seen] == [PROTOCOL_VERSION + 1]        # it is there ...
    assert newer.source == "configured" and "did not match" in newer.message   # ... but not taken
    assert stranger.source == "configured"                            # paired with another server


def test_cityloop_serve_advertise_announces_the_running_server(db_url, tmp_path):
    sid, port = _id(), free_port()
    env = {**os.environ, "CITYLOOP_SERVER_ID": sid, "CITYLOOP_DATA": str(tmp_path), "CITYLOOP_DEBUG": "1"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--db", db_url, "serve", "--port", str(port),
                             "--no-calendar", "--advertise", "--advertise-interface", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        chosen = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            chosen = resolve_server_blocking("http://configured.invalid/sync/v1", 2, interfaces=LOOPBACK, server=sid)
            if chosen.source == "discovered":
                break
        assert chosen is not None and chosen.source == "discovered", (tmp_path / "serve.log").read_text()
        assert chosen.url == f"http://127.0.0.1:{port}/sync/v1"
        r = None
        for _ in range(100):   # announced just before uvicorn binds: give it a moment
            try:
                r = httpx.get(f"{chosen.url}/attachments/{'ab' * 32}", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r is not None and r.status_code == 401 and r.json()["error"] == "unauthorized"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    out = (tmp_path / "serve.log").read_text()
    assert code == 0, out
    assert f"cityloop-{sid}._cityloop._tcp.local. on 127.0.0.1" in out
    gone = resolve_server_blocking("http://configured.invalid/sync/v1", 1.5, interfaces=LOOPBACK, server=sid)
    assert gone.source == "configured"
