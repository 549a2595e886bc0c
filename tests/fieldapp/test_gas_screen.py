"""The gas deliverer's household list in the real app: pick a household by touch, by a QR
picture chosen in the app, an unknown code's message, a suspended household marked, 2,000
households in a recycling list; screenshots in Chinese and English."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine.bpmn.decision_table import table_of
from fieldapp.ui.panels import HazardPanel
from fieldapp.ui.screens.form import FormScreen
from fieldapp.ui.screens.gas import HouseholdRow, ScanChooser
from fieldapp.ui.screens.tasks import TaskRow
from sync.client import Outbox
from tests.fieldapp import qrpics
from tests.fieldapp.driver import make_config
from tests.fieldapp.form_child import form, png, task

NOW = datetime.now(timezone.utc)
# the real gas form and the real hazard table, as the server's pull sends them (sync/server/pull.py)
GAS_FORM = {"form_ref": "gas_inspection", "form": form("gas_inspection")}
TABLE = table_of((Path(__file__).resolve().parents[2] / "workflows" / "dmn" / "gas_hazard.dmn").read_bytes())


def household(i, **kw):
    base = {"id": i, "address_code": f"DC01-{i // 100:03d}-{i % 100:02d}", "holder": f"住户{i} Holder {i}",
            "address": f"东路 {i // 100} 号 {i % 100} 室 / {i // 100} East Road, flat {i % 100}", "lat": 31.2,
            "lon": 121.4, "last_inspected_at": (NOW - timedelta(days=100)).isoformat(),
            "next_due_at": (NOW + timedelta(days=20 + i)).isoformat(), "due": False, "supply_suspended": False,
            "task_id": None}
    return {**base, **kw}


def seed(data_dir, households, tasks=(), reference=None):
    data_dir.mkdir(parents=True, exist_ok=True)
    box = Outbox(str(make_config(data_dir).outbox_path))
    box.apply_pull({"cursor": "1", "tasks": list(tasks), "households": households,
                    "reference": reference if reference is not None else {"gas_form": GAS_FORM, "hazard_table": TABLE}})
    box.close()


@pytest.fixture
def gas_app(start_app, field_data):

    def start(households, tasks=(), reference=None, lang="zh"):
        seed(field_data, households, tasks, reference)
        d = start_app(lang=lang)
        d.app.go("gas")
        d.until(lambda: d.screen.name == "gas" and rows(d), what="the household rows")
        return d
    return start


def back_to_gas(d) -> None:
    """Back from the form, once the screen manager shows only the household list (the form
    screen leaves the window a frame later) and no scan is running."""
    d.app.back()
    d.until(lambda: d.app.sm.children == [d.screen] and d.screen.name == "gas" and not d.screen.scanning
            and rows(d), what="the household list back on its own")


def settled_on_gas(d) -> None:
    d.until(lambda: d.app.sm.children == [d.screen] and d.screen.name == "gas" and rows(d),
            what="the household list back on its own")


def rows(d) -> list[HouseholdRow]:
    return [w for w in d.screen.ids.rv.walk(restrict=True) if isinstance(w, HouseholdRow) and w.address_code]


def row(d, code) -> HouseholdRow:
    d.pump(2)                           # let the recycling layout place its views after a data change
    found = [r for r in rows(d) if r.address_code == code]
    assert found, f"no row for {code} among {[r.address_code for r in rows(d)]}"
    return found[0]


def hazard_panel(form_screen) -> HazardPanel:
    return next(w for w in form_screen.ids.side.children if isinstance(w, HazardPanel))


def opened(d) -> FormScreen:
    d.until(lambda: d.app.sm.current == "form" and d.screen.editable, what="the real form, ready")
    d.pump(3)                           # laid out
    return d.screen


def answer(d, form_screen, key, value) -> None:
    d.scroll_to(form_screen.views[key])
    d.tap(form_screen.views[key].choices[value])


def test_a_touch_on_a_household_opens_its_inspection_with_the_hazard_preview(gas_app):
    t5 = task(5)
    d = gas_app([household(3), household(4, supply_suspended=True, next_due_at=(NOW - timedelta(days=5)).isoformat(),
                                         due=True), household(5, task_id=t5["id"], due=True)], tasks=[t5])
    assert [r.address_code for r in rows(d)][:2] == ["DC01-000-04", "DC01-000-05"], "overdue, then due, first"
    suspended = row(d, "DC01-000-04")
    assert suspended.suspended and "已停止供气" in suspended.flags_text
    assert "已停止供气" in d.texts(suspended) and "已逾期 5 天" in suspended.due_text
    d.screenshot("gas-zh")
    d.tap(d.app.root.ids.lang_button)
    assert "Supply suspended" in row(d, "DC01-000-04").flags_text and d.by_text("My households")
    d.screenshot("gas-en")
    d.tap(d.app.root.ids.lang_button)
    d.tap(row(d, "DC01-000-03"))
    form_screen = opened(d)
    assert isinstance(form_screen, FormScreen) and form_screen.task is None
    assert form_screen.draft_key == "household:3" and form_screen.form == GAS_FORM["form"]
    assert callable(form_screen.submit_fn) and form_screen.extra["screen"] == "gas"
    panel = hazard_panel(form_screen)
    assert panel.level == "unknown"
    answer(d, form_screen, "valve_leak_test", "leak")          # a real touch on the real gas form
    assert panel.level == "severe" and "阀门检漏不合格" in panel.reason and "停止向该住户供气" in panel.follows_text
    assert panel.ids.follows.texture_size[1] <= panel.ids.follows.height + 1, "the follow-ups are not cut off"
    d.screenshot("gas-form-severe-zh")
    d.tap(d.app.root.ids.lang_button)
    assert panel.level_text == "Severe hazard" and panel.reason == "Valve leak test failed"
    assert d.by_text("Valve leak test (required)")
    assert form_screen.title == "Gas safety inspection · DC01-000-03 住户3 Holder 3"    # the title follows too
    d.screenshot("gas-form-severe-en")
    d.tap(d.app.root.ids.lang_button)
    answer(d, form_screen, "valve_leak_test", "pass")
    answer(d, form_screen, "hose_ok", "aged")
    assert panel.level == "unknown", "the cylinder row comes before the aged hose: not known without the date"
    d.scroll_to(form_screen.views["cylinder_inspection_date"])
    d.type_into(form_screen.views["cylinder_inspection_date"].input, "2030-06-01")
    assert panel.level == "minor" and "停止" not in panel.follows_text and "整改工单" in panel.follows_text
    back_to_gas(d)
    d.tap(row(d, "DC01-000-05"))
    form_screen = opened(d)
    assert form_screen.task["id"] == t5["id"] and form_screen.draft_key == f"task:{t5['id']}", "its open task"
    assert hazard_panel(form_screen).level == "unknown"
    answer(d, form_screen, "hose_ok", "cracked")
    assert hazard_panel(form_screen).level == "unknown", "the table reads the valve test first: not known yet"
    answer(d, form_screen, "valve_leak_test", "pass")
    assert hazard_panel(form_screen).level == "severe" and "软管破裂" in hazard_panel(form_screen).reason


def fill(d, form_screen, tmp_path, leak="leak") -> list[str]:
    """The whole gas form by touch (a photo through the form's own add_photo); the photos' sha256s."""
    for key, value in (("hose_ok", "ok"), ("valve_leak_test", leak), ("ventilation", "adequate"),
                       ("co_alarm", "working"), ("stove_flameout_protection", "present")):
        answer(d, form_screen, key, value)
    d.scroll_to(form_screen.views["cylinder_inspection_date"])
    d.type_into(form_screen.views["cylinder_inspection_date"].input, "2030-06-01")
    picture = png(tmp_path / f"meter-{leak}.png", rgb=(200, 90, 40))
    form_screen.add_photo("photos", str(picture))
    return [hashlib.sha256(picture.read_bytes()).hexdigest()]


ANSWERS = {"hose_ok": "ok", "ventilation": "adequate", "co_alarm": "working", "stove_flameout_protection": "present",
           "cylinder_inspection_date": "2030-06-01"}


def test_a_delivery_inspection_is_one_inspect_household_op_and_a_task_is_completed(gas_app, tmp_path):
    t5 = task(5, version=3)
    d = gas_app([household(3), household(5, task_id=t5["id"], due=True)], tasks=[t5])
    d.tap(row(d, "DC01-000-03"))
    form_screen = opened(d)
    shas = fill(d, form_screen, tmp_path)
    assert hazard_panel(form_screen).level == "severe"
    d.tap(form_screen.ids.submit)
    d.until(lambda: d.app.sm.current == "gas", what="back to the households")
    [op] = d.app.outbox.unsettled()
    assert op["kind"] == "inspect_household" and op["task_id"] is None
    assert op["payload"] == {"household_id": 3, "data": {**ANSWERS, "valve_leak_test": "leak", "photos": shas}}
    assert sorted(op["attachments"]) == shas
    assert d.app.store.draft("household:3") is None

    settled_on_gas(d)
    d.tap(row(d, "DC01-000-05"))
    form_screen = opened(d)
    shas = fill(d, form_screen, tmp_path, leak="pass")
    assert hazard_panel(form_screen).level == "none"
    d.tap(form_screen.ids.submit)
    d.until(lambda: d.app.sm.current == "gas", what="back to the households")
    ops = d.app.outbox.unsettled()
    assert [o["kind"] for o in ops] == ["inspect_household", "complete_task"]
    assert ops[1]["task_id"] == t5["id"] and ops[1]["based_on_version"] == 3
    assert ops[1]["payload"] == {**ANSWERS, "valve_leak_test": "pass", "photos": shas}


def test_a_delivery_inspection_draft_reopens_from_the_tasks_list_after_a_restart(gas_app, start_app, tmp_path):
    d = gas_app([household(3), household(4)])
    d.tap(row(d, "DC01-000-03"))
    form_screen = opened(d)
    answer(d, form_screen, "valve_leak_test", "leak")
    assert d.app.store.draft("household:3").extra["screen"] == "gas"
    d.stop()

    d = start_app(lang="zh")                         # the app restarted on the same tablet data
    tasks_screen = d.app.go("tasks")
    d.until(lambda: len(tasks_screen.ids.rv.data) == 1, what="the draft row")
    d.pump(2)
    draft_row = next(w for w in tasks_screen.ids.rv.walk(restrict=True) if isinstance(w, TaskRow) and w.title)
    d.tap(draft_row)
    form_screen = d.until(lambda: d.app.sm.current == "form" and d.screen.popup and d.screen, what="the draft offer")
    assert form_screen.draft_key == "household:3" and callable(form_screen.submit_fn)
    assert d.app.history[-1] == "gas", "back from the form goes to the household list"
    d.tap(form_screen.popup.buttons["continue"])
    d.until(lambda: form_screen.editable, what="the draft continued")
    assert form_screen.views["valve_leak_test"].choices["leak"].selected
    assert hazard_panel(form_screen).level == "severe", "the panel hears the continued draft's answers"
    shas = fill(d, form_screen, tmp_path)
    assert hazard_panel(form_screen).level == "severe"
    d.tap(form_screen.ids.submit)
    d.until(lambda: d.app.sm.current == "gas", what="back to the households")
    [op] = d.app.outbox.unsettled()
    assert op["kind"] == "inspect_household"
    assert op["payload"] == {"household_id": 3, "data": {**ANSWERS, "valve_leak_test": "leak", "photos": shas}}
    assert d.app.store.draft("household:3") is None


def test_the_search_box_filters_by_code_holder_or_address(gas_app):
    d = gas_app([household(i) for i in range(1, 30)] + [household(200, holder="王芳")])
    d.type_into(d.screen.ids.search, "王芳")
    assert [r.address_code for r in rows(d)] == ["DC01-002-00"] and "显示 1 / 30 户" in d.screen.count_text
    d.type_into(d.screen.ids.search, "nobody here")
    d.until(lambda: not rows(d))
    assert d.screen.empty_text == "没有符合“nobody here”的住户"


def choosers(d) -> list[ScanChooser]:
    return [w for w in d.app.root_window.children if isinstance(w, ScanChooser)]


def choose_picture(d, folder, name, shot=None):
    d.app.store.put("gas.scan_dir", str(folder))
    d.until(lambda: not choosers(d), what="an earlier chooser gone (it fades out)")
    d.tap(d.screen.ids.scan)
    chooser = d.until(lambda: next(iter(choosers(d)), None), what="the picture chooser")
    entry = d.until(lambda: next((w for w in chooser.walk() if getattr(w, "text", None) == name), None),
                    what=f"{name} listed")
    if shot:
        d.screenshot(shot)
    d.tap(entry)
    d.until(lambda: chooser.ids.chooser.selection, what="the picture selected")
    d.tap(chooser.ids.open)


def test_a_qr_picture_of_the_door_plate_opens_that_household(gas_app, tmp_path):
    d = gas_app([household(i) for i in range(1, 8)])
    pics = tmp_path / "pictures"
    pics.mkdir()
    qrpics.photo(pics / "door.jpg", "DC01-000-06", angle=31, others=("WATER-METER-778",))
    qrpics.blank(pics / "wall.jpg")
    choose_picture(d, pics, "door.jpg", shot="gas-chooser-zh")
    d.until(lambda: d.app.sm.current == "form", what="the household's form")
    assert d.screen.draft_key == "household:6"


def test_an_unknown_code_or_no_code_says_so_and_opens_nothing(gas_app, tmp_path):
    d = gas_app([household(i) for i in range(1, 4)], lang="en")
    pics = tmp_path / "pictures"
    pics.mkdir()
    qrpics.clean(pics / "other.png", "DC09-404-01")
    qrpics.blank(pics / "wall.jpg")
    choose_picture(d, pics, "other.png", shot="gas-chooser-en")
    d.until(lambda: "not one of your households" in d.app.message, what="the unknown-code message")
    assert d.app.message.startswith("Address code DC09-404-01") and d.app.sm.current == "gas"
    d.until(lambda: not d.screen.scanning)
    choose_picture(d, pics, "wall.jpg")
    d.until(lambda: "No QR code was found" in d.app.message, what="the no-code message")
    assert d.app.sm.current == "gas"
    d.until(lambda: not choosers(d), what="the chooser closed")
    d.screenshot("gas-unknown-code-en")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_on_a_tablet_the_scan_button_takes_a_picture_in_the_background(gas_app, tmp_path, monkeypatch, lang):
    """Where there is a camera (Android), the scan goes through the platform layer off the UI
    thread. Here plyer has no camera, so devices.platform falls back to its file chooser, which
    gives the picture, as it does on a desktop without the in-app chooser."""
    from devices.platform import Platform
    from fieldapp.ui.screens import gas as gas_screen
    monkeypatch.setattr(gas_screen, "kivy_platform", "android")
    d = gas_app([household(i) for i in range(1, 5)], lang=lang)
    picture = qrpics.photo(tmp_path / "door.jpg", "DC01-000-02", angle=-12)
    chosen = [str(picture)]
    d.app.platform = Platform(tmp_path / "device", choose_file=lambda: chosen.pop() if chosen else None)
    d.tap(d.screen.ids.scan)
    d.until(lambda: d.app.sm.current == "form", what="the household's form")
    assert d.screen.draft_key == "household:2" and not choosers(d)
    back_to_gas(d)
    d.tap(d.screen.ids.scan)                       # now nothing is chosen: no picture at all
    expected = {"zh": "没有拍到照片：无相机，也未选择文件",
                "en": "No picture was taken: no camera and no file chosen"}[lang]
    d.until(lambda: d.app.message == expected, what=f"the no-picture message, not {d.app.message!r}")
    assert d.app.sm.current == "gas"


def test_two_thousand_households_scroll_in_a_recycling_list(gas_app):
    d = gas_app([household(i) for i in range(1, 2001)], lang="en")
    rv = d.screen.ids.rv
    assert len(rv.data) == 2000 and "2000 households" in d.screen.count_text
    assert len(rows(d)) < 40, "views are recycled, not one widget per household"
    rv.scroll_y = 0
    d.until(lambda: any(r.address_code == "DC01-020-00" for r in rows(d)), what="the last household")
    d.tap(row(d, "DC01-020-00"))
    assert d.app.sm.current == "form" and d.screen.draft_key == "household:2000"
    back_to_gas(d)
    rv.scroll_y = 0.5
    d.screenshot("gas-2000-en")


def test_without_the_gas_form_pulled_a_tap_explains(gas_app):
    d = gas_app([household(1)], reference={})
    d.tap(row(d, "DC01-000-01"))
    assert d.app.sm.current == "gas" and "尚未从服务器获取燃气检查表单" in d.app.message
