"""The side panels in the real app: the hazard preview follows the form's edits (severe, minor,
none, and no table), and the before/after photos of a work order come from a real server with
the tablet's token, enlarge with a tap, and stay viewable offline; screenshots in zh and en."""
from __future__ import annotations

from datetime import date

import pytest

from devices.pairing import save_token
from engine.bpmn.decision_table import evaluate
from fieldapp.ui.panels import (
    CompareThumb,
    HazardPanel,
    PhotoBig,
    PhotoCompare,
    attach_hazard_panel,
    attach_photo_compare,
)
from tests.fieldapp.driver import make_config
from tests.fieldapp.orderserver import app, order_server  # noqa: F401  (fixtures)
from tests.fieldapp.test_gas_screen import GAS_FORM, TABLE, answer

TODAY = date(2026, 12, 4)
ALL_OK = (("hose_ok", "ok"), ("valve_leak_test", "pass"), ("ventilation", "adequate"), ("co_alarm", "working"),
          ("stove_flameout_protection", "present"))


@pytest.fixture
def host(start_app):
    """The app with the real form screen showing the real gas form (custom submit, as the gas
    screen opens a delivery inspection): start(lang, session) -> (driver, form screen)."""

    def start(lang="zh", **kw):
        d = start_app(lang=lang, **kw)
        form_screen = d.app.go("form", draft_key="household:103", title="燃气安全检查 · DC01-001-03 Holder 3"
                               if lang == "zh" else "Gas safety inspection · DC01-001-03 Holder 3",
                               form=GAS_FORM["form"], form_ref="gas_inspection", version=None,
                               submit=lambda data, photos: "op-not-used")
        d.until(lambda: d.screen is form_screen and form_screen.editable, what="the real form")
        d.pump(3)
        return d, form_screen
    return start


def date_answer(d, form_screen, text) -> None:
    d.scroll_to(form_screen.views["cylinder_inspection_date"])
    d.type_into(form_screen.views["cylinder_inspection_date"].input, text)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_hazard_preview_follows_the_form(host, lang):
    d, form = host(lang)
    panel = attach_hazard_panel(form, TABLE, evaluate, today=lambda: TODAY)
    assert panel.level == "unknown" and panel in form.ids.side.children
    answer(d, form, "valve_leak_test", "leak")
    date_answer(d, form, "2027-01-01")
    d.pump(2)
    assert panel.level == "severe"
    expected = {"zh": ("严重隐患", "阀门检漏不合格", "将停止向该住户供气，直至复查合格。"),
                "en": ("Severe hazard", "Valve leak test failed",
                       "Gas supply to this household will be suspended until a re-inspection passes.")}[lang]
    shown = d.texts(panel)
    assert expected[0] in shown and expected[1] in shown and expected[2] in panel.follows_text
    assert panel.ids.follows.texture_size[1] <= panel.ids.follows.height + 1, "the follow-ups are not cut off"
    top = panel.to_window(panel.x, panel.top)[1]
    side = form.ids.side
    assert top >= side.to_window(side.x, side.top)[1] - 1, "the panel sits at the top of the side panel"
    d.screenshot(f"hazard-severe-{lang}")
    answer(d, form, "valve_leak_test", "pass")
    answer(d, form, "hose_ok", "aged")
    assert panel.level == "minor" and "suspend" not in panel.follows_text and "停止" not in panel.follows_text
    for key, value in ALL_OK:
        answer(d, form, key, value)
    assert panel.level == "none"
    d.tap(d.app.root.ids.lang_button)
    assert panel.level_text == {"zh": "No hazard", "en": "无隐患"}[lang], "the panel follows a language switch"


def test_the_cylinder_date_is_judged_on_the_tablet_as_the_server_does(host):
    d, form = host("en")
    panel = attach_hazard_panel(form, TABLE, evaluate, today=lambda: TODAY)
    for key, value in ALL_OK:
        answer(d, form, key, value)
    assert panel.level == "unknown", "no cylinder date yet: not known"
    date_answer(d, form, "2026-12-01")
    assert panel.level == "severe" and panel.reason == "Cylinder past its inspection date"
    date_answer(d, form, "2027-06-01")
    assert panel.level == "none"


