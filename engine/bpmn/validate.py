"""Deploy-time checks of untrusted BPMN and DMN, before SpiffWorkflow sees them.

Every problem names the element it was found on, so a designer can fix it in the modeler.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from lxml import etree

from engine.bpmn import expressions, timers
from engine.bpmn.parser import CAMUNDA_NS, split_groups

__all__ = ["BPMN_NS", "DMN_NAMESPACES", "MAX_LITERAL", "check_bpmn", "check_dmn"]

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
DMN_NAMESPACES = {
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd",
}
_LAYOUT_NS = {
    "http://www.omg.org/spec/BPMN/20100524/DI",
    "http://www.omg.org/spec/DD/20100524/DC",
    "http://www.omg.org/spec/DD/20100524/DI",
    "https://www.omg.org/spec/DMN/20191111/DMNDI/",
    "http://www.omg.org/spec/DMN/20180521/DMNDI/",
    "https://www.omg.org/spec/DMN/20191111/DI/",
    "http://www.omg.org/spec/DMN/20180521/DI/",
    "http://www.omg.org/spec/DMN/20180521/DC/",
}
_ALLOWED_CAMUNDA_ELEMENTS = {"properties", "property", "formData", "formField", "value",
                             "validation", "constraint", "inputOutput", "inputParameter", "outputParameter"}
_FORBIDDEN_CAMUNDA_ATTRS = ("class", "expression", "delegateExpression", "resultVariable")
_UNSUPPORTED = {
    "scriptTask": "script tasks are not allowed; use a service task naming a registered operation",
    "timeCycle": "cycle timers are not supported in processes; calendar jobs run in the scheduler",
    "sendTask": "send tasks are not supported; use a service task (e.g. notify)",
    "complexGateway": "complex gateways are not supported",
    "callActivity": "call activities are not supported yet; start another process from a service task",
}
Problems = list[tuple[str | None, str]]
MAX_LITERAL = 128   # characters of a literal assignee or candidate group (the open-task columns' size)


def _local(el) -> str:
    return etree.QName(el).localname


def _ns(el) -> str:
    return etree.QName(el).namespace or ""


def _owner_id(el) -> str | None:
    while el is not None:
        if el.get("id"):
            return el.get("id")
        el = el.getparent()
    return None


def _check_expr(problems: Problems, el, text: str | None, what: str, unary: bool = False,
                owner: str | None = None, value_check: Callable[[Any], Any] | None = None,
                type_check: Callable[[type], Any] | None = None) -> None:
    """Check `text` against the allow-list; when it reads no variables (a constant), also
    evaluate it and refuse it if it can never succeed. `value_check(value)` and
    `type_check(result type)` raise TimerValueError for a value the element cannot use."""
    owner = owner or _owner_id(el)
    if text is None or not text.strip():
        problems.append((owner, f"{what} is empty"))
        return
    try:
        expressions.check(text)
    except expressions.ExpressionSyntaxError as exc:
        if unary:  # DMN unary tests like `< 3` or `>= 2` are completed by the engine
            try:
                expressions.check("v " + expressions.unwrap(text).replace("?", "v"))
                return
            except expressions.ExpressionError:
                pass
        problems.append((owner, f"{what} {text!r}: {exc}"))
        return
    except expressions.ExpressionError as exc:
        problems.append((owner, f"{what} {text!r}: {exc}"))
        return
    if expressions.is_constant(text):
        _check_constant(problems, owner, text, what, value_check, type_check)


def _check_constant(problems: Problems, owner: str | None, text: str, what: str,
                    value_check: Callable[[Any], Any] | None, type_check: Callable[[type], Any] | None) -> None:
    """A constant gives the same value or error at every run: find out now, at deploy."""
    try:
        value = expressions.evaluate(text, {})
    except expressions.ExpressionError as exc:
        problems.append((owner, f"{what} {text!r} can never be evaluated: {exc}"))
        result_type = expressions.result_type(text)
        if type_check is not None and result_type is not None:
            try:
                type_check(result_type)
            except timers.TimerValueError as exc:
                problems.append((owner, f"{what} {text!r} {exc}"))
        return
    if value_check is not None:
        try:
            value_check(value)
        except timers.TimerValueError as exc:
            problems.append((owner, f"{what} {text!r} {exc}"))


def _check_embedded(problems: Problems, el, text: str | None, what: str,
                    value_check: Callable[[Any], Any] | None = None) -> None:
    """Attributes such as assignee are literals or contain ${expr} parts."""
    if not text:
        return
    if "${" in text or "#{" in text:
        if "#{" in text or not (text.startswith("${") and text.endswith("}")):
            problems.append((_owner_id(el), f"{what} {text!r}: write either a literal or a whole ${{expression}}"))
            return
        _check_expr(problems, el, text, what, value_check=value_check)
    elif value_check is not None:
        try:
            value_check(text)
        except timers.TimerValueError as exc:
            problems.append((_owner_id(el), f"{what} {text[:60]!r}: {exc}"))
    elif len(text) > MAX_LITERAL:
        problems.append((_owner_id(el), f"{what} {text[:60]!r}...: longer than {MAX_LITERAL} characters"))


def _event_id(el) -> str | None:
    """The event a timer definition belongs to: what the designer sees in the modeler."""
    node = el.getparent()
    while node is not None and not _local(node).endswith("Event"):
        node = node.getparent()
    return _owner_id(node if node is not None else el)


def _timer_checks(kind: str) -> dict:
    return {"value_check": lambda v: timers.check_text(kind, v), "type_check": lambda t: timers.check_type(kind, t)}


def check_bpmn(root, operations: Iterable[str], form_ids: Iterable[str], decision_ids: Iterable[str]) -> Problems:
    operations, form_ids, decision_ids = set(operations), set(form_ids), set(decision_ids)
    problems: Problems = []
    if _ns(root) != BPMN_NS or _local(root) != "definitions":
        return [(None, "not a BPMN 2.0 definitions document")]
    if not root.findall(f"{{{BPMN_NS}}}process"):
        problems.append((None, "no process in this file"))
    for el in root.iter(etree.Element):
        ns, name = _ns(el), _local(el)
        if ns == BPMN_NS:
            if name in _UNSUPPORTED:
                problems.append((_owner_id(el), _UNSUPPORTED[name]))
        elif ns == CAMUNDA_NS:
            if name not in _ALLOWED_CAMUNDA_ELEMENTS:
                problems.append((_owner_id(el), f"camunda:{name} is not allowed (no listeners, scripts or connectors)"))
        elif ns not in _LAYOUT_NS:
            problems.append((_owner_id(el), f"element {{{ns}}}{name} is not allowed"))
        for attr in _FORBIDDEN_CAMUNDA_ATTRS:
            if el.get(f"{{{CAMUNDA_NS}}}{attr}") is not None and not (name == "intermediateThrowEvent"):
                problems.append((_owner_id(el), f"camunda:{attr} is not allowed; "
                                                "use camunda:type=\"external\" with a registered topic"))
        if ns != BPMN_NS:
            continue
        if name == "serviceTask":
            topic = el.get(f"{{{CAMUNDA_NS}}}topic")
            if el.get(f"{{{CAMUNDA_NS}}}type") != "external" or not topic:
                problems.append((el.get("id"), 'service tasks must be camunda:type="external" with a camunda:topic'))
            elif topic not in operations:
                problems.append((el.get("id"), f"unknown operation {topic!r}; known: {', '.join(sorted(operations))}"))
        elif name == "businessRuleTask":
            ref = el.get(f"{{{CAMUNDA_NS}}}decisionRef")
            if not ref:
                problems.append((el.get("id"), "business rule task without camunda:decisionRef"))
            elif ref not in decision_ids:
                problems.append((el.get("id"), f"unknown decision {ref!r}"))
        elif name == "userTask":
            if el.get(f"{{{CAMUNDA_NS}}}formKey"):
                problems.append((el.get("id"), "use camunda:formRef (a form-js form id), not camunda:formKey"))
            ref = el.get(f"{{{CAMUNDA_NS}}}formRef")
            if ref and ref not in form_ids:
                problems.append((el.get("id"), f"unknown form {ref!r}"))
            _check_embedded(problems, el, el.get(f"{{{CAMUNDA_NS}}}assignee"), "camunda:assignee")
            _check_embedded(problems, el, el.get(f"{{{CAMUNDA_NS}}}dueDate"), "camunda:dueDate",
                            value_check=timers.parse_due_date)
            for group in split_groups(el.get(f"{{{CAMUNDA_NS}}}candidateGroups")):
                _check_embedded(problems, el, group, "candidate group")
        elif name in ("conditionExpression", "completionCondition", "loopCardinality", "loopCondition"):
            lang = el.get("language")
            if lang and lang.lower() not in ("python", "cityloop"):
                problems.append((_owner_id(el), f"{name} language {lang!r} is not allowed"))
            owner = el.getparent() if name == "conditionExpression" else el
            _check_expr(problems, owner, el.text, name)
        elif name in ("timeDate", "timeDuration", "timeCycle"):
            _check_expr(problems, el, el.text, f"timer {name}", owner=_event_id(el), **_timer_checks(name))
        elif name == "messageEventDefinition":
            expr = el.get(f"{{{CAMUNDA_NS}}}expression")
            if expr is not None:
                _check_expr(problems, el, expr, "message payload expression")
    return problems


def check_dmn(root) -> Problems:
    problems: Problems = []
    if _ns(root) not in DMN_NAMESPACES or _local(root) != "definitions":
        return [(None, "not a DMN definitions document")]
    dmn = _ns(root)
    for el in root.iter(etree.Element):
        ns, name = _ns(el), _local(el)
        if ns not in DMN_NAMESPACES and ns not in _LAYOUT_NS and ns != CAMUNDA_NS:
            problems.append((_owner_id(el), f"element {{{ns}}}{name} is not allowed"))
        if ns != dmn:
            continue
        if name == "decisionTable":
            policy = el.get("hitPolicy", "UNIQUE")
            if policy not in ("UNIQUE", "COLLECT"):
                problems.append((_owner_id(el), f"hit policy {policy} is not supported (UNIQUE, COLLECT)"))
        text_el = el.find(f"{{{dmn}}}text")
        text = text_el.text if text_el is not None else None
        if name == "inputExpression":
            _check_expr(problems, el, text, "input expression")
        elif name == "inputEntry":
            if text and text.strip() not in ("-", ""):
                _check_expr(problems, el, text, "input entry", unary=True)
        elif name == "outputEntry":
            if text and text.strip():
                _check_expr(problems, el, text, "output entry")
    return problems

