"""Allow-list evaluator for expressions written by (untrusted) process designers.

Gateway conditions, timer texts, DMN cells and assignee/group/due-date expressions would
normally go to Python ``eval``; here they never do. The text is parsed with ``ast.parse``
and each node kind on an explicit allow-list becomes a small closure ``f(names)``, so
evaluating is just calling closures. Nothing is compiled to code, no builtins or modules
are reachable and there is no attribute access, so objects in scope cannot be introspected.
Operations that could allocate a lot (big ints, ``**``, sequence ``*`` and ``+``, ``int()``
of long strings) check their operands *before* computing. See workflows/README.md.
"""
from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ExpressionError", "ExpressionSyntaxError", "MAX_LENGTH", "unwrap", "check", "evaluate", "free_names",
           "is_constant", "result_type"]

from engine.bpmn.expr_ops import (  # noqa: F401  (errors and limits are re-exported)
    BINARY,
    COMPARE,
    FUNCTIONS,
    MAX_LENGTH,
    MAX_NODES,
    NOT_COUNTED,
    NUMBER,
    SUBSCRIPTABLE,
    Evaluator,
    ExpressionError,
    ExpressionSyntaxError,
    unsupported,
)


def unwrap(text: str) -> str:
    """Strip whitespace and a Camunda-style ``${ ... }`` wrapper if it spans the whole text."""
    s = text.strip()
    if not (s.startswith("${") and s.endswith("}")):
        return s
    depth, quote, i = 0, "", 1           # find the brace closing s[1], skipping string literals
    while i < len(s):
        c = s[i]
        if quote:
            i += c == "\\"               # skip the escaped character
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "{}":
            depth += 1 if c == "{" else -1
            if depth == 0:
                return s[2:-1].strip() if i == len(s) - 1 else s   # "${a} + ${b}" stays as is
        i += 1
    return s


def _snippet(node: ast.AST) -> str:
    s = ast.unparse(node)
    return s if len(s) <= 60 else s[:57] + "..."


# --------------------------------------------------------------------------- compiler

_REFUSED: dict[type, str] = {
    ast.Attribute: "attribute access is not allowed", ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed", ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed", ast.GeneratorExp: "generator expressions are not allowed",
    ast.JoinedStr: "f-strings are not allowed", ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions (*x) are not allowed", ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed", ast.YieldFrom: "yield is not allowed",
    ast.Slice: "a slice is only allowed directly inside [...]",
}


def _build(node: ast.AST) -> Evaluator:
    """Turn one allowed AST node into a closure ``f(names) -> value``; refuse anything else."""
    match node:
        case ast.Constant(value=value):
            if value is not None and type(value) not in (bool, int, float, str):
                raise ExpressionError(f"{type(value).__name__} literals are not allowed: {_snippet(node)}")
            return lambda names: value
        case ast.Name(id=ident):
            return _name(ident)
        case ast.List(elts=elts):
            items = [_build(e) for e in elts]
            return lambda names: [f(names) for f in items]
        case ast.Tuple(elts=elts):
            items = [_build(e) for e in elts]
            return lambda names: tuple([f(names) for f in items])
        case ast.Set(elts=elts):
            items = [_build(e) for e in elts]
            return lambda names: {f(names) for f in items}
        case ast.Dict(keys=keys, values=values):
            if any(k is None for k in keys):
                raise ExpressionError(f"dict unpacking (**) is not allowed: {_snippet(node)}")
            pairs = [(_build(k), _build(v)) for k, v in zip(keys, values)]  # type: ignore[arg-type]
            return lambda names: {k(names): v(names) for k, v in pairs}
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            inner = _build(operand)
            return lambda names: not inner(names)
        case ast.UnaryOp(op=ast.USub() | ast.UAdd() as op, operand=operand):
            return _sign(_build(operand), isinstance(op, ast.USub))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in BINARY:
            fn, lhs, rhs = BINARY[type(op)], _build(left), _build(right)
            return lambda names: fn(lhs(names), rhs(names))
        case ast.UnaryOp() | ast.BinOp():
            raise ExpressionError(f"operator is not allowed: {_snippet(node)}")
        case ast.BoolOp(op=op, values=values):       # a and b and c == a and (b and c)
            pair = _and if isinstance(op, ast.And) else _or
            return functools.reduce(lambda rest, f: pair(f, rest), reversed([_build(v) for v in values]))
        case ast.Compare():
            return _compare(node)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            t, b, o = _build(test), _build(body), _build(orelse)
            return lambda names: b(names) if t(names) else o(names)
        case ast.Subscript(value=value, slice=ast.Slice() as sl):       # x[1:3] == x[slice(1, 3)]
            bounds = [(lambda names: None) if b is None else _build(b) for b in (sl.lower, sl.upper, sl.step)]
            return _item(_build(value), lambda names: slice(*[b(names) for b in bounds]))
        case ast.Subscript(value=value, slice=key):
            return _item(_build(value), _build(key))
        case ast.Call():
            return _call(node)
    what = _REFUSED.get(type(node), f"{type(node).__name__} is not allowed")
    raise ExpressionError(f"{what}: {_snippet(node)}")


