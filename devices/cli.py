"""`cityloop badge-gateway`, `badge-pair` and `badge-sim`: registered on the cityloop parser
by engine/cli.py (which only hands in how to read a crew's badge keys for the simulator).

    cityloop badge-pair --server URL --device ID --code CODE --token-file F
    cityloop badge-gateway --server URL --token-file F --buffer DIR [--lat --lon --adapter hci0]
    cityloop badge-sim --crew CODE [--server URL --token-file F [--elsewhere-token-file F2]]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

__all__ = ["DEPOT", "ELSEWHERE", "cmd_badge_gateway", "cmd_badge_pair", "cmd_badge_sim", "register"]

DEPOT = (31.2304, 121.4737)          # demo muster point (Shanghai, People's Square)
ELSEWHERE = (31.2990, 121.5050)      # ~8 km away


def register(sub, crew_keys=None) -> None:
    """Add the badge commands to an argparse sub-parser collection. `crew_keys(args)` returns
    [(badge id, master key)] for args.crew (badge-sim --crew)."""
    p = sub.add_parser("badge-pair", help="pair a badge gateway with its one-time code / 网关配对")
    p.add_argument("--server", required=True, metavar="URL")
    p.add_argument("--device", required=True, metavar="ID", help="device id given when it was registered")
    p.add_argument("--code", required=True, help="the one-time pairing code")
    p.add_argument("--token-file", required=True, metavar="FILE", help="where to keep the device token (mode 600)")
    p.set_defaults(func=cmd_badge_pair)

    g = sub.add_parser("badge-gateway", help="scan badges (BLE) and push check-ins to the server / 工牌网关")
    g.add_argument("--server", required=True, metavar="URL")
    g.add_argument("--token-file", required=True, metavar="FILE", help="the device token from badge-pair")
    g.add_argument("--buffer", required=True, metavar="DIR", help="on-disk outbox for check-ins")
    g.add_argument("--lat", type=float, help="where this gateway is (latitude)")
    g.add_argument("--lon", type=float, help="where this gateway is (longitude)")
    g.add_argument("--adapter", help="Bluetooth adapter, e.g. hci0 (default: the first powered one)")
    g.add_argument("--source", default=socket.gethostname()[:64], help="name reported to the server")
    g.add_argument("--window", type=float, default=2.0, help="debounce window in seconds (default 2)")
    g.add_argument("--batch-size", type=int, default=500)
    g.add_argument("--status-every", type=float, default=30.0, metavar="SECONDS")
    g.set_defaults(func=cmd_badge_gateway)

    s = sub.add_parser("badge-sim", help="simulated badges on a fake BlueZ (no hardware) / 工牌模拟器")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--crew", metavar="CODE", help="the crew whose badges walk in (keys from the database)")
    who.add_argument("--keys", metavar="FILE", help='JSON {"badge id": "hex key", ...} instead of --crew')
    s.add_argument("--absent", type=int, default=3, help="badges that stay away (1st cloned, 2nd replayed)")
    s.add_argument("--walk-in", type=float, default=20.0, metavar="SECONDS", help="how long the walk-in takes")
    s.add_argument("--duration", type=float, default=0, metavar="SECONDS", help="stop after (default: Ctrl-C)")
    s.add_argument("--bus-address", help="use this D-Bus instead of starting a private dbus-daemon")
    s.add_argument("--server", metavar="URL", help="also run gateways against this server")
    s.add_argument("--token-file", metavar="FILE", help="token of the depot gateway (with --server)")
    s.add_argument("--elsewhere-token-file", metavar="FILE",
                   help="token of a second gateway far away (sees the clone's original)")
    s.add_argument("--buffer", default="data/badge-sim", metavar="DIR",
                   help="gateways' outboxes (default data/badge-sim)")
    s.add_argument("--at", type=_moment, metavar="TIME", help="badges advertise the tokens of this fixed moment "
                   "(ISO 8601 with offset) instead of the clock's (tests, demos of a given time)")
    s.set_defaults(func=cmd_badge_sim, crew_keys=crew_keys)


# ---- badge-pair ----------------------------------------------------------------------------------
def cmd_badge_pair(args) -> int:
    from devices.pairing import pair, save_token
    save_token(args.token_file, pair(args.server, args.device, args.code))
    print(f"paired; token saved in {args.token_file} / 配对成功，令牌已保存")
    return 0


# ---- badge-gateway -------------------------------------------------------------------------------
def cmd_badge_gateway(args) -> int:
    from devices.gateway import Gateway
    from devices.pairing import load_token
    sys.stdout.reconfigure(line_buffering=True)
    if (args.lat is None) != (args.lon is None):
        raise ValueError("give both --lat and --lon, or neither")

    def on_event(what, status):
        if what == "sent":
            print(f"[sent] {len(gateway.last_results)} check-ins: {gateway.summary()}")
        if what in ("bluetooth", "server", "rejected"):
            detail = status.bluetooth_detail if what == "bluetooth" else status.server_detail
            print(f"[{what}] {status.line()}" + (f"  ({detail})" if detail else ""))

    gateway = Gateway(args.server, load_token(args.token_file), args.buffer, source=args.source, lat=args.lat,
                      lon=args.lon, adapter=args.adapter, window=args.window, batch_size=args.batch_size,
                      on_event=on_event)
    print(f"badge gateway {args.source}: server {args.server}, outbox {gateway.buffer.path}"
          f" ({gateway.status.pending} waiting) / 工牌网关已启动")

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def report():
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), args.status_every)
                except asyncio.TimeoutError:
                    print(f"[status] {gateway.status.line()}")
        reporter = asyncio.create_task(report())
        status = await gateway.run(stop)
        await reporter
        return status

    status = asyncio.run(main())
    print(f"stopped: {status.line()} / 已停止")
    return 0


# ---- badge-sim ------------------------------------------------------------------------------------
def _keys(args) -> list[tuple[str, bytes]]:
    if args.keys:
        raw = json.loads(Path(args.keys).read_text())
        return [(str(b), bytes.fromhex(k)) for b, k in sorted(raw.items())]
    if args.crew_keys is None:
        raise ValueError("--crew needs the database; use --keys FILE")
    return args.crew_keys(args)


def _moment(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time with an offset: {text!r} / 需要带时区的时间")
    return at


def cmd_badge_sim(args) -> int:
    from devices.bluez.bus import PrivateBus
    from devices.bluez.fake import FakeBluez
    from devices.sim import CrewWalkIn, utcnow
    sys.stdout.reconfigure(line_buffering=True)
    badges = _keys(args)
    if not badges:
        raise ValueError("no badges with keys to simulate / 没有可模拟的工牌")
    bus = None if args.bus_address else PrivateBus().start()
    address = args.bus_address or bus.address
    gateways: list[subprocess.Popen] = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with FakeBluez(address, adapters=("hci0", "hci1"), advertise_every=1.0) as fake:
            print(f"fake BlueZ on {address}: hci0 = the depot, hci1 = elsewhere (~8 km away) / 模拟蓝牙已启动")
            print("run a gateway against it / 运行网关:")
            print(f"  DBUS_SYSTEM_BUS_ADDRESS='{address}' cityloop badge-gateway --server URL --token-file FILE "
                  f"--buffer {args.buffer}/depot --adapter hci0 --lat {DEPOT[0]} --lon {DEPOT[1]}")
            if args.server and args.token_file:
                gateways.append(_spawn_gateway(args, address, "hci0", args.token_file, "depot", DEPOT))
                if args.elsewhere_token_file:
                    gateways.append(_spawn_gateway(args, address, "hci1", args.elsewhere_token_file, "elsewhere",
                                                   ELSEWHERE))
            scenario = CrewWalkIn(fake, badges, absent=args.absent, walk_in=args.walk_in,
                                  say=lambda line: print(f"[sim] {line}"),
                                  clock=(lambda: args.at) if args.at else utcnow)
            if args.at:
                print(f"badges advertise the tokens of {args.at.isoformat()}, a fixed moment / 工牌使用固定时刻的令牌")
            p = scenario.plan
            print(f"crew of {len(badges)}: {len(p.present)} walk in, {len(p.absent)} stay away"
                  f" (cloned: {p.cloned or '-'}, replayed: {p.replayed or '-'}) / 共 {len(badges)} 人")
            scenario.start()
            started = time.monotonic()
            while not stop.wait(0.5):
                if args.duration and time.monotonic() - started >= args.duration:
                    break
            scenario.stop()
            _stop_all(gateways)               # while the fake BlueZ is still there
    finally:
        _stop_all(gateways)
        if bus is not None:
            bus.stop()
    print("simulator stopped / 模拟器已停止")
    return 0


def _stop_all(gateways: list[subprocess.Popen]) -> None:
    for proc in gateways:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in gateways:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn_gateway(args, bus_address: str, adapter: str, token_file: str, name: str, where) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "engine.cli", "badge-gateway", "--server", args.server, "--token-file", token_file,
           "--buffer", str(Path(args.buffer) / name), "--adapter", adapter, "--source", name,
           "--lat", str(where[0]), "--lon", str(where[1]), "--status-every", "10"]
    print(f"starting the {name} gateway ({adapter}) / 启动网关")
    return subprocess.Popen(cmd, env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus_address})
