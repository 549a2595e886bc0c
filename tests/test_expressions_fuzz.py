"""Property tests of the allow-list expression evaluator (engine.bpmn.expressions): any
text raises only ExpressionError, and arithmetic and comparisons agree with Python's."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bpmn.expressions import ExpressionError, check, evaluate, free_names
from tests.test_expressions import DATA


@pytest.mark.filterwarnings("ignore::SyntaxWarning")   # ast.parse warns on e.g. "1if x"
@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_only_raises_expression_error(text: str) -> None:
    try:
        check(text)
    except ExpressionError:
        pass
    try:
        evaluate(text, DATA)
    except ExpressionError:
        pass


_ALPHABET = "0123456789+-*/%<>=!()[]{}'\". ,:xysinotandorifelse_"


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_expression_like_text_only_raises_expression_error(text: str) -> None:
    try:
        evaluate(text, DATA)
    except ExpressionError:
        pass


# A tree is an int leaf, ("neg", t), or (op, left, right); `render` writes it as text and
# `calc` computes it without eval, so the evaluator can be compared with Python arithmetic.
_ARITH = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_CMP = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}

trees = st.recursive(
    st.integers(min_value=-1000, max_value=1000),
    lambda sub: st.one_of(
        st.tuples(st.just("neg"), sub),
        st.tuples(st.sampled_from(sorted(_ARITH)), sub, sub),
    ),
    max_leaves=12,
)
small_trees = st.recursive(
    st.integers(min_value=-1000, max_value=1000),
    lambda sub: st.tuples(st.sampled_from(sorted(_ARITH)), sub, sub),
    max_leaves=5,
)


def render(t: Any) -> str:
    if isinstance(t, int):
        return f"({t})" if t < 0 else str(t)
    if t[0] == "neg":
        return f"-({render(t[1])})"
    return f"({render(t[1])} {t[0]} {render(t[2])})"


def calc(t: Any) -> int:
    if isinstance(t, int):
        return t
    if t[0] == "neg":
        return -calc(t[1])
    return _ARITH[t[0]](calc(t[1]), calc(t[2]))


@settings(max_examples=300, deadline=None)
@given(trees)
def test_arithmetic_matches_python(tree: Any) -> None:
    assert evaluate(render(tree), {}) == calc(tree)


@settings(max_examples=300, deadline=None)
@given(st.lists(small_trees, min_size=2, max_size=4), st.lists(st.sampled_from(sorted(_CMP)), min_size=3, max_size=3))
def test_chained_comparisons_match_python(operands: list[Any], ops: list[str]) -> None:
    text = render(operands[0])
    values = [calc(operands[0])]
    for op, operand in zip(ops, operands[1:]):
        text += f" {op} {render(operand)}"
        values.append(calc(operand))
    expected = all(_CMP[op](a, b) for op, a, b in zip(ops, values, values[1:]))
    assert evaluate(text, {}) is expected


@settings(max_examples=200, deadline=None)
@given(trees, st.integers(min_value=-50, max_value=50))
def test_variables_behave_like_literals(tree: Any, value: int) -> None:
    text = f"({render(tree)}) * v + v"
    assert evaluate(text, {"v": value}) == calc(tree) * value + value
    assert free_names(text) == {"v"}
