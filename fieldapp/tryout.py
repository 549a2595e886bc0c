"""Try the tablet app on a laptop: the demo server, simulated badges, a tablet registered for
a demo person, and the app pointed at them.

    make field ROLE=supervisor       # or deliverer, unit_worker, reviewer

Starts `cityloop serve --demo --advertise` (unless a server already answers on the port),
registers a tablet for the first demo person of the role through the admin API, prints its
device id and one-time pairing code (pair in the app, then sign in with the person's name
and the demo password), starts `cityloop badge-sim` for a supervisor's crew (fake BlueZ on a
private D-Bus: no radio needed) and runs the app with that bus. Ctrl-C or closing the window
stops what it started. Plain Python: it talks to the server over HTTP only."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

__all__ = ["DEMO_PASSWORD", "ROLES", "main", "register_tablet"]

DEMO_PASSWORD = "cityloop-demo"     # every demo account (engine/demo.py; README)
ROLES = ("supervisor", "deliverer", "unit_worker", "reviewer")
_BUS_LINE = re.compile(r"fake BlueZ on (\S+):")


def _wait_for_server(url: str, timeout: float, proc: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} / 服务器已退出")
        try:
            httpx.get(f"{url}/openapi.json", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"no server answered at {url} within {timeout:.0f} s / 服务器未响应")


def _echo(stream) -> None:
    """Keep printing the simulator's lines (an undrained pipe would stall it)."""
    for line in stream:
        print(line, end="")


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/openapi.json", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def register_tablet(url: str, role: str, admin: str = "admin", password: str = DEMO_PASSWORD) -> dict:
    """As the demo administrator: the first active person of `role`, a tablet registered for
    them, its one-time code, and (for a supervisor) their first crew."""
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/api/v1/auth/login", json={"username": admin, "password": password})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        staff = http.get("/api/v1/staff", headers=headers).raise_for_status().json()
        person = next((s for s in staff if s["role"] == role and s["active"]), None)
        if person is None:
            raise SystemExit(f"the demo has no active {role} / 演示数据中没有该角色")
        device = http.post("/api/v1/devices", headers=headers,
                           json={"name": f"try-out tablet of {person['id']}", "kind": "tablet",
                                 "owner_id": person["id"]}).raise_for_status().json()
        crew = None
        if role == "supervisor":
            crews = http.get("/api/v1/attendance/crews", headers=headers).raise_for_status().json()
            crew = next((c["code"] for c in crews if c.get("supervisor_id") == person["id"]), None)
    return {"person": person, "device_id": device["id"], "code": device["pairing_code"], "crew": crew}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fieldapp.tryout", description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=ROLES, default="supervisor")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data", default="field-data", help="the app's data folder (one per role beneath it)")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--no-app", action="store_true", help="set everything up and wait, without the app window")
    args = p.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}"
    bin_dir = Path(sys.executable).parent
    cityloop = str(bin_dir / "cityloop")
    started: list[subprocess.Popen] = []
    try:
        if _answers(url):
            print(f"using the server already running at {url} / 使用已运行的服务器")
        else:
            print(f"starting the demo server at {url} / 启动演示服务器 ...")
            started.append(subprocess.Popen([cityloop, "serve", "--demo", "--advertise", "--port", str(args.port)]))
            _wait_for_server(url, 180, started[-1])
        tablet = register_tablet(url, args.role)
        env = dict(os.environ)
        if tablet["crew"]:
            sim = subprocess.Popen([cityloop, "badge-sim", "--crew", tablet["crew"]], stdout=subprocess.PIPE,
                                   text=True, bufsize=1)
            started.append(sim)
            assert sim.stdout is not None
            for line in sim.stdout:
                print(line, end="")
                found = _BUS_LINE.search(line)
                if found:
                    env["DBUS_SYSTEM_BUS_ADDRESS"] = found.group(1)
                    break
            else:
                raise SystemExit("the badge simulator did not start / 工牌模拟器未启动")
            threading.Thread(target=_echo, args=(sim.stdout,), name="sim-output", daemon=True).start()
        person = tablet["person"]
        print("\n".join([
            "",
            f"  server / 服务器:          {url}  (also announced on the LAN / 已在局域网广播)",
            f"  device id / 设备编号:      {tablet['device_id']}",
            f"  pairing code / 配对码:     {tablet['code']}  (valid 15 minutes / 15 分钟内有效)",
            f"  sign in as / 登录账号:     {person['id']}  password / 密码: {DEMO_PASSWORD}",
            *([f"  crew / 班组:               {tablet['crew']} (simulated badges walking in / 模拟工牌陆续到场)"]
              if tablet["crew"] else []),
            ""]))
        if args.no_app:
            print("--no-app: press Ctrl-C to stop / 按 Ctrl-C 停止")
            while True:
                time.sleep(3600)
        data = Path(args.data) / args.role
        return subprocess.call([sys.executable, "-m", "fieldapp", "--server", url, "--data", str(data),
                                "--lang", args.lang], env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in reversed(started):
            proc.terminate()
        for proc in reversed(started):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
