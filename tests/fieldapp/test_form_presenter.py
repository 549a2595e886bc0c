"""A form-js form on the tablet: labels in both languages, visibility, the server's own error
messages, the submission and the photos. Plain Python: no Kivy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.forms import parse_form, validate_submission
from fieldapp.presenters.form import FormPresenter, FormProblem, number_from_text

FORMS = Path(__file__).resolve().parents[2] / "workflows" / "forms"


def form(name):
    return json.loads((FORMS / f"{name}.form").read_text())


def by_key(items):
    return {i["key"]: i for i in items if i["kind"] == "field"}


def test_items_come_in_form_order_with_labels_and_option_labels_in_the_language():
    p = FormPresenter(form("gas_inspection"))
    zh = p.items("zh")
    assert [i["kind"] for i in zh[:3]] == ["text", "group", "field"]
    assert zh[1]["label"] == "安全检查" and p.items("en")[1]["label"] == "Safety checks"
    hose = by_key(zh)["hose_ok"]
    assert hose["label"] == "软管状况" and hose["required"] and hose["depth"] == 1
    assert [o["label"] for o in hose["options"]] == ["完好", "老化", "开裂"]
    assert [o["label"] for o in by_key(p.items("en"))["hose_ok"]["options"]] == ["OK", "Aged", "Cracked"]
    assert by_key(zh)["cylinder_inspection_date"]["hint"].endswith("YYYY-MM-DD")
    assert [i["key"] for i in zh if i["kind"] == "field"] == [
        "hose_ok", "valve_leak_test", "ventilation", "co_alarm", "stove_flameout_protection",
        "cylinder_inspection_date", "photos", "remarks"]


def test_conditional_hide_follows_the_answers():
    p = FormPresenter(form("wo_review"))
    assert not p.visible("reason")
    p.set("decision", "reject")
    assert p.visible("reason") and by_key(p.items())["reason"]["visible"]
    p.set("decision", "approve")
    assert not p.visible("reason")
    rect = FormPresenter(form("wo_rectify"))
    rect.set("action", "fixed")
    assert rect.visible("after_photos") and not rect.visible("reason")


def test_errors_are_the_servers_messages_shown_for_edited_fields_then_all_on_submit():
    p = FormPresenter(form("wo_review"))
    assert p.errors("zh") == {}                  # nothing edited yet: no red
    p.set("decision", "reject")
    p.set_text("reason", "x")
    assert p.errors("zh") == {"reason": "至少需要 2 个字符。"}
    assert p.errors("en") == {"reason": "At least 2 characters."}
    p.set_text("reason", "   ")
    assert p.validate() is False and p.errors("en") == {"reason": "This field is required."}
    p.set_text("reason", "the crack is still there")
    assert p.validate() is True and p.errors() == {}
    assert p.data() == {"decision": "reject", "reason": "the crack is still there"}


def test_on_submit_every_missing_answer_is_reported_like_the_server_would():
    p = FormPresenter(form("gas_inspection"))
    assert not p.validate()
    server = validate_submission(parse_form(json.dumps(form("gas_inspection"))), {})[1]
    assert set(p.errors("en")) == set(server)
    assert p.errors("en") == {k: e["message"] for k, e in server.items()}


def test_a_bad_date_a_bad_number_and_a_bad_pattern_get_the_servers_messages():
    p = FormPresenter(form("gas_inspection"))
    p.set_text("cylinder_inspection_date", "2027-13-01")
    assert p.errors("en")["cylinder_inspection_date"] == "Expected a date YYYY-MM-DD."
    assert p.errors("zh")["cylinder_inspection_date"] == "应为日期（YYYY-MM-DD）。"
    p.set_text("cylinder_inspection_date", "2027-03-01")
    assert "cylinder_inspection_date" not in p.errors()
    reroute = FormPresenter(form("wo_reroute"))
    reroute.set_text("unit", "Bad Unit!")
    assert reroute.errors("en")["unit"] == "Does not match the required format."
    numbers = FormPresenter({"id": "n_form", "type": "default", "components": [
        {"type": "number", "key": "count", "label": "Count", "validate": {"min": 1, "max": 5}}]})
    numbers.set_text("count", "abc")
    assert numbers.errors("en")["count"] == "Expected a number."
    numbers.set_text("count", "9")
    assert numbers.errors("zh")["count"] == "不能大于 5。"
    numbers.set_text("count", "3")
    assert numbers.validate() and numbers.data() == {"count": 3}
    assert number_from_text(" 2.5 ") == 2.5 and number_from_text("") is None


def test_photo_fields_hold_local_paths_until_submit_and_hidden_ones_are_not_sent():
    p = FormPresenter(form("wo_rectify"))
    p.set("action", "fixed")
    p.add_photo("after_photos", "/sdcard/a.jpg")
    p.add_photo("after_photos", "/sdcard/b.jpg")
    p.add_photo("after_photos", "/sdcard/a.jpg")
    assert p.raw()["after_photos"] == ["/sdcard/a.jpg", "/sdcard/b.jpg"]
    assert p.validate()
    assert p.photos() == {"after_photos": ["/sdcard/a.jpg", "/sdcard/b.jpg"]}
    assert "after_photos" not in p.data() and p.data()["action"] == "fixed"
    p.remove_photo("after_photos", "/sdcard/a.jpg")
    assert p.photos() == {"after_photos": ["/sdcard/b.jpg"]}
    p.set("action", "not_ours")
    p.set_text("reason", "belongs to the water company")
    assert p.validate() and p.photos() == {}
    assert p.data() == {"action": "not_ours", "reason": "belongs to the water company"}


def test_checklist_checkbox_and_select_values():
    p = FormPresenter({"id": "mixed", "type": "default", "components": [
        {"type": "checklist", "key": "items", "label": "Items", "validate": {"required": True},
         "values": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]},
        {"type": "checkbox", "key": "agree", "label": "Agree", "validate": {"required": True}},
        {"type": "select", "key": "size", "label": "Size", "values": [{"label": "S", "value": "s"}],
         "properties": {"label_zh": "尺寸", "label_zh.s": "小"}}]})
    p.toggle("items", "a")
    p.toggle("items", "b")
    p.toggle("items", "a")
    assert p.values["items"] == ["b"]
    assert not p.validate() and set(p.errors("en")) == {"agree"}
    p.set("agree", True)
    p.set("size", "s")
    assert p.validate() and p.data() == {"items": ["b"], "agree": True, "size": "s"}
    size = by_key(p.items("zh"))["size"]
    assert size["label"] == "尺寸" and size["options"] == [{"value": "s", "label": "小", "selected": True}]


def test_a_draft_restores_values_and_shows_their_errors():
    p = FormPresenter(form("wo_review"), {"decision": "reject", "reason": "x", "unknown": 1})
    p.touched.update(p.values)
    assert p.values == {"decision": "reject", "reason": "x"}
    assert p.errors("en") == {"reason": "At least 2 characters."}


def test_a_form_the_rules_refuse_is_a_clear_problem_not_a_crash():
    with pytest.raises(FormProblem) as e:
        FormPresenter({"id": "x", "components": [{"type": "bogus", "key": "a"}]})
    assert "unknown component type" in str(e.value)
