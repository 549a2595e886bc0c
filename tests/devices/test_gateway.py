"""The badge gateway: check-ins are kept on disk while the server is unreachable (across a
gateway restart), then drained to the real server over HTTP; nothing is lost or counted twice;
a revoked token is a state and keeps the check-ins."""
from __future__ import annotations

import json
from datetime import timedelta

import httpx

from devices.buffer import Buffer
from devices.gateway import Gateway, GatewayThread
from devices.sim import address_for, rotating, wait_for
from tests.devices.conftest import KEY, LiveServer, bearer, pair_gateway, plan_shift


def _gateway(url, token, buffer_dir, events=None):
    return Gateway(url, token, buffer_dir, source="east-depot", lat=31.2304, lon=121.4737, window=0.3,
                   send_every=0.2, check_every=0.5, on_event=(lambda what, st: events.append((what, st.server)))
                   if events is not None else None)


def test_buffered_while_the_server_is_down_then_drained_once(app, live_tokens, fake, tmp_path, now_clock):
    live = LiveServer(app)
    live.start()                                  # up only to pair the gateway and plan the shift
    gw_token = pair_gateway(live.url, live_tokens["admin"], "East depot")
    shift = plan_shift(live.url, live_tokens["supervisor"], now_clock() + timedelta(hours=1))
    live.stop()                                   # the server goes away

    for badge in ("B0000", "B0001", "B0002"):
        fake.add_badge(address_for(badge), rotating(badge, KEY), rssi=-60)
    events: list = []
    first = GatewayThread(_gateway(live.url, gw_token, tmp_path / "buf", events)).start()
    assert wait_for(lambda: first.gateway.buffer.pending() >= 3 and first.gateway.status.server == "offline", 20), \
        first.gateway.status
    assert first.gateway.status.sent == 0
    status = first.stop()                         # the gateway restarts while the server is down
    held = status.pending
    assert held >= 3 and ("server", "offline") in events
    items = [json.loads(r[0]) for r in __import__("sqlite3").connect(tmp_path / "buf" / "gateway-outbox.sqlite3")
             .execute("SELECT item FROM pending")]
    assert {i["data"][:4] for i in items} == {"0105"} and all(i["lat"] == 31.2304 for i in items)

    live.start()                                  # the server is back: the next gateway drains
    second = GatewayThread(_gateway(live.url, gw_token, tmp_path / "buf")).start()
    assert wait_for(lambda: second.gateway.status.sent >= held, 30), second.gateway.status
    status = second.stop()
    assert status.server == "online" and status.bluetooth.value == "available"
    assert status.verdicts.get("applied", 0) == 3, (status.verdicts, second.gateway.results)
    assert status.verdicts.get("flagged", 0) == 0 and status.verdicts.get("invalid", 0) == 0
    assert Buffer(tmp_path / "buf").pending() == status.pending

    att = httpx.get(f"{live.url}/api/v1/attendance/shifts/{shift['id']}/attendance",
                    headers=bearer(live_tokens["supervisor"]), timeout=30).json()
    present = sorted(r["badge_id"] for r in att["rows"] if r["status"] == "present")
    assert present == ["B0000", "B0001", "B0002"]
    live.stop()


def test_a_revoked_gateway_keeps_its_checkins_and_says_so(app, live_tokens, fake, server, tmp_path, now_clock):
    server.start()
    gw_token = pair_gateway(server.url, live_tokens["admin"], "Depot")
    devices = httpx.get(f"{server.url}/api/v1/devices", headers=bearer(live_tokens["admin"]), timeout=30).json()
    r = httpx.post(f"{server.url}/api/v1/devices/{devices[0]['id']}/revoke", headers=bearer(live_tokens["admin"]),
                   timeout=30)
    assert r.status_code == 200
    fake.add_badge(address_for("B0005"), rotating("B0005", KEY), rssi=-60)
    events: list = []
    running = GatewayThread(_gateway(server.url, gw_token, tmp_path / "buf", events)).start()
    assert wait_for(lambda: running.gateway.status.server == "unauthorized", 20), running.gateway.status
    status = running.stop()
    assert status.pending >= 1 and status.sent == 0
    assert "pair this gateway again" in status.line() and "重新配对" in status.line()


def test_buffer_resends_the_same_batch_until_answered_and_sets_aside_refused_ones(tmp_path):
    buf = Buffer(tmp_path)
    buf.add([{"n": i} for i in range(5)])
    batch, items = buf.next_batch(3)
    assert items == [{"n": 0}, {"n": 1}, {"n": 2}]
    buf.close()
    buf = Buffer(tmp_path)                        # a restart before the server answered
    assert buf.next_batch(3) == (batch, items), "the same batch again, not a re-mix"
    assert buf.ack(batch, {"applied": 3}) == 3
    batch2, items2 = buf.next_batch(3)
    assert items2 == [{"n": 3}, {"n": 4}] and batch2 != batch
    assert buf.reject(batch2, "HTTP 422: bad") == 2
    assert buf.pending() == 0 and buf.next_batch(3) is None
    assert buf.rejected() == [({"n": 3}, "HTTP 422: bad"), ({"n": 4}, "HTTP 422: bad")]
    assert buf.tally() == {"sent": 3, "applied": 3}


def test_the_gateway_command_without_bluetooth_or_server_reports_states_and_stops_cleanly(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import threading

    from devices.pairing import save_token
    from tests.devices.conftest import free_port
    save_token(tmp_path / "gw.token", "dev_not-a-real-token")
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "badge-gateway", "--server",
                             f"http://127.0.0.1:{free_port()}", "--token-file", str(tmp_path / "gw.token"),
                             "--buffer", str(tmp_path / "buf"), "--status-every", "0.5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any("[status]" in line for line in lines), 30), lines
        assert proc.poll() is None, "still running without Bluetooth"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        reader.join(5)
    out = "".join(lines)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "[bluetooth] Bluetooth unavailable: no system D-Bus / 蓝牙不可用：没有系统 D-Bus" in out, out
    assert "stopped:" in out and "buffered 0" in out
    missing = subprocess.run([sys.executable, "-m", "engine.cli", "badge-gateway", "--server", "http://127.0.0.1:1",
                              "--token-file", str(tmp_path / "nope"), "--buffer", str(tmp_path / "b2")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "cannot read the token file" in missing.stderr
