"""Safe parsers for the untrusted text inside form definitions, none using ``eval``.

* :func:`load_json` -- size-limited, strict JSON loading (no NaN, no duplicate keys,
  no NUL or unpaired surrogates anywhere).
* :func:`compile_pattern` -- ``validate.pattern`` regexes, refused when they could backtrack
  catastrophically (nested/alternating repeats, backreferences, too many open repeats).
* :func:`is_iso` -- strict ISO-8601 date / time / date-time strings (ASCII digits only).
* :func:`compile_condition` -- a tiny subset of FEEL for ``conditional.hide``.

FEEL grammar (after the leading ``=``)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" "(" expr ")" | "(" expr ")" | comparison
    comparison := operand [("=" | "!=") operand]
    operand    := KEY | STRING | NUMBER | "true" | "false" | "null"

No ``eval``: the text is tokenised and parsed into tuples, which are interpreted
with FEEL's three-valued logic (``null`` for "unknown"). Anything outside the
subset (function calls, paths ``a.b``, arithmetic, ``<``/``>``, ``in``...) is
refused with a :class:`FeelError` naming what was found.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Mapping

__all__ = ["Condition", "FeelError", "MAX_DEPTH", "MAX_EXPR_CHARS", "MAX_PATTERN", "bad_string", "compile_condition",
           "compile_pattern", "evaluation_order", "is_iso", "load_json"]

try:  # Python 3.11+
    import re._parser as _sre_parse  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_parse as _sre_parse  # type: ignore[no-redef]

MAX_EXPR_CHARS = 2000
MAX_DEPTH = 20
_TOKEN = re.compile(r'''\s*(?:(?P<num>-?[0-9]+(?:\.[0-9]+)?)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|=)|(?P<paren>[()])
                        |(?P<name>[A-Za-z_][A-Za-z0-9_]*))''', re.ASCII | re.S | re.X)
_KEYWORDS = {"and": "and", "or": "or", "not": "not", "true": True, "false": False, "null": None}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
MAX_PATTERN = 200
_REPEAT_CAP = 10_000
_REGEX_BUDGET = 2 * (_REPEAT_CAP + 1) ** 2  # ~ two open-ended repeats over a 10,000-char value
_TZ = r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
_ISO = {"date": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII),
        "time": re.compile(r"[0-9]{2}:[0-9]{2}(?::[0-9]{2})?" + _TZ, re.ASCII),
        "datetime": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"
                               r"(?::[0-9]{2}(?:\.[0-9]{1,6})?)?" + _TZ, re.ASCII)}


class FeelError(ValueError):
    """The expression is outside the supported FEEL subset."""


# ---------------------------------------------------------------- JSON
def _no_dup_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate object key {k[:60]!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def bad_string(s: str) -> bool:
    """True if ``s`` holds NUL or an unpaired surrogate (not storable as UTF-8 / PostgreSQL text)."""
    if "\x00" in s:
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def load_json(raw: Any, max_bytes: int) -> Any:
    """Decode UTF-8 JSON of at most ``max_bytes``; ValueError with a clear message otherwise."""
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > max_bytes:
            raise ValueError(f"larger than {max_bytes} bytes")
        try:
            text = bytes(raw).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    elif isinstance(raw, str):
        if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ValueError(f"larger than {max_bytes} bytes")
        text = raw
    else:
        raise ValueError("expected bytes or str")
    try:
        doc = json.loads(text, object_pairs_hook=_no_dup_keys, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"invalid JSON: {e}") from None
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str) and bad_string(v):
            raise ValueError("a string holds a NUL character or an unpaired surrogate")
    return doc


# ---------------------------------------------------------------- regex patterns
def _regex_cost(items: Any) -> int:
    cost = 1
    for op, av in items:
        op = str(op)
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            lo, hi, body = av
            hi = min(hi, _REPEAT_CAP)
            inner = _regex_cost(body)
            if inner > 1 and hi > 4:
                raise ValueError("nested or alternating repetition (like (a+)+ or (ab|cd)+) is not allowed")
            cost *= (max(hi - lo, 0) + 1) * inner ** max(hi, 1)
        elif op == "BRANCH":
            cost *= sum(_regex_cost(b) for b in av[1])
        elif op == "SUBPATTERN":
            cost *= _regex_cost(av[-1])
        elif op in ("ASSERT", "ASSERT_NOT"):
            cost *= _regex_cost(av[1])
        elif op == "ATOMIC_GROUP":
            cost *= _regex_cost(av)
        elif op in ("GROUPREF", "GROUPREF_EXISTS"):
            raise ValueError("backreferences are not allowed")
        if cost > _REGEX_BUDGET:
            raise ValueError("too many open-ended repetitions (matching could be very slow)")
    return cost


def compile_pattern(pattern: Any) -> re.Pattern:
    """Compile a designer's regex, refusing long or potentially catastrophic ones (ValueError)."""
    if not isinstance(pattern, str):
        raise ValueError("must be a string")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"longer than {MAX_PATTERN} characters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # e.g. FutureWarning "possible nested set"
            regex = re.compile(pattern)
        _regex_cost(_sre_parse.parse(pattern))
    except (re.error, OverflowError, RecursionError, Warning) as e:
        raise ValueError(f"invalid regular expression ({e})") from None
    return regex


