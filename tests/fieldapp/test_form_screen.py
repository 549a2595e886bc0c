"""The form screen in a real window, driven by touches: every field type, hiding, the server's
error messages next to the fields, submitting to the outbox, the custom-submit mode, the side
panel and listeners."""
from __future__ import annotations

import hashlib

import pytest
from kivy.uix.label import Label

from fieldapp.ui.widgets import FormSpinnerOption, PhotoPathPopup
from tests.fieldapp.form_child import png, seed, task

ALL_TYPES = {"id": "all_types", "type": "default", "components": [
    {"type": "text", "text": "#### Every kind of field\n\n所有字段类型"},
    {"type": "group", "label": "Person", "properties": {"label_zh": "人员"}, "components": [
        {"type": "textfield", "key": "name", "label": "Name", "validate": {"required": True, "minLength": 2},
         "properties": {"label_zh": "姓名"}},
        {"type": "number", "key": "age", "label": "Age", "validate": {"min": 16, "max": 99},
         "properties": {"label_zh": "年龄"}}]},
    {"type": "textarea", "key": "notes", "label": "Notes", "properties": {"label_zh": "说明"}},
    {"type": "checkbox", "key": "agree", "label": "I checked the meter", "validate": {"required": True},
     "properties": {"label_zh": "已检查燃气表"}},
    {"type": "checklist", "key": "parts", "label": "Parts replaced",
     "values": [{"label": "Hose", "value": "hose"}, {"label": "Valve", "value": "valve"},
                {"label": "Clamp", "value": "clamp"}],
     "properties": {"label_zh": "更换部件", "label_zh.hose": "软管", "label_zh.valve": "阀门",
                    "label_zh.clamp": "卡箍"}},
    {"type": "select", "key": "room", "label": "Room", "validate": {"required": True},
     "values": [{"label": "Kitchen", "value": "kitchen"}, {"label": "Balcony", "value": "balcony"}],
     "properties": {"label_zh": "位置", "label_zh.kitchen": "厨房", "label_zh.balcony": "阳台"}},
    {"type": "radio", "key": "result", "label": "Result", "validate": {"required": True},
     "values": [{"label": "Pass", "value": "pass"}, {"label": "Fail", "value": "fail"}],
     "properties": {"label_zh": "结论", "label_zh.pass": "合格", "label_zh.fail": "不合格"}},
    {"type": "textfield", "key": "why", "label": "Why did it fail", "validate": {"required": True},
     "conditional": {"hide": "=result != \"fail\""}, "properties": {"label_zh": "不合格原因"}},
    {"type": "datetime", "subtype": "date", "dateLabel": "Next visit", "key": "next_visit",
     "properties": {"label_zh": "下次上门日期"}},
    {"type": "filepicker", "key": "pics", "label": "Photos", "multiple": True, "validate": {"required": True},
     "properties": {"label_zh": "照片"}},
]}


def open_custom(d, submitted, **extra):
    def submit(data, photos):
        submitted.append((data, photos))
        return "op-custom-1"
    return d.app.go("form", draft_key="custom:1", title="全部字段", form=ALL_TYPES, form_ref="all_types",
                    version=None, submit=submit, extra=extra)


def opened(d, screen) -> None:
    d.until(lambda: screen.editable, what="the form")
    d.pump(3)           # laid out


def error_of(view) -> str:
    return view.error_label.text if view.error_label.height > 0 else ""


