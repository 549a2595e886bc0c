"""The registry of business operations that service tasks may name.

A BPMN service task `camunda:topic="dispatch"` runs the function registered here as
"dispatch"; nothing else is reachable from a process definition. An operation gets an
OpContext (database session, clock, instance, actor) and the task data, and returns a
dict of variables to set (or None). It runs inside the same transaction as the step that
reached it, so a rolled-back step leaves no effect, and `ctx.once(...)` keys anything
that must happen at most once per instance and task.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from sqlmodel import Session

from engine.clock import to_db
from engine.db.models import OperationEffect
from engine.runtime.audit import audit

__all__ = ["OpContext", "OperationError", "Registry", "drop_deferred", "run_deferred"]

Operation = Callable[["OpContext", Mapping[str, Any], Mapping[str, str]], "dict | None"]


class OperationError(Exception):
    """An operation refused to proceed; the step is rolled back and an incident recorded."""


@dataclass
class OpContext:
    session: Session
    now: datetime
    instance_id: int
    business_key: str | None
    process_key: str
    task_id: str
    element: str
    actor: str
    engine: Any  # the CaseEngine, for operations that start other processes

    def audit(self, kind: str, key: str | None = None, **detail) -> None:
        """An audit event of this step, under the step's business key or `key` (e.g. the number
        of the work order the operation changed, when the process runs under another key)."""
        audit(self.session, self.now, self.instance_id, key or self.business_key, self.actor, kind, self.element,
              detail)

    def later(self, name: str, write: Callable[[Session, list], None]) -> list:
        """A list to gather rows in over the many calls of one step (e.g. a batch of
        check-ins); write(session, rows) runs once when the step's workflow has run, before it
        is saved, in the same transaction. A step that fails drops them. An operation that
        must read them within the step calls run_deferred(ctx.session) first."""
        pending = self.session.info.setdefault(_DEFERRED, {})
        if name not in pending:
            pending[name] = (write, [])
        return pending[name][1]

    def once(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run fn at most once for this instance + task + name; return its stored result."""
        key = f"{self.instance_id}:{self.task_id}:{name}"[:200]
        done = self.session.get(OperationEffect, key)
        if done is not None:
            return json.loads(done.result)
        result = fn()
        self.session.add(OperationEffect(key=key, topic=name[:64], result=json.dumps(result, default=str),
                                         at=to_db(self.now)))
        return result


_DEFERRED = "deferred_writes"


def run_deferred(s: Session) -> None:
    """Write what operations gathered during this step (OpContext.later), in order."""
    for write, rows in s.info.pop(_DEFERRED, {}).values():
        if rows:
            write(s, rows)


def drop_deferred(s: Session) -> None:
    """A step failed: what its operations gathered goes with it."""
    s.info.pop(_DEFERRED, None)


class Registry:
    def __init__(self):
        self._ops: dict[str, Operation] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str) -> Callable[[Operation], Operation]:
        def deco(fn: Operation) -> Operation:
            if name in self._ops:
                raise ValueError(f"operation {name!r} registered twice")
            self._ops[name] = fn
            self._docs[name] = (fn.__doc__ or "").strip().split("\n")[0]
            return fn
        return deco

    def __contains__(self, name: str) -> bool:
        return name in self._ops

    def names(self) -> list[str]:
        return sorted(self._ops)

    def describe(self) -> dict[str, str]:
        return {n: self._docs[n] for n in self.names()}

    def get(self, name: str) -> Operation:
        return self._ops[name]
