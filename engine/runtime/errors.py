"""What the engine tells its callers: who acts, and the ways a request can fail.

Two families, and nothing else is expected:
- `ClientError`: the caller's mistake or a race the caller lost (bad input, not found, not
  allowed, someone else was first, too many requests). Each carries the HTTP status a
  route answers with; its message is meant for the caller.
- `ProcessError`: a deployed process could not go on (a failing expression, operation or
  model). It is the server's problem, not the caller's: the engine parks the instance as an
  incident (engine.runtime.incidents) and its text is for administrators, never echoed to
  the public.
Any other exception is a bug: the HTTP layer logs it and answers 500."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Actor", "EngineError", "ClientError", "BadRequest", "NotFound", "Forbidden", "Conflict",
           "VersionConflict", "TaskTaken", "TaskGone", "ValidationFailed", "TooManyRequests", "ProcessError"]


@dataclass(frozen=True)
class Actor:
    """A person, device or the system acting on the engine; `groups` as in the BPMN files."""
    id: str
    groups: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        object.__setattr__(self, "groups", frozenset(self.groups))


class EngineError(Exception):
    code = "error"


class ClientError(EngineError):
    """The caller's mistake (or a race it lost): answered with `status`, the message shown."""
    code = "bad_request"
    status = 400


class BadRequest(ClientError):
    """A request the server cannot take as it is (400)."""


class NotFound(ClientError):
    code = "not_found"
    status = 404


class Forbidden(ClientError):
    code = "forbidden"
    status = 403


class Conflict(ClientError):
    """Someone else changed the instance or task first; nothing was applied."""
    code = "conflict"
    status = 409
    reason = "conflict"      # what kind of conflict, for those who keep or sort them (sync)


class VersionConflict(Conflict):
    """The instance moved on past the version the caller based its change on."""
    reason = "version"


class TaskTaken(Conflict):
    """The task is claimed by (or assigned to) someone else now."""
    reason = "reassigned"


class TaskGone(Conflict):
    """The task is no longer open: completed, cancelled or never there."""
    reason = "gone"


class ValidationFailed(ClientError):
    code = "invalid"
    status = 422

    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v.get('message', v) if isinstance(v, dict) else v}"
                                   for k, v in errors.items()))


class TooManyRequests(ClientError):
    """Someone sent more than their share (429); `retry_after` seconds until they may again."""
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)


class ProcessError(EngineError):
    """The process itself could not go on (a failing expression, operation or model). Not a
    client error: see the module's docstring. `incident`: the id of the incident recorded
    for it, when the caller's submission was kept."""
    code = "process_error"

    def __init__(self, message: str, element: str | None = None):
        self.element = element
        self.detail = message
        self.incident: int | None = None
        super().__init__(f"{element}: {message}" if element else message)
