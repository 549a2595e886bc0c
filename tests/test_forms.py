"""Tests for engine.forms (form-js user-task forms) and engine.forms_feel. (Property tests:
tests/test_forms_fuzz.py.)"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from engine.forms import MAX_FORM_BYTES, Field, Form, FormError, form_to_dict, parse_form, validate_submission
from engine.forms_feel import FeelError, compile_condition, compile_pattern, is_iso
from tests.forms_helpers import FORM_FILES, KITCHEN, KITCHEN_OK, SHA, SHA2, codes, load, make, refused


@pytest.fixture(scope="module")
def kitchen() -> Form:
    return parse_form(make(KITCHEN))


# ---------------------------------------------------------------- shipped forms
@pytest.mark.parametrize("path", FORM_FILES, ids=lambda p: p.stem)
def test_shipped_forms_parse(path: Path) -> None:
    form = parse_form(path.read_bytes(), path.name)
    assert form.id == path.stem
    assert form.schema["schemaVersion"] == 16 and form.schema["type"] == "default"
    assert form.fields
    for f in form.fields:
        assert f.label and f.label != f.key and f.label_zh and f.label_zh != f.label
        assert all(o.label_zh != o.label for o in f.options)
    assert form_to_dict(form) == json.loads(path.read_text(encoding="utf-8"))


def test_expected_forms_exist() -> None:
    assert {p.stem for p in FORM_FILES} >= {"wo_rectify", "wo_review", "wo_reroute", "gas_inspection"}
    assert [f.key for f in load("gas_inspection").fields] == [
        "hose_ok", "valve_leak_test", "ventilation", "co_alarm", "stove_flameout_protection",
        "cylinder_inspection_date", "photos", "remarks"]


def test_rectify_fixed() -> None:
    form = load("wo_rectify")
    clean, errors = validate_submission(form, {"action": "fixed", "after_photos": [SHA, SHA2],
                                               "note": "done", "reason": "ignored", "extra": 1})
    assert errors == {}
    assert clean == {"action": "fixed", "after_photos": [SHA, SHA2], "note": "done"}


def test_rectify_fixed_needs_photos_not_reason() -> None:
    clean, errors = validate_submission(load("wo_rectify"), {"action": "fixed"})
    assert codes(errors) == {"after_photos": "required"}
    assert clean == {"action": "fixed"}


def test_rectify_not_ours_needs_reason_not_photos() -> None:
    form = load("wo_rectify")
    _, errors = validate_submission(form, {"action": "not_ours", "after_photos": ["bad"]})
    assert codes(errors) == {"reason": "required"}
    _, errors = validate_submission(form, {"action": "not_ours", "reason": " x "})
    assert codes(errors) == {"reason": "minLength"}
    clean, errors = validate_submission(form, {"action": "not_ours", "reason": "belongs to gas office",
                                               "after_photos": [SHA]})
    assert errors == {} and clean == {"action": "not_ours", "reason": "belongs to gas office"}


def test_rectify_missing_and_bad_choice() -> None:
    form = load("wo_rectify")
    assert codes(validate_submission(form, {})[1]) == {"action": "required"}
    assert codes(validate_submission(form, {"action": "maybe"})[1]) == {"action": "choice"}
    assert codes(validate_submission(form, {"action": ["fixed"]})[1]) == {"action": "type"}
    _, errors = validate_submission(form, {"action": "fixed", "after_photos": [SHA], "note": "n" * 2001})
    assert codes(errors) == {"note": "maxLength"}


def test_review() -> None:
    form = load("wo_review")
    assert validate_submission(form, {"decision": "approve", "reason": "x"}) == ({"decision": "approve"}, {})
    assert codes(validate_submission(form, {"decision": "reject"})[1]) == {"reason": "required"}
    assert codes(validate_submission(form, {"decision": "reject", "reason": "   "})[1]) == {"reason": "required"}
    clean, errors = validate_submission(form, {"decision": "reject", "reason": "photos blurry"})
    assert errors == {} and clean == {"decision": "reject", "reason": "photos blurry"}


def test_reroute_pattern() -> None:
    form = load("wo_reroute")
    ok = validate_submission(form, {"unit": "street_office-3", "reason": "wrong area"})
    assert ok == ({"unit": "street_office-3", "reason": "wrong area"}, {})
    for bad in ("Street Office", "x", "a" * 41, "gas\noffice", "ab\u0661"):
        assert codes(validate_submission(form, {"unit": bad, "reason": "r"})[1]) == {"unit": "pattern"}, bad
    assert codes(validate_submission(form, {"unit": 7, "reason": "r"})[1]) == {"unit": "type"}


def test_gas_inspection() -> None:
    form = load("gas_inspection")
    good = {"hose_ok": "aged", "valve_leak_test": "pass", "ventilation": "poor", "co_alarm": "missing",
            "cylinder_inspection_date": "2023-11-02", "stove_flameout_protection": "absent",
            "photos": [SHA, SHA2]}
    assert validate_submission(form, good) == (good, {})
    _, errors = validate_submission(form, {**good, "cylinder_inspection_date": "2023-02-30",
                                           "hose_ok": "fine", "photos": []})
    assert codes(errors) == {"cylinder_inspection_date": "type", "hose_ok": "choice", "photos": "required"}
    assert set(codes(validate_submission(form, {})[1])) == {f.key for f in form.fields if f.required}


# ---------------------------------------------------------------- rules, one by one
def test_kitchen_valid(kitchen: Form) -> None:
    clean, errors = validate_submission(kitchen, {**KITCHEN_OK, "notes": "tampered", "zzz": 1})
    assert errors == {}
    assert clean == KITCHEN_OK   # readonly 'notes' and unknown 'zzz' dropped


def test_kitchen_field_meta(kitchen: Form) -> None:
    assert kitchen.field("day").label == "Day" and kitchen.field("day").subtype == "date"
    assert kitchen.field("name").required and not kitchen.field("count").required
    assert kitchen.field("nope") is None
    assert kitchen.field("colour").choices == ("red", "blue")
    assert isinstance(kitchen.field("inner"), Field) and len(kitchen.field("inner").hide) == 1


@pytest.mark.parametrize("key,value,code", [
    ("name", "A", "minLength"), ("name", "Abcdefghijk", "maxLength"), ("name", "Ann1", "pattern"),
    ("name", 12, "type"), ("name", "An\x00n", "characters"), ("name", "An\ud800", "characters"),
    ("count", 0, "min"), ("count", 6, "max"), ("count", "3", "type"), ("count", True, "type"),
    ("count", math.nan, "type"), ("count", math.inf, "type"), ("count", 2**60, "type"),
    ("agree", "true", "type"), ("agree", 1, "type"), ("agree", False, "required"),
    ("flag", 0, "type"), ("colour", "green", "choice"), ("colour", 1, "type"),
    ("tools", ["a", "c"], "choice"), ("tools", "a", "type"), ("tools", [["a"]], "type"),
    ("tags", [], "required"), ("tags", ["y"], "choice"),
    ("day", "2024-13-01", "type"), ("day", "01/02/2024", "type"), ("day", "2024-02-29T10:00", "type"),
    ("day", "２０２４-01-01", "type"), ("at", "25:00", "type"), ("at", "09:30+08:00x", "type"),
    ("when", "2024-05-01", "type"), ("when", 1714500000, "type"),
    ("one_file", [SHA, SHA2], "attachment"), ("one_file", [SHA.upper()], "attachment"),
    ("one_file", ["../../etc/passwd"], "attachment"), ("one_file", SHA, "type"), ("one_file", [1], "type"),
    ("inner", "", "required"), ("inner", {"a": 1}, "type"),
])
def test_kitchen_errors(kitchen: Form, key: str, value, code: str) -> None:
    clean, errors = validate_submission(kitchen, {**KITCHEN_OK, key: value})
    assert codes(errors) == {key: code}
    assert key not in clean


def test_kitchen_optional_and_hidden(kitchen: Form) -> None:
    data = {**KITCHEN_OK, "count": None, "colour": "", "day": "", "tools": [], "flag": True, "inner": 5}
    clean, errors = validate_submission(kitchen, data)
    assert errors == {}   # inner is hidden (flag = true): not required, bad type ignored, dropped
    assert "inner" not in clean and "count" not in clean and "colour" not in clean and "day" not in clean
    assert clean["tools"] == [] and clean["flag"] is True


def test_duplicates_collapsed_and_times(kitchen: Form) -> None:
    clean, errors = validate_submission(kitchen, {**KITCHEN_OK, "tools": ["a", "a"], "at": "09:30:15Z",
                                                  "when": "2024-05-01T10:00Z"})
    assert errors == {} and clean["tools"] == ["a"] and clean["at"] == "09:30:15Z"


def test_non_mapping_submission(kitchen: Form) -> None:
    for data in ([], "x", None, 3):
        clean, errors = validate_submission(kitchen, data)
        assert clean == {} and codes(errors) == {"_form": "type"}


def test_long_strings_capped() -> None:
    form = parse_form(make([{"type": "textarea", "key": "t"}, {"type": "textfield", "key": "p",
                                                               "validate": {"pattern": ".*.*x"}}]))
    assert codes(validate_submission(form, {"t": "a" * 10_001})[1]) == {"t": "maxLength"}
    assert validate_submission(form, {"t": "a" * 10_000})[1] == {}
    start = time.monotonic()
    assert codes(validate_submission(form, {"p": "a" * 10_000})[1]) == {"p": "pattern"}
    assert time.monotonic() - start < 2


def test_builtin_validation_types() -> None:
    form = parse_form(make([{"type": "textfield", "key": "mail", "validate": {"validationType": "email"}}]))
    assert validate_submission(form, {"mail": "a@b.cn"})[1] == {}
    assert codes(validate_submission(form, {"mail": "nope"})[1]) == {"mail": "pattern"}


def test_conditions_chain_and_groups() -> None:
    form = parse_form(make([
        {"type": "radio", "key": "a", "values": [{"label": "Y", "value": "y"}, {"label": "N", "value": "n"}]},
        {"type": "textfield", "key": "c", "validate": {"required": True}, "conditional": {"hide": "=b = null"}},
        {"type": "textfield", "key": "b", "conditional": {"hide": '=a != "y"'}},
        {"type": "group", "conditional": {"hide": '=not(a = "n")'}, "components": [
            {"type": "number", "key": "d", "validate": {"required": True}}]},
    ]))
    # a=n: b hidden -> reads as null -> c hidden; group visible -> d required
    assert codes(validate_submission(form, {"a": "n", "b": "x", "c": "z"})[1]) == {"d": "required"}
    # a=y: b visible; c hidden only while b is empty; group hidden
    assert codes(validate_submission(form, {"a": "y", "b": "x"})[1]) == {"c": "required"}
    assert validate_submission(form, {"a": "y", "d": 1}) == ({"a": "y"}, {})


# ---------------------------------------------------------------- FEEL subset
@pytest.mark.parametrize("expr,ctx,expected", [
    ('=x = "a"', {"x": "a"}, True), ('=x = "a"', {}, False), ('=x != "a"', {}, True),
    ("=n = 1", {"n": 1.0}, True), ("=n = 1", {"n": True}, False), ("=b = true", {"b": True}, True),
    ("=x = null", {}, True), ("=b", {"b": True}, True), ("=b", {"b": "yes"}, None), ("=true", {}, True),
    ('=a = 1 and b = 2 or c = "z"', {"c": "z"}, True), ('=a = 1 and (b = 2 or c = "z")', {"c": "z"}, False),
    ("=not(a = 1)", {"a": 1}, False), ("=not(a)", {}, None), ("=a and b", {"a": False}, False),
    ('=s = "q\\"uote"', {"s": 'q"uote'}, True), ("=n = -2.5", {"n": -2.5}, True), ("=l = 1", {"l": [1]}, False),
])
def test_feel_eval(expr: str, ctx: dict, expected) -> None:
    assert compile_condition(expr).evaluate(ctx) is expected


@pytest.mark.parametrize("expr", [
    "=foo()", "=x.y", '=x = "a', "=x > 1", "=x + 1 = 2", "=x in [1]", "=1", '="s"', "x = 1", "=",
    "=a = b = c", "=not x", "=(a", "=a)", "=__class__", "=x = 'a'", "=" + "(" * 30 + "a" + ")" * 30,
    "=a = 1 " + "and a = 1 " * 400, '=x = "\\u0041"', "=a;b", "=x = 1e5",
])
def test_feel_refused(expr: str) -> None:
    with pytest.raises(FeelError):
        compile_condition(expr)


def test_feel_refs() -> None:
    assert compile_condition('=a = "x" or not(b = c)').refs == {"a", "b", "c"}


def test_is_iso() -> None:
    assert is_iso("date", "2024-02-29") and not is_iso("date", "2023-02-29")
    assert is_iso("time", "23:59:59+05:30") and not is_iso("time", "24:00")
    assert is_iso("datetime", "2024-01-01T00:00:00.123456Z") and not is_iso("datetime", "2024-01-01 00:00")


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)*", "(a)\\1", ".*.*.*x", "[", "[[a]", "a" * 201, "=x"])
def test_pattern_refused(pattern: str) -> None:
    if pattern == "=x":
        assert "expression" in str(refused([{"type": "textfield", "key": "t", "validate": {"pattern": pattern}}]))
        return
    with pytest.raises(ValueError):
        compile_pattern(pattern)
    err = refused([{"type": "textfield", "key": "t", "validate": {"pattern": pattern}}])
    assert "'t'" in err.problems[0] and "pattern" in err.problems[0]


# ---------------------------------------------------------------- refused schemas
@pytest.mark.parametrize("components,needle", [
    ([{"type": "script", "key": "s", "id": "Field_1"}], "component 's': unknown component type 'script'"),
    ([{"type": "iframe", "id": "Field_x"}], "component 'Field_x': unknown component type"),
    ([{"key": "k"}], "component 'k': unknown component type missing"),
    ([{"type": "textfield", "key": "a"}, {"type": "number", "key": "a"}], "component 'a': duplicate key"),
    ([{"type": "textfield", "key": "a", "id": "F"}, {"type": "textfield", "key": "b", "id": "F"}],
     "component 'b': duplicate id"),
    ([{"type": "textfield", "id": "Field_nokey"}], "component 'Field_nokey': a textfield component needs a 'key'"),
    ([{"type": "textfield", "key": "_private"}], "component '_private': key must match"),
    ([{"type": "textfield", "key": "a.b"}], "component 'a.b': key must match"),
    ([{"type": "textfield", "key": "a" * 64}], "key must match"),
    ([{"type": "text", "key": "t", "text": "hi"}], "a text component has no 'key'"),
    ([{"type": "textfield", "key": "f", "conditional": {"hide": "=foo()"}}],
     "component 'f': conditional.hide: function"),
    ([{"type": "textfield", "key": "f", "conditional": {"hide": "=x.y"}}], "component 'f': conditional.hide: path"),
    ([{"type": "textfield", "key": "f", "conditional": {"hide": "=ghost = 1"}}],
     "component 'f': conditional.hide refers to unknown field 'ghost'"),
    ([{"type": "textfield", "key": "f", "conditional": {"hide": "=f = 1"}}], "cycle among f"),
    ([{"type": "textfield", "key": "f", "conditional": {"show": "=true"}}], "component 'f': 'conditional'"),
    ([{"type": "textfield", "key": "p", "conditional": {"hide": "=q = 1"}},
      {"type": "textfield", "key": "q", "conditional": {"hide": "=p = 1"}}], "cycle among p, q"),
    ([{"type": "group", "id": "G", "conditional": {"hide": '=g = "x"'}, "components": [
        {"type": "textfield", "key": "g"}]}], "cycle among g"),
    ([{"type": "text", "id": "T1", "text": "x", "conditional": {"hide": "=a <= 1"}}],
     "component 'T1': conditional.hide"),
    ([{"type": "radio", "key": "r"}], "component 'r': radio needs a 'values' list"),
    ([{"type": "select", "key": "r", "valuesKey": "opts"}], "component 'r': dynamic options"),
    ([{"type": "radio", "key": "r", "values": [{"label": "A", "value": "a"}, {"label": "B", "value": "a"}]}],
     "duplicate option value"),
    ([{"type": "radio", "key": "r", "values": [{"label": "A", "value": 1}]}], "component 'r': values[0]"),
    ([{"type": "number", "key": "n", "validate": {"min": "=lo"}}], "component 'n': validate.min must be a number"),
    ([{"type": "number", "key": "n", "validate": {"min": 5, "max": 1}}], "min is greater than"),
    ([{"type": "number", "key": "n", "validate": {"pattern": "x"}}], "validate.pattern is not supported for number"),
    ([{"type": "textfield", "key": "t", "validate": {"maxLength": -1}}], "maxLength must be a non-negative integer"),
    ([{"type": "textfield", "key": "t", "validate": {"required": "yes"}}], "required must be true or false"),
    ([{"type": "textfield", "key": "t", "validate": []}], "'validate' must be an object"),
    ([{"type": "textfield", "key": "t", "label": "=name"}], "component 't': 'label' is an expression"),
    ([{"type": "textfield", "key": "t", "readonly": "=x"}], "'readonly' must be true or false"),
    ([{"type": "textfield", "key": "t", "properties": {"label_zh": 3}}], "'properties'"),
    ([{"type": "datetime", "key": "d", "subtype": "week"}], "component 'd': datetime 'subtype'"),
    ([{"type": "group", "id": "G", "path": "nested", "components": []}], "component 'G': group 'path'"),
    ([{"type": "group", "id": "G"}], "component 'G': 'components' must be a list"),
    (["textfield"], "component at components[0]: must be a JSON object"),
])
def test_bad_component(components: list, needle: str) -> None:
    err = refused(components)
    assert any(needle in p for p in err.problems), err.problems


def test_bad_top_level() -> None:
    assert "top level must be a JSON object" in str(refused(raw=b"[1, 2]"))
    assert "top level" in str(refused(raw="null"))
    assert "invalid JSON" in str(refused(raw=b'{"id": "x", '))
    assert "invalid JSON" in str(refused(raw=b'{"id": NaN}'))
    assert "duplicate object key 'id'" in str(refused(raw=b'{"id": "abc", "id": "abd", "components": []}'))
    assert "not UTF-8" in str(refused(raw=b'{"id": "\xff"}'))
    assert "nested too deeply" in str(refused(raw=b"[" * 100_000))
    assert "NUL" in str(refused(raw=b'{"id": "a\\u0000b", "components": []}'))
    assert "'id'" in str(refused([], id="Bad-Id"))
    assert "'id'" in str(refused([], id="x"))
    assert "'type'" in str(refused([], type="other"))
    assert "schemaVersion" in str(refused([], schemaVersion="16"))
    assert "missing 'components'" in str(refused(raw=b'{"id": "abc"}'))
    with pytest.raises(FormError):
        parse_form(12)  # type: ignore[arg-type]


def test_oversize_and_limits() -> None:
    big = make([{"type": "text", "text": "x" * MAX_FORM_BYTES}])
    assert "larger than" in str(refused(raw=big))
    assert "larger than" in str(refused(raw=big.decode()))
    many = [{"type": "textfield", "key": f"k{i}"} for i in range(201)]
    assert "more than 200 components" in str(refused(many))
    assert parse_form(make(many[:200])).fields[-1].key == "k199"
    deep: list = [{"type": "textfield", "key": "leaf"}]
    for i in range(5):
        deep = [{"type": "group", "id": f"G{i}", "components": deep}]
    assert parse_form(make(deep)).field("leaf") is not None
    assert "component 'G0': groups nested deeper than 5" in str(refused([{"type": "group", "id": "G9",
                                                                          "components": deep}]))


def test_all_problems_reported() -> None:
    err = refused([{"type": "bogus", "key": "a"}, {"type": "textfield", "key": "b", "validate": {"min": 1}}])
    assert len(err.problems) == 2 and "'a'" in err.problems[0] and "'b'" in err.problems[1]


def test_form_to_dict_is_a_copy() -> None:
    form = load("wo_review")
    d = form_to_dict(form)
    d["components"].clear()
    assert form.schema["components"] and json.dumps(form_to_dict(form))
