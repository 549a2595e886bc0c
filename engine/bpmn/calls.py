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

from SpiffWorkflow.bpmn.specs.defaults import CallActivity

__all__ = ["Mapping", "CityCallActivity", "mapped"]


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

    def __init__(self, wf_spec, bpmn_id, subworkflow_spec, in_mappings=(), out_mappings=(), **kwargs):
        super().__init__(wf_spec, bpmn_id, subworkflow_spec, **kwargs)
        self.in_mappings = tuple(in_mappings)
        self.out_mappings = tuple(out_mappings)

    def copy_data(self, my_task, subworkflow):
        start = subworkflow.get_next_task(subworkflow.task_tree, skip_subprocesses=True, spec_name="Start")
        start.set_data(**mapped(self.in_mappings, my_task, my_task.data))

    def update_data(self, my_task, subworkflow):
        last = subworkflow.last_task
        result = mapped(self.out_mappings, last, dict(last.data) if last is not None else {})
        my_task.data.update(result)
