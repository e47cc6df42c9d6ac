"""Surfaces typed by the user in live mode, e.g. ``x^2 + 10*sin(y)``: a small allow-listed grammar, never ``eval``.

Grammar (whitespace ignored)::

    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | power
    power   := atom (("^" | "**") unary)?          right-associative: 2^3^2 = 2^9, -x^2 = -(x^2)
    atom    := number | "x" | "y" | "pi" | "e" | function "(" sum ")" | "(" sum ")"

Functions: :data:`FUNCTIONS`. The text is at most :data:`MAX_LENGTH` characters and nests at most
:data:`MAX_DEPTH` deep; anything else raises :class:`ExpressionError` naming the position. A parsed expression
is a tree of tuples evaluated with torch operations, so the race's optimizers get exact autograd gradients.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from torch import Tensor

from ravine.race.surfaces import Surface

MAX_LENGTH = 200
MAX_DEPTH = 24
FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp, "log": torch.log,
    "log10": torch.log10, "sqrt": torch.sqrt, "abs": torch.abs, "tanh": torch.tanh, "sinh": torch.sinh,
    "cosh": torch.cosh, "atan": torch.atan,
}
CONSTANTS = {"pi": math.pi, "e": math.e}

Node = tuple  # ("num", v) | ("var", "x") | ("neg", a) | ("call", name, a) | (op, a, b), op in add sub mul div pow
_NUMBER = r"(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
_TOKEN = re.compile(r"\s*(?:" + _NUMBER + r"|([A-Za-z_][A-Za-z_0-9]*)|(\*\*|[-+*/^()]))")


class ExpressionError(ValueError):
    """A typed surface that is not in the grammar, too long, too deep, or not finite on its window."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    out, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip() == "":
                break
            bad = text[position:].lstrip()[0]
            raise ExpressionError(f"unexpected character {bad!r} at position {text.index(bad, position) + 1}")
        number, name, operator = match.groups()
        start = match.start(match.lastindex or 0) + 1
        if number is not None:
            out.append(("number", number, start))
        elif name is not None:
            out.append(("name", name, start))
        else:
            out.append(("op", "^" if operator == "**" else operator, start))
        position = match.end()
    out.append(("end", "", len(text) + 1))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, value: str) -> None:
        kind, text, at = self.take()
        if text != value or kind != "op":
            found = "the end" if kind == "end" else repr(text)
            raise ExpressionError(f"expected {value!r} at position {at}, found {found}")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression nests more than {MAX_DEPTH} deep")

    def chain(self, operators: dict[str, str], operand: Callable[[], Node]) -> Node:
        """``operand (op operand)*`` for the ``operators`` given, left-associative."""
        node = operand()
        while self.peek()[0] == "op" and self.peek()[1] in operators:
            node = (operators[self.take()[1]], node, operand())
        return node

    def sum(self) -> Node:
        return self.chain({"+": "add", "-": "sub"}, self.product)

    def product(self) -> Node:
        return self.chain({"*": "mul", "/": "div"}, self.unary)

    def unary(self) -> Node:
        if self.peek()[:2] in (("op", "-"), ("op", "+")):
            self.nested()
            op = self.take()[1]
            operand = self.unary()
            self.depth -= 1
            return ("neg", operand) if op == "-" else operand
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.peek()[:2] == ("op", "^"):
            self.take()
            self.nested()
            exponent = self.unary()
            self.depth -= 1
            return ("pow", base, exponent)
        return base

    def atom(self) -> Node:
        kind, text, at = self.take()
        if kind == "number":
            value = float(text)
            if not math.isfinite(value):
                raise ExpressionError(f"the number at position {at} is too large")
            node: Node = ("num", value)
        elif kind == "name" and text in ("x", "y"):
            node = ("var", text)
        elif kind == "name" and text in CONSTANTS:
            node = ("num", CONSTANTS[text])
        elif kind == "name" and text in FUNCTIONS:
            self.expect("(")
            self.nested()
            node = ("call", text, self.sum())
            self.depth -= 1
            self.expect(")")
        elif kind == "name":
            allowed = ", ".join(["x", "y", *CONSTANTS, *FUNCTIONS])
            raise ExpressionError(f"unknown name {text!r} at position {at} (allowed: {allowed})")
        elif (kind, text) == ("op", "("):
            self.nested()
            node = self.sum()
            self.depth -= 1
            self.expect(")")
        else:
            found = "the end" if kind == "end" else repr(text)
            raise ExpressionError(f"expected a number, x, y, a function or '(' at position {at}, found {found}")
        following = self.peek()
        if following[0] in ("number", "name") or following[:2] == ("op", "("):
            raise ExpressionError(f"expected an operator at position {following[2]}, found {following[1]!r} "
                                  "(write 2*x, not 2x)")
        return node


