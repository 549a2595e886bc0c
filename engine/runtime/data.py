"""Checks on data entering a process from outside (start variables, forms, messages).

Task data is stored through SpiffWorkflow's registry, which turns any dict carrying a
"typename" key back into an object; untrusted input must never carry one. Values are
plain JSON: no objects, bounded size and depth."""
from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["DataError", "MAX_BYTES", "MAX_DEPTH", "check_plain"]

MAX_BYTES = 256 * 1024
MAX_DEPTH = 16
_RESERVED = {"typename"}


class DataError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def check_plain(value: Any, what: str = "data") -> dict:
    if not isinstance(value, dict):
        raise DataError(what, "must be an object of named values")
    _walk(value, what, 0)
    size = len(json.dumps(value, ensure_ascii=False, allow_nan=False))
    if size > MAX_BYTES:
        raise DataError(what, f"is {size} bytes; the limit is {MAX_BYTES}")
    return value


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise DataError(path, f"nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(path, "numbers must be finite")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise DataError(path, "keys must be strings")
            if k in _RESERVED or k.startswith("__"):
                raise DataError(f"{path}.{k}", "this name is reserved")
            _walk(v, f"{path}.{k}", depth + 1)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, f"{path}[{i}]", depth + 1)
        return
    raise DataError(path, f"values of type {type(value).__name__} are not allowed")
