"""Decision rules: a tiny, safe comparison language (parsed by hand, never ``eval``).

A rule compares one run's metric value with an expression::

    "<= 1.02 * f1_rgb_only"        # at most 2 % worse than run f1_rgb_only
    "< 0.01"                       # a plain threshold
    ">= 'vae-2a' + 0.5"            # run names that are not identifiers go in quotes

Grammar (whitespace ignored)::

    rule     := value | curve | relative
    value    := CMP expr                              CMP: <= < >= > ==
    expr     := term (('+' | '-') term)*
    term     := factor (('*' | '/') factor)*
    factor   := NUMBER | NAME | 'QUOTED NAME' | '(' expr ')' | '-' factor
    curve    := 'finite' | 'not' ('rising' | 'falling') 'over' N ['within' P '%']
    relative := 'converges no slower than' NAME ['within' P '%']
              | 'no less stable than' NAME

A NAME stands for that run's value of the rule's metric (final by default, best-of-curve
when the rule asks). In a sweep with ``seeds`` a NAME is an *arm* (an experiment, all its
seeds) and the rule is decided on intervals over seeds (:mod:`framecast.experiments.compare`);
there a value rule must be affine in at most one arm (``<= 1.02 * f1 + 0.001`` is,
``<= a * b`` and ``<= (a + b) / 2`` are not: :meth:`Rule.affine`).

Curve rules judge a run's whole logged curve of the metric instead of one value (stability)::

    "finite"                       # no NaN/inf anywhere in the curve
    "not rising over 5"            # no upward trend over the last 5 logged values
    "not falling over 5 within 1%" # e.g. PSNR: may drop by at most 1 % of its level

"Rising" is the least-squares line through the last N values: its change across the window
(slope × (N − 1)) must be at most the tolerance (default 0) times the window's mean
magnitude. A fitted line, not last-versus-first, so that one noisy evaluation does not
decide; with fewer than N logged values the rule has no verdict.

Relative rules judge a run's curve against the curves of the run (or arm) they name::

    "converges no slower than f1_rgb_only"             # reaches F1's final value as soon
    "converges no slower than f1_rgb_only within 5%"   # ... or within 5 % of it
    "no less stable than f1_rgb_only"                  # its curve no rougher than F1's

*Converges no slower*: the target is the reference's final value of the metric (with seeds,
the mean over its seeds), relaxed by P % of it when ``within P%`` is given (for a metric to
minimise: target × (1 + P/100)); each run's measure is the first logged step at which its
curve reaches the target (:func:`steps_to_reach`). A run that never reaches it fails the
rule ("never reached"). The reference's own runs are measured against the same target; one
of them that never reaches it (with seeds, a seed that ends behind the mean) counts at its
last logged step, a lower bound.

*No less stable*: each run's measure is the roughness of its curve (:func:`roughness`): the
mean absolute step-to-step change of log(value) over the second half of training, less its
net change, i.e. how much the curve goes back and forth per evaluation (×100 ≈ percent); a
curve that only falls or only rises scores 0, so a run still improving steadily is not
called unstable (the convergence rule judges that). A non-finite value there is unstable
(measure ∞, the rule fails).

For both, lower measures are better; the run (arm) passes when its measure is no larger
than the reference's (with seeds: when the interval of the difference says so).
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

    def affine(self) -> tuple[str | None, float, float]:
        """The expression as ``coefficient × reference + constant``: (reference, coefficient,
        constant), reference None for a plain threshold.

        Arm-level verdicts need this form: the threshold of each seed is then
        ``coefficient × reference's value + constant`` and the difference of means has a
        Welch interval. :class:`RuleSyntaxError` (naming the rule) when the expression
        multiplies or divides by a run's value or refers to more than one run.
        """
        coefficients, constant = _affine(self.expression, self.text)
        names = [n for n, c in coefficients.items() if c != 0.0]
        if len(names) > 1:
            raise RuleSyntaxError(
                f"rule {self.text!r}: with seeds a rule compares an arm with one other arm "
                f"(an expression like '<= 1.02 * NAME + 0.001'); it refers to {', '.join(names)}"
            )
        if not names:
            return None, 0.0, constant
        return names[0], coefficients[names[0]], constant

    def interval_verdict(self, low: float, high: float) -> str:
        """pass | fail | inconclusive for an interval of (value − threshold).

        pass: the whole interval satisfies the comparison (for ``<=``: at or below 0);
        fail: the whole interval violates it (for ``<=``: above 0); inconclusive: it
        straddles the boundary. ``==`` can only pass on a zero-width interval at 0.
        """
        return interval_verdict(self.comparison, low, high)


def interval_verdict(comparison: str, low: float, high: float) -> str:
    """pass | fail | inconclusive of ``difference <comparison> 0`` given its interval."""
    if math.isnan(low) or math.isnan(high):
        raise ValueError("interval_verdict needs an interval (NaN: fewer than 2 seeds)")
    cmp = _COMPARISONS[comparison]
    holds_low, holds_high = cmp(low, 0.0), cmp(high, 0.0)
    if holds_low and holds_high:
        return "pass"
    if comparison == "==":
        return "fail" if low > 0 or high < 0 else "inconclusive"
    if not holds_low and not holds_high:
        return "fail"
    return "inconclusive"


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


@dataclass(frozen=True)
class RelativeRule:
    """A run's (or arm's) curve against the named reference's: ``converges no slower than
    REF [within P%]`` or ``no less stable than REF``.

    Both reduce each run's curve to one measure where lower is better
    (:func:`steps_to_reach`, :func:`roughness`); the rule holds when the judged measure is
    no larger than the reference's.
    """

    text: str
    kind: str  # "convergence" | "stability"
    reference: str
    tolerance: float = 0.0  # convergence: the target relaxed by this fraction of it

    @property
    def references(self) -> list[str]:
        return [self.reference]

    @property
    def comparison(self) -> str:
        """The measure of the judged run minus the reference's must be ``<= 0``."""
        return "<="

    @property
    def measure(self) -> str:
        """What each run is reduced to, for tables."""
        if self.kind == "convergence":
            return "steps to reach"
        return "roughness"

    def interval_verdict(self, low: float, high: float) -> str:
        return interval_verdict(self.comparison, low, high)


