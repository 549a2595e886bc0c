"""Deploy-time checks of untrusted BPMN and DMN, before SpiffWorkflow sees them.

Every problem names the element it was found on, so a designer can fix it in the modeler.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from lxml import etree

from engine.bpmn import expressions, timers
from engine.bpmn.parser import BPMN_NS, CAMUNDA_NS, SAME_BUSINESS_KEY, form_id_of_key, split_groups

__all__ = ["BPMN_NS", "DMN_NAMESPACES", "MAX_LITERAL", "check_bpmn", "check_dmn"]

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
                             "validation", "constraint", "inputOutput", "inputParameter", "outputParameter",
                             "in", "out"}
_FORBIDDEN_CAMUNDA_ATTRS = ("class", "expression", "delegateExpression", "resultVariable", "variableMappingClass",
                            "variableMappingDelegateExpression", "caseRef")
_UNSUPPORTED = {
    "scriptTask": "script tasks are not allowed; use a service task naming a registered operation",
    "complexGateway": "complex gateways are not supported; use an inclusive gateway with conditions",
    "transaction": "transactions are not supported; use an embedded sub-process with an error boundary event",
    "cancelEventDefinition": "cancel events are not supported (they belong to transactions); use an error "
                             "end event and an error boundary event",
    "compensateEventDefinition": "compensation is not supported; model the undo step as a task on an error "
                                 "or escalation path",
    "signalEventDefinition": "signal events are not supported; use a message event (delivered to the instances "
                             "with the same business key) instead",
    "conditionalEventDefinition": "conditional events are not supported; use an exclusive gateway, or a "
                                  "message the server sends when the condition holds",
    "adHocSubProcess": "ad-hoc sub-processes are not supported; use user tasks behind a parallel gateway",
    "correlationProperty": "correlation properties are not supported: messages between processes correlate "
                           "on the business key",
    "dataStoreReference": "data stores are not supported; keep data in process variables",
    "dataStore": "data stores are not supported; keep data in process variables",
    "linkEventDefinition": "link events are not supported; draw the sequence flow to where the link leads",
}
_HTML_FORM = ("HTML forms cannot be shown on tablets; draw a form-js form and reference it with "
              "camunda:formRef=\"ID\" or camunda:formKey=\"camunda-forms:deployment:ID.form\"")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NCNAME = re.compile(r"^[A-Za-z_][\w.\-]{0,254}$")
_THROWS = ("intermediateThrowEvent", "endEvent", "sendTask")
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


def _event_of(el):
    """The event element an event definition (or its timer text) belongs to, or None."""
    node = el.getparent()
    while node is not None and not _local(node).endswith("Event"):
        node = node.getparent()
    return node


def _event_id(el) -> str | None:
    """The event a definition belongs to: what the designer sees in the modeler."""
    node = _event_of(el)
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
            if name in _UNSUPPORTED:    # (an event definition is reported on its event, which designers select)
                owner = _event_id(el) if name.endswith("EventDefinition") else _owner_id(el)
                problems.append((owner, _UNSUPPORTED[name]))
            if name == "multiInstanceLoopCharacteristics" and (el.get(f"{{{CAMUNDA_NS}}}collection") is not None
                                                                or el.get(f"{{{CAMUNDA_NS}}}elementVariable")):
                problems.append((_owner_id(el), "multi-instance over a collection (camunda:collection) is not "
                                                "supported; use loopCardinality with a number or a variable "
                                                "holding one"))
        elif ns == CAMUNDA_NS:
            if name not in _ALLOWED_CAMUNDA_ELEMENTS:
                problems.append((_owner_id(el), f"camunda:{name} is not allowed (no listeners, scripts or connectors)"))
        elif ns not in _LAYOUT_NS:
            problems.append((_owner_id(el), f"element {{{ns}}}{name} is not allowed"))
        for attr in _FORBIDDEN_CAMUNDA_ATTRS:
            if el.get(f"{{{CAMUNDA_NS}}}{attr}") is not None and not (name == "intermediateThrowEvent"):
                problems.append((_owner_id(el), f"camunda:{attr} is not allowed; "
                                                "use camunda:type=\"external\" with a registered topic"))
        if ns == CAMUNDA_NS and name in ("in", "out"):
            _check_mapping(problems, el, name)
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
            _check_form(problems, el, form_ids)
            _check_embedded(problems, el, el.get(f"{{{CAMUNDA_NS}}}assignee"), "camunda:assignee")
            _check_embedded(problems, el, el.get(f"{{{CAMUNDA_NS}}}dueDate"), "camunda:dueDate",
                            value_check=timers.parse_due_date)
            for group in split_groups(el.get(f"{{{CAMUNDA_NS}}}candidateGroups")):
                _check_embedded(problems, el, group, "candidate group")
            for user in split_groups(el.get(f"{{{CAMUNDA_NS}}}candidateUsers")):
                _check_embedded(problems, el, user, "candidate user")
        elif name == "callActivity":
            _check_call(problems, el)
        elif name == "subProcess" and el.get("triggeredByEvent") == "true":
            _check_event_subprocess(problems, el)
        elif name in _THROWS or name in ("receiveTask", "messageEventDefinition"):
            _check_message_use(problems, root, el, name)
        elif name in ("conditionExpression", "completionCondition", "loopCardinality", "loopCondition"):
            lang = el.get("language")
            if lang and lang.lower() not in ("python", "cityloop"):
                problems.append((_owner_id(el), f"{name} language {lang!r} is not allowed"))
            owner = el.getparent() if name == "conditionExpression" else el
            _check_expr(problems, owner, el.text, name)
        elif name in ("timeDate", "timeDuration", "timeCycle") and _unquoted_timer_text(el.text):
            text = el.text.strip()
            problems.append((_event_id(el), f"timer {name} {text[:60]!r}: a timer text is an expression, so "
                                            f"quote it: \"{text[:60]}\" (or name a variable holding it)"))
        elif name in ("timeDate", "timeDuration", "timeCycle"):
            _check_expr(problems, el, el.text, f"timer {name}", owner=_event_id(el), **_timer_checks(name))
            if name == "timeCycle":
                _check_cycle_position(problems, el)
    return problems


_ISO_LIKE = re.compile(r"R\d*/\S+|P(?=[\dT])[\dYMWDTHS.,]*\d[\dYMWDTHS.,]*|\d{4}-\d{2}-\d{2}(?:[T ]\S*)?")


def _unquoted_timer_text(text: str | None) -> bool:
    """An ISO 8601 text written bare, as Camunda takes it (PT4H, R3/PT1H, 2026-03-02T08:00):
    as an expression it is a variable name or a division, never a time."""
    return bool(text) and _ISO_LIKE.fullmatch(text.strip()) is not None


def _check_event_subprocess(problems: Problems, el) -> None:
    """What the engine runs of an event sub-process: non-interrupting message, timer (cycle)
    and escalation starts, and error starts. SpiffWorkflow does not cancel the main flow for
    an interrupting start, and a timeDate/timeDuration start that has not fired keeps its
    process from ending."""
    for start in el.findall(f"{{{BPMN_NS}}}startEvent"):
        kinds = {_local(d) for d in start if _local(d).endswith("EventDefinition")}
        if "errorEventDefinition" in kinds:
            continue
        if start.get("isInterrupting", "true") != "false":
            problems.append((start.get("id"), "an interrupting event sub-process is not supported (the main flow "
                                              "would not be cancelled): mark its start event non-interrupting, or "
                                              "put the work in a sub-process with an interrupting boundary event"))
        timer = start.find(f"{{{BPMN_NS}}}timerEventDefinition")
        if timer is not None and timer.find(f"{{{BPMN_NS}}}timeCycle") is None:
            problems.append((start.get("id"), "an event sub-process started by a timeDate or timeDuration timer "
                                              "keeps its process from ending until it fires: use a non-interrupting "
                                              "boundary timer on the activity it watches, or a cycle"))


def _check_form(problems: Problems, el, form_ids: set) -> None:
    ref, key = el.get(f"{{{CAMUNDA_NS}}}formRef"), el.get(f"{{{CAMUNDA_NS}}}formKey")
    if ref and key:
        problems.append((el.get("id"), "give either camunda:formRef or camunda:formKey, not both"))
        return
    if key:
        ref = form_id_of_key(key)
        if ref is None:
            problems.append((el.get("id"), f"camunda:formKey {key[:80]!r}: {_HTML_FORM}"))
            return
    if ref and ref not in form_ids:
        problems.append((el.get("id"), f"unknown form {ref!r}" + (f" (from camunda:formKey {key!r})" if key else "")
                         + "; deploy the form-js file with that id first or in the same deploy"))


def _check_call(problems: Problems, el) -> None:
    owner = el.get("id")
    called = el.get("calledElement")
    if not called:
        problems.append((owner, "call activity without calledElement: name the id of the process to call"))
    elif not _NCNAME.match(called):
        problems.append((owner, f"calledElement {called[:60]!r} must be a process id (expressions are not "
                                "supported: draw an exclusive gateway before several call activities)"))
    binding = el.get(f"{{{CAMUNDA_NS}}}calledElementBinding")
    version = el.get(f"{{{CAMUNDA_NS}}}calledElementVersion")
    if binding not in (None, "latest", "deployment", "version"):
        problems.append((owner, f"camunda:calledElementBinding {binding!r} is not supported; use latest "
                                "(pinned at deploy) or version with camunda:calledElementVersion"))
    elif binding == "version":
        if not version or not version.isdigit() or int(version) < 1 or len(version) > 9:
            problems.append((owner, "camunda:calledElementVersion must be a version number (1, 2, ...) "
                                    "with binding version"))
    elif version is not None:
        problems.append((owner, 'camunda:calledElementVersion needs camunda:calledElementBinding="version"'))


def _check_mapping(problems: Problems, el, direction: str) -> None:
    parent = el.getparent()
    call = parent.getparent() if parent is not None else None
    owner = _owner_id(el)
    if call is None or _ns(call) != BPMN_NS or _local(call) != "callActivity":
        problems.append((owner, f"camunda:{direction} belongs on a call activity (signals are not supported)"))
        return
    what = f"camunda:{direction}"
    key = el.get("businessKey")
    if key is not None:
        if direction != "in":
            problems.append((owner, "camunda:out businessKey is not supported; a caller keeps its business key"))
        elif key.strip() not in SAME_BUSINESS_KEY:
            if not (key.strip().startswith("${") and key.strip().endswith("}")):
                problems.append((owner, f"{what} businessKey {key[:60]!r}: write ${{expression}} (the called "
                                        "process's own key) or #{execution.processBusinessKey} (its caller's)"))
            else:
                _check_expr(problems, el, key, f"{what} businessKey", owner=owner)
        return
    if el.get("variables") is not None:
        if el.get("variables") != "all":
            problems.append((owner, f'{what} variables="{el.get("variables")}": only "all" is supported'))
        return
    target, source, expr = el.get("target"), el.get("source"), el.get("sourceExpression")
    if not target or not _IDENTIFIER.match(target):
        problems.append((owner, f"{what} target {target!r} must be a variable name (letters, digits, _)"))
    if (source is None) == (expr is None):
        problems.append((owner, f"{what} needs either source (a variable name) or sourceExpression (${{...}})"))
    elif source is not None and not _IDENTIFIER.match(source):
        problems.append((owner, f"{what} source {source!r} must be a variable name; use sourceExpression "
                                "for an expression"))
    elif expr is not None:
        if not (expr.strip().startswith("${") and expr.strip().endswith("}")):
            problems.append((owner, f"{what} sourceExpression {expr[:60]!r} must be a whole ${{expression}}"))
        else:
            _check_expr(problems, el, expr, f"{what} sourceExpression", owner=owner)


def _check_message_use(problems: Problems, root, el, name: str) -> None:
    """A message event or send/receive task names an existing message; what a thrown one
    carries (its camunda:inputOutput input parameters) passes the allow-list."""
    owner = _owner_id(el)
    if name == "messageEventDefinition" or name in ("sendTask", "receiveTask"):
        ref = el.get("messageRef")
        if ref is not None:
            messages = [m for m in root.findall(f"{{{BPMN_NS}}}message") if m.get("id") == ref]
            if not _NCNAME.match(ref) or not messages:
                problems.append((owner, f"messageRef {ref[:60]!r} names no bpmn:message of this file"))
            elif not (messages[0].get("name") or "").strip():
                problems.append((owner, f"message {ref!r} has no name: give it the name senders and receivers share"))
        elif name == "messageEventDefinition" and not (el.getparent().get("name") or "").strip():
            problems.append((owner, "message event without a message: pick or create a message (messageRef)"))
        elif name in ("sendTask", "receiveTask"):
            problems.append((owner, f"{name} without a message: pick or create a message (messageRef)"))
    if name not in _THROWS:
        return
    params = el.findall(f"{{{BPMN_NS}}}extensionElements/{{{CAMUNDA_NS}}}inputOutput/{{{CAMUNDA_NS}}}inputParameter")
    for param in params:
        pname = param.get("name")
        if not pname or not _IDENTIFIER.match(pname):
            problems.append((owner, f"input parameter {pname!r} must be a variable name (letters, digits, _)"))
        elif len(param):
            problems.append((owner, f"input parameter {pname!r}: write a literal or a ${{expression}} "
                                    "(lists, maps and scripts are not supported)"))
        elif param.text and param.text.strip().startswith("${"):
            _check_embedded(problems, param, param.text.strip(), f"input parameter {pname!r}")


def _check_cycle_position(problems: Problems, el) -> None:
    event = _event_of(el)
    if event is None:
        return
    kind, container = _local(event), event.getparent()
    if kind == "startEvent" and container is not None and _local(container) == "process":
        problems.append((event.get("id"), "a process started on a cycle is a calendar job, not supported here; "
                                          "draw the cycle on a non-interrupting boundary event or on the start "
                                          "event of an event sub-process"))
    elif kind == "intermediateCatchEvent":
        problems.append((event.get("id"), "an intermediate timer cannot repeat; use timeDuration or timeDate, or a "
                                          "non-interrupting boundary event with the cycle"))


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