def _name(ident: str) -> Evaluator:
    if ident.startswith("_"):
        raise ExpressionError(f"names starting with '_' are not allowed: {ident}")

    def lookup(names: Mapping[str, Any]) -> Any:
        try:
            return names[ident]
        except KeyError:
            raise ExpressionError(f"unknown variable {ident!r}") from None
    return lookup


def _sign(operand: Evaluator, negate: bool) -> Evaluator:
    def apply(names: Mapping[str, Any]) -> Any:
        v = operand(names)
        if not isinstance(v, NUMBER):
            raise unsupported("-" if negate else "+", v)
        return -v if negate else +v
    return apply


def _and(a: Evaluator, b: Evaluator) -> Evaluator:
    return lambda names: a(names) and b(names)


def _or(a: Evaluator, b: Evaluator) -> Evaluator:
    return lambda names: a(names) or b(names)


def _compare(node: ast.Compare) -> Evaluator:
    ops: list[tuple[Callable[[Any, Any], Any], Evaluator]] = []
    for op, right in zip(node.ops, node.comparators):
        if isinstance(op, (ast.Is, ast.IsNot)) and not (isinstance(right, ast.Constant) and right.value is None):
            raise ExpressionError(f"'is' may only be used as 'is None' / 'is not None': {_snippet(node)}")
        ops.append((COMPARE[type(op)], _build(right)))
    first = _build(node.left)
    if len(ops) == 1:
        fn, right_fn = ops[0]
        if isinstance(node.comparators[0], ast.Constant):    # fast path: decision == "reject"
            const = node.comparators[0].value
            return lambda names: fn(first(names), const)
        return lambda names: fn(first(names), right_fn(names))

    def chain(names: Mapping[str, Any]) -> Any:          # a < b < c evaluates b once
        left = first(names)
        for fn, right_fn in ops:
            right = right_fn(names)
            result = fn(left, right)
            if not result:
                return result
            left = right
        return result
    return chain


def _item(value: Evaluator, key_fn: Evaluator) -> Evaluator:
    def get(names: Mapping[str, Any]) -> Any:
        v, key = value(names), key_fn(names)
        if not isinstance(v, SUBSCRIPTABLE):
            raise ExpressionError("subscripts are only allowed on dict, list, tuple and str values, "
                                  f"not {type(v).__name__}")
        if isinstance(v, dict) and isinstance(key, slice):
            raise ExpressionError("a dict cannot be sliced")
        try:
            return v[key]
        except KeyError:
            raise ExpressionError(f"key {key!r:.40} not found") from None
        except IndexError:
            raise ExpressionError(f"index {key!r:.40} out of range") from None
    return get


def _call(node: ast.Call) -> Evaluator:
    func, allowed = node.func, ", ".join(FUNCTIONS)
    if isinstance(func, ast.Attribute):
        raise ExpressionError(f"attribute access is not allowed: {_snippet(func)}")
    if not isinstance(func, ast.Name):
        raise ExpressionError(f"only these functions may be called, by name: {allowed}; not {_snippet(func)}")
    if func.id not in FUNCTIONS:
        raise ExpressionError(f"calling {func.id!r} is not allowed (allowed functions: {allowed})")
    if node.keywords:
        raise ExpressionError(f"keyword arguments are not allowed: {_snippet(node)}")
    impl, low, high = FUNCTIONS[func.id]
    if not low <= len(node.args) <= high:
        raise ExpressionError(f"{func.id}() takes {low} to {high} arguments: {_snippet(node)}")
    args = [_build(a) for a in node.args]                # refuses *args (Starred)
    if len(args) == 1:
        only = args[0]
        return lambda names: impl(only(names))
    return lambda names: impl(*[a(names) for a in args])


