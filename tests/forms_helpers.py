"""Shared by the form tests: the shipped forms, schema builders, and the kitchen-sink form."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.forms import Form, FormError, parse_form

FORMS_DIR = Path(__file__).resolve().parent.parent / "workflows" / "forms"
FORM_FILES = sorted(FORMS_DIR.glob("*.form"))
SHA = "a" * 64
SHA2 = "0123456789abcdef" * 4


def load(name: str) -> Form:
    return parse_form((FORMS_DIR / f"{name}.form").read_bytes(), f"{name}.form")


def make(components: list, **top) -> bytes:
    doc = {"id": "test_form", "type": "default", "schemaVersion": 16, "components": components}
    doc.update(top)
    return json.dumps(doc).encode()


def refused(components: list | None = None, raw: bytes | str | None = None, **top) -> FormError:
    with pytest.raises(FormError) as info:
        parse_form(raw if raw is not None else make(components or [], **top), "bad.form")
    assert info.value.problems and all(isinstance(p, str) for p in info.value.problems)
    assert str(info.value).startswith("bad.form: ")
    return info.value


def codes(errors: dict) -> dict:
    for err in errors.values():
        assert set(err) == {"code", "message", "message_zh"} and err["message"] and err["message_zh"]
    return {k: v["code"] for k, v in errors.items()}


KITCHEN = [
    {"type": "textfield", "key": "name", "label": "Name", "validate": {"required": True, "minLength": 2,
                                                                     "maxLength": 10, "pattern": "[A-Za-z ]+"}},
    {"type": "number", "key": "count", "validate": {"min": 1, "max": 5}},
    {"type": "checkbox", "key": "agree", "validate": {"required": True}},
    {"type": "checkbox", "key": "flag"},
    {"type": "select", "key": "colour",
     "values": [{"label": "Red", "value": "red"}, {"label": "Blue", "value": "blue"}]},
    {"type": "checklist", "key": "tools", "values": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]},
    {"type": "taglist", "key": "tags", "values": [{"label": "X", "value": "x"}], "validate": {"required": True}},
    {"type": "datetime", "subtype": "date", "key": "day", "dateLabel": "Day"},
    {"type": "datetime", "subtype": "time", "key": "at"},
    {"type": "datetime", "subtype": "datetime", "key": "when"},
    {"type": "filepicker", "key": "one_file"},
    {"type": "textarea", "key": "notes", "readonly": True},
    {"type": "group", "label": "G", "components": [
        {"type": "textfield", "key": "inner", "validate": {"required": True},
         "conditional": {"hide": "=flag = true"}}]},
]
KITCHEN_OK = {"name": "Ann Lee", "count": 3, "agree": True, "flag": False, "colour": "red", "tools": ["a", "b"],
              "tags": ["x"], "day": "2024-02-29", "at": "09:30", "when": "2024-05-01T10:00:00+08:00",
              "one_file": [SHA], "inner": "hi"}
