"""Call activities with Camunda 7's variable mappings.

SpiffWorkflow's call activity copies all of the caller's data into the called process and
all of the child's data back. Camunda 7, whose modeler designers use, passes only what the
call activity declares: ``<camunda:in source="a" target="b"/>``, ``sourceExpression``,
``variables="all"``, and the same with ``camunda:out``. cityloop follows Camunda, so a called
process sees what its caller gives it and the caller gets back what it asks for. Mapping
expressions run through the allow-list evaluator (the script engine), like every other.
"""
from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.defaults import CallActivity

__all__ = ["BUSINESS_KEY", "Mapping", "CityCallActivity", "business_key_of", "mapped"]

BUSINESS_KEY = "cityloop:business_key"   # a called process's own business key, in its workflow's data


@dataclass(frozen=True)
class Mapping:
    """One camunda:in or camunda:out: copy `source` (a variable name) or the value of
    `expression` to `target`; `all` copies every variable."""
    target: str | None = None
    source: str | None = None
    expression: str | None = None
    all: bool = False


def mapped(mappings: tuple[Mapping, ...], task, data: dict) -> dict:
    """The variables `mappings` give from `data` (the data of `task`, for expressions)."""
    out: dict = {}
    for m in mappings:
        if m.all:
            out.update(deepcopy(data))
        elif m.target is None:
            continue
        elif m.expression is not None:
            out[m.target] = deepcopy(task.workflow.script_engine.evaluate(task, m.expression))
        else:
            out[m.target] = deepcopy(data.get(m.source))
    return out


class CityCallActivity(CallActivity):
    """A call activity of a deployed process, pinned at deploy (engine.runtime.definitions);
    `called` is the called process id, `in_mappings`/`out_mappings` its Camunda mappings."""

    def __init__(self, wf_spec, bpmn_id, subworkflow_spec, in_mappings=(), out_mappings=(), business_key=None,
                 **kwargs):
        super().__init__(wf_spec, bpmn_id, subworkflow_spec, **kwargs)
        self.in_mappings = tuple(in_mappings)
        self.out_mappings = tuple(out_mappings)
        self.business_key = business_key     # expression of the child's own business key, or None

    def copy_data(self, my_task, subworkflow):
        start = subworkflow.get_next_task(subworkflow.task_tree, skip_subprocesses=True, spec_name="Start")
        start.set_data(**mapped(self.in_mappings, my_task, my_task.data))
        if self.business_key is not None:
            key = my_task.workflow.script_engine.evaluate(my_task, self.business_key)
            if not isinstance(key, (str, int)) or isinstance(key, bool) or not str(key).strip():
                raise WorkflowTaskException(f"business key {self.business_key!r} gave {key!r}; it must be a "
                                            "non-empty text or number", task=my_task)
            subworkflow.data[BUSINESS_KEY] = str(key)[:128]

    def update_data(self, my_task, subworkflow):
        last = subworkflow.last_task
        result = mapped(self.out_mappings, last, dict(last.data) if last is not None else {})
        my_task.data.update(result)


def business_key_of(task, default: str | None) -> str | None:
    """The business key `task` works under: that of the nearest called process given its own
    (`<camunda:in businessKey="${expr}"/>`, as Camunda 7 starts a called instance with it),
    else the instance's (`default`)."""
    workflow = task.workflow
    while workflow is not None and workflow is not workflow.top_workflow:
        key = workflow.data.get(BUSINESS_KEY)
        if key is not None:
            return key
        workflow = workflow.parent_workflow
    return default
