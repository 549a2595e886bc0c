"""Every operation a process may name, in one registry."""
from __future__ import annotations

from engine.domain import attendance, gas, workorders
from engine.runtime.operations import Registry

__all__ = ["build_registry"]


def build_registry() -> Registry:
    reg = Registry()
    for module in (workorders, gas, attendance):
        module.register(reg)
    return reg
