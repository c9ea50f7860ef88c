"""``framecast compare``: rank runs by a primary metric and apply decision rules.

Input: a sweep folder (``runs/<sweep>/``, with ``sweep.yaml`` and ``sweep_status.json``)
or any folder of run directories. Output: a table of best and final value of every
validation metric per run (terminal text, markdown, CSV), each decision rule's verdict
per run, ``curves.png`` (all runs' validation curves overlaid) and ``samples.png`` (each
run's latest sample PNG side by side). Failed runs appear as failed.

Runs are ranked, and seeded arms compared, on each run's *final* value of a metric (the
value at its last validation; an ``eval/`` metric's one value), unless
``best_of_curve`` (``--best-of-curve``) asks for the best value over the validation
curve, which picks each run's luckiest validation and is labelled so wherever it is used.

Seeded arms (a sweep with ``seeds``): for each reported metric, the arm with the best mean
against every other arm, the difference of means with Welch's t interval over seeds at
the Bonferroni level 1 − 0.05/m (m: the metrics with an interval), Holm-adjusted p-values
beside them; a lead is *clear* only when every one of its corrected intervals excludes 0
(:data:`ARM_RULE`, :func:`framecast.eval.stats.corrected_leads`).

Decision rules (:mod:`framecast.experiments.rules`) use each run's final value unless a
rule says ``value: best`` (labelled BEST-OF-CURVE in its rows). Without seeds a value or
relative rule judges each run against the run it names: a point comparison, "one run: no
interval". With seeds it judges each arm against the arm it names, on Welch intervals over
seeds Bonferroni-corrected over the arms the rule judges, with a three-way verdict
(pass / fail / inconclusive; :data:`ARM_VERDICT_RULE`); curve rules (``finite``,
``not rising over N``) judge every run either way. Verdicts go to the terminal, the
markdown table and ``verdicts.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framecast.errors import ConfigError
from framecast.eval.metrics import ON_TARGET, current_metric_name
from framecast.eval.stats import (
    CorrectedComparison,
    WelchInterval,
    corrected_leads,
    corrected_welch,
)
from framecast.experiments.rules import (
    CurveRule,
    RelativeRule,
    Rule,
    interval_verdict,
    roughness,
    steps_to_reach,
)
from framecast.experiments.spec import DecisionRuleSpec, SweepSpec
from framecast.training.loggers import read_metrics_csv
from framecast.utils import atomic_path, atomic_write_text

_HIGHER_IS_BETTER = ("psnr", "ssim", "acc", "iou", "accuracy", "f1")


def metric_mode(metric: str, primary: str, primary_mode: str) -> str:
    """min, max or target: the primary metric's mode, else from the name (psnr, ssim: max;
    intensity_ratio: target, best at 1; anything else: min)."""
    if metric == primary:
        return primary_mode
    leaf = metric.rsplit("/", 1)[-1].lower()
    if leaf in ON_TARGET:
        return "target"
    return "max" if any(word in leaf for word in _HIGHER_IS_BETTER) else "min"


def badness(metric: str, mode: str, value: float) -> float:
    """Lower is better: -value (max), value (min), the distance to the target (target)."""
    if mode == "max":
        return -value
    if mode == "min":
        return value
    return abs(value - ON_TARGET[metric.rsplit("/", 1)[-1].lower()])


MODE_ARROWS = {"max": "↑", "min": "↓", "target": "→"}
ARM_LEVEL = 0.95
"""Family-wise confidence of the arm comparisons (α = 0.05 over all reported metrics)."""
VALUE_LABELS = {
    "final": "each run's final value (its last validation; for eval/ metrics, its evaluation)",
    "best": "each run's BEST-OF-CURVE value (its best validation: optimistic, picked on the "
    "same validations it reports)",
}
ARM_RULE = (
    "Rule: for each metric, the arm with the best mean against every other arm: the "
    "difference of means over seeds (lead > 0: the best arm is ahead, in the metric's "
    "units; for a metric best at a target, in distance from it) with Welch's t interval "
    "at level 1 - 0.05/m, Bonferroni over the m metrics that have an interval (every "
    "interval of the table holds at once with probability >= 95 %); p-values "
    "Holm-adjusted over the same m. 'clear' only when every corrected interval of the "
    "best arm excludes 0; otherwise 'within noise'. Arms with fewer than 2 seeds have no "
    "interval and no verdict."
)
ARM_VERDICT_RULE = (
    "Decision rules over seeds: a value rule or a relative rule judges each arm as a whole. "
    "Each run gives one measure (the metric's value; for 'converges no slower than REF' "
    "the first logged step at which its curve reaches REF's final value, mean over REF's "
    "seeds; for 'no less stable than REF' the roughness of its curve, the mean absolute "
    "change of log value per evaluation over the second half of training less its net "
    "change), and the verdict is read off Welch's t interval of the arm's mean minus the "
    "threshold (e.g. 1.02 x REF's mean, or REF's mean measure) at level 1 - 0.05/k, "
    "Bonferroni over the k arms the rule judges: pass when the whole interval satisfies "
    "the rule, fail when the whole interval violates it, inconclusive when it contains 0. "
    "A run that never reaches the target, or whose curve is non-finite, fails its arm on "
    "that rule. Rules are not corrected against each other: an arm is kept only if it "
    "passes every rule (an intersection-union test, at 5 % as it stands); a fail on any "
    "one of r rules is a claim at up to r x 5 %. Curve rules (finite, not rising) judge "
    "every run."
)


@dataclass
class RunSummary:
    """One run's metrics: best and final value per metric, status, steps."""

    name: str
    run_dir: Path
    status: str  # done | failed | running | pending | submitted | unknown
    steps: int | None = None
    best: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    rank: int | None = None
    rows: list[dict[str, float]] = field(default_factory=list)
    arm: str | None = None  # the experiment a seeded run belongs to
    evaluation: dict[str, Any] | None = None  # the sweep's evaluate step: metrics.json

    def value(self, metric: str, which: str = "best") -> float | None:
        return (self.best if which == "best" else self.final).get(metric)