def parse(text: str) -> Node:
    """The tree of ``text``; raises :class:`ExpressionError` naming what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    parser = _Parser(text)
    node = parser.sum()
    kind, rest, at = parser.peek()
    if kind != "end":
        raise ExpressionError(f"unexpected {rest!r} at position {at}")
    return node


def evaluate(node: Node, x: Tensor, y: Tensor) -> Tensor:
    """The value of ``node`` at ``x``, ``y`` (same-shape float tensors), with torch operations."""
    kind = node[0]
    if kind == "num":
        return torch.full_like(x, node[1])
    if kind == "var":
        return x if node[1] == "x" else y
    if kind == "neg":
        return -evaluate(node[1], x, y)
    if kind == "call":
        return FUNCTIONS[node[1]](evaluate(node[2], x, y))
    left, right = evaluate(node[1], x, y), evaluate(node[2], x, y)
    if kind == "add":
        return left + right
    if kind == "sub":
        return left - right
    if kind == "mul":
        return left * right
    if kind == "div":
        return left / right
    return torch.pow(left, right)


def compile_expression(text: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``text`` as a function of two tensors (see the module's grammar)."""
    tree = parse(text)

    def f(x: Tensor, y: Tensor) -> Tensor:
        return evaluate(tree, x, y)

    return f


WINDOW_LIMIT = 1e6
GRID = 400


def typed_surface(text: str, window: tuple[float, float, float, float]) -> Surface:
    """A race surface from a typed expression over ``window`` = (x0, x1, y0, y1).

    Its f* is the least value on a 400 × 400 grid of the window (a typed surface has no known minimum), and the
    start sits a fifth of the way in from the window's top-left corner. Raises :class:`ExpressionError` for a bad
    window, or naming a point where the expression is not finite.
    """
    x0, x1, y0, y1 = window
    if not all(math.isfinite(v) and abs(v) <= WINDOW_LIMIT for v in window) or not (x0 < x1 and y0 < y1):
        raise ExpressionError(f"the window must be finite numbers within ±{WINDOW_LIMIT:g} with x0 < x1 and "
                              f"y0 < y1, got {list(window)}")
    f = compile_expression(text)
    xs = torch.linspace(x0, x1, GRID, dtype=torch.float64)
    ys = torch.linspace(y0, y1, GRID, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        z = f(gx, gy).expand_as(gx)
    bad = ~torch.isfinite(z)
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        px, py = gx.flatten()[i].item(), gy.flatten()[i].item()
        raise ExpressionError(f"f is not finite at (x, y) = ({px:.4g}, {py:.4g}) in the window; choose another "
                              "window or expression")
    i = int(z.flatten().argmin())
    minimum = (gx.flatten()[i].item(), gy.flatten()[i].item())
    return Surface("typed", "Typed surface", text.strip(), f, (x0, x1), (y0, y1),
                   (x0 + 0.2 * (x1 - x0), y1 - 0.2 * (y1 - y0)), (minimum,), float(z.min()),
                   "typed by you; f* is the least value on a 400 × 400 grid of the window")
