"""Checked operations and the few functions expressions may call (see expressions.py).

Each checks its operands before computing, so nothing an expression does can allocate
without bound or reach anything but plain values."""
from __future__ import annotations

import ast
import datetime
import operator
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["BINARY", "COMPARE", "CONTAINER", "Evaluator", "ExpressionError", "ExpressionSyntaxError", "FUNCTIONS",
           "MAX_EXPONENT", "MAX_INT_BITS", "MAX_LENGTH", "MAX_NODES", "MAX_ROUND_DIGITS", "MAX_SEQ_LEN",
           "MAX_STR_DIGITS", "NOT_COUNTED", "NUMBER", "SCALAR", "SEQUENCE", "SUBSCRIPTABLE", "unsupported"]

MAX_LENGTH = 2000           # characters of expression text
MAX_NODES = 200             # AST nodes (operator and load-context nodes not counted)
MAX_INT_BITS = 14_000       # ~4200 decimal digits: under CPython's 4300-digit str<->int limit
MAX_EXPONENT = 64           # largest exponent for **
MAX_SEQ_LEN = 100_000       # elements/characters that sequence + and * may produce
MAX_STR_DIGITS = 4300       # longest string int()/float() will convert
MAX_ROUND_DIGITS = 100      # |ndigits| of round(); round(1, -10**9) would build 10**10**9


class ExpressionError(Exception):
    """An expression is not allowed, is too big, or failed while being evaluated."""


class ExpressionSyntaxError(ExpressionError, SyntaxError):
    """The text does not parse. Also a SyntaxError: SpiffWorkflow's DMN engine relies on that."""


Evaluator = Callable[[Mapping[str, Any]], Any]

NUMBER = (int, float)                                  # bool is an int; complex is refused
SEQUENCE = (str, list, tuple)                          # what + and * may build
CONTAINER = (str, list, tuple, dict, set, frozenset)   # what len(), min(), max(), in accept
SUBSCRIPTABLE = (dict, list, tuple, str)
SCALAR = (str, int, float, type(None), datetime.date, datetime.time, datetime.timedelta)
NOT_COUNTED = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)


# --------------------------------------------------------------------------- checked operations

def unsupported(op: str, *values: Any) -> ExpressionError:
    kinds = " and ".join(type(v).__name__ for v in values)
    return ExpressionError(f"operator {op!r} is not supported for {kinds}")


def _int_ok(v: Any) -> None:
    if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
        raise ExpressionError("integer is too large")


