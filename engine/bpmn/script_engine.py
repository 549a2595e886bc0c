"""The only script engine cityloop lets SpiffWorkflow use.

SpiffWorkflow's default engine runs conditions, timer texts and scripts through Python
eval/exec. This one evaluates expressions with the allow-list evaluator, refuses scripts
outright, and routes service tasks to the operation registry. A deserialized workflow
comes back with the library default, so the runtime sets this engine on every load.
"""
from __future__ import annotations

from collections import ChainMap
from datetime import datetime
from typing import Any, Callable

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine

from engine.bpmn import expressions

__all__ = ["SafeScriptEngine", "ScriptsDisabled"]


class ScriptsDisabled(WorkflowTaskException):
    pass


class SafeScriptEngine(PythonScriptEngine):
    def __init__(self, clock: Callable[[], datetime], call_operation: Callable[..., Any] | None = None):
        # Deliberately no TaskDataEnvironment: nothing here may reach eval/exec.
        self.environment = None
        self._clock = clock
        self._call_operation = call_operation

    def now(self) -> datetime:
        return self._clock()

    def validate(self, expression):
        expressions.check(expression)

    def evaluate(self, task, expression, external_context=None):
        names = ChainMap(external_context, task.data) if external_context else task.data
        try:
            return expressions.evaluate(expression, names)
        except expressions.ExpressionError as exc:
            raise WorkflowTaskException(f"expression {expression!r}: {exc}", task=task, exception=exc) from None

    def execute(self, task, script, external_context=None):
        raise ScriptsDisabled("scripts are disabled in cityloop; use a service task", task=task)

    def call_service(self, task, **kwargs):
        raise ScriptsDisabled("service calls go through registered operations only", task=task)

    def call_operation(self, task, topic: str, params: dict) -> Any:
        if self._call_operation is None:
            raise WorkflowTaskException(f"no operation runner for {topic!r}", task=task)
        return self._call_operation(task, topic, params)