def test_without_a_table_or_with_one_it_cannot_read_the_panel_says_so(host):
    d, form = host("en")
    panel = attach_hazard_panel(form, None, evaluate)
    answer(d, form, "valve_leak_test", "leak")
    assert panel.level == "unknown" and "server will judge" in panel.follows_text

    def broken(table, data):
        raise TypeError("unsupported operand in rule 3")
    panel = attach_hazard_panel(form, TABLE, broken)
    assert [w for w in form.ids.side.children if isinstance(w, HazardPanel)] == [panel], "one panel at a time"
    answer(d, form, "valve_leak_test", "pass")
    assert panel.level == "unknown" and "Cannot preview: unsupported operand in rule 3" in panel.follows_text


def paired(field_data, o):
    """The tablet paired to the reviewer and signed in, as the pairing screen leaves it."""
    config = make_config(field_data)
    field_data.mkdir(parents=True, exist_ok=True)
    save_token(config.token_path, o.device_token)
    return {"server": o.url, "device_id": "review-tablet", "person": "reviewer1"}


def thumbs(panel, side) -> list[CompareThumb]:
    return [w for w in panel.ids[f"{side}_grid"].children if isinstance(w, CompareThumb)]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_before_and_after_photos_side_by_side_from_the_server(host, order_server, field_data, lang):  # noqa: F811
    o = order_server
    session = paired(field_data, o)
    d, form = host(lang)
    d.app.store.put("session", session)
    panel = attach_photo_compare(form, o.number, {"id": "t1", "data": {"after_photos": o.after}})
    d.until(lambda: not panel.loading and len(thumbs(panel, "before")) == 2, what="the photos")
    assert len(thumbs(panel, "after")) == 1 and panel.message == ""
    assert all(t.source and t.children for t in thumbs(panel, "before") + thumbs(panel, "after"))
    title = {"zh": ("整改前 · 2 张", "上报时的证据照片"), "en": ("Before · 2 photos", "the report's evidence")}[lang]
    assert (panel.ids.before_title.text, panel.ids.before_hint.text) == title
    d.screenshot(f"photo-compare-{lang}")
    d.tap(thumbs(panel, "after")[0])
    big = d.until(lambda: next((w for w in d.app.root_window.children if isinstance(w, PhotoBig)), None),
                  what="the enlarged photo")
    assert big.source == thumbs(panel, "after")[0].source
    d.until(lambda: big.ids.image.texture is not None)
    d.screenshot(f"photo-compare-big-{lang}")
    d.tap(big.ids.close)
    d.until(lambda: big.parent is None, what="the enlarged photo closed")

    o.live.stop()                                   # offline now: the cached copies are shown
    again = attach_photo_compare(form, o.number)
    d.until(lambda: not again.loading and len(thumbs(again, "before")) == 2, what="the cached photos")
    assert all(t.source for t in thumbs(again, "before")) and again.message == {
        "zh": "当前离线，显示的是上次保存的照片。", "en": "Offline: showing the photos saved last time."}[lang]


def test_offline_without_a_cache_the_panel_says_photos_come_once_online(host, order_server, field_data):  # noqa: F811
    o = order_server
    session = paired(field_data, o)
    o.live.stop()
    d, form = host("zh")
    d.app.store.put("session", session)
    panel = attach_photo_compare(form, o.number)
    d.until(lambda: not panel.loading, what="the fetch to give up")
    assert panel.message == "当前离线，联网后即可查看照片。" and not thumbs(panel, "before")
    assert panel.ids.before_title.text == "整改前" and panel.ids.before_empty.text == ""
    d.screenshot("photo-compare-offline-zh")


def test_an_order_this_person_may_not_see_is_a_message_not_a_crash(host, order_server, field_data):  # noqa: F811
    o = order_server
    session = paired(field_data, o)
    d, form = host("en")
    d.app.store.put("session", session)
    panel = attach_photo_compare(form, "WO-NOT-HERE")
    d.until(lambda: not panel.loading, what="the refusal")
    assert panel.message.startswith("Cannot fetch work order WO-NOT-HERE: HTTP 404")