def is_iso(subtype: str, value: str) -> bool:
    """True if ``value`` is a valid ISO date / time / datetime (form-js datetime values)."""
    if len(value) > 40 or not _ISO[subtype].fullmatch(value):
        return False
    v = value.replace("Z", "+00:00")
    try:
        if subtype == "date":
            date.fromisoformat(v)
        else:
            datetime.fromisoformat(v if subtype == "datetime" else "2000-01-01T" + v)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- FEEL


def _unescape(m: re.Match) -> str:
    if m.group(1) not in _ESCAPES:
        raise FeelError(f"unsupported escape \\{m.group(1)} in string literal")
    return _ESCAPES[m.group(1)]


def _tokenize(text: str) -> list[tuple[str, Any]]:
    toks: list[tuple[str, Any]] = []
    i = 0
    while (m := _TOKEN.match(text, i)) is not None and m.end() > i:
        i, kind, s = m.end(), m.lastgroup, m.group(m.lastgroup or 0)
        if kind == "num":
            val = float(s) if "." in s else int(s)
            if not math.isfinite(val):
                raise FeelError(f"number {s!r} out of range")
            toks.append(("lit", val))
        elif kind == "str":
            toks.append(("lit", re.sub(r"\\(.?)", _unescape, s[1:-1], flags=re.S)))
        elif kind in ("op", "paren"):
            toks.append(("op", s) if kind == "op" else (s, s))
        elif s in _KEYWORDS:
            toks.append(("lit", _KEYWORDS[s]) if s in ("true", "false", "null") else (s, s))
        elif text[i:i + 1] == ".":
            raise FeelError(f"path access '{s}.' is not supported")
        elif text[i:].lstrip().startswith("("):
            raise FeelError(f"function call '{s}(...)' is not supported")
        elif s.startswith("_"):
            raise FeelError(f"name {s!r} may not start with '_'")
        else:
            toks.append(("name", s))
    rest = text[i:].lstrip()
    if rest:
        what = "unterminated string literal" if rest[0] == '"' else f"unsupported character {rest[0]!r}"
        raise FeelError(f"{what} at position {len(text) - len(rest) + 1}")
    return toks


