"""A form-js form on the tablet: its items in order (groups, text, fields) with labels in the
current language, values, visibility (`conditional.hide`) and error messages, checked with the
server's own rules (`engine.forms.validate_submission`, pure Python) so the tablet says exactly
what the server would. Plain Python, no Kivy.

    p = FormPresenter(task["form"])
    p.set("hose_ok", "aged"); p.set_text("remarks", "fine")
    p.add_photo("photos", "/sdcard/DCIM/1.jpg")      # photo fields hold local paths until submit
    p.items("zh")            # display dicts, in order
    if not p.validate():     # all errors shown, submit refused
        ...
    outbox.add("complete_task", p.data(), photos=p.photos(), ...)

Errors show for fields the person has edited, and for every field after a submit attempt."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from typing import Any

from engine.forms import CHOICE_TYPES, TEXT_TYPES, Field, Form, FormError, parse_form, validate_submission
from engine.forms_feel import Condition, FeelError, compile_condition
from fieldapp import i18n

__all__ = ["FormPresenter", "FormProblem", "number_from_text"]

i18n.add({
    "form.hint.date": ("日期，格式 YYYY-MM-DD", "date as YYYY-MM-DD"),
    "form.hint.time": ("时间，格式 HH:MM", "time as HH:MM"),
    "form.hint.datetime": ("日期时间，格式 YYYY-MM-DDTHH:MM", "date-time as YYYY-MM-DDTHH:MM"),
    "form.hint.number": ("数字", "a number"),
    "form.bad_form": ("此表单无法显示：{problems}", "This form cannot be shown: {problems}"),
})


class FormProblem(ValueError):
    """The form JSON itself was refused by the form rules (a server bug or an old app)."""


def number_from_text(text: str) -> Any:
    """'12' -> 12, '1.5' -> 1.5, '' -> None; anything else stays text (the rules then say
    "Expected a number", as the server would)."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _placeholder(path: str) -> str:
    """A stand-in attachment id for a local photo path, so the rules can count the files."""
    return hashlib.sha256(path.encode()).hexdigest()


def _plain_text(text: str) -> str:
    return "\n".join(re.sub(r"^\s*#{1,6}\s*", "", line) for line in text.splitlines()).strip()


