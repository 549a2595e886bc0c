"""The console's shell in a real browser: log-in, the pages each role is offered (and the API
refusing the rest), the language switch, and how the server hands out the build."""
from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import DEMO_USERS, api_token, login, set_lang, shot, until

pytestmark = pytest.mark.slow

NAV = {  # role -> the pages its menu offers, in order
    "dispatcher": ["dispatch", "dashboards", "map", "designer"],
    "reviewer": ["review", "dashboards", "map"],
    "designer": ["designer"],
    "unit_leader": ["dispatch", "dashboards", "map"],
    "admin": ["dispatch", "dashboards", "map", "designer"],
}


def nav_of(page) -> list[str]:
    return page.eval_on_selector_all("nav.pages a", "els => els.map(a => a.dataset.page)")


def test_wrong_password_is_refused_with_a_message(page, console_server):
    set_lang(page, "en")
    page.goto(console_server.base_url + "/")
    page.fill("#login-username", "dispatcher1")
    page.fill("#login-password", "not the password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("Wrong username or password")
    assert page.query_selector("header.topbar") is None
    shot(page, "login-en")
    page.click("#lang-toggle")                # the form itself switches to Chinese
    expect(page.locator("#login-submit")).to_have_text("登录")
    expect(page.locator("#login-username")).to_have_value("dispatcher1")   # what was typed stays
    shot(page, "login-zh")


@pytest.mark.parametrize("role", sorted(NAV))
def test_each_role_is_offered_its_own_pages(page, console_server, role):
    login(page, console_server, DEMO_USERS[role], lang="en")
    assert nav_of(page) == NAV[role]
    # the first page opens by itself and is marked in the menu
    page.wait_for_selector(f"nav.pages a.active[data-page='{NAV[role][0]}']")
    assert re.search(f"#/{NAV[role][0]}(/|\\?|$)", page.url), page.url   # (a desk may add the item it shows)


def test_a_page_outside_the_role_says_so_and_the_api_refuses_it_too(page, console_server):
    login(page, console_server, DEMO_USERS["designer"], lang="en", at="#/dispatch")
    expect(page.locator("#page .page-message")).to_have_text("You may not use this page.")
    token = api_token(console_server, DEMO_USERS["designer"])
    r = httpx.get(console_server.base_url + "/api/v1/work-orders", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.json()["error"] == "role_forbidden"


def test_language_switch_relabels_the_shell_and_is_remembered(page, console_server):
    login(page, console_server, DEMO_USERS["dispatcher"], lang="zh")
    assert page.text_content("#nav-dispatch") == "派单台"
    assert "派单员" in page.text_content("#whoami")
    shot(page, "shell-zh")
    page.click("#lang-toggle")
    expect(page.locator("#nav-dispatch")).to_have_text("Dispatch")
    assert "Dispatcher" in page.text_content("#whoami")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.reload()
    page.wait_for_selector("header.topbar #whoami")   # still logged in (this tab), still English
    assert page.text_content("#nav-dashboards") == "Dashboards"


def test_log_out_returns_to_the_form_and_forgets_the_token(page, console_server):
    login(page, console_server, DEMO_USERS["dispatcher"], lang="en")
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert page.evaluate("sessionStorage.getItem('cityloop.token')") is None


def test_the_build_is_served_with_its_policy_and_cache_rules(console_server):
    r = httpx.get(console_server.base_url + "/")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp
    asset = next(part.split('"')[0] for part in r.text.split('src="')[1:] if part.startswith("/assets/"))
    a = httpx.get(console_server.base_url + asset)
    assert a.status_code == 200 and "immutable" in a.headers["cache-control"]
    assert httpx.get(console_server.base_url + "/assets/nothing-here.js").status_code == 404


def test_the_token_is_renewed_before_it_expires(page, console_server):
    page.clock.install()                      # the page's timers, fast-forwarded below
    login(page, console_server, DEMO_USERS["dispatcher"], lang="en")
    first = page.evaluate("sessionStorage.getItem('cityloop.token')")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/refresh")) as renewal:
        page.clock.fast_forward("21:00")      # two thirds of the token's 30 minutes
    assert renewal.value.status == 200
    expect(page.locator("#whoami")).to_be_visible()
    token = until(page, lambda: (t := page.evaluate("sessionStorage.getItem('cityloop.token')")) != first and t)
    r = httpx.get(console_server.base_url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["id"] == DEMO_USERS["dispatcher"]
