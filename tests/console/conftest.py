"""The web console in a real browser: Playwright driving Debian's Chromium (headless) against a
real server process (uvicorn, the built console in console/dist, the demo district seeded at
start exactly as `make run` does).

- `console_server`: one server per test module (the demo seed takes a few seconds); tests in
  a module share its data, so each picks its own orders.
- `browser`: one Chromium per module; `page` gives each test a fresh context (1366x768, no
  stored log-in) and fails the test on any script error or console error the page logs
  (a Content-Security-Policy violation included) and on any text missing a translation.
- `login(page, server, user)`, `shot(page, name)`: log in through the form; save a
  screenshot to test-artifacts/console/<name>.png.

Nothing here is skipped: without console/dist or /usr/bin/chromium the tests fail and say
which make target provides it (make test builds and installs both)."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.sync.servers import ROOT, ServerProcess

__all__ = ["ARTIFACTS", "DEMO_PASSWORD", "DEMO_USERS", "api_token", "login", "set_lang", "shot", "until", "wait_idle"]

CHROMIUM = os.environ.get("CITYLOOP_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "console"
DEMO_PASSWORD = "cityloop-demo"   # engine.demo.DEMO_PASSWORD: every demo account
DEMO_USERS = {"admin": "admin", "designer": "designer", "dispatcher": "dispatcher1", "reviewer": "reviewer1",
              "unit_leader": "leader.clean-east", "unit_worker": "worker.clean-east.1", "deliverer": "deliverer1"}
VIEWPORT = {"width": 1366, "height": 768}
# Chromium logs every 4xx answer as a console error; the console handles those (a wrong
# password, a refused edit) and tests check what it shows. A 5xx is a server bug: it fails.
BENIGN = (re.compile(r"Failed to load resource: the server responded with a status of 4\d\d"),)


def _start(db_url: str, data_dir: Path, env: dict | None = None) -> ServerProcess:
    index = ROOT / "console" / "dist" / "index.html"
    if not index.is_file():
        pytest.fail(f"{index} is missing: build the console with `make console` (make test does it first)")
    server = ServerProcess(db_url, data_dir, env={"CITYLOOP_DEMO": "1", **(env or {})})
    return server.start(timeout=180)   # the demo seed runs at start


@pytest.fixture(scope="module")
def console_server(module_db_url, tmp_path_factory):
    """A real server process with the demo district, shared by the tests of one module."""
    server = _start(module_db_url, tmp_path_factory.mktemp("console-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. (Not for the session: Playwright's sync API keeps an
    event loop running in this thread while it is started, and the suite's later tests call
    asyncio.run, which refuses to run inside one.)"""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does it first)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context and page; the test fails if the page logs an error."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
          if (msg.type == "error" and not any(b.search(msg.text) for b in BENIGN))
          or msg.text.startswith("i18n: no text for") else None)
    pg.problems = problems            # a test that provokes an error on purpose clears this
    yield pg
    context.close()
    if not getattr(request.node, "rep_call_failed", False):
        assert not problems, "the page logged errors:\n" + "\n".join(problems)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.rep_call_failed = True


def set_lang(page, lang: str) -> None:
    """Choose the console's language for this (fresh) context before the console loads; the
    language switch changes it later as it would for a person."""
    page.add_init_script(f"localStorage.getItem('cityloop.lang') || localStorage.setItem('cityloop.lang', {lang!r})")


def login(page, server: ServerProcess, user: str, lang: str = "zh", at: str = "#/") -> None:
    """Open the console and log in through its form as `user` (a demo account)."""
    set_lang(page, lang)
    page.goto(server.base_url + "/" + at)
    page.fill("#login-username", user)
    page.fill("#login-password", DEMO_PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("header.topbar #whoami")


def api_token(server: ServerProcess, user: str) -> str:
    """An access token for a demo account, for checking what the page shows against the API."""
    r = httpx.post(server.base_url + "/api/v1/auth/login", json={"username": user, "password": DEMO_PASSWORD},
                   timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


def until(page, probe, timeout: float = 15.0):
    """Poll `probe()` (e.g. a page.evaluate of some state) until it returns something truthy;
    return it. For state no locator shows (storage, a variable), where wait_for_function would
    need eval, which the console's CSP forbids."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        page.wait_for_timeout(50)


def wait_idle(page) -> None:
    """Wait until the page has no requests in flight (after a navigation or an action)."""
    page.wait_for_load_state("networkidle")


def shot(page, name: str) -> Path:
    """Save a screenshot of the whole window to test-artifacts/console/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
