"""SpiffWorkflow parser configured for cityloop's Camunda 7 dialect."""
from __future__ import annotations

from SpiffWorkflow.bpmn.parser.BpmnParser import full_tag
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.parser.task_spec import CamundaTaskParser, UserTaskParser

from engine.bpmn.specs import CityServiceTask, CityUserTask

__all__ = ["CAMUNDA_NS", "CityParser", "CityServiceTaskParser", "CityUserTaskParser", "split_groups"]

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"


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
            due_date=self.attribute("dueDate", "camunda"),
            form_ref=self.attribute("formRef", "camunda"),
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


class CityParser(CamundaParser):
    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("userTask"): (CityUserTaskParser, CityUserTask),
        full_tag("serviceTask"): (CityServiceTaskParser, CityServiceTask),
    }