@dataclass
class Verdict:
    """A decision rule applied to one run, or with seeds to one arm (``arm``).

    ``value``: the run's value, or the arm's mean over its seeds, of the rule's measure (the
    metric's final or best-of-curve value, steps to reach a target, roughness);
    ``reference_value``: the same of the arm (run) the rule names; ``threshold``: what
    ``value`` is compared with (e.g. 1.02 × the reference's mean); ``difference``, ``low``,
    ``high``: value − threshold and its Welch interval at ``level`` (arms with >= 2 runs
    on both sides; None otherwise); ``values``: each run's measure (None: failed it
    outright, e.g. never reached the target).
    """

    rule: str
    run: str  # the run judged, or the arm
    metric: str
    value: float | None
    threshold: float | None
    verdict: str  # pass | fail | inconclusive (arms: the interval contains 0) | n/a
    text: str  # the rule, e.g. "<= 1.02 * f1_rgb_only"
    reason: str = ""
    which: str = "final"  # final | best (best-of-curve) | curve (a curve rule)
    measure: str = ""  # "" (the metric's value), "steps to reach ...", "roughness"
    arm: bool = False
    reference: str | None = None
    reference_value: float | None = None
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    level: float | None = None
    p_holm: float | None = None
    n: int | None = None
    n_reference: int | None = None
    values: dict[str, float | None] = field(default_factory=dict)

    @property
    def quantity(self) -> str:
        """What ``value`` is, for tables: ``val/mse``, ``val/mse BEST-OF-CURVE``,
        ``val/mse: steps to reach val/mse <= 0.012``, ``val/mse: roughness``."""
        if self.measure:
            return f"{self.metric}: {self.measure}"
        return self.metric + (" BEST-OF-CURVE" if self.which == "best" else "")

    def interval_text(self) -> str:
        """``+0.0003 [-0.0002, +0.0008]`` (value − threshold), or ``-``."""
        if self.low is None or self.high is None or self.difference is None:
            return "-"
        return f"{_signed(self.difference)} [{_signed(self.low)}, {_signed(self.high)}]"


@dataclass
class ArmSummary:
    """One experiment over its seeds: mean and sample std of each metric's value per run
    (final by default, best-of-curve when asked), and the values themselves."""

    name: str
    runs: list[str]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)

    def text(self, metric: str) -> str:
        if metric not in self.mean:
            return "-"
        return f"{_fmt(self.mean[metric])} ± {_fmt(self.std[metric])} (n={self.count[metric]})"


@dataclass
class MetricWinner:
    """Which arm is best on one metric, and whether its lead holds under :data:`ARM_RULE`.

    ``leads``: other arm -> Welch interval of the lead (best minus other, signed so that
    > 0 is better for the best arm) at the corrected level; ``p_value`` / ``p_holm``: the
    largest raw p of those comparisons and its Holm adjustment across the metrics;
    ``family``: the m metrics corrected for; ``level``: 1 − 0.05/m.
    """

    metric: str
    mode: str
    winner: str
    clear: bool  # every corrected interval of its lead excludes 0
    margin: float  # best mean minus the runner-up's (signed so that > 0 is better)
    runner_up: str = ""
    leads: dict[str, WelchInterval] = field(default_factory=dict)
    p_value: float = float("nan")
    p_holm: float = float("nan")
    family: int = 0
    level: float = float("nan")

    @property
    def deciding(self) -> tuple[str, WelchInterval] | None:
        """The other arm whose comparison decides (the largest p-value: the closest), and
        its interval; None without intervals."""
        if not self.leads:
            return None
        finite = {k: w for k, w in self.leads.items() if math.isfinite(w.p_value)}
        if not finite:
            return self.runner_up, self.leads[self.runner_up]
        name = max(finite, key=lambda k: finite[k].p_value)
        return name, finite[name]

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.p_value)

    @property
    def verdict(self) -> str:
        if not self.has_interval:
            return f"{self.winner} (no interval: < 2 seeds)"
        return f"{self.winner} ({'clear' if self.clear else 'within noise'})"

    def lead_text(self) -> str:
        """``+2.3 [+0.4, +4.2] vs b`` (the deciding comparison), or ``-``."""
        deciding = self.deciding
        if deciding is None or not self.has_interval:
            return f"{_signed(self.margin)} vs {self.runner_up}" if self.runner_up else "-"
        other, w = deciding
        return f"{_signed(w.diff)} [{_signed(w.low)}, {_signed(w.high)}] vs {other}"


def summarise_arms(
    runs: list[RunSummary],
    metrics: list[str],
    primary: str,
    mode: str,
    value: str = "final",
    level: float = ARM_LEVEL,
) -> tuple[list[ArmSummary], list[MetricWinner]]:
    """Group seeded runs by experiment; per metric, the best arm and whether it is clear.

    Each run contributes one value per metric: its final value (``value="final"``, the
    last validation; an ``eval/`` or ``curve/`` metric has only one) or its best over the
    validation curve (``value="best"``); failed runs are left out. The best arm has the
    best mean (for a target metric, the smallest mean distance from the target); its lead
    over every other arm is judged under :data:`ARM_RULE` with
    :func:`framecast.eval.stats.corrected_leads`, the family being the metrics with an
    interval (``level`` is the family-wise confidence).
    """
    if value not in ("final", "best"):
        raise ValueError(f"value must be 'final' or 'best', got {value!r}")
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        if run.arm is not None and run.status != "failed":
            groups.setdefault(run.arm, []).append(run)
    arms = []
    for name, members in groups.items():
        arm = ArmSummary(name, [r.name for r in members])
        for metric in metrics:
            values = [v for r in members if (v := r.value(metric, value)) is not None]
            if values:
                arm.values[metric] = values
                arm.mean[metric] = float(np.mean(values))
                arm.std[metric] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                arm.count[metric] = len(values)
        arms.append(arm)
    ranked: dict[str, tuple[str, list[ArmSummary], dict[str, list[float]]]] = {}
    for metric in metrics:
        scored = [a for a in arms if metric in a.mean]
        if len(scored) < 2:
            continue
        direction = metric_mode(metric, primary, mode)
        # Goodness per run (higher is better): the metric, its negative, or minus the
        # distance from the target; leads are differences of mean goodness.
        good = {a.name: [-badness(metric, direction, v) for v in a.values[metric]] for a in scored}
        scored.sort(key=lambda a: -float(np.mean(good[a.name])))
        ranked[metric] = (direction, scored, good)
    family = {
        metric: {other.name: (good[scored[0].name], good[other.name]) for other in scored[1:]}
        for metric, (_, scored, good) in ranked.items()
    }
    corrected: dict[str, CorrectedComparison] = corrected_leads(family, level)
    winners = []
    for metric, (direction, scored, good) in ranked.items():
        best, runner_up = scored[0], scored[1]
        result = corrected[metric]
        winners.append(
            MetricWinner(
                metric,
                direction,
                best.name,
                clear=result.clear,
                margin=float(np.mean(good[best.name]) - np.mean(good[runner_up.name])),
                runner_up=runner_up.name,
                leads=result.intervals,
                p_value=result.p_value,
                p_holm=result.p_holm,
                family=result.family,
                level=result.level,
            )
        )
    return arms, winners


