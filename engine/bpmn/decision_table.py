"""A DMN decision table as plain JSON, and its evaluation without SpiffWorkflow: the tablet
classifies a gas hazard offline exactly as the server's business rule task will.

Pure: the standard library and cityloop's allow-list expression evaluator only (never
eval), so the field app may import it.

`evaluate` mirrors SpiffWorkflow's DMNEngine (SpiffWorkflow/dmn/engine/DMNEngine.py) run
with cityloop's SafeScriptEngine, step for step:

- an input entry "-" (or an empty one) matches anything;
- an entry with a `?` outside quotes is evaluated with `?` standing for the input's value
  (`4 < ? < 6`);
- an entry that parses on its own (`"leak"`, `True`, `3`, `"a", "b"`) is compared for
  equality: `(input) == (entry)` (so a comma list is a tuple, equal to no plain value, as
  on the server);
- an entry that does not (`< 3`, `!= "working"`) is appended to the input expression:
  `input + entry`;
- an input without an expression reads the data item named by its label;
- hit policy UNIQUE stops at the first matching rule; any other evaluates every rule and,
  but for COLLECT (a list per output), takes the first match's outputs;
- outputs are expressions over the data; an empty one is "", a dotted name nests.

Differences from the server cannot hide: tests/test_decision_table.py compares both on every
combination of the gas form's choices."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import ChainMap
from typing import Any, Mapping

from engine.bpmn import expressions

__all__ = ["DecisionError", "evaluate", "table_of"]

_QMARK = re.compile(r'(\?)(?=(?:[^\'"]|[\'"][^\'"]*[\'"])*$)')   # SpiffWorkflow's: a ? outside quotes
_INPUT = "dmninputexpr"
MAX_XML = 2 * 1024 * 1024


class DecisionError(ValueError):
    """The table cannot be read, or a rule cannot be evaluated with this data (the server's
    business rule task would fail too)."""


# ---- reading ---------------------------------------------------------------------------------------
def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el, name: str) -> list:
    return [c for c in el if _local(c.tag) == name]


def _text(el) -> str | None:
    found = _children(el, "text")
    return found[0].text if found else None


def _root(source: Any):
    if isinstance(source, str):
        source = source.encode()
    if isinstance(source, (bytes, bytearray)):
        if len(source) > MAX_XML:
            raise DecisionError(f"the decision is {len(source)} bytes; the limit is {MAX_XML}")
        if b"<!DOCTYPE" in source or b"<!ENTITY" in source:
            raise DecisionError("a decision may not declare a DOCTYPE or entities")
        try:
            return ET.fromstring(bytes(source))
        except ET.ParseError as exc:
            raise DecisionError(f"the decision is not well-formed XML: {exc}") from None
    if hasattr(source, "tag") and hasattr(source, "iter"):     # an ElementTree or lxml element
        return source
    raise DecisionError("give the DMN as XML bytes or text, or a parsed element")


def table_of(source: Any) -> dict:
    """The (first) decision table of a DMN document, as JSON-able data:
    {"decision": id, "name", "hit_policy", "inputs": [{"id", "label", "expression"}],
    "outputs": [{"id", "label", "name"}], "rules": [{"id", "row", "inputs": [entry text or None
    for "-"], "outputs": [expression text]}]}."""
    root = _root(source)
    decisions = [el for el in root.iter() if _local(el.tag) == "decision"]
    if len(decisions) != 1:
        raise DecisionError(f"a DMN document must hold exactly one decision (found {len(decisions)})")
    decision = decisions[0]
    tables = _children(decision, "decisionTable")
    if not tables:
        raise DecisionError(f"decision {decision.get('id')!r} has no decision table")
    table = tables[0]
    inputs: list[dict] = []
    outputs: list[dict] = []
    rules: list[dict] = []
    for el in table:
        kind = _local(el.tag)
        if kind == "input":
            expr = _children(el, "inputExpression")
            inputs.append({"id": el.get("id"), "label": el.get("label", ""),
                           "expression": _text(expr[-1]) if expr else None})
        elif kind == "output":
            outputs.append({"id": el.get("id"), "label": el.get("label", ""), "name": el.get("name", "")})
        elif kind == "rule":
            rules.append(_rule(el, len(rules) + 1, inputs, outputs))
        else:
            raise DecisionError(f"unknown element in decision table: {kind!r}")
    return {"decision": decision.get("id"), "name": decision.get("name", ""),
            "hit_policy": table.get("hitPolicy", "UNIQUE").upper(), "inputs": inputs, "outputs": outputs,
            "rules": rules}


def _rule(el, row: int, inputs: list, outputs: list) -> dict:
    ins: list[str | None] = []
    outs: list[str] = []
    for child in el:
        kind = _local(child.tag)
        if kind == "inputEntry":
            if len(ins) >= len(inputs):
                raise DecisionError(f"rule {row} has more input entries than the table has inputs")
            text = _text(child)
            ins.append(None if text == "-" else text)
        elif kind == "outputEntry":
            if len(outs) >= len(outputs):
                raise DecisionError(f"rule {row} has more output entries than the table has outputs")
            outs.append(_text(child) or "")
    return {"id": el.get("id"), "row": row, "inputs": ins, "outputs": outs}


# ---- evaluating ------------------------------------------------------------------------------------
def evaluate(table: Mapping[str, Any], data: Mapping[str, Any]) -> dict | None:
    """The decision's outputs for `data` (e.g. {"hazard_level": "severe", "hazard_reason":
    "..."}), as the server's business rule task gives them; None when no rule matches (the
    server then adds nothing). DecisionError if a rule cannot be evaluated with this data
    (e.g. an input is missing): the server's step would fail the same way."""
    unique = table["hit_policy"] == "UNIQUE"
    matched = []
    for rule in table["rules"]:
        if _matches(table, rule, data):
            matched.append(rule)
            if unique:
                break
    if not matched:
        return None
    if table["hit_policy"] == "COLLECT":
        collected: dict[str, list] = {}
        for rule in matched:
            for key, value in _outputs(table, rule, data).items():
                collected.setdefault(key, []).append(value)
        return collected
    return _outputs(table, matched[0], data)


