"""Decision rules: a tiny, safe comparison language (parsed by hand, never ``eval``).

A rule compares one run's metric value with an expression::

    "<= 1.02 * f1_rgb_only"        # at most 2 % worse than run f1_rgb_only
    "< 0.01"                       # a plain threshold
    ">= 'vae-2a' + 0.5"            # run names that are not identifiers go in quotes

Grammar (whitespace ignored)::

    rule   := CMP expr            CMP: <= < >= > ==
    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := NUMBER | NAME | 'QUOTED NAME' | '(' expr ')' | '-' factor

A NAME stands for that run's value of the rule's metric (best or final).

Curve rules judge a run's whole logged curve of the metric instead of one value (stability)::

    "finite"                       # no NaN/inf anywhere in the curve
    "not rising over 5"            # no upward trend over the last 5 logged values
    "not falling over 5 within 1%" # e.g. PSNR: may drop by at most 1 % of its level

"Rising" is the least-squares line through the last N values: its change across the window
(slope × (N − 1)) must be at most the tolerance (default 0) times the window's mean
magnitude. A fitted line, not last-versus-first, so that one noisy evaluation does not
decide; with fewer than N logged values the rule has no verdict.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|'(?P<q1>[^']*)'|\"(?P<q2>[^\"]*)\""
    r"|(?P<op><=|>=|==|[-+*/()<>]))"
)


class RuleSyntaxError(ValueError):
    """The rule text does not follow the grammar; the message says where."""


# An expression is a small tree of tuples: ("num", x) | ("run", name) | (op, left, right) | ("neg", e).
Expr = tuple


@dataclass(frozen=True)
class Rule:
    """A parsed rule: ``value <comparison> expression``."""

    text: str
    comparison: str
    expression: Expr

    @property
    def references(self) -> list[str]:
        """Run names the expression refers to, in order of appearance."""
        out: list[str] = []

        def walk(node: Expr) -> None:
            if node[0] == "run":
                if node[1] not in out:
                    out.append(node[1])
            elif node[0] == "neg":
                walk(node[1])
            elif node[0] != "num":
                walk(node[1])
                walk(node[2])

        walk(self.expression)
        return out

    def threshold(self, values: Mapping[str, float | None]) -> float:
        """The expression's value; KeyError names a run without a value."""
        return _evaluate(self.expression, values)

    def check(self, value: float, values: Mapping[str, float | None]) -> tuple[bool, float]:
        """(verdict, threshold) of ``value``; KeyError names a referenced run without a value."""
        threshold = self.threshold(values)
        return _COMPARISONS[self.comparison](value, threshold), threshold


@dataclass(frozen=True)
class CurveRule:
    """A rule on a run's whole curve of the metric: ``finite`` or ``not rising|falling over N``."""

    text: str
    kind: str  # "finite" | "rising" | "falling" (the direction that is forbidden)
    window: int | None = None  # last N values (trend rules)
    tolerance: float = 0.0  # allowed fitted change, as a fraction of the window's level

    @property
    def references(self) -> list[str]:
        """Curve rules refer to no other run."""
        return []

    def check_curve(
        self, values: Sequence[float]
    ) -> tuple[bool | None, float | None, float | None, str]:
        """Judge a curve (the metric's logged values in step order).

        Returns (verdict, measured, allowed, reason); verdict None when there is too little
        curve. ``finite``: measured = count of non-finite values, allowed 0. Trend rules:
        measured = fitted change over the window (positive = rising), allowed = the
        tolerance as a signed change (``measured <= allowed`` for rising, ``>=`` falling).
        """
        values = [float(v) for v in values]
        if not values:
            return None, None, None, "metric never logged"
        bad = sum(not math.isfinite(v) for v in values)
        if self.kind == "finite":
            reason = f"{bad} of {len(values)} values non-finite" if bad else ""
            return bad == 0, float(bad), 0.0, reason
        if bad:
            return False, None, None, f"{bad} of {len(values)} values non-finite"
        assert self.window is not None
        if len(values) < self.window:
            return None, None, None, f"only {len(values)} values, rule needs {self.window}"
        tail = values[-self.window :]
        change = fitted_change(tail)
        margin = self.tolerance * sum(abs(v) for v in tail) / self.window
        if self.kind == "rising":
            return change <= margin, change, margin, ""
        return change >= -margin, change, -margin, ""


