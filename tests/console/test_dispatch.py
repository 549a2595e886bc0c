"""The dispatch desk in a real browser: a dispatcher re-routes an order from the "not ours"
queue, reassigns a unit's task and comments; the diagram highlights where the order stands;
the filters and the total agree with the API; a unit leader sees only their unit's orders.
Each test makes its own orders through the API (the module shares one server)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, shot
from tests.console.desks import Api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(console_server):
    return Api(console_server)


def _rerouting_total(api) -> int:
    return api.get("/api/v1/work-orders", state="rerouting", limit=1)["total"]


def test_dispatcher_reroutes_from_the_not_ours_queue(page, console_server, api):
    number = api.report("bags left at the estate gate / 小区门口堆放垃圾袋")
    api.rectify(number, "not_ours")
    before = api.order(number)
    assert before["state"] == "rerouting" and before["unit_code"] == "clean-east"
    waiting = _rerouting_total(api)

    login(page, console_server, "dispatcher1", "zh", at="#/dispatch?tab=notours")
    expect(page.locator("#dispatch-notours-count")).to_have_text(str(waiting))
    row = page.locator(f'#dispatch-orders tr[data-number="{number}"]')
    row.click()
    expect(page.locator("#dispatch-detail-number")).to_have_text(number)
    expect(page.locator(".unit-said")).to_contain_text("property manager")
    expect(page.locator('#dispatch-diagram [data-element-id="Task_reroute"].wo-current')).to_be_visible()
    page.locator("#dispatch-photos img[src^='blob:']").first.wait_for()
    shot(page, "dispatch-notours-zh")

    page.click("#dispatch-reroute")
    page.click("#reroute-submit")                              # nothing chosen: refused in words
    expect(page.locator(".panel .form-error")).to_have_text("请选择新的责任单位")
    page.select_option("#reroute-unit", "clean-west")
    page.fill("#reroute-reason", "西片保洁负责该路段 / the west contractor covers this road")
    shot(page, "dispatch-notours-form-zh")
    page.click("#reroute-submit")

    expect(page.locator("#dispatch-notours-count")).to_have_text(str(waiting - 1))
    expect(row).to_have_count(0)                               # it left the queue
    expect(page.locator("#dispatch-detail-state")).to_have_text("处置中")
    after = api.order(number)
    assert after["state"] == "at_unit" and after["unit_code"] == "clean-west"
    assert after["reroute_count"] == before["reroute_count"] + 1
    expect(page.locator('#dispatch-diagram [data-element-id="Task_rectify"].wo-current')).to_be_visible()


def test_dispatcher_reassigns_and_comments(page, console_server, api):
    number = api.report("overflowing bins by the school / 学校旁垃圾桶满溢")
    login(page, console_server, "dispatcher2", "en", at=f"#/dispatch/{number}")
    expect(page.locator("#dispatch-detail-number")).to_have_text(number)
    # the diagram shows where the order stands: the unit's Rectify task
    expect(page.locator('#dispatch-diagram [data-element-id="Task_rectify"].wo-current')).to_be_visible()
    expect(page.locator('#dispatch-diagram [data-element-id="Task_review"].wo-current')).to_have_count(0)
    page.locator("#dispatch-photos img[src^='blob:']").first.wait_for()
    shot(page, "dispatch-detail-en")

    page.click("#dispatch-reassign")
    expect(page.locator("#reassign-to option[value='worker.clean-east.2']")).to_have_count(1)
    page.select_option("#reassign-to", "worker.clean-east.2")
    page.fill("#reassign-reason", "nearest crew")
    page.click("#reassign-submit")
    expect(page.locator("#dispatch-timeline")).to_contain_text("Task reassigned")
    task = api.order(number)["process"]["open_tasks"][0]
    assert task["name"] == "Task_rectify" and task["assignee"] == "worker.clean-east.2"

    page.click("#dispatch-comment-send")                       # empty: refused
    expect(page.locator(".comment-form .form-error")).to_have_text("A comment needs some text")
    page.fill("#dispatch-comment", "Called the crew leader, on the way")
    page.click("#dispatch-comment-send")
    expect(page.locator("#dispatch-comments")).to_contain_text("Called the crew leader, on the way")
    comments = api.order(number)["comments"]
    assert [(c["author"], c["text"]) for c in comments] == [("dispatcher2", "Called the crew leader, on the way")]


def test_filters_and_total_agree_with_the_api(page, console_server, api):
    number = api.report("camera saw a pile / 摄像头发现垃圾堆", source="patrol")
    login(page, console_server, "dispatcher3", "zh", at="#/dispatch")
    total = api.get("/api/v1/work-orders", limit=1)["total"]
    expect(page.locator("#dispatch-total")).to_contain_text(str(total))
    expect(page.locator("#dispatch-orders tbody tr").first).to_be_visible()
    shot(page, "dispatch-zh")

    page.select_option("#dispatch-source", "patrol")
    patrol = api.get("/api/v1/work-orders", source="patrol", limit=1)["total"]
    expect(page.locator("#dispatch-total")).to_contain_text(f"共 {patrol} 条")
    expect(page.locator(f'#dispatch-orders tr[data-number="{number}"]')).to_be_visible()
    assert "source=patrol" in page.url
    page.fill("#dispatch-q", number)
    expect(page.locator("#dispatch-orders tbody tr")).to_have_count(1)
    page.click("#dispatch-reset")
    expect(page.locator("#dispatch-total")).to_contain_text(str(total + 0))
    page.click("#lang-toggle")
    expect(page.locator("#dispatch-tab-all")).to_have_text("All orders")
    expect(page.locator("#dispatch-orders tbody tr").first).to_be_visible()
    shot(page, "dispatch-en")


def test_unit_leader_sees_only_their_units_orders(page, console_server, api):
    mine = api.get("/api/v1/work-orders", "leader.clean-east", limit=500)
    assert mine["total"] and {o["unit_code"] for o in mine["items"]} == {"clean-east"}
    login(page, console_server, "leader.clean-east", "zh", at="#/dispatch")
    expect(page.locator("#dispatch-total")).to_have_text(f"共 {mine['total']} 条")
    expect(page.locator("#dispatch-orders tbody tr")).to_have_count(mine["total"])
    units = page.locator("#dispatch-orders td.unit").all_inner_texts()
    assert set(units) == {"东片环卫保洁公司"}
    shot(page, "dispatch-leader-zh")