@dataclass
class Comparison:
    """Runs ranked by the primary metric, with decision-rule verdicts and written files."""

    source: Path
    primary_metric: str
    mode: str
    runs: list[RunSummary]
    metrics: list[str]
    verdicts: list[Verdict] = field(default_factory=list)
    rules: list[DecisionRuleSpec] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    arms: list[ArmSummary] = field(default_factory=list)
    winners: list[MetricWinner] = field(default_factory=list)
    arm_metrics: list[str] = field(default_factory=list)
    value: str = "final"  # which value of each run ranks and compares: final | best

    @property
    def best_of_curve(self) -> bool:
        return self.value == "best"

    def arm_header(self) -> str:
        """What the arm table shows and the rule its verdicts follow."""
        family = max((w.family for w in self.winners), default=0)
        level = f"{1 - (1 - ARM_LEVEL) / family:.2%}" if family else "n/a"
        rule = textwrap.fill(ARM_RULE, width=100)
        return (
            f"arms: mean ± std over seeds of {VALUE_LABELS[self.value]}; the best arm's lead "
            f"with its interval at {level} (m = {family} metrics).\n{rule}"
        )

    def arm_table(self) -> tuple[list[str], list[list[str]]]:
        """Metric per row, arm per column (mean ± std over seeds), then the best arm's lead
        over the deciding other arm with its corrected interval, Holm's p and the verdict."""
        header = [
            "metric",
            *(a.name for a in self.arms),
            "lead [corrected interval]",
            "p (Holm)",
            "best arm",
        ]
        won = {w.metric: w for w in self.winners}
        rows = []
        for metric in self.arm_metrics:
            if not any(metric in a.mean for a in self.arms):
                continue
            arrow = MODE_ARROWS[metric_mode(metric, self.primary_metric, self.mode)]
            winner = won.get(metric)
            rows.append(
                [
                    f"{metric} {arrow}",
                    *(a.text(metric) for a in self.arms),
                    winner.lead_text() if winner else "-",
                    _fmt_p(winner.p_holm) if winner else "-",
                    winner.verdict if winner else "-",
                ]
            )
        return header, rows

    def lead_rows(self) -> tuple[list[str], list[list[str]]]:
        """Every comparison of every metric's best arm: lead, corrected interval, p."""
        header = ["metric", "best arm", "vs", "lead", "low", "high", "level", "p", "p (Holm)"]
        header += ["clear"]
        rows = []
        for w in self.winners:
            for other, iv in w.leads.items():
                rows.append(
                    [
                        w.metric,
                        w.winner,
                        other,
                        _fmt(iv.diff),
                        _fmt(iv.low),
                        _fmt(iv.high),
                        _fmt(iv.level),
                        _fmt_p(iv.p_value),
                        _fmt_p(w.p_holm),
                        "yes" if w.clear else "no",
                    ]
                )
        return header, rows

    def leads_csv(self) -> str:
        """:meth:`lead_rows` with exact numbers (repr), for arm_leads.csv."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        number = lambda v: repr(float(v)) if math.isfinite(v) else ""  # noqa: E731
        writer.writerow(
            ["metric", "mode", "best_arm", "vs", "lead", "low", "high", "level", "se", "df"]
            + ["p", "p_holm", "family", "clear", "value"]
        )
        for w in self.winners:
            for other, iv in w.leads.items():
                writer.writerow(
                    [w.metric, w.mode, w.winner, other, number(iv.diff), number(iv.low)]
                    + [number(iv.high), number(iv.level), number(iv.se), number(iv.df)]
                    + [number(iv.p_value), number(w.p_holm), w.family, w.clear, self.value]
                )
        return buffer.getvalue()

    # -- table ------------------------------------------------------------------------
    def table(self, compact: bool = False, fmt=None) -> tuple[list[str], list[list[str]]]:
        """Header and rows: rank, run, status, steps, then best/final of each metric.

        ``compact`` (the terminal): best and final of the primary metric, and the value
        compared (final, or best with best-of-curve) of four more.
        """
        columns = [(m, w) for m in self.metrics for w in ("best", "final")]
        if compact:
            others = _preferred(self.metrics[1:])[:4]
            columns = [(self.primary_metric, "best"), (self.primary_metric, "final")]
            columns += [(m, self.value) for m in others]
        header = ["rank", "run", "status", "steps", *(f"{m} {w}" for m, w in columns)]
        rows = []
        for run in self.runs:
            row = [
                str(run.rank) if run.rank is not None else "-",
                run.name,
                run.status,
                str(run.steps) if run.steps is not None else "-",
            ]
            row += [(fmt or _fmt)(run.value(m, w)) for m, w in columns]
            rows.append(row)
        return header, rows

    @property
    def arm_verdicts(self) -> bool:
        """Whether any verdict judges an arm over its seeds (:data:`ARM_VERDICT_RULE`)."""
        return any(v.arm for v in self.verdicts)

    def verdict_table(self) -> tuple[list[str], list[list[str]]]:
        """A row per verdict: rule, run or arm (``(n=3)`` seeds), what is measured, its
        value (arm: mean), the reference's, the threshold, value − threshold with its
        corrected interval and level, and the verdict with its reason."""
        header = ["rule", "run / arm", "measure", "value", "reference", "threshold"]
        header += ["value - threshold [interval]", "level", "verdict"]
        rows = []
        for v in self.verdicts:
            who = v.run + (f" (n={v.n})" if v.arm and v.n is not None else "")
            reference = "-"
            if v.reference is not None:
                count = f" (n={v.n_reference})" if v.arm and v.n_reference is not None else ""
                reference = f"{v.reference}{count} {_fmt(v.reference_value)}"
            rows.append(
                [
                    v.rule,
                    who,
                    v.quantity,
                    _fmt(v.value),
                    reference,
                    _fmt(v.threshold),
                    v.interval_text(),
                    f"{v.level:.2%}" if v.level is not None else "-",
                    v.verdict + (f" ({v.reason})" if v.reason else ""),
                ]
            )
        return header, rows

    def verdicts_csv(self) -> str:
        """Every verdict with exact numbers (repr), for verdicts.csv."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        number = lambda v: "" if v is None or not math.isfinite(v) else repr(float(v))  # noqa: E731
        writer.writerow(
            ["rule", "rule_text", "level", "judged", "metric", "value_of", "measure", "value"]
            + ["n", "reference", "reference_value", "n_reference", "threshold", "difference"]
            + ["low", "high", "interval_level", "p_holm", "verdict", "reason", "per_run"]
        )
        for v in self.verdicts:
            per_run = ";".join(f"{k}={'' if x is None else repr(x)}" for k, x in v.values.items())
            writer.writerow(
                [v.rule, v.text, "arm" if v.arm else "run", v.run, v.metric, v.which]
                + [v.measure, number(v.value), v.n if v.n is not None else ""]
                + [v.reference or "", number(v.reference_value)]
                + [v.n_reference if v.n_reference is not None else "", number(v.threshold)]
                + [number(v.difference), number(v.low), number(v.high), number(v.level)]
                + [number(v.p_holm), v.verdict, v.reason, per_run]
            )
        return buffer.getvalue()

    def decisions(self) -> list[str]:
        """One line per rule: which runs (arms) pass, fail, are inconclusive or have none."""
        lines = []
        for rule in self.rules:
            mine = [v for v in self.verdicts if v.rule == rule.name]
            what = rule.description or f"{rule.metric or self.primary_metric} {rule.rule}"
            parts = []
            for verdict in ("pass", "fail", "inconclusive", "n/a"):
                names = [v.run for v in mine if v.verdict == verdict]
                if names or verdict in ("pass", "fail"):
                    parts.append(f"{verdict}: {', '.join(names) or 'none'}")
            lines.append(f"{rule.name} ({what}; rule '{rule.rule}'): " + "; ".join(parts))
        return lines

    @property
    def winner(self) -> RunSummary | None:
        ranked = [r for r in self.runs if r.rank == 1]
        return ranked[0] if ranked else None

    def format(self) -> str:
        """Terminal text: aligned table, verdicts, decisions, files."""
        header, rows = self.table(compact=True)
        lines = [
            f"{self.source}: {len(self.runs)} runs ranked by {self.primary_metric} "
            f"({self.mode}), {self._ranked_by()}",
            *_aligned(header, rows),
        ]
        if self.verdicts:
            lines += ["", "decision rules:"]
            if self.arm_verdicts:
                lines += textwrap.wrap(ARM_VERDICT_RULE, width=100)
            lines += [*_aligned(*self.verdict_table()), "", *self.decisions()]
        if self.arms:
            lines += ["", self.arm_header()]
            lines += _aligned(*self.arm_table())
        if self.winner is not None:
            lines.append(f"best run: {self.winner.name}")
        for kind, path in self.files.items():
            lines.append(f"{kind}: {path}")
        return "\n".join(lines)

    def _ranked_by(self) -> str:
        if self.best_of_curve:
            return "its BEST-OF-CURVE value (best over the validations)"
        return "its final value"

    def to_markdown(self) -> str:
        header, rows = self.table()
        out = [
            f"# Comparison: {self.source.name}",
            "",
            f"Ranked by `{self.primary_metric}` ({self.mode}), {self._ranked_by()}; best = "
            "best value over validations, final = last logged value.",
            "",
            *_markdown(header, rows),
        ]
        if self.verdicts:
            out += ["", "## Decision rules", ""]
            if self.arm_verdicts:
                out += [ARM_VERDICT_RULE, ""]
            out += [*_markdown(*self.verdict_table()), ""]
            out += [f"- {line}" for line in self.decisions()]
        if self.arms:
            out += [
                "",
                "## Arms",
                "",
                f"Mean ± sample std over each experiment's seeds of {VALUE_LABELS[self.value]}.",
                "",
                ARM_RULE,
                "",
                *_markdown(*self.arm_table()),
            ]
            if any(w.leads for w in self.winners):
                out += [
                    "",
                    "Every comparison of each metric's best arm (Welch intervals at the "
                    "corrected level):",
                    "",
                    *_markdown(*self.lead_rows()),
                ]
        if "curves" in self.files:
            out += ["", f"![curves]({self.files['curves'].name})"]
        if "samples" in self.files:
            out += ["", f"![samples]({self.files['samples'].name})"]
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        header, rows = self.table(fmt=lambda v: "" if v is None else repr(float(v)))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow([*header, "error"])
        for run, row in zip(self.runs, rows):
            writer.writerow([*(c if c != "-" else "" for c in row), run.error or ""])
        return buffer.getvalue()


