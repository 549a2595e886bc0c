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
import datetime
import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ExpressionError", "ExpressionSyntaxError", "MAX_LENGTH", "unwrap", "check", "evaluate", "free_names"]

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

_NUMBER = (int, float)                                  # bool is an int; complex is refused
_SEQUENCE = (str, list, tuple)                          # what + and * may build
_CONTAINER = (str, list, tuple, dict, set, frozenset)   # what len(), min(), max(), in accept
_SUBSCRIPTABLE = (dict, list, tuple, str)
_SCALAR = (str, int, float, type(None), datetime.date, datetime.time, datetime.timedelta)
_NOT_COUNTED = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)


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


# --------------------------------------------------------------------------- checked operations

def _unsupported(op: str, *values: Any) -> ExpressionError:
    kinds = " and ".join(type(v).__name__ for v in values)
    return ExpressionError(f"operator {op!r} is not supported for {kinds}")


def _int_ok(v: Any) -> None:
    if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
        raise ExpressionError("integer is too large")


def _numbers(op: str, a: Any, b: Any) -> None:
    if not (isinstance(a, _NUMBER) and isinstance(b, _NUMBER)):
        raise _unsupported(op, a, b)
    _int_ok(a)
    _int_ok(b)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, _SEQUENCE) and isinstance(b, _SEQUENCE):
        if len(a) + len(b) > MAX_SEQ_LEN:              # shares elements: no nested count
            raise ExpressionError(f"result of '+' would be larger than {MAX_SEQ_LEN} elements")
        return a + b                                     # str + list raises TypeError
    _numbers("+", a, b)
    return a + b


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, _SEQUENCE):
        a, b = b, a
    if isinstance(a, _SEQUENCE) and isinstance(b, int):
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
            stack.extend(e for e in items if isinstance(e, _CONTAINER))


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
    if not isinstance(b, _CONTAINER):                    # iterating arbitrary objects could hang
        raise _unsupported("in", a, b)
    return a in b


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: _add, ast.Mult: _mul, ast.Pow: _pow, ast.Sub: _arith("-", operator.sub),
    ast.Div: _arith("/", operator.truediv), ast.FloorDiv: _arith("//", operator.floordiv),
    ast.Mod: _arith("%", operator.mod),
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
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
        if len(args) == 1 and not isinstance(args[0], _CONTAINER):
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
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "len": (_typed("len", len, _CONTAINER), 1, 1), "str": (_typed("str", _str, _SCALAR), 1, 1),
    "int": (_convert(int), 1, 2), "float": (_convert(float), 1, 1), "bool": (bool, 1, 1),
    "min": (_min_max(min), 1, 50), "max": (_min_max(max), 1, 50),
    "abs": (_typed("abs", abs, _NUMBER), 1, 1), "round": (_typed("round", _round, _NUMBER), 1, 2),
    "lower": (_typed("lower", str.lower, (str,)), 1, 1),
    "upper": (_typed("upper", str.upper, (str,)), 1, 1),
    "strip": (_typed("strip", str.strip, (str,)), 1, 1),
}


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
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            fn, lhs, rhs = _BINARY[type(op)], _build(left), _build(right)
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
        if not isinstance(v, _NUMBER):
            raise _unsupported("-" if negate else "+", v)
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
        ops.append((_COMPARE[type(op)], _build(right)))
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
        if not isinstance(v, _SUBSCRIPTABLE):
            raise ExpressionError(f"subscripts are only allowed on dict, list, tuple and str values, not {type(v).__name__}")
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
    func, allowed = node.func, ", ".join(_FUNCTIONS)
    if isinstance(func, ast.Attribute):
        raise ExpressionError(f"attribute access is not allowed: {_snippet(func)}")
    if not isinstance(func, ast.Name):
        raise ExpressionError(f"only these functions may be called, by name: {allowed}; not {_snippet(func)}")
    if func.id not in _FUNCTIONS:
        raise ExpressionError(f"calling {func.id!r} is not allowed (allowed functions: {allowed})")
    if node.keywords:
        raise ExpressionError(f"keyword arguments are not allowed: {_snippet(node)}")
    impl, low, high = _FUNCTIONS[func.id]
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
        count += not isinstance(node, _NOT_COUNTED)
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


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """Evaluate `text` with variables from `names`; every failure is an ExpressionError."""
    evaluator = _get(text)[0]
    try:
        return evaluator(names)
    except ExpressionError:
        raise
    except ZeroDivisionError:
        raise ExpressionError("division by zero") from None
    except (ArithmeticError, ValueError, TypeError, LookupError) as e:   # e.g. 1 < "a", float("x")
        raise ExpressionError(str(e) or type(e).__name__) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("expression evaluation exceeded resource limits") from None
