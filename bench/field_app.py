"""The field app's benchmark: prints a table, asserts nothing.

    .venv/bin/python -m bench.field_app [--completions 200] [--photo-kb 200] [--tasks 2000] [--skip-ui]

1. **A whole shift offline, synced after reconnect** (target < 60 s against the 2-worker
   server): a unit worker's tablet pulls its open rectify tasks while online, then completes
   `--completions` of them offline exactly as the form screen does (each `Outbox.add` with one
   distinct `--photo-kb` photo, durable before it returns), then signal comes back and the
   app's own `Syncer.sync_once` pushes, uploads and collects the verdicts. The server is
   `uvicorn --workers 2` on SQLite (bench.sync_push.SyncServer), seeded in-process first.
2. **Cold start to the task list** and **render and fling-scroll `--tasks` tasks** (frame times):
   the real app in a child process (offscreen SDL), see bench/field_ui.py.
3. **Badge advertisement to roster row present**: the check-in screen with the fake BlueZ, see
   bench/field_ui.py.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["main", "offline_shift"]


def _photo(kb: int) -> bytes:
    """A distinct JPEG-looking photo of kb KiB (the server checks the magic bytes)."""
    return b"\xff\xd8\xff\xe0" + uuid.uuid4().bytes + os.urandom(kb * 1024 - 20)


def offline_shift(completions: int, photo_kb: int) -> dict:
    from bench.sync_push import SyncServer, prepare
    from devices.pairing import save_token
    from fieldapp.background import Background
    from fieldapp.config import FieldConfig
    from fieldapp.store import LocalStore
    from fieldapp.syncer import Syncer
    from sync.client import Outbox

    work = Path(tempfile.mkdtemp(prefix="bench-field-"))
    url = f"sqlite:///{work / 'server.db'}"
    t0 = time.perf_counter()
    (token, tasks), = prepare(url, 1, completions)
    seeded = time.perf_counter() - t0
    (work / "server").mkdir()
    server = SyncServer(url, str(work / "server"), workers=2)
    try:
        config = FieldConfig(data_dir=work / "tablet")
        config.data_dir.mkdir()
        save_token(config.token_path, token)
        store = LocalStore(config.store_path)
        store.put("session", {"server": server.base, "device_id": "bench-tablet", "user": {"id": "tab0000"}})
        outbox = Outbox(str(config.outbox_path), photo_dir=str(config.data_dir / "photos"))
        bg = Background()
        syncer = Syncer(config, store, outbox, bg, retries=6)
        p0 = time.perf_counter()
        syncer.sync_once()
        pulled = time.perf_counter() - p0
        mine = sorted(outbox.tasks(), key=lambda t: t["id"])[:completions]
        adds = []
        for task in mine:                      # offline: as the form screen submits
            a0 = time.perf_counter()
            outbox.add("complete_task", {"action": "fixed"}, task_id=task["id"], based_on_version=task["version"],
                       photos={"after_photos": [_photo(photo_kb)]}, gps={"lat": 31.2, "lon": 121.4, "accuracy": 8})
            adds.append(time.perf_counter() - a0)
        s0 = time.perf_counter()
        rounds = 0
        while syncer.state.waiting or rounds == 0:
            syncer.sync_once()
            rounds += 1
            if rounds > 10:
                break
        synced = time.perf_counter() - s0
        refused = outbox.refused()
        counts = outbox.counts()
        bg.close()
    finally:
        server.stop()
    return {"completions": len(mine), "photo_kb": photo_kb, "seed_s": seeded, "pull_s": pulled,
            "add_p50_ms": statistics.median(adds) * 1000, "add_max_ms": max(adds) * 1000, "sync_s": synced,
            "rounds": rounds, "done": counts.get("done", 0),
            "left": counts.get("pending", 0) + counts.get("waiting", 0),
            "refused": len(refused), "error": syncer.state.error}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.field_app", description=__doc__.split("\n")[0])
    ap.add_argument("--completions", type=int, default=200)
    ap.add_argument("--photo-kb", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--skip-ui", action="store_true", help="only the offline shift (no Kivy window)")
    args = ap.parse_args(argv)
    print(f"field app benchmark on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    r = offline_shift(args.completions, args.photo_kb)
    print("\n## A whole shift offline, synced after reconnect (target < 60 s; server: uvicorn --workers 2, SQLite)")
    print("| completions | photo | each saved offline (p50 / max) | pull at start | sync after reconnect | rounds "
          "| applied | left | refused |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['completions']} | {r['photo_kb']} KB | {r['add_p50_ms']:.1f} / {r['add_max_ms']:.1f} ms "
          f"| {r['pull_s']:.2f} s | **{r['sync_s']:.1f} s** | {r['rounds']} | {r['done'] - r['refused']} "
          f"| {r['left']} | {r['refused']} |")
    if r["error"]:
        print(f"last sync error: {r['error']}")
    if not args.skip_ui:
        ui = subprocess.run([sys.executable, "-m", "bench.field_ui", "--tasks", str(args.tasks)], text=True)
        return ui.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