@pytest.mark.slow
def test_a_reviewer_sees_before_and_after_and_rejects_with_a_reason_applied_once(start_app, order_server, system,  # noqa: F811
                                                                                   field_data):
    from sqlmodel import select

    from engine.domain.models import WorkOrder
    from fieldapp.store import LocalStore
    from fieldapp.ui.screens.tasks import TaskRow
    from sync.client import outcome
    from tests.district import REVIEWER, WORKER_EAST, only_task
    from tests.fieldapp.orderserver import rectified
    o = order_server
    review_task = rectified(system, o)
    session = paired(field_data, o)
    store = LocalStore(make_config(field_data).store_path)
    store.put("session", session)
    store.close()
    d = start_app(lang="zh")                          # signed in: it syncs at once and starts on my work
    tasks_screen = d.until(lambda: d.app.sm.current == "tasks" and d.screen, what="my work")
    d.until(lambda: tasks_screen.ids.rv.data, timeout=60, what="the pulled review task listed")
    d.pump(2)
    [row] = [w for w in tasks_screen.ids.rv.walk(restrict=True) if isinstance(w, TaskRow) and w.title]
    d.tap(row)
    form = d.until(lambda: d.app.sm.current == "form" and d.screen.editable and d.screen, what="the review form")
    assert form.task["id"] == review_task["id"] and form.form_ref == "wo_review"
    [panel] = [w for w in form.ids.side.children if isinstance(w, PhotoCompare)]
    d.until(lambda: not panel.loading and len(thumbs(panel, "before")) == 2, what="the before photos")
    assert [t.sha256 for t in thumbs(panel, "after")] == o.after and all(t.source for t in thumbs(panel, "before"))
    assert sorted(t.sha256 for t in thumbs(panel, "before")) == sorted(o.before)
    v = form.views
    d.tap(v["decision"].choices["reject"])
    d.until(lambda: v["reason"].shown, what="the reason asked for")
    d.type_into(v["reason"].input, "桶边仍有垃圾袋 / bags still by the bins")
    d.pump(3)
    d.screenshot("review-zh")
    d.tap(d.app.root.ids.lang_button)
    d.until(lambda: panel.ids.before_title.text.startswith("Before"), what="the panel in English")
    assert d.by_text("Decision (required)")
    d.pump(3)
    d.screenshot("review-en")
    d.tap(d.app.root.ids.lang_button)
    d.tap(form.ids.submit)
    d.until(lambda: d.app.sm.current == "tasks", what="saved")
    [op_id] = d.app.outbox.op_ids()
    op = d.app.outbox.op(op_id)["op"]
    assert op["kind"] == "complete_task" and op["task_id"] == review_task["id"]
    assert op["payload"] == {"decision": "reject", "reason": "桶边仍有垃圾袋 / bags still by the bins"}
    d.until(lambda: d.app.outbox.counts().get("done") == 1, timeout=60, what="the op applied by the server")
    assert outcome(d.app.outbox.op(op_id)["verdict"]) == "applied"
    d.app.request_sync()                               # a second sync sends nothing again
    d.until(lambda: d.app.waiting == 0 and not tasks_screen.ids.rv.data, timeout=60, what="the review task gone")

    rejected = [e for e in system.audit(business_key=o.number) if e["kind"] == "rejected"]
    assert [(e["detail"]["reason"], e["detail"]["loop"]) for e in rejected] == [
        ("桶边仍有垃圾袋 / bags still by the bins", 1)], "the rejection applied exactly once"
    with system.transaction() as s:
        order = s.exec(select(WorkOrder).where(WorkOrder.number == o.number)).one()
        assert order.state == "at_unit" and order.reject_count == 1
    assert only_task(system, WORKER_EAST, o.number)["name"] == "Task_rectify", "back with the unit: rectify again"
    assert not system.tasks.for_actor(REVIEWER, business_key=o.number)