class _Parser:
    def __init__(self, toks: list[tuple[str, Any]]):
        self.toks = toks
        self.pos = 0
        self.refs: set[str] = set()

    def peek(self) -> str | None:
        return self.toks[self.pos][0] if self.pos < len(self.toks) else None

    def take(self, kind: str) -> Any:
        if self.peek() != kind:
            found = self.toks[self.pos][1] if self.pos < len(self.toks) else "end of expression"
            raise FeelError(f"expected {kind!r}, found {found!r}")
        self.pos += 1
        return self.toks[self.pos - 1][1]

    def expr(self, depth: int) -> tuple:
        if depth > MAX_DEPTH:
            raise FeelError("expression nested too deeply")
        items = [self.and_expr(depth)]
        while self.peek() == "or":
            self.pos += 1
            items.append(self.and_expr(depth))
        return items[0] if len(items) == 1 else ("or", tuple(items))

    def and_expr(self, depth: int) -> tuple:
        items = [self.unary(depth)]
        while self.peek() == "and":
            self.pos += 1
            items.append(self.unary(depth))
        return items[0] if len(items) == 1 else ("and", tuple(items))

    def unary(self, depth: int) -> tuple:
        kind = self.peek()
        if kind == "not":
            self.pos += 1
            self.take("(")
            inner = self.expr(depth + 1)
            self.take(")")
            return ("not", inner)
        if kind == "(":
            self.pos += 1
            inner = self.expr(depth + 1)
            self.take(")")
            return inner
        left = self.operand()
        if self.peek() == "op":
            op = self.take("op")
            right = self.operand()
            if self.peek() == "op":
                raise FeelError("chained comparisons are not supported")
            return ("eq" if op == "=" else "ne", left, right)
        if left[0] == "lit" and not (left[1] is None or isinstance(left[1], bool)):
            raise FeelError(f"literal {left[1]!r} is not a condition")
        return left

    def operand(self) -> tuple:
        kind = self.peek()
        if kind == "name":
            name = self.take("name")
            self.refs.add(name)
            return ("var", name)
        if kind == "lit":
            return ("lit", self.take("lit"))
        found = self.toks[self.pos][1] if self.pos < len(self.toks) else "end of expression"
        raise FeelError(f"expected a field key or literal, found {found!r}")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "other"


def _equal(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb or ka == "other":
        return False
    return a == b


@dataclass(frozen=True)
class Condition:
    """A compiled hide condition. ``refs`` are the field keys it reads."""

    text: str
    refs: frozenset[str]
    _tree: tuple

    def evaluate(self, ctx: Mapping[str, Any]) -> bool | None:
        """True / False, or None (FEEL null) when the result is not a boolean."""
        v = _eval(self._tree, ctx)
        return v if isinstance(v, bool) else None

    def is_true(self, ctx: Mapping[str, Any]) -> bool:
        return self.evaluate(ctx) is True


def _eval(node: tuple, ctx: Mapping[str, Any]) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "var":
        return ctx.get(node[1])
    if op in ("eq", "ne"):
        eq = _equal(_eval(node[1], ctx), _eval(node[2], ctx))
        return eq if op == "eq" else not eq
    if op == "not":
        v = _eval(node[1], ctx)
        return (not v) if isinstance(v, bool) else None
    vals = [_eval(item, ctx) for item in node[1]]
    if op == "and":
        if any(v is False for v in vals):
            return False
        return True if all(v is True for v in vals) else None
    # or
    if any(v is True for v in vals):
        return True
    return False if all(v is False for v in vals) else None


def compile_condition(text: Any) -> Condition:
    """Compile ``=<expr>`` into a :class:`Condition`, or raise FeelError."""
    if not isinstance(text, str):
        raise FeelError("condition must be a string")
    if len(text) > MAX_EXPR_CHARS:
        raise FeelError(f"condition longer than {MAX_EXPR_CHARS} characters")
    if not text.startswith("="):
        raise FeelError("condition must be a FEEL expression starting with '='")
    toks = _tokenize(text[1:])
    if not toks:
        raise FeelError("empty condition")
    p = _Parser(toks)
    tree = p.expr(0)
    if p.pos != len(toks):
        raise FeelError(f"unexpected {toks[p.pos][1]!r} after the condition")
    return Condition(text=text, refs=frozenset(p.refs), _tree=tree)


def evaluation_order(fields: list[tuple[str, tuple[Condition, ...]]]) -> tuple[int, ...]:
    """Indexes of (key, hide conditions) pairs so each field's conditions only read fields
    placed before it; FeelError if the conditions form a cycle (or read an unknown key)."""
    index = {key: i for i, (key, _) in enumerate(fields)}
    try:
        deps = [{index[r] for c in conds for r in c.refs} for _, conds in fields]
    except KeyError as e:
        raise FeelError(f"conditional.hide refers to unknown field {e.args[0]!r}") from None
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(deps):
        ready = [i for i in range(len(deps)) if i not in placed and deps[i] <= placed]
        if not ready:
            stuck = [fields[i][0] for i in range(len(deps)) if i not in placed]
            raise FeelError("conditional.hide conditions form a cycle among " + ", ".join(stuck[:10]))
        order.extend(ready)
        placed.update(ready)
    return tuple(order)
