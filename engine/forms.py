"""User-task forms in the form-js JSON format (bpmn.io): schema check and submission validation.

Forms come from designers and submissions from users/tablets: both are untrusted. A form is
checked once by :func:`parse_form`, which reports every problem, naming the component; a
submission is checked by :func:`validate_submission`, which never raises for bad data: it
returns the typed values and per-field errors in English and Chinese. Hide conditions use the
FEEL subset of :mod:`engine.forms_feel` (no ``eval``); readonly and disabled fields cannot be
set by a submission.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Mapping

from engine.forms_feel import (
    Condition,
    FeelError,
    bad_string,
    compile_condition,
    compile_pattern,
    evaluation_order,
    is_iso,
    load_json,
)

__all__ = ["CHOICE_TYPES", "FORM_ID_RE", "Field", "Form", "FormError", "INPUT_TYPES", "KEY_RE", "MAX_COMPONENTS",
           "MAX_FILES", "MAX_FORM_BYTES", "MAX_INT", "MAX_NESTING", "MAX_OPTIONS", "MAX_STRING", "Option",
           "SHA256_RE", "TEXT_TYPES", "form_to_dict", "parse_form", "validate_submission"]

MAX_FORM_BYTES = 256 * 1024
MAX_COMPONENTS = 200
MAX_NESTING = 5
MAX_STRING = 10_000
MAX_OPTIONS = 500
MAX_FILES = 50
MAX_INT = 2**53
FORM_ID_RE = re.compile(r"[a-z][a-z0-9_]{1,62}", re.ASCII)
KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}", re.ASCII)
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_BUILTIN_PATTERNS = {"email": r"[^\s@]+@[^\s@]+\.[^\s@]+", "phone": r"\+?[0-9][0-9 ()-]{4,30}"}
INPUT_TYPES = frozenset({"textfield", "textarea", "number", "checkbox", "checklist", "radio",
                         "select", "datetime", "taglist", "filepicker"})
CHOICE_TYPES = frozenset({"radio", "select", "checklist", "taglist"})
TEXT_TYPES = frozenset({"textfield", "textarea"})
_VALIDATE_KEYS = {t: {"required"} | ({"minLength", "maxLength", "pattern", "validationType"}
                                     if t in TEXT_TYPES else {"min", "max"} if t == "number" else set())
                  for t in INPUT_TYPES}
_MISSING = object()


class FormError(ValueError):
    """A form definition was refused; ``problems`` names each component at fault."""

    def __init__(self, problems: list[str], source: str = "<form>"):
        self.problems = list(problems)
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    label_zh: str       # from the component's properties["label_zh.<value>"], else label


@dataclass(frozen=True)
class Field:
    key: str
    type: str
    label: str
    label_zh: str
    required: bool = False
    id: str | None = None
    subtype: str | None = None          # datetime: date / time / datetime
    multiple: bool = False              # filepicker
    min: float | None = None
    max: float | None = None
    min_length: int | None = None
    max_length: int = MAX_STRING        # effective cap for text values
    pattern: str | None = None
    options: tuple[Option, ...] = ()
    hide: tuple[Condition, ...] = ()    # its own and its enclosing groups' hide conditions
    submittable: bool = True            # False for readonly / disabled fields
    regex: re.Pattern | None = dc_field(default=None, repr=False, compare=False)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(o.value for o in self.options)


@dataclass(frozen=True)
class Form:
    id: str
    schema: dict
    fields: tuple[Field, ...]
    order: tuple[int, ...] = dc_field(default=(), repr=False, compare=False)  # for hide evaluation

    def field(self, key: str) -> Field | None:
        return next((f for f in self.fields if f.key == key), None)


# ---------------------------------------------------------------- parsing
def parse_form(raw: bytes | str, source: str = "<form>") -> Form:
    """Parse and check a form-js JSON document; raise FormError listing every problem."""
    try:
        doc = load_json(raw, MAX_FORM_BYTES)
    except ValueError as e:
        raise FormError([f"form: {e}"], source) from None
    if not isinstance(doc, dict):
        raise FormError(["form: the top level must be a JSON object"], source)
    ck = _Checker()
    fid = doc.get("id")
    if not isinstance(fid, str) or not FORM_ID_RE.fullmatch(fid):
        ck.bad("form", "'id' must be a string matching ^[a-z][a-z0-9_]{1,62}$")
    if doc.get("type", "default") != "default":
        ck.bad("form", "'type' must be 'default'")
    sv = doc.get("schemaVersion")
    if sv is not None and (isinstance(sv, bool) or not isinstance(sv, int)):
        ck.bad("form", "'schemaVersion' must be an integer")
    if "components" not in doc:
        ck.bad("form", "missing 'components'")
    else:
        ck.components(doc["components"], "form", "", 0, ())
    keys = {f.key for f in ck.fields}
    for name, cond in ck.conds:
        for ref in sorted(cond.refs - keys):
            ck.bad(name, f"conditional.hide refers to unknown field {ref!r}")
    order: tuple[int, ...] = ()
    try:
        order = evaluation_order([(f.key, f.hide) for f in ck.fields]) if not ck.problems else ()
    except FeelError as e:
        ck.bad("form", str(e))
    if ck.problems:
        raise FormError(ck.problems, source)
    return Form(id=fid, schema=doc, fields=tuple(ck.fields), order=order)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.count = 0
        self.ids: set[str] = set()
        self.fields: list[Field] = []
        self.conds: list[tuple[str, Condition]] = []

    def bad(self, name: str, msg: str) -> None:
        self.problems.append(f"{name}: {msg}")

    def components(self, comps: Any, owner: str, path: str, depth: int, hide: tuple) -> None:
        if not isinstance(comps, list):
            return self.bad(owner, "'components' must be a list")
        if depth > MAX_NESTING:
            return self.bad(owner, f"groups nested deeper than {MAX_NESTING}")
        for i, comp in enumerate(comps):
            self.count += 1
            if self.count > MAX_COMPONENTS:
                return self.bad("form", f"more than {MAX_COMPONENTS} components")
            self.component(comp, f"{path}components[{i}]", depth, hide)

    def component(self, comp: Any, path: str, depth: int, hide: tuple) -> None:
        if not isinstance(comp, dict):
            return self.bad(f"component at {path}", "must be a JSON object")
        key, cid, ctype = comp.get("key"), comp.get("id"), comp.get("type")
        name = (f"component {key[:64]!r}" if isinstance(key, str) and key else
                f"component {cid[:64]!r}" if isinstance(cid, str) and cid else f"component at {path}")
        if cid is not None:
            if not isinstance(cid, str) or not 0 < len(cid) <= 100:
                self.bad(name, "'id' must be a string of 1-100 characters")
            elif cid in self.ids:
                self.bad(name, f"duplicate id {cid!r}")
            if isinstance(cid, str):
                self.ids.add(cid)
        if not isinstance(ctype, str) or (ctype not in INPUT_TYPES and ctype not in ("text", "group")):
            shown = repr(ctype[:40]) if isinstance(ctype, str) else "missing"
            return self.bad(name, f"unknown component type {shown}")
        props = comp.get("properties", {})
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            self.bad(name, "'properties' must map names to strings")
            props = {}
        for prop in ("label", "description", "dateLabel", "timeLabel", "text", "accept"):
            v = comp.get(prop)
            if v is not None and not isinstance(v, str):
                self.bad(name, f"'{prop}' must be a string")
            elif isinstance(v, str) and v.startswith("="):
                self.bad(name, f"'{prop}' is an expression; expressions are only supported in conditional.hide")
        for flag in ("disabled", "readonly", "multiple"):
            if flag in comp and not isinstance(comp[flag], bool):
                self.bad(name, f"'{flag}' must be true or false (expressions are not supported)")
        hide = hide + self.conditional(comp.get("conditional"), name)
        if ctype in ("text", "group"):
            if "key" in comp:
                self.bad(name, f"a {ctype} component has no 'key'")
            if ctype == "group":
                if comp.get("path"):
                    self.bad(name, "group 'path' is not supported (keys are flat)")
                self.components(comp.get("components"), name, f"{path}.", depth + 1, hide)
            return None
        if not isinstance(key, str) or not key:
            return self.bad(name, f"a {ctype} component needs a 'key'")
        if key.startswith("_") or not KEY_RE.fullmatch(key):
            return self.bad(name, "key must match ^[A-Za-z][A-Za-z0-9_]{0,62}$ (no leading underscore)")
        if any(f.key == key for f in self.fields):
            return self.bad(name, f"duplicate key {key!r}")
        self.fields.append(self.make_field(comp, ctype, key, name, props, hide))

    def conditional(self, cond: Any, name: str) -> tuple:
        if cond is None:
            return ()
        if not isinstance(cond, dict) or set(cond) - {"hide"}:
            self.bad(name, "'conditional' must be an object with only 'hide'")
            return ()
        hide = cond.get("hide")
        if hide is None or hide == "" or hide is False:
            return ()
        try:
            c = compile_condition("=true" if hide is True else hide)
        except FeelError as e:
            self.bad(name, f"conditional.hide: {e}")
            return ()
        self.conds.append((name, c))
        return (c,)

    def make_field(self, comp: dict, ctype: str, key: str, name: str, props: dict, hide: tuple) -> Field:
        val = comp.get("validate", {})
        if not isinstance(val, dict):
            self.bad(name, "'validate' must be an object")
            val = {}
        for k in sorted(set(val) - _VALIDATE_KEYS[ctype]):
            self.bad(name, f"validate.{k[:40]} is not supported for {ctype}")
        req, nums = val.get("required", False), {}
        if not isinstance(req, bool):
            self.bad(name, "validate.required must be true or false")
        for k in ("min", "max", "minLength", "maxLength"):
            v = val.get(k)
            if v is None:
                continue
            is_len = k.endswith("Length")
            if isinstance(v, bool) or not isinstance(v, int if is_len else (int, float)) or (is_len and v < 0):
                kind = "a non-negative integer" if is_len else "a number"
                self.bad(name, f"validate.{k} must be {kind} (expressions are not supported)")
            else:
                nums[k] = v
        if nums.get("min", -math.inf) > nums.get("max", math.inf):
            self.bad(name, "validate.min is greater than validate.max")
        if nums.get("minLength", 0) > nums.get("maxLength", math.inf):
            self.bad(name, "validate.minLength is greater than validate.maxLength")
        pattern, regex, vtype = val.get("pattern") or None, None, val.get("validationType")
        if isinstance(vtype, str) and vtype in _BUILTIN_PATTERNS:
            pattern, regex = _BUILTIN_PATTERNS[vtype], re.compile(_BUILTIN_PATTERNS[vtype])
        elif vtype not in (None, "", "custom"):
            self.bad(name, "validate.validationType must be email, phone or custom")
        elif isinstance(pattern, str) and pattern.startswith("="):
            self.bad(name, "validate.pattern is an expression; only literal values are supported")
        elif pattern is not None:
            try:
                regex = compile_pattern(pattern)
            except ValueError as e:
                self.bad(name, f"validate.pattern: {e}")
        subtype = comp.get("subtype", "date") if ctype == "datetime" else None
        if ctype == "datetime" and subtype not in ("date", "time", "datetime"):
            self.bad(name, "datetime 'subtype' must be date, time or datetime")
        label = next((comp[p] for p in ("label", "dateLabel", "timeLabel")
                      if isinstance(comp.get(p), str) and comp[p]), key)
        return Field(key=key, type=ctype, label=label, label_zh=props.get("label_zh") or label,
                     required=req is True, id=comp.get("id") if isinstance(comp.get("id"), str) else None,
                     subtype=subtype, multiple=comp.get("multiple") is True,
                     min=nums.get("min"), max=nums.get("max"), min_length=nums.get("minLength"),
                     max_length=min(nums.get("maxLength", MAX_STRING), MAX_STRING),
                     pattern=pattern if regex else None, regex=regex, hide=hide,
                     options=self.options(comp, ctype, name, props) if ctype in CHOICE_TYPES else (),
                     submittable=not (comp.get("readonly") is True or comp.get("disabled") is True))

    def options(self, comp: dict, ctype: str, name: str, props: dict) -> tuple[Option, ...]:
        if "valuesKey" in comp or "valuesExpression" in comp:
            self.bad(name, "dynamic options (valuesKey/valuesExpression) are not supported; list static 'values'")
            return ()
        values = comp.get("values")
        if not isinstance(values, list) or not values or len(values) > MAX_OPTIONS:
            self.bad(name, f"{ctype} needs a 'values' list of 1-{MAX_OPTIONS} options")
            return ()
        out: list[Option] = []
        for i, v in enumerate(values):
            if not (isinstance(v, dict) and isinstance(v.get("value"), str) and v["value"]
                    and isinstance(v.get("label", ""), str)):
                self.bad(name, f"values[{i}] must be {{label: string, value: non-empty string}}")
            elif any(o.value == v["value"] for o in out):
                self.bad(name, f"values[{i}]: duplicate option value {v['value'][:40]!r}")
            else:
                label = v.get("label") or v["value"]
                out.append(Option(v["value"], label, props.get(f"label_zh.{v['value']}") or label))
        return tuple(out)


# ---------------------------------------------------------------- submissions
class _Invalid(Exception):
    def __init__(self, code: str, en: str, zh: str):
        super().__init__(code)
        self.payload = {"code": code, "message": en, "message_zh": zh}


def _type_error(en: str, zh: str) -> _Invalid:
    return _Invalid("type", f"Expected {en}.", f"应为{zh}。")


def _coerce(f: Field, raw: Any) -> Any:
    """The typed value (_MISSING for null/empty choice), or raise _Invalid."""
    t = f.type
    if raw is None or (raw == "" and t in ("radio", "select", "datetime")):
        return _MISSING
    if t in TEXT_TYPES:
        if not isinstance(raw, str):
            raise _type_error("text", "文本")
        if len(raw) > f.max_length:
            raise _Invalid("maxLength", f"At most {f.max_length} characters.", f"不能超过 {f.max_length} 个字符。")
        if bad_string(raw):
            raise _Invalid("characters", "Contains invalid characters.", "包含无效字符。")
        if raw.strip() and f.min_length is not None and len(raw.strip()) < f.min_length:
            raise _Invalid("minLength", f"At least {f.min_length} characters.", f"至少需要 {f.min_length} 个字符。")
        if raw.strip() and f.regex is not None and not f.regex.fullmatch(raw):
            raise _Invalid("pattern", "Does not match the required format.", "格式不正确。")
        return raw
    if t == "number":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise _type_error("a number", "数字")
        if (isinstance(raw, float) and not math.isfinite(raw)) or abs(raw) > MAX_INT:
            raise _Invalid("type", "The number is out of range.", "数字超出范围。")
        if f.min is not None and raw < f.min:
            raise _Invalid("min", f"Must be at least {f.min}.", f"不能小于 {f.min}。")
        if f.max is not None and raw > f.max:
            raise _Invalid("max", f"Must be at most {f.max}.", f"不能大于 {f.max}。")
        return raw
    if t == "checkbox":
        if not isinstance(raw, bool):
            raise _type_error("true or false", "是或否（布尔值）")
        return raw
    if t == "datetime":
        fmt = {"date": ("a date YYYY-MM-DD", "日期（YYYY-MM-DD）"), "time": ("a time HH:MM", "时间（HH:MM）"),
               "datetime": ("a date-time YYYY-MM-DDTHH:MM", "日期时间（YYYY-MM-DDTHH:MM）")}
        sub = f.subtype or "date"
        if not isinstance(raw, str) or not is_iso(sub, raw):
            raise _type_error(*fmt[sub])
        return raw
    if t in CHOICE_TYPES:
        single = t in ("radio", "select")
        items = [raw] if single else raw
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise (_type_error("one of the options", "选项之一") if single
                   else _type_error("a list of options", "选项列表"))
        if any(v not in f.choices for v in items):
            shown = ", ".join(f.choices[:10]) + (", ..." if len(f.choices) > 10 else "")
            raise _Invalid("choice", f"Choose from: {shown}.", f"请从以下选项中选择：{shown}。")
        return raw if single else list(dict.fromkeys(items))
    # filepicker: a list of attachment ids (sha256 of the uploaded content)
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise _type_error("a list of attachment ids", "附件编号列表")
    ids, limit = list(dict.fromkeys(raw)), (MAX_FILES if f.multiple else 1)
    if len(ids) > limit:
        raise _Invalid("attachment", f"At most {limit} file(s) allowed.", f"最多允许 {limit} 个文件。")
    if not all(SHA256_RE.fullmatch(v) for v in ids):
        raise _Invalid("attachment", "Attachment ids must be 64-character lowercase sha256 hex.",
                       "附件编号必须是 64 位小写 sha256 十六进制串。")
    return ids


def _is_empty(f: Field, v: Any) -> bool:
    return (v is _MISSING or v == [] or (isinstance(v, str) and not v.strip())
            or (f.type == "checkbox" and v is False))


def validate_submission(form: Form, data: Mapping[str, Any]) -> tuple[dict, dict[str, dict]]:
    """Check a submission against ``form``. Returns (clean, errors); never raises for bad data.

    ``clean`` holds typed values of visible, editable fields only (unknown, hidden, readonly and
    disabled keys are dropped; null means "not given"). ``errors`` maps field key to
    {code, message, message_zh}; a submission that is not an object is reported under "_form".
    A required checkbox must be ticked; whitespace-only text does not satisfy "required".
    """
    if not isinstance(data, Mapping):
        return {}, {"_form": _type_error("an object of field values", "字段值对象").payload}
    values: dict[str, Any] = {}
    errors: dict[str, dict] = {}
    for f in form.fields:
        if f.submittable:
            try:
                values[f.key] = _coerce(f, data.get(f.key))
            except _Invalid as e:
                errors[f.key] = e.payload
    # Conditions see valid values only; a hidden field reads as null to the fields after it.
    ctx = {k: v for k, v in values.items() if v is not _MISSING}
    hidden: set[str] = set()
    for i in form.order or range(len(form.fields)):
        f = form.fields[i]
        if any(c.is_true(ctx) for c in f.hide):
            hidden.add(f.key)
            ctx.pop(f.key, None)
    clean: dict[str, Any] = {}
    for f in form.fields:
        if not f.submittable or f.key in hidden:
            errors.pop(f.key, None)
        elif f.key not in errors:
            v = values[f.key]
            if f.required and _is_empty(f, v):
                errors[f.key] = _Invalid("required", "This field is required.", "此项为必填项。").payload
            elif v is not _MISSING:
                clean[f.key] = v
    return clean, errors


def form_to_dict(form: Form) -> dict:
    """The form-js schema to send to clients (a deep copy; safe to mutate)."""
    return copy.deepcopy(form.schema)
