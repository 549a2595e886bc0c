"""The web console in headless Chromium against the real server: prints tables, asserts nothing.

    .venv/bin/python -m bench.console [--runs 3] [--orders 100000] [--points 60000] [--no-big]

1. Bytes shipped: the JS and CSS of the build (console/dist), raw and gzip, and what each page
   loads when opened (the shell plus its own chunks).
2. Time to first render of each page, as each page's user (dispatcher1, reviewer1, designer...):
   from navigation start to the last change the page made to its DOM before the network went
   quiet (a MutationObserver installed before the page loads), median of --runs fresh browser
   contexts, on the demo district and then on a district-sized one (--orders work orders and
   --points map points added by bench.scale_data to the demo).
3. Map pan and zoom with all points: frame intervals (requestAnimationFrame) while the mouse
   drags the map and the wheel zooms in and out, on the district-sized dataset.

The server is uvicorn (one worker) on embedded SQLite in a temporary directory, as `make run`."""
from __future__ import annotations

import argparse
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "console" / "dist"
CHROMIUM = os.environ.get("CITYLOOP_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "cityloop-demo"
PAGES = [("dispatch", "dispatcher1"), ("review", "reviewer1"), ("dashboards", "dispatcher1"), ("map", "dispatcher1"),
         ("designer", "designer")]

# Before any page script: note the time of every DOM change, and every animation frame's time.
PROBE = """
window.__bench = {lastMutation: 0, frames: []};
new MutationObserver(() => { window.__bench.lastMutation = performance.now(); })
  .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""
FRAMES_ON = "() => { const b = window.__bench; b.frames = []; b.on = true; " \
            "const tick = (t) => { if (!b.on) return; b.frames.push(t); requestAnimationFrame(tick); }; " \
            "requestAnimationFrame(tick); }"
FRAMES_OFF = "() => { window.__bench.on = false; return window.__bench.frames; }"


class Server:
    """uvicorn serving the app (and the built console) on DATABASE_URL, seeded with the demo."""

    def __init__(self, url: str, data_dir: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": url, "CITYLOOP_DATA": str(data_dir), "CITYLOOP_DEMO": "1",
               "CITYLOOP_SCHEDULER": "0"}
        self.log = open(data_dir / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "engine.api.app:create_app", "--factory",
                                      "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                                      "--no-access-log"], env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {data_dir / 'server.log'}")
            try:
                if httpx.get(f"{self.base}/openapi.json", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def token(self, user: str) -> str:
        r = httpx.post(f"{self.base}/api/v1/auth/login", json={"username": user, "password": PASSWORD}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


# ---- 1. bytes ------------------------------------------------------------------------------
def build_bytes() -> list[tuple]:
    rows = []
    for ext in ("js", "css"):
        files = sorted((DIST / "assets").glob(f"*.{ext}"))
        raw = sum(f.stat().st_size for f in files)
        gz = sum(len(gzip.compress(f.read_bytes(), 6)) for f in files)
        rows.append((f"all .{ext} ({len(files)} files)", raw, gz))
    return rows


def kib(n: float) -> str:
    return f"{n / 1024:,.0f} KiB"


# ---- 2. first render ------------------------------------------------------------------------
def first_render(browser, server: Server, page_id: str, token: str) -> dict:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    context.add_init_script(f"sessionStorage.setItem('cityloop.token', {token!r});"
                            "localStorage.setItem('cityloop.lang', 'zh');" + PROBE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.base}/#/{page_id}", wait_until="load")
    page.wait_for_load_state("networkidle", timeout=120_000)
    figures = page.evaluate("""() => {
        const res = performance.getEntriesByType('resource');
        const js = res.filter(r => r.name.endsWith('.js') || r.name.endsWith('.css'));
        const api = res.filter(r => r.name.includes('/api/'));
        return {render: window.__bench.lastMutation,
                assets: js.reduce((n, r) => n + (r.encodedBodySize || 0), 0),
                api: api.length,
                apiBytes: api.reduce((n, r) => n + (r.encodedBodySize || 0), 0)};
    }""")
    context.close()
    figures["errors"] = errors
    return figures


def render_table(browser, server: Server, runs: int, label: str) -> list[tuple]:
    tokens = {user: server.token(user) for _, user in PAGES}
    rows = []
    for page_id, user in PAGES:
        results = [first_render(browser, server, page_id, tokens[user]) for _ in range(runs)]
        renders = [r["render"] for r in results]
        errors = sorted({e for r in results for e in r["errors"]})
        rows.append((label, page_id, user, statistics.median(renders), max(renders), results[-1]["api"],
                     results[-1]["apiBytes"], results[-1]["assets"], "; ".join(errors)[:60]))
    return rows


# ---- 3. map frames -------------------------------------------------------------------------
def map_frames(browser, server: Server, token: str) -> dict:
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    context.add_init_script(f"sessionStorage.setItem('cityloop.token', {token!r});" + PROBE)
    page = context.new_page()
    page.goto(f"{server.base}/#/map", wait_until="load")
    page.wait_for_load_state("networkidle", timeout=120_000)
    box = page.locator("#page").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    out = {}
    page.evaluate(FRAMES_ON)
    for _ in range(3):                       # drag left, right, down, up: 300 px each, 30 moves
        for dx, dy in ((300, 0), (-300, 0), (0, 200), (0, -200)):
            page.mouse.move(cx, cy)
            page.mouse.down()
            for i in range(1, 31):
                page.mouse.move(cx + dx * i / 30, cy + dy * i / 30)
            page.mouse.up()
    out["pan"] = _intervals(page.evaluate(FRAMES_OFF))
    page.evaluate(FRAMES_ON)
    for _ in range(3):                       # wheel in four notches, then out four
        for delta in (-240, -240, -240, -240, 240, 240, 240, 240):
            page.mouse.move(cx, cy)
            page.mouse.wheel(0, delta)
            page.wait_for_timeout(250)       # let the zoom animation run (frames are being counted)
    out["zoom"] = _intervals(page.evaluate(FRAMES_OFF))
    context.close()
    return out


def _intervals(stamps: list[float]) -> dict:
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    if not gaps:
        return {"frames": 0}
    s = sorted(gaps)
    return {"frames": len(gaps), "p50": s[len(s) // 2], "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
            "max": s[-1], "slow": sum(g > 50 for g in gaps)}


# ---- main ----------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=60_000)
    ap.add_argument("--no-big", action="store_true", help="only the demo district")
    args = ap.parse_args(argv)
    if not (DIST / "index.html").is_file():
        print("console/dist is missing: run `make console` first")
        return 2
    from playwright.sync_api import sync_playwright

    print(f"cityloop web console benchmark: headless Chromium ({CHROMIUM}), 1366x768, "
          f"one uvicorn worker on SQLite, {os.cpu_count()} cores\n")
    print("1. bytes shipped (console/dist)")
    print(f"   {'what':<28} {'raw':>12} {'gzip':>12}")
    for what, raw, gz in build_bytes():
        print(f"   {what:<28} {kib(raw):>12} {kib(gz):>12}")

    renders, frames = [], None
    with tempfile.TemporaryDirectory(prefix="cityloop-bench-console-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        datasets = [("demo", 0, 0)] + ([] if args.no_big else [("district", args.orders, args.points)])
        for label, orders, points in datasets:
            data = Path(tmp) / label
            data.mkdir()
            url = f"sqlite:///{data / 'cityloop.db'}"
            t0 = time.perf_counter()
            if orders or points:
                from bench.scale_data import build_district
                build_district(url, orders=orders, points=points)
            server = Server(url, data)
            print(f"\n   [{label}: server up with data in {time.perf_counter() - t0:.1f} s]")
            try:
                renders += render_table(browser, server, args.runs, label)
                if label == "district":
                    frames = map_frames(browser, server, server.token("dispatcher1"))
            finally:
                server.stop()
        browser.close()

    print(f"\n2. time to first render (median and worst of {args.runs} fresh contexts; API calls and their bytes, "
          "JS/CSS bytes loaded)")
    print(f"   {'data':<9} {'page':<11} {'as':<12} {'median':>9} {'worst':>9} {'API':>4} {'API bytes':>11} "
          f"{'JS+CSS':>11}  errors")
    for label, page_id, user, med, worst, api, api_bytes, assets, errors in renders:
        print(f"   {label:<9} {page_id:<11} {user:<12} {med:>7.0f}ms {worst:>7.0f}ms {api:>4} {kib(api_bytes):>11} "
              f"{kib(assets):>11}  {errors}")
    if frames:
        print(f"\n3. map with {args.points:,} points and {args.orders:,} orders: frame intervals while panning "
              "and zooming (ms)")
        print(f"   {'gesture':<8} {'frames':>7} {'p50':>7} {'p95':>7} {'max':>7} {'>50ms':>6}")
        for gesture, f in frames.items():
            if f["frames"]:
                print(f"   {gesture:<8} {f['frames']:>7} {f['p50']:>7.1f} {f['p95']:>7.1f} {f['max']:>7.1f} "
                      f"{f['slow']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