def _matches(table: Mapping, rule: Mapping, data: Mapping[str, Any]) -> bool:
    for column, entry in zip(table["inputs"], rule["inputs"]):
        if entry is None:
            continue
        try:
            if not _test(_input_text(column, data), entry, data):
                return False
        except expressions.ExpressionError as exc:
            raise DecisionError(f"rule {rule['row']}: {exc}") from None
    return True


def _input_text(column: Mapping, data: Mapping[str, Any]) -> str:
    if column["expression"]:
        return column["expression"]
    try:                              # (SpiffWorkflow's fallback: the value of the item named by the label)
        return repr(data[column["label"]])
    except KeyError:
        raise DecisionError(f"input {column['label']!r} has no expression and the data has no such item") from None


def _test(input_text: str, entry: str, data: Mapping[str, Any]) -> Any:
    match = _QMARK.sub(_INPUT, entry)
    if _INPUT in match:
        value = expressions.evaluate(input_text, data)
        return expressions.evaluate(match, ChainMap({_INPUT: value}, data))
    expressions.check(input_text)
    try:
        expressions.check(match)
        needs_eq = True
    except SyntaxError:               # (ExpressionSyntaxError is one; other refusals propagate, as there)
        expressions.check(f"v {match}")
        needs_eq = False
    expr = f"({input_text}) == ({match})" if needs_eq else input_text + match
    return expressions.evaluate(expr, data)


def _outputs(table: Mapping, rule: Mapping, data: Mapping[str, Any]) -> dict:
    out: dict[str, Any] = {}
    for column, text in zip(table["outputs"], rule["outputs"]):
        key = column["name"] or column["label"]
        try:
            value = expressions.evaluate(text, data) if text else ""
        except expressions.ExpressionError as exc:
            raise DecisionError(f"rule {rule['row']}, output {key!r}: {exc}") from None
        if "." in key:
            parts = key.split(".")
            for part in reversed(parts[1:]):
                value = {part: value}
            out[parts[0]] = _merge(out.get(parts[0], {}), value)
        else:
            out[key] = value
    return out


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        merged = dict(a)
        for k, v in b.items():
            merged[k] = _merge(merged[k], v) if k in merged else v
        return merged
    return b
