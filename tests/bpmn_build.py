"""Small BPMN files for tests, written as a designer's modeler would save them (without the
diagram layout, which the engine does not read)."""
from __future__ import annotations

__all__ = ["definitions", "process", "flows"]

_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
         '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
         'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
         'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="Definitions_1" '
         'targetNamespace="http://bpmn.io/schema/bpmn">\n')


def definitions(*parts: str) -> str:
    """A BPMN file holding `parts` (processes, messages, errors, a collaboration...)."""
    return _HEAD + "\n".join(parts) + "\n</bpmn:definitions>\n"


def flows(*chain: str, prefix: str = "f") -> str:
    """Sequence flows joining the element ids of `chain` in order."""
    return "\n".join(f'<bpmn:sequenceFlow id="{prefix}_{a}_{b}" sourceRef="{a}" targetRef="{b}"/>'
                     for a, b in zip(chain, chain[1:]))


def process(pid: str, body: str, executable: bool = True) -> str:
    return (f'<bpmn:process id="{pid}" isExecutable="{"true" if executable else "false"}">\n'
            f'{body}\n</bpmn:process>')