def test_every_field_type_takes_real_touches_and_the_custom_submit_gets_clean_values(start_app, tmp_path):
    d = start_app()
    submitted: list = []
    screen = open_custom(d, submitted)
    opened(d, screen)
    v = screen.views
    assert d.by_text("人员") and d.by_text("姓名 （必填）") and not v["why"].shown
    assert "所有字段类型" in d.texts()[d.texts().index("姓名 （必填）") - 2]

    d.type_into(v["name"].input, "李")                    # too short: the server's message, at once
    assert error_of(v["name"]) == "至少需要 2 个字符。"
    d.type_into(v["name"].input, "李明")
    assert error_of(v["name"]) == ""
    d.type_into(v["age"].input, "12")
    assert error_of(v["age"]) == "不能小于 16。"
    d.type_into(v["age"].input, "42")
    d.type_into(v["notes"].input, "第一行\n第二行")
    d.scroll_to(v["agree"])
    d.tap(v["agree"].choices["true"])
    assert v["agree"].choices["true"].selected
    d.scroll_to(v["parts"])
    d.tap(v["parts"].choices["hose"])
    d.tap(v["parts"].choices["clamp"])
    d.tap(v["parts"].choices["hose"])                   # untick
    d.scroll_to(v["room"])
    d.tap(v["room"].spinner)
    option = d.until(lambda: next((w for top in d.app.root_window.children for w in top.walk()
                                   if isinstance(w, FormSpinnerOption) and w.text == "阳台"), None),
                     what="the select's options")
    d.tap(option)
    assert v["room"].spinner.text == "阳台"
    d.scroll_to(v["result"])
    d.tap(v["result"].choices["fail"])
    assert v["why"].shown and v["why"].height > 0          # shown by conditional.hide
    d.scroll_to(v["why"])
    d.type_into(v["why"].input, "阀门漏气")
    d.tap(v["result"].choices["pass"])
    assert not v["why"].shown and v["why"].height == 0 and v["why"].disabled
    d.scroll_to(v["next_visit"])
    d.type_into(v["next_visit"].input, "2027-02-30")
    assert error_of(v["next_visit"]) == "应为日期（YYYY-MM-DD）。"
    d.type_into(v["next_visit"].input, "2027-02-28")
    assert error_of(v["next_visit"]) == ""

    # a photo from a file: the in-app chooser (no camera here), a typed path, OK
    picture = png(tmp_path / "meter.png")
    d.scroll_to(v["pics"])
    d.tap(v["pics"].add_button)
    popup = d.until(lambda: isinstance(screen.popup, PhotoPathPopup) and screen.popup, what="the photo chooser")
    d.type_into(popup.ids.path, str(tmp_path / "nope.png"))
    d.tap(popup.ids.ok)
    assert "找不到文件" in popup.error                     # a clear message, the popup stays
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    d.type_into(popup.ids.path, str(not_image))
    d.tap(popup.ids.ok)
    assert "不是 JPEG、PNG 或 WebP 图片" in popup.error
    d.type_into(popup.ids.path, str(picture))
    d.tap(popup.ids.ok)
    d.until(lambda: popup.parent is None, what="the chooser closed")
    d.until(lambda: v["pics"].photos_box.children, what="the photo thumbnail")
    assert v["pics"].photos_box.children[0].path == str(picture)
    d.scroll_to(v["agree"])
    d.screenshot("form-fields-zh")
    d.scroll_to(v["pics"])
    d.screenshot("form-photo-zh")

    draft = d.app.store.draft("custom:1")                  # every change was saved at once
    assert draft.data["name"] == "李明" and draft.data["pics"] == [str(picture)] and draft.focus == "pics"
    assert draft.data["parts"] == ["clamp"] and draft.data["room"] == "balcony" and draft.data["age"] == 42

    d.tap(screen.ids.submit)
    d.until(lambda: submitted or screen.summary, what="the custom submit")
    assert not screen.summary
    data, photos = submitted[0]
    assert data == {"name": "李明", "age": 42, "notes": "第一行\n第二行", "agree": True, "parts": ["clamp"],
                    "room": "balcony", "result": "pass", "next_visit": "2027-02-28"}
    assert photos == {"pics": [str(picture)]}
    d.until(lambda: d.app.store.draft("custom:1") is None, what="the draft dropped after submitting")