def _numbers(op: str, a: Any, b: Any) -> None:
    if not (isinstance(a, NUMBER) and isinstance(b, NUMBER)):
        raise unsupported(op, a, b)
    _int_ok(a)
    _int_ok(b)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, SEQUENCE) and isinstance(b, SEQUENCE):
        if len(a) + len(b) > MAX_SEQ_LEN:              # shares elements: no nested count
            raise ExpressionError(f"result of '+' would be larger than {MAX_SEQ_LEN} elements")
        return a + b                                     # str + list raises TypeError
    _numbers("+", a, b)
    return a + b


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, SEQUENCE):
        a, b = b, a
    if isinstance(a, SEQUENCE) and isinstance(b, int):
        if b > 0:
            _repeat_ok(a, MAX_SEQ_LEN // b)
        return a * b
    _numbers("*", a, b)
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise ExpressionError("integer result of '*' would be too large")
    return a * b


def _repeat_ok(seq: Any, limit: int) -> None:
    """Refuse seq * n unless seq, counting nested elements and characters, is within limit.

    Repetition shares nested objects, so without counting them [[0] * 50_000] * 100_000 is
    cheap to build, but comparing it with an equal copy would take 5 * 10**9 steps.
    """
    total, stack = 0, [seq]
    while stack:
        x = stack.pop()
        total += len(x)
        if total > limit:
            raise ExpressionError(f"result of '*' would be larger than {MAX_SEQ_LEN} elements")
        if not isinstance(x, str):
            items = [*x.keys(), *x.values()] if isinstance(x, dict) else x
            stack.extend(e for e in items if isinstance(e, CONTAINER))


def _pow(a: Any, b: Any) -> Any:
    _numbers("**", a, b)
    if b > MAX_EXPONENT:
        raise ExpressionError(f"exponent of '**' is larger than {MAX_EXPONENT}")
    if isinstance(a, int) and isinstance(b, int) and b > 0 and a.bit_length() * b > MAX_INT_BITS:
        raise ExpressionError("integer result of '**' would be too large")
    result = a ** b
    if isinstance(result, complex):                      # (-8) ** 0.5
        raise ExpressionError("'**' would give a complex number")
    return result


def _arith(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    # Numbers only, so '%' is never string formatting ('%*d' % (10**9, 1) is a memory bomb).
    def apply(a: Any, b: Any) -> Any:
        _numbers(op, a, b)
        return fn(a, b)
    return apply


def _contains(a: Any, b: Any) -> bool:
    if not isinstance(b, CONTAINER):                    # iterating arbitrary objects could hang
        raise unsupported("in", a, b)
    return a in b


BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: _add, ast.Mult: _mul, ast.Pow: _pow, ast.Sub: _arith("-", operator.sub),
    ast.Div: _arith("/", operator.truediv), ast.FloorDiv: _arith("//", operator.floordiv),
    ast.Mod: _arith("%", operator.mod),
}
COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: _contains, ast.NotIn: lambda a, b: not _contains(a, b),
}


# --------------------------------------------------------------------------- functions

def _typed(name: str, fn: Callable[..., Any], types: tuple[type, ...]) -> Callable[..., Any]:
    """fn(v, *rest), refusing a first argument that is not one of `types`."""
    def apply(v: Any, *rest: Any) -> Any:
        if not isinstance(v, types):
            raise ExpressionError(f"{name}() is not supported for {type(v).__name__}")
        return fn(v, *rest)
    return apply


def _convert(kind: type) -> Callable[..., Any]:
    """int()/float(): long strings are refused before converting (int('9' * 5000))."""
    def apply(v: Any, *base: Any) -> Any:
        if isinstance(v, str) and len(v) > MAX_STR_DIGITS:
            raise ExpressionError(f"{kind.__name__}() argument is too long ({len(v)} characters)")
        if base and not isinstance(v, str):
            raise ExpressionError("int() with a base needs a string")
        _int_ok(v)
        return kind(v, *base)
    return _typed(kind.__name__, apply, (str, int, float))


def _min_max(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        if len(args) == 1 and not isinstance(args[0], CONTAINER):
            raise ExpressionError(f"{fn.__name__}() of a single {type(args[0]).__name__} is not supported")
        return fn(*args)
    return apply


def _str(v: Any) -> str:
    _int_ok(v)                                           # str(10**100_000) is quadratic
    return str(v)


def _round(v: Any, ndigits: Any = None) -> Any:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS):
        raise ExpressionError(f"round() digits must be an integer from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}")
    return round(v, ndigits)


# name -> (implementation, min args, max args). str() takes scalars only: str([s] * 100_000)
# of a long s would be cheap to hold but gigabytes of text.
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "len": (_typed("len", len, CONTAINER), 1, 1), "str": (_typed("str", _str, SCALAR), 1, 1),
    "int": (_convert(int), 1, 2), "float": (_convert(float), 1, 1), "bool": (bool, 1, 1),
    "min": (_min_max(min), 1, 50), "max": (_min_max(max), 1, 50),
    "abs": (_typed("abs", abs, NUMBER), 1, 1), "round": (_typed("round", _round, NUMBER), 1, 2),
    "lower": (_typed("lower", str.lower, (str,)), 1, 1),
    "upper": (_typed("upper", str.upper, (str,)), 1, 1),
    "strip": (_typed("strip", str.strip, (str,)), 1, 1),
}