_PREFERRED = ("val/loss", "train/loss", "val/psnr", "val/ssim", "val/stlpips", "val/mse")


def _preferred(metrics: list[str]) -> list[str]:
    """``metrics`` with the commonly read ones first."""
    first = [m for m in _PREFERRED if m in metrics]
    return first + [m for m in metrics if m not in first]


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.5g}"


def _signed(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:+.4g}"


def _fmt_p(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    return [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(esc(c) for c in row) + " |" for row in rows),
    ]


# -- collecting runs -----------------------------------------------------------------------


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("config.yaml", "metrics.csv", "checkpoints")
    )


def _summarise(name: str, run_dir: Path, status: dict[str, Any], primary: str, mode: str):
    rows = [  # runs logged before a metric's rename read under its current name
        {current_metric_name(k): v for k, v in row.items()}
        for row in read_metrics_csv(run_dir / "metrics.csv")
    ]
    entry = status.get(name, {})
    state = entry.get("status") or (
        "done" if (run_dir / "checkpoints" / "last.ckpt").is_file() else "unknown"
    )
    summary = RunSummary(
        name=name, run_dir=run_dir, status=state, error=entry.get("error"), rows=rows
    )
    if rows:
        summary.steps = int(max(r.get("step", 0) for r in rows))
    if entry.get("global_step") is not None:
        summary.steps = int(entry["global_step"])
    keys = sorted(
        {k for r in rows for k in r if k.startswith("val/")} | ({primary} if rows else set())
    )
    for key in keys:
        values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
        if not values:
            continue
        key_mode = metric_mode(key, primary, mode)
        summary.best[key] = min(values, key=lambda v: badness(key, key_mode, v))
        summary.final[key] = values[-1]
        # The mean over the validation curve: lower (or higher) means the run got there
        # sooner, the convergence figure that final values alone do not show.
        summary.best[f"curve/{key}"] = summary.final[f"curve/{key}"] = float(np.mean(values))
    return summary