# --------------------------------------------------------------------------- public API

def _parse(text: str) -> ast.expr:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is too long ({len(text)} characters, limit {MAX_LENGTH})")
    source = unwrap(text)
    if not source:
        raise ExpressionSyntaxError("expression is empty")
    try:
        body = ast.parse(source, mode="eval").body
    except SyntaxError as e:
        raise ExpressionSyntaxError(f"invalid syntax: {e.msg} (column {e.offset}) in {source[:60]!r}") from None
    except ValueError as e:                              # null bytes, lone surrogates
        raise ExpressionSyntaxError(f"invalid expression text: {e}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression is too deeply nested") from None
    count = 0
    for node in ast.walk(body):                          # iterative, so safe on deep trees
        count += not isinstance(node, NOT_COUNTED)
        if count > MAX_NODES:
            raise ExpressionError(f"expression is too complex (more than {MAX_NODES} nodes)")
    return body


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> tuple[Evaluator, frozenset[str]]:
    body = _parse(text)
    evaluator = _build(body)                             # the node limit bounds this recursion
    called = {id(n.func) for n in ast.walk(body) if isinstance(n, ast.Call)}
    read = frozenset(n.id for n in ast.walk(body) if isinstance(n, ast.Name) and id(n) not in called)
    return evaluator, read


# What a call or node gives whatever its operands (None: it depends on the values).
_CALL_TYPES: dict[str, type] = {"len": int, "str": str, "int": int, "float": float, "bool": bool,
                                "lower": str, "upper": str, "strip": str}
_NODE_TYPES: dict[type, type] = {ast.Compare: bool, ast.List: list, ast.Tuple: tuple, ast.Dict: dict,
                                 ast.Set: set}


def _type_of(node: ast.expr) -> type | None:
    match node:
        case ast.Constant(value=value):
            return type(value)
        case ast.UnaryOp(op=ast.Not()):
            return bool
        case ast.Call(func=ast.Name(id=name)):
            return _CALL_TYPES.get(name)
        case ast.IfExp(body=body, orelse=orelse):
            kind = _type_of(body)
            return kind if kind is not None and kind is _type_of(orelse) else None
    return _NODE_TYPES.get(type(node))


def _get(text: str) -> tuple[Evaluator, frozenset[str]]:
    if not isinstance(text, str):                        # also keeps unhashables out of the cache
        raise ExpressionError(f"expression must be a string, not {type(text).__name__}")
    return _compiled(text)


def check(text: str) -> None:
    """Deploy-time check: raise ExpressionError/ExpressionSyntaxError if `text` is not allowed."""
    _get(text)


def free_names(text: str) -> set[str]:
    """The variable names `text` reads (called function names excluded); raises like check()."""
    return set(_get(text)[1])


def is_constant(text: str) -> bool:
    """True if `text` reads no variables, so it gives the same value (or error) every time."""
    return not _get(text)[1]


def result_type(text: str) -> type | None:
    """The type `text` always gives when it succeeds (a comparison gives bool, a string
    literal str...), or None when that depends on the values; raises like check()."""
    _get(text)
    return _type_of(_parse(text))


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """Evaluate `text` with variables from `names`; every failure is an ExpressionError. A
    value holding an infinite or NaN number (``1e308 * 10``, ``float("nan")``) is one: values
    become task data, which is JSON, where such numbers do not exist."""
    evaluator = _get(text)[0]
    try:
        value = evaluator(names)
        if not _finite(value):
            raise ExpressionError("the value holds a number that is not finite (infinity or NaN)")
        return value
    except ExpressionError:
        raise
    except ZeroDivisionError:
        raise ExpressionError("division by zero") from None
    except (ArithmeticError, ValueError, TypeError, LookupError) as e:   # e.g. 1 < "a", float("x")
        raise ExpressionError(str(e) or type(e).__name__) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression evaluation exceeded resource limits") from None


def _finite(value: Any) -> bool:
    """No float in `value` (or in the lists, tuples, sets and dict values inside it) is
    infinite or NaN."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(map(_finite, value))
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    return True
