"""The dashboards page in a real browser on the demo district: every KPI tile and table figure
equals the JSON the API gives for the same period (a fixed from/to in the hash), a unit leader
sees their unit only, a bad period shows the server's message, and a language switch relabels
the charts and tables."""
from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import DEMO_USERS, api_token, login, shot

pytestmark = pytest.mark.slow

__all__: list[str] = []

# The demo district is seeded relative to the server's start: a 90-day window around today holds it.
FROM = (date.today() - timedelta(days=90)).isoformat()
TO = (date.today() + timedelta(days=2)).isoformat()
AT = f"#/dashboards?from={FROM}&to={TO}"


CATEGORIES = {"exposed_garbage": "Exposed garbage", "street_vending": "Street vending",
              "illegal_ads": "Illegal advertising", "road_damage": "Road damage", "manhole_cover": "Manhole cover",
              "gas_hazard": "Bottled gas hazard", "tree_fallen": "Fallen tree", "other": "Other"}


def cat(code: str) -> str:
    return CATEGORIES.get(code, code)


def num(x) -> str:
    """As the page shows a figure in English (en-GB): grouped, up to two decimals."""
    if x is None:
        return "–"
    text = f"{x:,.2f}".rstrip("0").rstrip(".")
    return text


def pct(rate) -> str:
    return "–" if rate is None else num(round(rate * 100, 2)) + "%"


def overview(server, user: str) -> dict:
    r = httpx.get(server.base_url + "/api/v1/dashboards", params={"from": FROM, "to": TO}, timeout=30,
                  headers={"Authorization": f"Bearer {api_token(server, user)}"})
    r.raise_for_status()
    return r.json()


def table_rows(page, section: str) -> list[list[str]]:
    sec = page.locator(f'section[data-section="{section}"]')
    if sec.locator("button.dash-toggle").get_attribute("aria-pressed") != "true":
        sec.locator("button.dash-toggle").click()
    table = sec.locator("table.dash-table")
    expect(table).to_be_visible()
    return [[c.strip() for c in row] for row in
            table.locator("tbody tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")]


def kpi(page, name: str) -> str:
    return page.locator(f'[data-kpi="{name}"] .dash-kpi-value').inner_text().strip()


def test_every_figure_matches_the_api(page, console_server):
    login(page, console_server, DEMO_USERS["dispatcher"], lang="en", at=AT)
    page.locator(".dash-kpis").wait_for()
    expect(page.locator(".dash-chart canvas").first).to_be_visible()
    data = overview(console_server, DEMO_USERS["dispatcher"])
    w, a, g = data["work_orders"], data["attendance"], data["gas"]
    assert w["closed"] > 0 and w["by_day"] and w["hotspots"] and a["by_contract_day"], "the demo should fill the page"
    shot(page, "dashboards-en")
    tiles = {"closed": num(w["closed"]), "median_hours": num(w["median_hours"]), "p90_hours": num(w["p90_hours"]),
             "on_time_rate": pct(w["on_time_rate"]), "backlog_total": num(w["backlog_total"]),
             "overdue_total": num(w["overdue_total"]), "reported_total": num(w["reported_total"]),
             "attendance_rate": pct(a["rate"]), "gas_coverage": pct(g["coverage"]), "gas_overdue": num(g["overdue"])}
    assert {k: kpi(page, k) for k in tiles} == tiles
    assert table_rows(page, "trend") == [[d["day"], num(d["closed"]), num(d["median_hours"]), num(d["p90_hours"])]
                                         for d in w["by_day"]]
    assert table_rows(page, "on_time") == [[u["unit"], num(u["closed"]), num(u["on_time"]), pct(u["rate"])]
                                           for u in w["on_time_by_unit"]]
    assert table_rows(page, "backlog") == [[b["unit"], cat(b["category"]), num(b["open"]), num(b["overdue"])]
                                           for b in w["backlog"]]
    assert table_rows(page, "attendance") == [
        [r["contract"], r["day"], num(r["expected"]), num(r["present"]), num(r["late"]), num(r["absent"]),
         pct(r["rate"])] for r in a["by_contract_day"]]
    assert table_rows(page, "hotspots") == [[cat(r["category"]), r["area"], num(r["reported"])] for r in w["hotspots"]]
    assert table_rows(page, "gas") == [
        [r["address_code"], r["holder"], r["deliverer_id"] or "(unassigned)",
         "never inspected" if r["days_overdue"] is None else num(r["days_overdue"])]
        for r in g["overdue_households"]]
    shot(page, "dashboards-en-tables")
    # no horizontal scrolling at 1366x768
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # the language switch relabels in place (the tables stay open, the figures stay)
    page.click("#lang-toggle")
    expect(page.locator('section[data-section="trend"] h2')).to_have_text("上报至结案时长（按日）")
    expect(page.locator('[data-kpi="closed"] .dash-kpi-label')).to_have_text("已结案")
    hot = page.locator('section[data-section="hotspots"] table.dash-table')
    expect(hot).to_be_visible()      # the open table stays open, relabelled
    expect(hot.locator("th").first).to_have_text("类别")


def test_chinese_page_and_a_unit_leader_sees_their_unit_only(page, console_server):
    login(page, console_server, DEMO_USERS["unit_leader"], lang="zh", at=AT)
    page.locator(".dash-kpis").wait_for()
    expect(page.locator(".dash-note")).to_contain_text("clean-east")
    expect(page.locator(".dash-chart canvas").first).to_be_visible()
    shot(page, "dashboards-zh")
    w = overview(console_server, DEMO_USERS["unit_leader"])["work_orders"]
    assert kpi(page, "closed") == format(w["closed"], ",")
    units = {row[0] for row in table_rows(page, "on_time")} | {row[0] for row in table_rows(page, "backlog")}
    assert units <= {"clean-east"} and units
    assert page.locator('[data-kpi="gas_coverage"]').count() == 0      # not the gas office


def test_a_bad_period_shows_the_servers_message(page, console_server):
    login(page, console_server, DEMO_USERS["dispatcher"], lang="en", at="#/dashboards?from=2026-05-01&to=2026-04-01")
    expect(page.locator(".dash-error")).to_contain_text("must be before 'to'")
    shot(page, "dashboards-bad-period")
    page.select_option("select.dash-preset", "7")      # a preset recovers: the last 7 days
    expect(page.locator('[data-kpi="closed"]')).to_be_visible()
    expect(page.locator(".dash-error")).to_have_count(0)
    assert "days=7" in page.url