def steps_to_reach(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """The first step at which a curve of ``(step, value)`` in step order, lower values
    better, is at or below ``target``; None when it never gets there (non-finite values
    never do)."""
    for step, value in points:
        if math.isfinite(value) and value <= target:
            return float(step)
    return None


ROUGHNESS_MIN_POINTS = 3
"""Logged values the second half of a curve needs for a roughness (two changes: with one,
the net change is all the change and the roughness is 0 by construction)."""


def roughness(points: Sequence[tuple[float, float]]) -> tuple[float | None, str]:
    """Back-and-forth of a curve of ``(step, value)`` over the second half of training.

    The values logged at steps from half the last logged step on; with d_i the changes of
    log(value) between consecutive ones (n of them), the roughness is
    ``(sum |d_i| − |sum d_i|) / n``: the mean absolute step-to-step change less the net
    change, i.e. twice the mean movement against the curve's overall direction. 0 for a
    curve that only falls (or only rises), however fast; 0.01 ≈ a 1 % zig-zag per
    evaluation. Log values make it a relative measure, comparable between runs whose
    levels differ.

    Returns (measure, reason): measure None with the reason when there is too little curve
    or a value is not positive (no log); ``math.inf`` when a value there is non-finite.
    """
    if not points:
        return None, "metric never logged"
    last = max(step for step, _ in points)
    tail = [(step, value) for step, value in points if step >= last / 2]
    if any(not math.isfinite(value) for _, value in tail):
        bad = sum(not math.isfinite(value) for _, value in tail)
        return math.inf, f"{bad} non-finite values in the second half"
    if len(tail) < ROUGHNESS_MIN_POINTS:
        return None, (
            f"only {len(tail)} values in the second half of training, roughness needs "
            f"{ROUGHNESS_MIN_POINTS}"
        )
    if any(value <= 0 for _, value in tail):
        return None, "roughness takes logs: the metric must be positive"
    logs = [math.log(value) for _, value in tail]
    changes = [b - a for a, b in zip(logs, logs[1:])]
    return (sum(abs(d) for d in changes) - abs(sum(changes))) / len(changes), ""


def fitted_change(values: Sequence[float]) -> float:
    """Change across ``values`` of their least-squares line: slope × (len − 1)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    cov = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    var = sum((i - mean_x) ** 2 for i in range(n))
    return cov / var * (n - 1)


_NAME_PATTERN = r"(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|'(?P<q1>[^']*)'|\"(?P<q2>[^\"]*)\")"
_CONVERGES = re.compile(
    r"\s*converges\s+no\s+slower\s+than\s+"
    + _NAME_PATTERN
    + r"(?:\s+within\s+(?P<tol>\d+(?:\.\d*)?|\.\d+)\s*%)?\s*",
    re.I,
)
_STABLE = re.compile(r"\s*no\s+less\s+stable\s+than\s+" + _NAME_PATTERN + r"\s*", re.I)
_CURVE = re.compile(
    r"\s*not\s+(?P<dir>rising|falling)\s+over\s+(?P<n>\d+)"
    r"(?:\s+within\s+(?P<tol>\d+(?:\.\d*)?|\.\d+)\s*%)?\s*",
    re.I,
)


RELATIVE_FORMS = "'converges no slower than NAME [within P%]' or 'no less stable than NAME'"


def _reference(match: re.Match) -> str:
    name = match["name"] or match["q1"] or match["q2"] or ""
    if not name.strip():
        raise RuleSyntaxError(f"rule {match.string!r}: empty run name")
    return name


def parse_rule(text: str) -> Rule | CurveRule | RelativeRule:
    """Parse ``text``; raise :class:`RuleSyntaxError` with the position of the problem."""
    if (match := _CONVERGES.fullmatch(text)) is not None:
        tolerance = float(match["tol"]) / 100 if match["tol"] else 0.0
        return RelativeRule(text, "convergence", _reference(match), tolerance)
    if (match := _STABLE.fullmatch(text)) is not None:
        return RelativeRule(text, "stability", _reference(match))
    starts_like_relative = re.match(r"\s*(converges\b|no\b)", text, re.I)
    if starts_like_relative or re.match(r"\s*[A-Za-z].*\bthan\b", text, re.I | re.S):
        raise RuleSyntaxError(f"rule {text!r}: relative rules read {RELATIVE_FORMS}")
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
            f"'not rising over 5') or a relative one ({RELATIVE_FORMS})"
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


def _affine(node: Expr, text: str) -> tuple[dict[str, float], float]:
    """The expression as (coefficient per run name, constant); RuleSyntaxError when it is
    not affine (a product or quotient of run values)."""
    head = node[0]
    if head == "num":
        return {}, node[1]
    if head == "run":
        return {node[1]: 1.0}, 0.0
    if head == "neg":
        coefficients, constant = _affine(node[1], text)
        return {k: -v for k, v in coefficients.items()}, -constant
    (left, left_k), (right, right_k) = _affine(node[1], text), _affine(node[2], text)
    if head in ("+", "-"):
        sign = 1.0 if head == "+" else -1.0
        merged = dict(left)
        for name, value in right.items():
            merged[name] = merged.get(name, 0.0) + sign * value
        return merged, left_k + sign * right_k
    if head == "*":
        if left and right:
            raise RuleSyntaxError(
                f"rule {text!r}: with seeds the threshold must be affine in one arm "
                "(a number times NAME plus a number); it multiplies two run values"
            )
        scale, terms, constant = (left_k, right, right_k) if not left else (right_k, left, left_k)
        return {k: v * scale for k, v in terms.items()}, constant * scale
    if right:
        raise RuleSyntaxError(
            f"rule {text!r}: with seeds the threshold must be affine in one arm "
            "(a number times NAME plus a number); it divides by a run value"
        )
    if right_k == 0:
        raise RuleSyntaxError(f"rule {text!r}: division by zero")
    return {k: v / right_k for k, v in left.items()}, left_k / right_k
