"""The review desk in a real browser, by keyboard only: a reviewer rejects an order (back to
the unit, reject_count +1), the unit fixes it again, the reviewer approves it (closed); a
reject without a reason is refused; a task someone else took meanwhile is a clear conflict
and the desk moves on. Each test makes its own orders through the API."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, shot
from tests.console.desks import Api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(console_server):
    return Api(console_server)


def _fixed_order(api, text: str) -> str:
    number = api.report(text)
    api.rectify(number, "fixed")
    assert api.order(number)["state"] == "in_review"
    return number


def _open(page, number: str) -> None:
    """Go to one order's review through the address (as a link from elsewhere would)."""
    page.evaluate("n => { location.hash = '#/review/' + n; }", number)
    expect(page.locator("#review-number")).to_have_text(number)


def test_reviewer_rejects_then_approves_by_keyboard(page, console_server, api):
    number = _fixed_order(api, "garbage by the bus stop / 公交站旁垃圾")
    lists = []
    page.on("response", lambda r: lists.append(r) if "/api/v1/tasks?" in r.url else None)
    login(page, console_server, "reviewer1", "zh", at=f"#/review/{number}")
    expect(page.locator("#review-number")).to_have_text(number)
    assert lists and all("forms=false" in r.url for r in lists), [r.url for r in lists]
    listed = lists[0].json()["items"]
    assert number in [t["business_key"] for t in listed] and all(t["form"] is None for t in listed), \
        "the queue loads no form schemas (the review form is the page's own)"
    expect(page.locator("#review-before img[src^='blob:']")).to_have_count(1)
    expect(page.locator("#review-after img[src^='blob:']")).to_have_count(1)
    queued = page.locator("#review-queue li").count()
    expect(page.locator("#review-count")).to_have_text(str(queued))
    shot(page, "review-zh")

    page.keyboard.press("?")
    expect(page.locator("#review-keys")).to_be_visible()
    shot(page, "review-keys-zh")
    page.keyboard.press("Escape")
    expect(page.locator("#review-keys")).to_have_count(0)

    page.keyboard.press("r")                                   # no reason: refused, nothing sent
    expect(page.locator("#review-reason")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#review-reason-error")).to_have_text("退回必须填写理由（至少 2 个字）")
    assert api.order(number)["state"] == "in_review"
    shot(page, "review-reject-zh")
    page.keyboard.press("Escape")                              # cancelled: the keys work again
    expect(page.locator("#review-reason")).to_be_hidden()
    page.keyboard.press("r")
    page.keyboard.type("垃圾袋仍在站台后面 / bags still behind the shelter")
    page.keyboard.press("Enter")
    expect(page.locator("#review-count")).to_have_text(str(queued - 1))
    expect(page.locator(f'#review-queue li[data-number="{number}"]')).to_have_count(0)
    after_reject = api.order(number)
    assert after_reject["state"] == "at_unit" and after_reject["unit_code"] == "clean-east"
    assert after_reject["reject_count"] == 1

    api.rectify(number, "fixed")                               # the unit fixes it again
    _open(page, number)
    page.keyboard.press("k")                                   # previous (it is the newest: last) and back
    expect(page.locator("#review-number")).not_to_have_text(number)
    page.keyboard.press("ArrowDown")
    expect(page.locator("#review-number")).to_have_text(number)
    page.keyboard.press("a")
    expect(page.locator(f'#review-queue li[data-number="{number}"]')).to_have_count(0)
    closed = api.order(number)
    assert closed["state"] == "closed" and closed["reject_count"] == 1
    expect(page.locator("#review-number")).to_be_visible()        # the next one loaded by itself


def test_a_task_taken_meanwhile_is_a_conflict_and_the_desk_moves_on(page, console_server, api):
    number = _fixed_order(api, "ads on the lamp post / 灯杆小广告")
    login(page, console_server, "reviewer2", "en", at=f"#/review/{number}")
    expect(page.locator("#review-number")).to_have_text(number)
    expect(page.locator("#review-after img[src^='blob:']")).to_have_count(1)
    shot(page, "review-en")
    page.keyboard.press("?")
    shot(page, "review-keys-en")
    page.keyboard.press("Escape")
    page.keyboard.press("z")                                   # the after photo, full window
    expect(page.locator(".photo-zoom img[src^='blob:']")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator(".photo-zoom")).to_have_count(0)

    task = api.task(number, "reviewer1")
    api.call("reviewer1", "POST", f"/api/v1/tasks/{task['id']}/claim")   # someone else took it
    page.keyboard.press("a")
    expect(page.locator(".toast.error")).to_contain_text(f"{number} was taken by someone else")
    expect(page.locator("#review-number")).not_to_have_text(number)
    assert api.order(number)["state"] == "in_review"
