"""What the engine tells its callers: who acts, and the ways a request can fail."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    """A person, device or the system acting on the engine; `groups` as in the BPMN files."""
    id: str
    groups: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        object.__setattr__(self, "groups", frozenset(self.groups))


class EngineError(Exception):
    code = "error"


class NotFound(EngineError):
    code = "not_found"


class Forbidden(EngineError):
    code = "forbidden"


class Conflict(EngineError):
    """Someone else changed the instance or task first; nothing was applied."""
    code = "conflict"


class ValidationFailed(EngineError):
    code = "invalid"

    def __init__(self, errors: dict):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v.get('message', v) if isinstance(v, dict) else v}"
                                   for k, v in errors.items()))


class ProcessError(EngineError):
    """The process itself could not go on (a failing expression, operation or model)."""
    code = "process_error"

    def __init__(self, message: str, element: str | None = None):
        self.element = element
        super().__init__(f"{element}: {message}" if element else message)


class TooManyRequests(EngineError):
    """Someone sent more than their share (429); `retry_after` seconds until they may again."""
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)
