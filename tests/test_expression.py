"""Typed surfaces: the allow-listed grammar parses what it should, evaluates it exactly, and refuses the rest with
an ExpressionError naming where — never another exception, never Python's eval."""

from __future__ import annotations

import builtins
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ravine.race.expression import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    ExpressionError,
    compile_expression,
    parse,
    typed_surface,
)

REFERENCE = {"sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "log": math.log,
             "log10": math.log10, "sqrt": math.sqrt, "abs": abs, "tanh": math.tanh, "sinh": math.sinh,
             "cosh": math.cosh, "atan": math.atan}


def test_every_function_has_a_reference():
    assert set(REFERENCE) == set(FUNCTIONS)


# A random expression as (its text, its value at a point computed by Python's math).
leaves = st.one_of(
    st.floats(0, 100, allow_nan=False).map(lambda v: (repr(v), lambda x, y, v=v: v)),
    st.just(("x", lambda x, y: x)), st.just(("y", lambda x, y: y)), st.just(("pi", lambda x, y: math.pi)),
)


def _combine(children):
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "^"]), children).map(
        lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", lambda x, y, a=t[0][1], op=t[1], b=t[2][1]: {
            "+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q, "/": lambda p, q: p / q,
            "^": lambda p, q: p ** q}[op](a(x, y), b(x, y))))
    call = st.tuples(st.sampled_from(sorted(REFERENCE)), children).map(
        lambda t: (f"{t[0]}({t[1][0]})", lambda x, y, f=REFERENCE[t[0]], a=t[1][1]: f(a(x, y))))
    negation = children.map(lambda c: (f"(-{c[0]})", lambda x, y, a=c[1]: -a(x, y)))
    return st.one_of(binary, call, negation)


expressions = st.recursive(leaves, _combine, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(expressions, st.floats(-3, 3), st.floats(-3, 3))
def test_parsed_expressions_evaluate_as_python_math_does(expression, x, y):
    text, reference = expression
    if len(text) > MAX_LENGTH:
        with pytest.raises(ExpressionError, match="characters long"):
            parse(text)
        return
    try:
        expected = reference(x, y)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):  # TypeError: math given a complex
        expected = None  # a domain error in Python; torch gives inf or nan there
    if isinstance(expected, complex):
        expected = None  # a negative number to a fractional power: torch gives nan
    got = compile_expression(text)(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    if expected is not None and math.isfinite(expected) and math.isfinite(got.item()):
        assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-9), text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="xy0123456789.eE+-*/^() \tsincoqrtalgbhpi_[]{}'\"!@#$%&|<>,;:=", max_size=60))
def test_any_text_parses_or_raises_an_expression_error_without_eval(text):
    real_eval, real_exec, real_compile = builtins.eval, builtins.exec, builtins.compile

    def forbidden(*args, **kwargs):
        raise AssertionError("the grammar must never call eval, exec or compile")

    builtins.eval, builtins.exec, builtins.compile = forbidden, forbidden, forbidden
    try:
        parse(text)
    except ExpressionError as error:
        assert str(error)
    finally:
        builtins.eval, builtins.exec, builtins.compile = real_eval, real_exec, real_compile


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_unicode_is_refused_cleanly(text):
    try:
        parse(text)
    except ExpressionError:
        pass


@pytest.mark.parametrize(("text", "message"), [
    ("", "the expression is empty"),
    ("x" + " + x" * 70, f"at most {MAX_LENGTH} are allowed"),
    ("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), f"nests more than {MAX_DEPTH} deep"),
    ("-" * (MAX_DEPTH + 1) + "x", f"nests more than {MAX_DEPTH} deep"),
    ("2x", "expected an operator at position 2, found 'x' (write 2*x, not 2x)"),
    ("x y", "expected an operator at position 3"),
    ("sin x", "expected '(' at position 5"),
    ("sin(x", "expected ')' at position 6, found the end"),
    ("x +", "expected a number, x, y, a function or '(' at position 4, found the end"),
    ("os.system('ls')", "unexpected character '.' at position 3"),
    ("open(x)", "unknown name 'open' at position 1 (allowed: x, y, pi, e, sin,"),
    ("x.real", "unexpected character '.' at position 2"),
    ("[x]", "unexpected character '[' at position 1"),
    ("1e999", "the number at position 1 is too large"),
    ("x)", "unexpected ')' at position 2"),
])
def test_refusals_name_what_and_where(text, message):
    with pytest.raises(ExpressionError) as error:
        parse(text)
    assert message in str(error.value)


def test_precedence_and_associativity():
    f = compile_expression("-x^2 + 2^3^2 - 8/4/2 + 2*3^2")
    value = f(torch.tensor(3.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)).item()
    assert value == -9 + 512 - 1 + 18
    g = compile_expression("x**2 * y")  # ** is ^
    assert g(torch.tensor(2.0), torch.tensor(5.0)).item() == 20


def test_typed_surfaces_report_non_finite_values_and_bad_windows():
    with pytest.raises(ExpressionError, match=r"f is not finite at \(x, y\) = \(0, -1\)"):
        typed_surface("1/x", (0.0, 1.0, -1.0, 1.0))
    with pytest.raises(ExpressionError, match="x0 < x1"):
        typed_surface("x", (1.0, 1.0, 0.0, 1.0))
    with pytest.raises(ExpressionError, match="within"):
        typed_surface("x", (0.0, 1e9, 0.0, 1.0))
    surface = typed_surface("(x - 1)^2 + (y + 2)^2", (-4.0, 4.0, -4.0, 4.0))
    assert surface.minima[0] == pytest.approx((1, -2), abs=0.03) and surface.f_min == pytest.approx(0, abs=1e-3)
    xy = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    surface(xy[0], xy[1]).backward()  # autograd gradients, exactly
    assert xy.grad.tolist() == [-1.0, 5.0]
