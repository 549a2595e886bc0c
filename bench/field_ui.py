"""The field app's screens under load, in the real app (offscreen SDL, Kivy's frame cap off so
a frame's time is its work): prints tables, asserts nothing.

    .venv/bin/python -m bench.field_ui [--tasks 2000] [--starts 5] [--badges 10]

1. Cold start to the task list: a new process (`python -m bench.field_ui child-start`) starts the
   app on a tablet holding --tasks pulled tasks (signed in, server unreachable), measured from
   the process start to the list showing its rows; --starts times.
2. Render and scroll --tasks tasks fast: touch drags moving the list 150 px a frame (9,000 px/s at
   60 frames a second: new rows every frame), and a sweep top to bottom; the time of every frame,
   and how many row widgets the recycling list made. (Not a coasting fling: a synthetic touch's
   release velocity depends on the bench's frame pace, so it would measure the bench, not the app.)
3. Badge advertisement to roster row present: the check-in screen scanning with unmodified bleak
   on the fake BlueZ (a private dbus-daemon); --badges badges appear one at a time; from
   `add_badge` to the row showing "present".
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

__all__ = ["main"]


def _percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    v = sorted(values)
    return f"{_at(v, 0.5) * 1000:.1f} / {_at(v, 0.95) * 1000:.1f} / {v[-1] * 1000:.1f} ms"


def _at(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _tasks(n: int) -> list[dict]:
    form = json.loads((Path(__file__).resolve().parents[1] / "workflows" / "forms" / "gas_inspection.form").read_text())
    now = datetime.now(timezone.utc)
    kinds = [("gas_inspection", "gas_inspection", "Task_inspect"), ("wo_rectify", "work_order", "Task_rectify"),
             ("wo_review", "work_order", "Task_review")]
    out = []
    for i in range(n):
        ref, process, name = kinds[i % 3]
        out.append({"id": f"t-{i:05d}", "instance_id": i + 1, "version": 1, "process_key": process,
                    "business_key": f"WO-{i:05d}", "name": name, "title": name, "form_ref": ref,
                    "assignee": "bench", "claimed_by": None, "groups": [],
                    "due_at": (now + timedelta(hours=i % 97 - 40)).isoformat(), "created_at": now.isoformat(),
                    "form": form if ref == "gas_inspection" else None})
    return out


def _tablet(data_dir: Path, tasks: int) -> None:
    from fieldapp.store import LocalStore
    from sync.client import Outbox
    data_dir.mkdir(parents=True, exist_ok=True)
    box = Outbox(str(data_dir / "outbox.db"))
    box.apply_pull({"cursor": "c1", "tasks": _tasks(tasks), "removed": [], "crews": None, "reference": None})
    box.close()
    store = LocalStore(data_dir / "field.db")
    store.put("session", {"server": "http://127.0.0.1:9", "device_id": "bench",
                          "user": {"id": "bench", "role": "unit_worker", "unit_code": None}})
    store.close()
    (data_dir / "device.token").write_text("dev_bench\n")


def _driver(data_dir: Path, **config):
    from fieldapp.ui.boot import headless
    headless((1280, 800))
    from kivy.config import Config
    Config.set("graphics", "maxfps", "0")           # no frame cap: a frame takes what its work takes
    from fieldapp.config import FieldConfig
    from fieldapp.ui.app import FieldApp
    from tests.fieldapp.driver import Driver
    return Driver(FieldApp(FieldConfig(data_dir=data_dir, sync_interval=3600.0, **config))).start()


def child_start(data_dir: str, scroll: bool) -> None:
    """In a fresh process: start the app, report when the list shows; optionally scroll it."""
    started = float(os.environ["BENCH_T0"])
    d = _driver(Path(data_dir))
    screen = d.until(lambda: d.app.sm.current == "tasks" and d.screen.loads and d.screen.ids.rv.data and d.screen,
                     timeout=120)
    d.pump(1)
    result: dict = {"cold_start_s": time.time() - started, "rows": len(screen.ids.rv.data)}
    if scroll:
        from kivy.base import EventLoop
        rv = screen.ids.rv
        frames: list[float] = []

        def frame() -> None:
            t = time.perf_counter()
            EventLoop.idle()
            frames.append(time.perf_counter() - t)
        from kivy.tests.common import UnitTestTouch
        x, y0 = rv.to_window(rv.center_x, rv.y + 40)

        def drag(moves: int = 30, step: float = 150.0) -> None:
            """A finger held on the list and moved up fast: 150 px a frame (9,000 px/s at 60 frames
            a second), new rows coming into view every frame; then released."""
            touch = UnitTestTouch(x, y0)
            touch.touch_down()
            frame()
            y = y0
            for _ in range(moves):
                y += step
                if y > rv.top - 20:                    # the finger reached the top: lift it, start again low
                    touch.touch_up()
                    frame()
                    y = y0 + step
                    touch = UnitTestTouch(x, y0)
                    touch.touch_down()
                    frame()
                touch.touch_move(x, y)
                frame()
            touch.touch_up()
            for _ in range(10):
                frame()
        drag(4)                                        # warm-up: Kivy loads its clipboard providers on first use
        frames.clear()
        for _ in range(10):
            drag()
        fling_frames, frames = frames, []
        scrolled = 1.0 - rv.scroll_y
        for i in range(121):                           # a sweep from the top to the bottom
            rv.scroll_y = 1.0 - i / 120
            frame()
        result.update(fling=fling_frames, sweep=frames, scrolled=scrolled, screen=d.app.sm.current,
                      row_widgets=len(rv.children[0].children) if rv.children else 0)
    print("RESULT " + json.dumps(result), flush=True)
    d.stop()


def _run_child(args: list[str], env: dict) -> dict:
    env = {**os.environ, **env, "BENCH_T0": repr(time.time())}
    proc = subprocess.run([sys.executable, "-m", "bench.field_ui", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"the child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][7:])


def badge_latency(badges: int) -> list[float]:
    """Seconds from add_badge to the roster row present, badge after badge."""
    from devices import token
    from devices.bluez.bus import PrivateBus
    from devices.bluez.fake import FakeBluez
    from devices.sim import address_for, rotating
    from fieldapp.badgekeys import BadgeKeys
    from fieldapp.store import LocalStore
    from sync.client import Outbox
    data_dir = Path(tempfile.mkdtemp(prefix="bench-checkin-")) / "tablet"
    data_dir.mkdir(parents=True)
    masters = {f"B{i:04d}": bytes([i + 1]) * 16 for i in range(badges)}
    now = datetime.now(timezone.utc)
    start = now + timedelta(minutes=10)
    box = Outbox(str(data_dir / "outbox.db"))
    box.apply_pull({"cursor": "c1", "tasks": [], "removed": [], "crews": [
        {"code": "crew-a", "contract_code": "C-1", "muster_point": "depot", "shift_start": "06:00", "grace_minutes": 15,
         "roster": [{"id": f"cl{i}", "name": f"Cleaner {i}", "badge_id": b} for i, b in enumerate(masters)],
         "shifts": [{"id": 1, "starts_at": start.isoformat(),
                     "grace_ends_at": (start + timedelta(minutes=15)).isoformat()}]}]})
    box.close()
    store = LocalStore(data_dir / "field.db")
    epoch = token.epoch_at(now)
    BadgeKeys(store).keep("crew-a", {"skew_steps": token.SKEW_STEPS, "keys": [
        {"badge_id": b, "epoch": e, "key": token.derive_epoch_key(k, e).hex()}
        for b, k in masters.items() for e in (epoch, epoch + 1)]})
    store.close()
    out = []
    with PrivateBus(data_dir.parent / "dbus") as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        with FakeBluez(bus.address, advertise_every=0.1) as fake:
            d = _driver(data_dir)
            screen = d.app.go("checkin")
            d.pump(2)
            d.tap(screen.ids.scan)
            d.until(lambda: screen.bt_state is not None and screen.bt_state.value == "available", timeout=30)
            for badge, key in masters.items():
                t0 = time.monotonic()
                fake.add_badge(address_for(badge), rotating(badge, key), rssi=-60)
                d.until(lambda b=badge: any(r["badge"] == b and r["status"] == "present"
                                            for r in screen.ids.roster.data), timeout=30)
                out.append(time.monotonic() - t0)
            d.tap(screen.ids.scan)
            d.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child-start":
        child_start(argv[1], scroll=len(argv) > 2 and argv[2] == "scroll")
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.field_ui", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--badges", type=int, default=10)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-field-ui-"))
    _tablet(work / "tablet", args.tasks)
    env = {"SDL_VIDEODRIVER": "offscreen", "KIVY_HOME": str(work / "kivy")}
    starts = [_run_child(["child-start", str(work / "tablet")], env)["cold_start_s"] for _ in range(args.starts)]
    scroll = _run_child(["child-start", str(work / "tablet"), "scroll"], env)
    print(f"\n## Cold start to the task list ({args.tasks} tasks on the tablet; process start to rows shown)")
    print("| runs | median | min | max |\n|---|---|---|---|")
    print(f"| {len(starts)} | **{statistics.median(starts):.2f} s** | {min(starts):.2f} s | {max(starts):.2f} s |")
    print(f"\n## Render and fling-scroll {scroll['rows']} tasks (frame times p50 / p95 / max; Kivy's frame cap off)")
    print("| what | frames | frame time | note |\n|---|---|---|---|")
    print(f"| fast touch drags (150 px a frame) | {len(scroll['fling'])} | {_percentiles(scroll['fling'])} "
          f"| moved {scroll['scrolled'] * scroll['rows']:.0f} rows down; still on {scroll['screen']!r} |")
    print(f"| sweep top to bottom | {len(scroll['sweep'])} | {_percentiles(scroll['sweep'])} "
          f"| {scroll['row_widgets']} row widgets for {scroll['rows']} rows |")
    latencies = badge_latency(args.badges)
    print("\n## Badge advertisement to roster row present (target < 1 s; fake BlueZ re-announces every 0.1 s)")
    print("| badges | median | p95 | max |\n|---|---|---|---|")
    s = sorted(latencies)
    print(f"| {len(s)} | **{statistics.median(s) * 1000:.0f} ms** | {_at(s, 0.95) * 1000:.0f} ms "
          f"| {s[-1] * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
