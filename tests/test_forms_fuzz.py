"""Property tests of engine.forms: any schema or submission gives a FormError or errors
per field, never another exception."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.forms import Form, FormError, form_to_dict, parse_form, validate_submission
from tests.forms_helpers import FORM_FILES, KITCHEN, SHA, SHA2, codes, make

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=10), kids, max_size=4), max_leaves=12)


def _all_forms() -> list[Form]:
    return [parse_form(p.read_bytes(), p.name) for p in FORM_FILES] + [parse_form(make(KITCHEN))]


ALL_FORMS = _all_forms()
ALL_KEYS = sorted({f.key for form in ALL_FORMS for f in form.fields})
SMART_VALUES = (json_values | st.sampled_from(["fixed", "not_ours", "approve", "reject", "ok", "pass", "2024-01-01",
                                               "", " ", SHA, "aa"]) | st.lists(st.sampled_from([SHA, SHA2, "x", "a"])))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(idx=st.integers(0, len(ALL_FORMS) - 1),
       data=st.dictionaries(st.sampled_from(ALL_KEYS) | st.text(max_size=8), SMART_VALUES, max_size=10)
       | json_values)
def test_submissions_never_raise(idx: int, data) -> None:
    form = ALL_FORMS[idx]
    clean, errors = validate_submission(form, data)
    assert isinstance(clean, dict) and isinstance(errors, dict)
    keys = {f.key for f in form.fields}
    assert set(clean) <= keys and not set(clean) & set(errors)
    codes(errors)
    json.dumps(clean)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_parse_arbitrary_input_only_form_error(raw) -> None:
    try:
        parse_form(raw)
    except FormError:
        pass


component_values = st.recursive(
    st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["textfield", "textarea", "number", "checkbox", "checklist", "radio", "select",
                                 "datetime", "taglist", "text", "group", "filepicker", "button"]) | json_values,
        "key": st.sampled_from(["a", "b", "c", "_x", "a.b"]) | json_values,
        "id": st.text(max_size=5) | json_scalars,
        "validate": st.dictionaries(st.sampled_from(["required", "min", "max", "minLength", "maxLength",
                                                     "pattern", "validationType"]), json_values, max_size=3)
                    | json_values,
        "values": st.lists(st.fixed_dictionaries({"label": json_scalars,
                                                  "value": st.sampled_from(["x", "y"]) | json_scalars}),
                           max_size=3) | json_values,
        "conditional": st.fixed_dictionaries({"hide": st.sampled_from(['=a = "x"', "=b", "=foo()", "=not(c = 1)", ""])
                                              | json_values}) | json_values,
        "properties": st.dictionaries(st.text(max_size=10), json_scalars, max_size=2) | json_values,
        "subtype": st.sampled_from(["date", "time", "datetime"]) | json_scalars,
        "multiple": json_values, "readonly": json_values, "label": json_values, "path": json_values,
        "valuesKey": json_values, "components": json_values,
    }),
    lambda kids: st.fixed_dictionaries({"type": st.just("group"), "components": st.lists(kids, max_size=3)}),
    max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(comps=st.lists(component_values, max_size=5) | json_values, form_id=st.sampled_from(["abc", "X"]) | json_scalars,
       submission=st.dictionaries(st.sampled_from(["a", "b", "c"]), SMART_VALUES, max_size=3))
def test_parse_arbitrary_schemas_only_form_error(comps, form_id, submission) -> None:
    try:
        form = parse_form(json.dumps({"id": form_id, "components": comps}))
    except FormError:
        return
    validate_submission(form, submission)
    json.dumps(form_to_dict(form))