def _attach_evaluation(summary: RunSummary, folder: Path) -> None:
    """Means over horizons of the evaluation in ``folder`` (its metrics.json: a sweep's
    evaluate step, or ``framecast evaluate``'s default RUN/eval/SPLIT), as
    ``eval/<metric>``; nothing when the run has none."""
    path = folder / "metrics.json"
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    data["methods"] = {  # evaluations written before a metric's rename
        method: {current_metric_name(k): v for k, v in by_metric.items()}
        for method, by_metric in data["methods"].items()
    }
    summary.evaluation = data
    for metric, values in data["methods"].get(data.get("kind", "river"), {}).items():
        if values.get("mean") is not None:
            summary.best[f"eval/{metric}"] = summary.final[f"eval/{metric}"] = values["mean"]


def arms_per_horizon_csv(comparison: Comparison) -> str:
    """Per arm (and the evaluation's baselines), metric and horizon: mean and std over seeds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["arm", "metric", "horizon", "mean", "std", "n"])
    by_name = {r.name: r for r in comparison.runs}
    groups = [(a.name, [by_name[n] for n in a.runs]) for a in comparison.arms]
    evaluated = [r for r in comparison.runs if r.evaluation]
    if evaluated:  # baselines do not depend on the arm: take them from one run
        data = evaluated[0].evaluation
        for method in data["methods"]:
            if method != data.get("kind", "river"):
                groups.append((method, [evaluated[0]]))
    for arm, members in groups:
        tables = []
        for run in members:
            if run.evaluation is None:
                continue
            kind = run.evaluation.get("kind", "river")
            method = kind if arm in {a.name for a in comparison.arms} else arm
            tables.append(run.evaluation["methods"].get(method, {}))
        metrics = list(dict.fromkeys(m for t in tables for m in t))
        for metric in metrics:
            series = [t[metric]["per_horizon"] for t in tables if metric in t]
            for h in range(max(len(x) for x in series)):
                values = [x[h] for x in series if h < len(x) and x[h] is not None]
                if values:
                    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                    writer.writerow(
                        [arm, metric, h + 1, repr(float(np.mean(values))), repr(std), len(values)]
                    )
    return buffer.getvalue()


def _load_sweep_spec(folder: Path) -> SweepSpec | None:
    from framecast.experiments.spec import load_spec
    from framecast.experiments.sweep import SPEC_FILE

    path = folder / SPEC_FILE
    return load_spec(path) if path.is_file() else None


def compare(
    path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    spec: str | os.PathLike | None = None,
    primary_metric: str | None = None,
    mode: str | None = None,
    plots: bool = True,
    best_of_curve: bool = False,
    seeded: bool = False,
    evaluation: str | None = None,
) -> Comparison:
    """Compare the runs of a sweep folder or of a folder of runs; write table and plots.

    ``out_dir`` defaults to ``PATH/compare``. ``spec`` (a sweep spec) supplies the primary
    metric and decision rules when ``PATH`` has no ``sweep.yaml``; ``primary_metric`` and
    ``mode`` override both. Runs are ranked and arms compared on each run's final value
    of a metric; ``best_of_curve`` uses its best value over the validations instead
    (labelled so in every output). Decision rules keep their own ``value`` setting (final
    unless a rule asks for best); with a seeded spec they judge arms (:data:`ARM_VERDICT_RULE`).

    Runs made outside a sweep: ``seeded`` groups runs named ``<arm>_s<seed>`` into arms
    (as a spec's ``seeds`` does), and ``evaluation`` (a split) attaches each run's
    ``framecast evaluate`` results from ``RUN/eval/<split>/metrics.json`` as ``eval/``
    metrics (a spec's ``evaluate`` step does the same for its split).
    """
    from framecast.experiments.spec import check_rule_names, load_spec
    from framecast.experiments.sweep import read_status

    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"compare: {folder} is not a folder of runs or a sweep folder")
    sweep_spec = load_spec(spec) if spec is not None else _load_sweep_spec(folder)
    status = read_status(folder).get("runs", {})
    primary = current_metric_name(
        primary_metric or (sweep_spec.primary_metric if sweep_spec else "val/loss")
    )
    the_mode = mode or (sweep_spec.mode if sweep_spec else "min")
    if the_mode not in ("min", "max"):
        raise ConfigError(f"compare: mode {the_mode!r}; expected min or max")

    if _is_run_dir(folder) and not status:
        names = [folder.name]
        folder_of = {folder.name: folder}
    else:
        names = list(status)  # sweep order first
        names += sorted(p.name for p in folder.iterdir() if _is_run_dir(p) and p.name not in status)
        folder_of = {n: folder / n for n in names}
    if not names:
        raise ConfigError(f"compare: {folder} holds no run directories (config.yaml/metrics.csv)")
    runs = [_summarise(n, folder_of[n], status, primary, the_mode) for n in names]
    in_sweep_order = list(runs)  # arms are listed in the spec's order, not by rank
    if evaluation is not None:
        for run in runs:
            _attach_evaluation(run, run.run_dir / "eval" / evaluation)
    elif sweep_spec is not None and sweep_spec.evaluate is not None:
        from framecast.experiments.sweep import evaluation_dir

        for run in runs:
            _attach_evaluation(run, evaluation_dir(run.run_dir, sweep_spec.evaluate))
    if seeded or (sweep_spec is not None and sweep_spec.seeds):
        for run in runs:
            run.arm = status.get(run.name, {}).get("experiment") or _arm_of(run.name)

    # Rank: runs with the primary metric by its value (final, or best-of-curve when
    # asked), then the rest (failed last).
    value = "best" if best_of_curve else "final"
    scored = [r for r in runs if r.value(primary, value) is not None and r.status != "failed"]
    scored.sort(key=lambda r: r.value(primary, value), reverse=the_mode == "max")
    for i, run in enumerate(scored, start=1):
        run.rank = i
    rest = [r for r in runs if r not in scored]
    rest.sort(key=lambda r: r.status == "failed")
    runs = scored + rest

    metrics = [primary] + _preferred(sorted({k for r in runs for k in r.best} - {primary}))
    rules = list(sweep_spec.decision_rules) if sweep_spec else []
    comparison = Comparison(
        source=folder,
        primary_metric=primary,
        mode=the_mode,
        runs=runs,
        metrics=metrics,
        rules=rules,
        value=value,
    )
    seeded = bool(sweep_spec is not None and sweep_spec.seeds)
    if seeded:  # a rule naming an arm the spec does not have is a mistake, not "n/a"
        check_rule_names(sweep_spec, f"compare {folder}", names)
    comparison.verdicts = [
        v for rule in rules for v in _apply_rule(rule, in_sweep_order, primary, the_mode, seeded)
    ]
    if any(r.arm is not None for r in runs):
        wanted = list(sweep_spec.report_metrics or []) if sweep_spec else []
        comparison.arm_metrics = wanted or metrics
        comparison.arms, comparison.winners = summarise_arms(
            in_sweep_order, comparison.arm_metrics, primary, the_mode, value=value
        )

    out = Path(out_dir) if out_dir is not None else folder / "compare"
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        panels = [primary, *_preferred([m for m in metrics if m != primary] + ["train/loss"])]
        curves = plot_run_curves(runs, out / "curves.png", panels[:6])
        if curves is not None:
            comparison.files["curves"] = curves
        samples = sample_grid(runs, out / "samples.png")
        if samples is not None:
            comparison.files["samples"] = samples
    comparison.files = {
        "table": out / "comparison.md",
        "csv": out / "comparison.csv",
        **comparison.files,
    }
    if comparison.arms:
        comparison.files["arm_leads"] = out / "arm_leads.csv"
        atomic_write_text(out / "arm_leads.csv", comparison.leads_csv())
        comparison.files["arms_per_horizon"] = out / "arms_per_horizon.csv"
        atomic_write_text(out / "arms_per_horizon.csv", arms_per_horizon_csv(comparison))
        if plots:
            figure = plot_arms_per_horizon(out / "arms_per_horizon.csv", out / "arms.png")
            if figure is not None:
                comparison.files["arms_plot"] = figure
    if comparison.verdicts:
        comparison.files["verdicts"] = out / "verdicts.csv"
        atomic_write_text(out / "verdicts.csv", comparison.verdicts_csv())
    atomic_write_text(out / "comparison.csv", comparison.to_csv())
    atomic_write_text(out / "comparison.md", comparison.to_markdown())
    return comparison


def _arm_of(run_name: str) -> str:
    """``control_s1`` -> ``control`` (a seeded run's experiment, from its name)."""
    match = re.fullmatch(r"(.*)_s-?\d+(_.*)?", run_name)
    return match.group(1) if match else run_name


def plot_arms_per_horizon(csv_path: Path, path: Path) -> Path | None:
    """One panel per metric: each arm's mean per horizon with a ± std band."""
    with open(csv_path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None
    from framecast.eval.plots import pyplot

    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    plt = pyplot()
    cols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for arm in arms:
            pts = [r for r in rows if r["arm"] == arm and r["metric"] == metric]
            if not pts:
                continue
            h = [int(r["horizon"]) for r in pts]
            mean = np.array([float(r["mean"]) for r in pts])
            std = np.array([float(r["std"]) for r in pts])
            ax.plot(h, mean, marker=".", label=arm)
            ax.fill_between(h, mean - std, mean + std, alpha=0.2)
    return _finish_panels(fig, axes, metrics, "horizon (frames ahead)", path)


def _apply_rule(
    rule: DecisionRuleSpec,
    runs: list[RunSummary],
    primary: str,
    mode: str = "min",
    seeded: bool = False,
) -> list[Verdict]:
    """Verdicts of one decision rule: per run, or per arm over its seeds (``seeded``).

    Curve rules always judge each run (with seeds, ``runs`` names arms: all their runs).
    Value and relative rules judge each arm with seeds (:func:`_apply_arm_rule`), each run
    without (one run per arm: point comparisons, said so in the reason).
    """
    parsed = rule.parsed
    metric = rule.metric or primary
    by_name = {r.name: r for r in runs}
    if isinstance(parsed, CurveRule):
        if rule.runs is None:
            judged = [r.name for r in runs]
        elif seeded:
            wanted = set(rule.runs)
            judged = [r.name for r in runs if r.arm in wanted or r.name in wanted]
        else:
            judged = list(rule.runs)
        return [_apply_curve_rule(rule, parsed, name, by_name.get(name), metric) for name in judged]
    direction = rule.mode or metric_mode(metric, primary, mode)
    if seeded:
        arms: dict[str, list[RunSummary]] = {}
        for run in runs:
            if run.arm is not None:
                arms.setdefault(run.arm, []).append(run)
        return _apply_arm_rule(rule, parsed, arms, metric, direction, "arm")
    if isinstance(parsed, RelativeRule):
        # One run per arm: the same measures as with seeds, compared as points.
        single = {r.name: [r] for r in runs}
        return _apply_arm_rule(rule, parsed, single, metric, direction, "run")
    values = {r.name: r.value(metric, rule.value) for r in runs if r.status != "failed"}
    judged = (
        rule.runs
        if rule.runs is not None
        else [r.name for r in runs if r.name not in parsed.references]
    )
    reference = parsed.references[0] if len(parsed.references) == 1 else None
    out = []
    for name in judged:
        run = by_name.get(name)
        verdict = _new_verdict(rule, name, metric)
        verdict.reference = reference
        verdict.reference_value = values.get(reference) if reference else None
        if run is None:
            verdict.reason = "no such run"
        elif run.status == "failed":
            verdict.reason = "run failed"
        elif run.value(metric, rule.value) is None:
            verdict.reason = f"no {metric}"
        else:
            verdict.value = run.value(metric, rule.value)
            verdict.n = 1
            try:
                ok, verdict.threshold = parsed.check(verdict.value, values)
                verdict.verdict = "pass" if ok else "fail"
                verdict.reason = ONE_RUN
            except KeyError as exc:
                verdict.reason = f"reference run {exc.args[0]} has no {metric}"
            except ZeroDivisionError:
                verdict.reason = "division by zero"
        out.append(verdict)
    return out


ONE_RUN = "one run: no interval"


def _new_verdict(rule: DecisionRuleSpec, name: str, metric: str) -> Verdict:
    return Verdict(rule.name, name, metric, None, None, "n/a", rule.rule, which=rule.value)


def _curve_points(run: RunSummary, metric: str, direction: str | None = None) -> list:
    """``(step, value)`` of every logged value of ``metric`` in step order (NaN kept); with
    ``direction``, values as badness (lower is better: :func:`badness`)."""
    points = []
    for index, row in enumerate(run.rows):
        if metric in row:
            value = row[metric]
            if direction is not None and math.isfinite(value):
                value = badness(metric, direction, value)
            points.append((row.get("step", float(index)), value))
    return points


def _stopped_non_finite(run: RunSummary) -> bool:
    """A run stopped on a NaN/inf loss: it never logged it, but it is instability."""
    return run.status == "failed" and "non-finite" in (run.error or "")


@dataclass
class _ArmMeasures:
    """One arm's measures for a rule: per run, the runs that fail outright, the left-out."""

    values: dict[str, float] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)  # run -> why
    left_out: dict[str, str] = field(default_factory=dict)  # run -> why

    @property
    def sample(self) -> list[float]:
        return list(self.values.values())


def _value_measures(runs: list[RunSummary], metric: str, which: str) -> _ArmMeasures:
    out = _ArmMeasures()
    for run in runs:
        value = run.value(metric, which)
        if run.status == "failed":
            out.left_out[run.name] = "run failed"
        elif value is None:
            out.left_out[run.name] = f"no {metric}"
        else:
            out.values[run.name] = value
    return out


def _convergence_measures(
    runs: list[RunSummary], metric: str, direction: str, target: float, reference: bool
) -> _ArmMeasures:
    """Steps to reach ``target`` (in badness units) per run. A judged run that never
    reaches it fails; a reference run counts at its last logged step (a lower bound)."""
    out = _ArmMeasures()
    for run in runs:
        if run.status == "failed" and not _stopped_non_finite(run):
            out.left_out[run.name] = "run failed"
            continue
        points = _curve_points(run, metric, direction)
        if not points:
            out.left_out[run.name] = f"no {metric}"
            continue
        step = steps_to_reach(points, target)
        if step is not None:
            out.values[run.name] = step
        elif reference:
            out.values[run.name] = float(points[-1][0])
            out.left_out[run.name] = "never reached: its last step counted (a lower bound)"
        else:
            out.failing[run.name] = "never reached"
    return out


def _stability_measures(runs: list[RunSummary], metric: str) -> _ArmMeasures:
    out = _ArmMeasures()
    for run in runs:
        if _stopped_non_finite(run):
            out.failing[run.name] = "stopped on a non-finite loss"
            continue
        if run.status == "failed":
            out.left_out[run.name] = "run failed"
            continue
        value, why = roughness(_curve_points(run, metric))
        if value is None:
            out.left_out[run.name] = why
        elif math.isinf(value):
            out.failing[run.name] = why
        else:
            out.values[run.name] = value
    return out


def _apply_arm_rule(
    rule: DecisionRuleSpec,
    parsed: Rule | RelativeRule,
    arms: dict[str, list[RunSummary]],
    metric: str,
    direction: str,
    unit: str,
) -> list[Verdict]:
    """A value or relative rule per arm (:data:`ARM_VERDICT_RULE`); ``arms``: name -> its
    runs (``unit`` "arm"), or each run alone (``unit`` "run": no seeds).

    Each arm's runs give one measure each (the metric's value; steps to reach the target;
    roughness); the verdict is read off Welch's interval of (arm's measure − threshold),
    Bonferroni-corrected over the arms this rule judges. One run per side (no seeds): a
    point comparison, said so in the reason.
    """
    coefficient, constant = 1.0, 0.0
    if isinstance(parsed, Rule):
        reference, coefficient, constant = parsed.affine()
    else:
        reference = parsed.reference
    judged = (
        list(rule.runs)
        if rule.runs is not None
        else [a for a in arms if a not in parsed.references]
    )
    verdicts = {name: _new_verdict(rule, name, metric) for name in judged}
    for verdict in verdicts.values():
        verdict.reference, verdict.arm = reference, unit == "arm"
        if isinstance(parsed, RelativeRule):
            verdict.measure = parsed.measure
    if reference is not None and reference not in arms:
        for verdict in verdicts.values():
            verdict.reason = f"no {unit} {reference}"
        return list(verdicts.values())

    # How each arm (and the reference) is measured.
    if isinstance(parsed, Rule):
        measure = lambda members, is_ref: _value_measures(members, metric, rule.value)  # noqa: E731
    elif parsed.kind == "stability":
        measure = lambda members, is_ref: _stability_measures(members, metric)  # noqa: E731
    else:
        finals = _value_measures(arms[parsed.reference], metric, rule.value)
        if not finals.values:
            for verdict in verdicts.values():
                verdict.reason = f"{parsed.reference} has no {metric}"
            return list(verdicts.values())
        mean_final = float(np.mean(finals.sample))
        target = float(np.mean([badness(metric, direction, v) for v in finals.sample]))
        target += parsed.tolerance * abs(mean_final)
        shown = _target_text(metric, direction, target)
        for verdict in verdicts.values():
            verdict.measure = f"steps to reach {shown}"
        measure = lambda members, is_ref: _convergence_measures(  # noqa: E731
            members, metric, direction, target, is_ref
        )
    ref_measures = measure(arms[reference], True) if reference is not None else None
    if ref_measures is not None and ref_measures.failing:
        bad = ", ".join(f"{k} ({v})" for k, v in ref_measures.failing.items())
        for verdict in verdicts.values():
            verdict.reason = f"reference {reference} has no measure: {bad}"
        return list(verdicts.values())
    if ref_measures is not None and not ref_measures.values:
        why = "; ".join(f"{k}: {v}" for k, v in ref_measures.left_out.items()) or "no runs"
        for verdict in verdicts.values():
            verdict.reason = f"reference {reference} has no measure ({why})"
        return list(verdicts.values())
    ref_sample = ref_measures.sample if ref_measures is not None else []
    threshold_sample = (
        [coefficient * v + constant for v in ref_sample] if ref_sample else [constant, constant]
    )

    pairs: dict[str, tuple[list[float], list[float]]] = {}
    notes: dict[str, list[str]] = {}
    for name, verdict in verdicts.items():
        if name not in arms:
            verdict.reason = f"no such {unit}"
            continue
        mine = measure(arms[name], False)
        verdict.values = {**mine.values, **{k: None for k in mine.failing}}
        verdict.n = len(mine.values)
        notes[name] = [f"{k}: {v}" for k, v in mine.left_out.items()]
        if ref_measures is not None:
            verdict.reference_value = float(np.mean(ref_sample))
            verdict.n_reference = len(ref_sample)
            notes[name] += [f"{k}: {v}" for k, v in ref_measures.left_out.items()]
        if mine.values:
            verdict.value = float(np.mean(mine.sample))
        verdict.threshold = float(np.mean(threshold_sample))
        if mine.failing:
            verdict.verdict = "fail"
            failing = ", ".join(f"{k} {v}" for k, v in mine.failing.items())
            verdict.reason = "; ".join([failing, *notes[name]])
        elif not mine.values:
            verdict.reason = "; ".join(notes[name]) or f"no {metric}"
        else:
            pairs[name] = (mine.sample, threshold_sample)
    corrected = corrected_welch(pairs, ARM_LEVEL) if pairs else {}
    for name, result in corrected.items():
        verdict, interval = verdicts[name], corrected[name].interval
        verdict.difference = interval.diff
        if math.isfinite(interval.low):
            verdict.low, verdict.high = interval.low, interval.high
            verdict.level, verdict.p_holm = result.level, result.p_holm
            verdict.verdict = parsed.interval_verdict(interval.low, interval.high)
            reason = [] if verdict.verdict != "inconclusive" else ["interval contains 0"]
        else:
            # Fewer than 2 values on a side: no variance, no interval; compare the points.
            ok = interval_verdict(parsed.comparison, interval.diff, interval.diff) == "pass"
            verdict.verdict = "pass" if ok else "fail"
            reason = [
                ONE_RUN
                if unit == "run"
                else "fewer than 2 runs on a side: no interval, means compared as points"
            ]
        verdict.reason = "; ".join(reason + notes[name])
    return list(verdicts.values())


def _target_text(metric: str, direction: str, target: float) -> str:
    """A convergence target (badness units) in the metric's own terms."""
    if direction == "min":
        return f"{metric} <= {_fmt(target)}"
    if direction == "max":
        return f"{metric} >= {_fmt(-target)}"
    aim = ON_TARGET[metric.rsplit("/", 1)[-1].lower()]
    return f"|{metric} - {aim:g}| <= {_fmt(target)}"


def _apply_curve_rule(
    rule: DecisionRuleSpec, parsed: CurveRule, name: str, run: RunSummary | None, metric: str
) -> Verdict:
    """A stability rule on the run's whole logged curve of ``metric`` (all rows, NaN kept)."""
    verdict = Verdict(rule.name, name, metric, None, None, "n/a", rule.rule, which="curve")
    if run is None:
        verdict.reason = "no such run"
    elif run.status == "failed":
        # A run stopped on a NaN/inf loss never logged it, but it is the instability the
        # rule is about; any other crash says nothing about stability.
        if _stopped_non_finite(run):
            verdict.verdict, verdict.reason = "fail", "stopped on a non-finite loss"
        else:
            verdict.reason = "run failed"
    else:
        curve = [row[metric] for row in run.rows if metric in row]
        ok, verdict.value, verdict.threshold, verdict.reason = parsed.check_curve(curve)
        if ok is not None:
            verdict.verdict = "pass" if ok else "fail"
    return verdict


# -- plots ---------------------------------------------------------------------------------


def plot_run_curves(runs: list[RunSummary], path: Path, metrics: list[str]) -> Path | None:
    """One panel per metric, one line per run (step on x); None when nothing was logged."""
    metrics = [m for m in dict.fromkeys(metrics) if any(m in row for r in runs for row in r.rows)]
    if not metrics:
        return None
    from framecast.eval.plots import pyplot

    plt = pyplot()
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.5 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for run in runs:
            pts = [
                (row["step"], row[metric]) for row in run.rows if metric in row and "step" in row
            ]
            pts = [(x, y) for x, y in pts if math.isfinite(y)]
            if pts:
                x, y = zip(*pts)
                label = run.name + (" (failed)" if run.status == "failed" else "")
                ax.plot(x, y, marker="o" if len(pts) < 30 else None, label=label)
    return _finish_panels(fig, axes, metrics, "step", path)


def _finish_panels(fig, axes, metrics: list[str], xlabel: str, path: Path) -> Path:
    """Title, axis label, grid and legend per used panel; blank the rest; save as PNG."""
    from framecast.eval.plots import save_figure

    for ax, metric in zip(axes.flat, metrics):
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def latest_sample(run_dir: Path) -> Path | None:
    """The newest PNG in ``run_dir/samples`` (by modification time, then name)."""
    pngs = list((run_dir / "samples").glob("*.png"))
    if not pngs:
        return None
    return max(pngs, key=lambda p: (p.stat().st_mtime, p.name))


def sample_grid(runs: list[RunSummary], path: Path) -> Path | None:
    """Each run's latest sample PNG side by side, run names above; None when there are none."""
    from PIL import Image, ImageDraw

    images = []
    for run in runs:
        sample = latest_sample(run.run_dir)
        if sample is not None:
            images.append((run.name, Image.open(sample).convert("RGB")))
    if not images:
        return None
    pad, label_h = 6, 16
    width = sum(im.width for _, im in images) + pad * (len(images) + 1)
    height = max(im.height for _, im in images) + label_h + 2 * pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = pad
    for name, image in images:
        draw.text((x, pad // 2), name, fill=(0, 0, 0))
        canvas.paste(image, (x, label_h + pad))
        x += image.width + pad
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
