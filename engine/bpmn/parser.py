"""SpiffWorkflow parser configured for cityloop's Camunda 7 dialect."""
from __future__ import annotations

from SpiffWorkflow.bpmn.parser.BpmnParser import full_tag
from SpiffWorkflow.bpmn.parser.event_parsers import (
    BoundaryEventParser,
    EndEventParser,
    IntermediateCatchEventParser,
    IntermediateThrowEventParser,
    SendTaskParser,
    StartEventParser,
)
from SpiffWorkflow.bpmn.parser.task_parsers import CallActivityParser
from SpiffWorkflow.bpmn.specs.defaults import (
    BoundaryEvent,
    EndEvent,
    IntermediateCatchEvent,
    IntermediateThrowEvent,
    ReceiveTask,
    SendTask,
    StartEvent,
)
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.parser.event_parsers import CamundaEventDefinitionParser
from SpiffWorkflow.camunda.parser.task_spec import CamundaTaskParser, UserTaskParser

from engine.bpmn.calls import CityCallActivity, Mapping
from engine.bpmn.specs import CityServiceTask, CityUserTask, PassThroughManualTask, PassThroughTask

__all__ = ["BPMN_NS", "CAMUNDA_NS", "HTML_FORM_PREFIXES", "SAME_BUSINESS_KEY", "CityParser", "CityServiceTaskParser",
           "CityUserTaskParser", "call_business_key", "call_mappings", "form_ref_of", "form_id_of_key",
           "message_payload", "split_groups", "unwrap_embedded"]

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
HTML_FORM_PREFIXES = ("embedded:", "app:", "deployment:")   # Camunda 7 HTML forms (deployment:x.html)
_FORM_KEY_PREFIXES = ("camunda-forms:deployment:", "camunda-forms:app:", "camunda-forms:")


def form_id_of_key(key: str | None) -> str | None:
    """The form-js form id a Camunda 7 `camunda:formKey` names, or None for an HTML form.

    `camunda-forms:deployment:inspect.form`, `camunda-forms:app:forms/inspect.form`,
    `deployment:inspect.form` and a plain `inspect` all name the form with id `inspect`:
    the file's last path segment without `.form`. Embedded or external HTML forms
    (`embedded:app:forms/x.html`, `app:x.html`) cannot be shown on a tablet: None."""
    text = (key or "").strip()
    if not text:
        return None
    for prefix in _FORM_KEY_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    else:
        if text.startswith("deployment:") and text.endswith(".form"):
            text = text[len("deployment:"):]
        elif text.startswith(HTML_FORM_PREFIXES) or text.endswith((".html", ".htm")):
            return None
    name = text.rsplit("/", 1)[-1]
    if name.endswith(".form"):
        name = name[:-len(".form")]
    return name or None


def form_ref_of(el) -> str | None:
    """The form id of a user task element: camunda:formRef, else its formKey mapped."""
    ref = el.get(f"{{{CAMUNDA_NS}}}formRef")
    if ref:
        return ref
    key = el.get(f"{{{CAMUNDA_NS}}}formKey")
    return form_id_of_key(key) if key else None


def unwrap_embedded(text: str) -> str:
    """`${expr}` -> `expr`; a literal -> its Python string literal."""
    text = text.strip()
    if text.startswith("${") and text.endswith("}"):
        return text[2:-1]
    return repr(text)


def _ext(el, name: str) -> list:
    return el.findall(f"{{{BPMN_NS}}}extensionElements/{{{CAMUNDA_NS}}}{name}")


SAME_BUSINESS_KEY = ("#{execution.processBusinessKey}", "${execution.processBusinessKey}")


def call_business_key(el) -> str | None:
    """The expression of a called process's own business key (`<camunda:in businessKey="${expr}"/>`),
    or None when it shares its caller's (no mapping, or the modeler's processBusinessKey)."""
    for m in _ext(el, "in"):
        key = m.get("businessKey")
        if key is not None and key.strip() not in SAME_BUSINESS_KEY:
            return unwrap_embedded(key)
    return None