def fitted_change(values: Sequence[float]) -> float:
    """Change across ``values`` of their least-squares line: slope × (len − 1)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    cov = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    var = sum((i - mean_x) ** 2 for i in range(n))
    return cov / var * (n - 1)


_CURVE = re.compile(
    r"\s*not\s+(?P<dir>rising|falling)\s+over\s+(?P<n>\d+)"
    r"(?:\s+within\s+(?P<tol>\d+(?:\.\d*)?|\.\d+)\s*%)?\s*",
    re.I,
)


def parse_rule(text: str) -> Rule | CurveRule:
    """Parse ``text``; raise :class:`RuleSyntaxError` with the position of the problem."""
    if text.strip().lower() == "finite":
        return CurveRule(text=text, kind="finite")
    if (match := _CURVE.fullmatch(text)) is not None:
        window = int(match["n"])
        if window < 2:
            raise RuleSyntaxError(f"rule {text!r}: a trend needs at least 2 values, got {window}")
        tolerance = float(match["tol"]) / 100 if match["tol"] else 0.0
        return CurveRule(text=text, kind=match["dir"].lower(), window=window, tolerance=tolerance)
    if re.match(r"\s*(not\b|finite\b)", text, re.I):
        raise RuleSyntaxError(
            f"rule {text!r}: curve rules read 'finite', 'not rising over N' or "
            "'not falling over N within P%'"
        )
    tokens = _tokenize(text)
    if not tokens or tokens[0][0] != "op" or tokens[0][1] not in _COMPARISONS:
        raise RuleSyntaxError(
            f"rule {text!r} must start with one of {', '.join(_COMPARISONS)}, "
            "e.g. '<= 1.02 * f1_rgb_only', or be a curve rule ('finite', "
            "'not rising over 5')"
        )
    parser = _Parser(text, tokens, 1)
    expression = parser.expr()
    if parser.pos != len(tokens):
        raise RuleSyntaxError(f"rule {text!r}: unexpected {tokens[parser.pos][1]!r}")
    return Rule(text=text, comparison=tokens[0][1], expression=expression)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    text_end = len(text.rstrip())
    while pos < text_end:
        match = _TOKEN.match(text, pos)
        if match is None:
            raise RuleSyntaxError(
                f"rule {text!r}: cannot read {text[pos:].strip()[:20]!r} (position {pos})"
            )
        kind = match.lastgroup
        value = match.group(kind)
        tokens.append(("name" if kind in ("q1", "q2") else kind, value))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, tokens: list[tuple[str, str]], pos: int):
        self.text, self.tokens, self.pos = text, tokens, pos

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expr(self) -> Expr:
        node = self.term()
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.pos += 1
            node = (tok[1], node, self.term())
        return node

    def term(self) -> Expr:
        node = self.factor()
        while (tok := self.peek()) is not None and tok[1] in ("*", "/"):
            self.pos += 1
            node = (tok[1], node, self.factor())
        return node

    def factor(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise RuleSyntaxError(f"rule {self.text!r}: expression ends too early")
        self.pos += 1
        kind, value = tok
        if kind == "num":
            return ("num", float(value))
        if kind == "name":
            return ("run", value)
        if value == "-":
            return ("neg", self.factor())
        if value == "(":
            node = self.expr()
            if self.peek() != ("op", ")"):
                raise RuleSyntaxError(f"rule {self.text!r}: missing ')'")
            self.pos += 1
            return node
        raise RuleSyntaxError(f"rule {self.text!r}: unexpected {value!r}")


def _evaluate(node: Expr, values: Mapping[str, float | None]) -> float:
    head = node[0]
    if head == "num":
        return node[1]
    if head == "run":
        value = values.get(node[1])
        if value is None:
            raise KeyError(node[1])
        return float(value)
    if head == "neg":
        return -_evaluate(node[1], values)
    left, right = _evaluate(node[1], values), _evaluate(node[2], values)
    if head == "+":
        return left + right
    if head == "-":
        return left - right
    if head == "*":
        return left * right
    if right == 0:
        raise ZeroDivisionError("division by zero in a decision rule")
    return left / right