def test_the_gas_form_shows_errors_next_to_the_fields_and_refuses_to_submit(start_app, tmp_path):
    d = start_app()
    t = task(7, due_hours=-1, version=4)
    seed(d.app.outbox, [t])
    d.app.go("tasks")
    screen = d.app.go("form", task=t)
    opened(d, screen)
    v = screen.views
    d.tap(v["hose_ok"].choices["aged"])
    d.tap(screen.ids.submit)
    assert d.app.outbox.unsettled() == []                  # refused: nothing in the outbox
    assert screen.summary == "有 6 处需要修改，见红字提示"
    assert error_of(v["valve_leak_test"]) == "此项为必填项。" and error_of(v["hose_ok"]) == ""
    assert error_of(v["photos"]) == "此项为必填项。"
    # the message is drawn right under its field
    for key in ("valve_leak_test", "photos"):
        label = v[key].error_label
        assert label.parent is v[key] and isinstance(label, Label) and label.opacity != 0
    d.scroll_to(v["cylinder_inspection_date"])
    d.type_into(v["cylinder_inspection_date"].input, "01/05/2027")
    assert error_of(v["cylinder_inspection_date"]) == "应为日期（YYYY-MM-DD）。"
    screen.ids.scroll.scroll_y = 1
    d.screenshot("form-zh")
    d.tap(d.app.root.ids.lang_button)
    assert error_of(v["cylinder_inspection_date"]) == "Expected a date YYYY-MM-DD."
    assert d.by_text("Hose condition (required)") and screen.summary.startswith("6 answers need fixing")
    assert screen.saved_text.startswith("Draft saved")
    d.screenshot("form-en")


def test_a_completed_gas_form_goes_to_the_outbox_with_its_photos_and_gps(start_app, tmp_path):
    d = start_app(location="31.2304,121.4737")
    t = task(8, version=4)
    seed(d.app.outbox, [t])
    d.app.go("tasks")
    screen = d.app.go("form", task=t)
    opened(d, screen)
    v = screen.views
    for key, value in (("hose_ok", "cracked"), ("valve_leak_test", "leak"), ("ventilation", "poor"),
                       ("co_alarm", "missing"), ("stove_flameout_protection", "absent")):
        d.scroll_to(v[key])
        d.tap(v[key].choices[value])
    d.scroll_to(v["cylinder_inspection_date"])
    d.type_into(v["cylinder_inspection_date"].input, "2026-11-30")
    pictures = [png(tmp_path / f"p{i}.png", rgb=(i * 40, 80, 120)) for i in range(2)]
    for p in pictures:
        screen.add_photo("photos", str(p))
    d.scroll_to(v["remarks"])
    d.type_into(v["remarks"].input, "软管开裂，已关阀")
    d.scroll_to(v["photos"])
    d.tap(v["photos"].photos_box.children[-1].ids["remove"])    # take the first photo out again
    screen.add_photo("photos", str(pictures[0]))
    d.tap(screen.ids.submit)
    d.until(lambda: d.app.sm.current == "tasks", what="back to the list")
    assert "已保存" in d.app.message
    [op] = d.app.outbox.unsettled()
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (pictures[1], pictures[0])]
    assert op["kind"] == "complete_task" and op["task_id"] == t["id"] and op["based_on_version"] == 4
    assert op["payload"] == {"hose_ok": "cracked", "valve_leak_test": "leak", "ventilation": "poor",
                             "co_alarm": "missing", "stove_flameout_protection": "absent",
                             "cylinder_inspection_date": "2026-11-30", "remarks": "软管开裂，已关阀",
                             "photos": shas}
    assert sorted(op["attachments"]) == sorted(shas)
    assert op["gps"] == {"lat": 31.2304, "lon": 121.4737, "accuracy": None}
    assert d.app.store.draft(f"task:{t['id']}") is None
    d.until(lambda: d.app.waiting == 1, what="the top bar counting the op")


def test_hidden_fields_are_not_sent_and_a_short_reason_is_refused(start_app):
    d = start_app()
    t = task(9, "wo_review", version=2)
    seed(d.app.outbox, [t])
    d.app.go("tasks")
    screen = d.app.go("form", task=t)
    opened(d, screen)
    v = screen.views
    assert not v["reason"].shown and v["reason"].height == 0
    d.tap(v["decision"].choices["reject"])
    assert v["reason"].shown
    d.type_into(v["reason"].input, "差")
    d.tap(screen.ids.submit)
    assert error_of(v["reason"]) == "至少需要 2 个字符。" and d.app.outbox.unsettled() == []
    d.type_into(v["reason"].input, "照片看不到整改后的阀门")
    d.tap(v["decision"].choices["approve"])             # the reason is hidden again: not sent
    d.tap(screen.ids.submit)
    d.until(lambda: d.app.waiting == 1, what="the op")
    assert d.app.outbox.unsettled()[0]["payload"] == {"decision": "approve"}