def call_mappings(el, direction: str) -> tuple[Mapping, ...]:
    """The camunda:in (direction "in") or camunda:out mappings of a call activity element
    (a `businessKey` mapping is read by `call_business_key`)."""
    result = []
    for m in _ext(el, direction):
        if m.get("variables") == "all":
            result.append(Mapping(all=True))
        elif m.get("target"):
            expr = m.get("sourceExpression")
            result.append(Mapping(target=m.get("target"), source=m.get("source"),
                                  expression=unwrap_embedded(expr) if expr is not None else None))
    return tuple(result)


def message_payload(el) -> str:
    """The payload expression of a message thrown by `el` (a send task or throw event): a
    dict of its camunda:inputOutput input parameters, `{}` without any."""
    items = []
    for param in el.findall(f"{{{BPMN_NS}}}extensionElements/{{{CAMUNDA_NS}}}inputOutput/"
                            f"{{{CAMUNDA_NS}}}inputParameter"):
        value = unwrap_embedded(param.text) if param.text and param.text.strip() else "None"
        items.append(f"{param.get('name')!r}: ({value})")
    return "{" + ", ".join(items) + "}"


def split_groups(text: str | None) -> tuple[str, ...]:
    """Split a candidateGroups attribute on commas outside ${...} and quotes."""
    if not text:
        return ()
    items, buf, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    items.append("".join(buf).strip())
    return tuple(i for i in items if i)


class CityUserTaskParser(UserTaskParser):
    def create_task(self):
        return self.spec_class(
            self.spec, self.bpmn_id,
            form=self.get_form(),
            assignee=self.attribute("assignee", "camunda"),
            candidate_groups=split_groups(self.attribute("candidateGroups", "camunda")),
            candidate_users=split_groups(self.attribute("candidateUsers", "camunda")),
            due_date=self.attribute("dueDate", "camunda"),
            form_ref=form_ref_of(self.node),
            **self.bpmn_attributes,
        )


class CityServiceTaskParser(CamundaTaskParser):
    def create_task(self):
        return self.spec_class(
            self.spec, self.bpmn_id,
            topic=self.attribute("topic", "camunda"),
            params=self.parse_extensions(),
            **self.bpmn_attributes,
        )


class CityCallActivityParser(CallActivityParser):
    def create_task(self):
        return self.spec_class(self.spec, self.bpmn_id, subworkflow_spec=self.node.get("calledElement"),
                               in_mappings=call_mappings(self.node, "in"), out_mappings=call_mappings(self.node, "out"),
                               business_key=call_business_key(self.node),
                               **self.bpmn_attributes)


class _MessageParsing(CamundaEventDefinitionParser):
    """Message events as the Camunda parser reads them (one event-definition class for every
    message, so a thrown message matches a caught one), with the payload of a thrown message
    taken from the element's camunda:inputOutput input parameters (engine-evaluated)."""

    def parse_message_event(self, message_event):
        definition = super().parse_message_event(message_event)
        if definition.expression is None:
            definition.expression = message_payload(self.node)
        definition.result_var = definition.name     # it lands under the message name, as delivered ones do
        return definition


def _with_messages(base):
    """`base` (a library event or send/receive task parser) reading messages as _MessageParsing
    does; the library's parser mixins need create_task named on the concrete parser."""
    return type(f"City{base.__name__}", (_MessageParsing, base), {"create_task": base.create_task})


class CityParser(CamundaParser):
    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("userTask"): (CityUserTaskParser, CityUserTask),
        full_tag("serviceTask"): (CityServiceTaskParser, CityServiceTask),
        full_tag("callActivity"): (CityCallActivityParser, CityCallActivity),
        full_tag("startEvent"): (_with_messages(StartEventParser), StartEvent),
        full_tag("endEvent"): (_with_messages(EndEventParser), EndEvent),
        full_tag("intermediateCatchEvent"): (_with_messages(IntermediateCatchEventParser), IntermediateCatchEvent),
        full_tag("intermediateThrowEvent"): (_with_messages(IntermediateThrowEventParser), IntermediateThrowEvent),
        full_tag("boundaryEvent"): (_with_messages(BoundaryEventParser), BoundaryEvent),
        full_tag("sendTask"): (_with_messages(SendTaskParser), SendTask),
        full_tag("receiveTask"): (_with_messages(SendTaskParser), ReceiveTask),
        full_tag("task"): (CamundaTaskParser, PassThroughTask),
        full_tag("manualTask"): (CamundaTaskParser, PassThroughManualTask),
    }