class FormPresenter:
    def __init__(self, form_json: dict, data: dict | None = None):
        try:
            raw = form_json if isinstance(form_json, (str, bytes)) else json.dumps(form_json)
            self.form: Form = parse_form(raw)
        except FormError as exc:
            raise FormProblem(i18n.t("form.bad_form", problems="; ".join(exc.problems)[:500])) from exc
        self.schema = self.form.schema
        self.values: dict[str, Any] = {}
        self.touched: set[str] = set()
        self.submitted = False
        self._layout = self._walk(self.schema.get("components", []), 0, ())
        for key, value in (data or {}).items():
            f = self.form.field(key)
            if f is not None:
                self.values[key] = list(value) if isinstance(value, list) else value
        self._check()

    # ---- structure -------------------------------------------------------------------------
    def _walk(self, comps: list, depth: int, hide: tuple[Condition, ...]) -> list[dict]:
        out: list[dict] = []
        for comp in comps:
            own = self._conds(comp)
            if comp.get("type") == "group":
                props = comp.get("properties") or {}
                label = comp.get("label") or ""
                out.append({"kind": "group", "label": label, "label_zh": props.get("label_zh") or label,
                            "depth": depth, "hide": hide + own, "id": comp.get("id")})
                out.extend(self._walk(comp.get("components") or [], depth + 1, hide + own))
            elif comp.get("type") == "text":
                out.append({"kind": "text", "text": _plain_text(comp.get("text") or ""), "depth": depth,
                            "hide": hide + own, "id": comp.get("id")})
            elif comp.get("key"):
                out.append({"kind": "field", "key": comp["key"], "depth": depth, "comp": comp})
        return out

    @staticmethod
    def _conds(comp: dict) -> tuple[Condition, ...]:
        hide = (comp.get("conditional") or {}).get("hide")
        if hide in (None, "", False):
            return ()
        try:
            return (compile_condition("=true" if hide is True else hide),)
        except FeelError:       # parse_form has already refused such a form
            return ()

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.form.fields

    def field(self, key: str) -> Field:
        f = self.form.field(key)
        if f is None:
            raise KeyError(key)
        return f

    # ---- editing -------------------------------------------------------------------------------
    def set(self, key: str, value: Any) -> None:
        """Set a field's value as the widget holds it (text, number, bool, option value(s), paths)."""
        f = self.field(key)
        if f.type == "number" and isinstance(value, str):
            value = number_from_text(value)
        if value is None or (value == "" and f.type not in TEXT_TYPES):
            self.values.pop(key, None)
        else:
            self.values[key] = value
        self.touched.add(key)
        self._check()

    def set_text(self, key: str, text: str) -> None:
        self.set(key, text)

    def toggle(self, key: str, option: str) -> None:
        """Tick or untick one option of a checklist."""
        chosen = list(self.values.get(key) or [])
        self.set(key, [v for v in chosen if v != option] if option in chosen else chosen + [option])

    def add_photo(self, key: str, path: str) -> None:
        paths = list(self.values.get(key) or [])
        if path not in paths:
            paths.append(path)
        self.set(key, paths)

    def remove_photo(self, key: str, path: str) -> None:
        self.set(key, [p for p in self.values.get(key) or [] if p != path])

    def raw(self) -> dict:
        """The values as held on the tablet (the draft): photo fields as local paths."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.values.items()}

    # ---- rules -------------------------------------------------------------------------------------
    def _submission(self) -> dict:
        out = {}
        for key, value in self.values.items():
            f = self.form.field(key)
            if f is not None and f.type == "filepicker" and isinstance(value, list):
                value = [_placeholder(p) for p in value]
            out[key] = value
        return out

    def _valid_alone(self, f: Field, value: Any) -> bool:
        alone = Form(id=self.form.id, schema={}, fields=(replace(f, hide=(), required=False),), order=(0,))
        clean, errors = validate_submission(alone, {f.key: value})
        return f.key in clean and not errors

    def _check(self) -> None:
        sub = self._submission()
        self._clean, self._errors = validate_submission(self.form, sub)
        # The same hiding as the rules: conditions read valid values, a hidden field reads as null.
        ctx = {f.key: sub[f.key] for f in self.form.fields
               if f.submittable and f.key in sub and self._valid_alone(f, sub[f.key])}
        hidden: set[str] = set()
        for i in self.form.order or range(len(self.form.fields)):
            f = self.form.fields[i]
            if any(c.is_true(ctx) for c in f.hide):
                hidden.add(f.key)
                ctx.pop(f.key, None)
        self._hidden, self._ctx = hidden, ctx

    def hidden(self) -> set[str]:
        return set(self._hidden)

    def visible(self, key: str) -> bool:
        return key not in self._hidden

    def errors(self, lang: str | None = None, shown_only: bool = True) -> dict[str, str]:
        """Field key -> message in the language, for the fields whose errors are shown."""
        zh = (lang or i18n.language()) == "zh"
        return {k: (e["message_zh"] if zh else e["message"]) for k, e in self._errors.items()
                if not shown_only or self.submitted or k in self.touched}

    def validate(self) -> bool:
        """A submit attempt: every error is shown from now on; True when there is none."""
        self.submitted = True
        self._check()
        return not self._errors

    def data(self) -> dict:
        """The submission without photo fields (those go as `photos()`): visible, editable fields only."""
        files = {f.key for f in self.form.fields if f.type == "filepicker"}
        return {k: v for k, v in self._clean.items() if k not in files}

    def photos(self) -> dict[str, list[str]]:
        """{photo field: [local paths]} of the visible photo fields that hold any."""
        return {f.key: list(self.values[f.key]) for f in self.form.fields
                if f.type == "filepicker" and f.submittable and f.key not in self._hidden and self.values.get(f.key)}

    # ---- display ----------------------------------------------------------------------------------------
    def items(self, lang: str | None = None) -> list[dict]:
        """Display dicts in form order: {"kind": "group" | "text" | "field", "visible", "depth", ...};
        a field has key, type, label, required, value, text (for text boxes), options
        [{value, label, selected}], error (message or ""), hint, subtype, multiple, readonly."""
        zh = (lang or i18n.language()) == "zh"
        errors = self.errors(lang)
        out = []
        for item in self._layout:
            if item["kind"] == "group":
                out.append({"kind": "group", "label": item["label_zh"] if zh else item["label"],
                            "depth": item["depth"], "visible": not any(c.is_true(self._ctx) for c in item["hide"]),
                            "id": item["id"]})
            elif item["kind"] == "text":
                out.append({"kind": "text", "text": item["text"], "depth": item["depth"], "id": item["id"],
                            "visible": not any(c.is_true(self._ctx) for c in item["hide"])})
            else:
                out.append(self._field_item(self.field(item["key"]), item["depth"], zh, errors, lang))
        return out

    def item(self, key: str, lang: str | None = None) -> dict:
        depth = next(i["depth"] for i in self._layout if i.get("key") == key)
        return self._field_item(self.field(key), depth, (lang or i18n.language()) == "zh", self.errors(lang), lang)

    def _field_item(self, f: Field, depth: int, zh: bool, errors: dict, lang: str | None) -> dict:
        value = self.values.get(f.key)
        selected = set(value if isinstance(value, list) else [value]) if f.type in CHOICE_TYPES else set()
        hint = ""
        if f.type == "datetime":
            hint = i18n.t(f"form.hint.{f.subtype or 'date'}", lang)
        elif f.type == "number":
            hint = i18n.t("form.hint.number", lang)
        text = ""
        if f.type in TEXT_TYPES or f.type in ("number", "datetime"):
            text = "" if value is None else str(value)
        return {"kind": "field", "key": f.key, "type": f.type, "label": f.label_zh if zh else f.label,
                "required": f.required, "value": value, "text": text, "depth": depth, "hint": hint,
                "options": [{"value": o.value, "label": o.label_zh if zh else o.label, "selected": o.value in selected}
                            for o in f.options],
                "error": errors.get(f.key, ""), "visible": f.key not in self._hidden, "subtype": f.subtype,
                "multiple": f.multiple, "readonly": not f.submittable}