def test_other_screens_use_the_side_panel_and_hear_every_edit(start_app):
    from kivy.uix.label import Label as KLabel
    d = start_app()
    submitted: list = []
    screen = open_custom(d, submitted)
    opened(d, screen)
    heard: list[dict] = []
    preview = KLabel(text="风险：无", color=(0.1, 0.1, 0.1, 1))
    screen.ids.side.add_widget(preview)
    screen.add_listener(heard.append)
    screen.add_listener(lambda values: setattr(preview, "text", f"结论：{values.get('result', '-')}"))
    d.pump(2)
    assert screen.ids.side.width > 200 and preview.get_root_window() is not None
    d.scroll_to(screen.views["result"])
    d.tap(screen.views["result"].choices["fail"])
    assert heard[-1]["result"] == "fail" and preview.text == "结论：fail"
    d.scroll_to(screen.views["name"])
    d.type_into(screen.views["name"].input, "王五")
    assert heard[-1]["name"] == "王五"
    # opening another form clears the panel and the listeners
    d.app.go("form", task=task(3))
    assert list(screen.ids.side.children) == [] and screen.listeners == []


@pytest.mark.slow
def test_a_task_pulled_from_a_real_server_is_completed_on_the_form_and_applied(start_app, system, db_url, tmp_path,
                                                                               field_data):
    from devices.pairing import save_token
    from engine.runtime.errors import Actor
    from fieldapp.store import LocalStore
    from sync.client import outcome
    from tests.fieldapp.driver import make_config
    from tests.sync.servers import ServerProcess
    from tests.sync.syncing import WORKER, east_order, paired_tablet, rectify_task

    token = paired_tablet(system, "tablet forms")
    number = east_order(system)
    open_task = rectify_task(system, number)
    server = ServerProcess(db_url, tmp_path / "server").start()
    try:
        config = make_config(field_data)
        field_data.mkdir(parents=True, exist_ok=True)
        save_token(config.token_path, token)
        store = LocalStore(config.store_path)
        store.put("session", {"server": server.base_url, "person": WORKER})
        store.close()
        d = start_app()                                    # signed in: it syncs at once and starts on my work
        screen = d.until(lambda: d.app.sm.current == "tasks" and d.screen, what="my work")
        d.until(lambda: screen.ids.rv.data, timeout=60, what="the pulled task listed")
        d.pump(2)
        [row] = [w for w in screen.ids.rv.walk(restrict=True) if getattr(w, "title", "") and hasattr(w, "row")]
        assert row.subtitle.startswith(number)
        d.tap(row)
        form_screen = d.until(lambda: d.app.sm.current == "form" and d.screen, what="the form")
        opened(d, form_screen)
        assert form_screen.task["id"] == open_task["id"]
        v = form_screen.views
        d.tap(v["action"].choices["fixed"])          # hidden fields laid out over it must not take the touch
        assert v["action"].choices["fixed"].selected and v["after_photos"].shown
        form_screen.add_photo("after_photos", str(png(tmp_path / "after.png", rgb=(10, 200, 10))))
        d.scroll_to(v["note"])
        d.type_into(v["note"].input, "已清理 / bins emptied")
        d.tap(form_screen.ids.submit)
        d.until(lambda: d.app.sm.current == "tasks", what="saved")
        d.until(lambda: d.app.outbox.counts().get("done") == 1, timeout=60, what="the op applied by the server")
        [op_id] = d.app.outbox.op_ids()
        assert outcome(d.app.outbox.op(op_id)["verdict"]) == "applied"
        d.until(lambda: d.app.waiting == 0 and not screen.ids.rv.data, timeout=60, what="the done task gone")
        remaining = system.tasks.for_actor(Actor(WORKER, {"unit:clean-east"}), business_key=number)
        assert all(t["id"] != open_task["id"] for t in remaining)
        d.stop()
    finally:
        server.stop()
    assert "Traceback" not in server.log_tail(100_000), server.log_tail()
