"""Decision rules: the relative rules' syntax and measures, and verdicts per arm over seeds
on synthetic runs of known difference (value rules, convergence, stability), per run
without seeds."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from framecast.errors import ConfigError
from framecast.experiments.compare import ARM_VERDICT_RULE, compare
from framecast.experiments.rules import (
    RelativeRule,
    RuleSyntaxError,
    interval_verdict,
    parse_rule,
    roughness,
    steps_to_reach,
)
from framecast.experiments.spec import expand_sweep

REPO = Path(__file__).resolve().parents[2]
F1 = REPO / "configs" / "f1_rgb_only.yaml"
STEPS = range(250, 6001, 250)  # 24 validations, like 6000 steps validated every 250


# -- the language ---------------------------------------------------------------------------


def test_relative_rules_parse():
    rule = parse_rule("converges no slower than f1_rgb_only")
    assert rule == RelativeRule(
        "converges no slower than f1_rgb_only", "convergence", "f1_rgb_only"
    )
    assert rule.references == ["f1_rgb_only"] and rule.tolerance == 0.0
    assert parse_rule("  Converges  no slower than 'vae-2a' within 5 %").tolerance == 0.05
    assert parse_rule('converges no slower than "vae-2a" within .5%').reference == "vae-2a"
    stable = parse_rule("no less stable than f1_rgb_only")
    assert (stable.kind, stable.reference, stable.measure) == (
        "stability",
        "f1_rgb_only",
        "roughness",
    )
    # The curve rules and value rules are unchanged beside them.
    assert parse_rule("not rising over 5 within 2%").kind == "rising"
    assert parse_rule("<= 1.02 * f1_rgb_only").references == ["f1_rgb_only"]


@pytest.mark.parametrize(
    "bad",
    [
        "converges slower than f1",
        "converges no slower than",
        "converges no slower than f1 within 5",
        "converges no slower than f1 by 5%",
        "no less stable than",
        "no less stable than a b",
        "no more stable than f1",
        "less stable than f1",
        "converges no slower than f1; import os",
    ],
)
def test_malformed_relative_rules_say_what_is_expected(bad):
    with pytest.raises(RuleSyntaxError, match="converges no slower than NAME") as info:
        parse_rule(bad)
    assert repr(bad) in str(info.value)  # the message names the rule


def test_value_rules_as_affine_thresholds():
    assert parse_rule("<= 1.02 * f1_rgb_only").affine() == ("f1_rgb_only", 1.02, 0.0)
    assert parse_rule(">= 0.95").affine() == (None, 0.0, 0.95)
    assert parse_rule("<= (a - 1) / 2").affine() == ("a", 0.5, -0.5)
    assert parse_rule(">= 'vae-2a' - 1.0").affine() == ("vae-2a", 1.0, -1.0)
    assert parse_rule("<= -a * 2 + a * 3").affine() == ("a", 1.0, 0.0)
    for bad, why in [("<= a * b", "multiplies"), ("<= 1 / a", "divides"), ("<= a + b", "a, b")]:
        with pytest.raises(RuleSyntaxError, match=why):
            parse_rule(bad).affine()


@pytest.mark.parametrize(
    ("comparison", "low", "high", "verdict"),
    [
        ("<=", -2.0, -1.0, "pass"),
        ("<=", -1.0, 0.0, "pass"),  # "at or below 0"
        ("<=", -1.0, 1.0, "inconclusive"),
        ("<=", 0.5, 1.0, "fail"),
        ("<", -1.0, 0.0, "inconclusive"),
        (">=", 0.0, 1.0, "pass"),
        (">=", -1.0, 1.0, "inconclusive"),
        (">=", -2.0, -1.0, "fail"),
        (">", 0.0, 1.0, "inconclusive"),
        ("==", 0.0, 0.0, "pass"),
        ("==", -1.0, 1.0, "inconclusive"),
        ("==", 1.0, 2.0, "fail"),
    ],
)
def test_interval_verdicts_are_three_way(comparison, low, high, verdict):
    assert interval_verdict(comparison, low, high) == verdict


def test_steps_to_reach_and_roughness():
    curve = [(100, 0.5), (200, float("nan")), (300, 0.2), (400, 0.1), (500, 0.15)]
    assert steps_to_reach(curve, 0.2) == 300 and steps_to_reach(curve, 0.05) is None
    assert steps_to_reach(curve, 0.3) == 300  # NaN never reaches
    falling = [(s, 1.0 / s) for s in range(1, 11)]
    assert roughness(falling) == (0.0, "")  # however fast it falls: no back and forth
    # Second half: steps 5..10 (last step 10); log values 0, +a, 0, +a, 0, +a.
    a = math.log(1.1)
    zigzag = [(s, 1.0 if s % 2 else 1.1) for s in range(1, 11)]
    measure, _ = roughness(zigzag)
    assert measure == pytest.approx((5 * a - a) / 5)  # 5 changes: +a -a +a -a +a
    assert roughness([(1, 1.0), (2, float("inf")), (3, 1.0)])[0] == math.inf
    short, why = roughness([(1, 1.0), (2, 0.9)])
    assert (
        short is None and why == "only 2 values in the second half of training, roughness needs 3"
    )
    assert "positive" in roughness([(1, 1.0), (2, 0.0), (3, 1.0), (4, 1.0)])[1]


def _spec(tmp_path: Path, rules: str, experiments: str = "{f1: [], f2: []}", seeds: bool = True):
    spec = tmp_path / "spec.yaml"
    seeds_line = "seeds: [0, 1, 2]\n" if seeds else ""
    spec.write_text(
        f"base: {F1}\nexperiments: {experiments}\n{seeds_line}primary_metric: val/mse\n"
        f"decision_rules:\n{rules}"
    )
    return spec


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        (
            "{name: r, rule: 'converges no slower than f9'}",
            r"\(r, .*arm 'f9'; arms of this sweep: f1, f2",
        ),
        ("{name: r, rule: '<= 1.02 * f1_s0'}", "with seeds, rules name arms"),
        ("{name: r, rule: 'no less stable than f1', runs: [f3]}", "arm 'f3'"),
        ("{name: r, rule: '<= f1 * f2'}", r"\(r, '<= f1 \* f2'\).*affine in one arm"),
        ("{name: r, rule: '<= (f1 + f2) / 2'}", "compares an arm with one other arm"),
        (
            "{name: r, rule: 'converges slower than f1'}",
            "decision_rules.0.rule.*relative rules read",
        ),
    ],
)
def test_bad_rules_in_a_seeded_spec_fail_naming_the_rule(tmp_path, rule, match):
    spec = _spec(tmp_path, f"  - {rule}\n")
    with pytest.raises(ConfigError, match=match):
        expand_sweep(spec)


def test_rules_name_runs_without_seeds(tmp_path):
    spec = _spec(tmp_path, "  - {name: r, rule: 'converges no slower than f1'}\n", seeds=False)
    assert expand_sweep(spec).spec.decision_rules[0].parsed.reference == "f1"
    bad = _spec(tmp_path, "  - {name: r, rule: 'no less stable than f1_s0'}\n", seeds=False)
    with pytest.raises(ConfigError, match="run 'f1_s0'; runs of this sweep: f1, f2"):
        expand_sweep(bad)


# -- verdicts on synthetic runs -------------------------------------------------------------


def _mse_curve(level: float, tau: float, zigzag: float = 0.0) -> list[float]:
    """A val MSE curve: exponential approach to ``level`` (time constant ``tau`` steps),
    multiplied by 1 ± ``zigzag`` alternately (evaluation-to-evaluation noise)."""
    return [
        level * (1 + 3 * math.exp(-step / tau)) * (1 + zigzag * (-1) ** i)
        for i, step in enumerate(STEPS)
    ]


def _write(folder: Path, curves: dict[str, list[float]], status: dict | None = None) -> None:
    for name, values in curves.items():
        (folder / name).mkdir(parents=True)
        rows = "\n".join(f"{step},{v!r}" for step, v in zip(STEPS, values))
        (folder / name / "metrics.csv").write_text(f"step,val/mse\n{rows}\n")
    if status is not None:
        (folder / "sweep_status.json").write_text(json.dumps({"runs": status}))


# Seed k of every arm is jittered by j = k - 1 (-1, 0, +1): small known spreads.
ARMS = {
    # the reference: level 0.010, time constant 800 steps, 0.2 % evaluation noise
    "f1": lambda j: _mse_curve(0.010 * (1 + 0.003 * j), 800 * (1 + 0.05 * j), 0.002),
    # no different from f1 (other jitter)
    "same": lambda j: _mse_curve(0.010 * (1 - 0.002 * j), 800 * (1 - 0.04 * j), 0.002),
    # 10 % worse MSE at the end
    "worse": lambda j: _mse_curve(0.011 * (1 + 0.005 * j), 800 * (1 + 0.05 * j), 0.002),
    # the same end level, reached about 1,800 steps later (time constant 1,400)
    "slow": lambda j: _mse_curve(0.0098 * (1 + 0.005 * j), 1400 * (1 + 0.05 * j), 0.002),
    # f1's curves with a 5 % zig-zag from evaluation to evaluation (25x f1's)
    "noisy": lambda j: _mse_curve(0.010 * (1 + 0.003 * j), 800 * (1 + 0.05 * j), 0.05 + 0.002 * j),
    # two seeds like f1, one that stalls 12 % above f1's final MSE
    "stalls": lambda j: _mse_curve(0.0112 if j == 1 else 0.010, 800, 0.002),
}
RULES = """\
  - {name: mse, rule: "<= 1.02 * f1", metric: val/mse}
  - {name: speed, rule: "converges no slower than f1 within 5%", metric: val/mse}
  - {name: stable, rule: "no less stable than f1", metric: val/mse}
"""


@pytest.fixture
def seeded(tmp_path):
    folder = tmp_path / "runs"
    _write(folder, {f"{arm}_s{k}": make(k - 1) for arm, make in ARMS.items() for k in range(3)})
    spec = _spec(tmp_path, RULES, "{" + ", ".join(f"{a}: []" for a in ARMS) + "}")
    return compare(folder, spec=spec, plots=False)


def _verdicts(comparison, rule: str) -> dict:
    return {v.run: v for v in comparison.verdicts if v.rule == rule}


def test_value_rule_per_arm_on_intervals(seeded):
    mse = _verdicts(seeded, "mse")
    assert set(mse) == set(ARMS) - {"f1"}  # every arm the rule does not refer to
    f1_finals = [ARMS["f1"](j)[-1] for j in (-1, 0, 1)]
    for arm, v in mse.items():
        finals = [ARMS[arm](j)[-1] for j in (-1, 0, 1)]
        assert v.arm and v.n == 3 and v.n_reference == 3 and v.reference == "f1"
        assert v.value == pytest.approx(np.mean(finals))
        assert v.reference_value == pytest.approx(np.mean(f1_finals))
        assert v.threshold == pytest.approx(1.02 * np.mean(f1_finals))
        assert v.difference == pytest.approx(v.value - v.threshold)
        assert v.low <= v.difference <= v.high
        # Bonferroni over the 5 arms the rule judges, at the family-wise 95 %.
        assert v.level == pytest.approx(1 - 0.05 / 5)
    assert mse["worse"].verdict == "fail" and mse["worse"].low > 0
    assert mse["same"].verdict == "pass" and mse["same"].high <= 0  # 2 % margin, small spread
    # An arm right at the margin, with a spread: its interval straddles 0.
    assert mse["stalls"].verdict == "inconclusive"
    assert mse["stalls"].low < 0 < mse["stalls"].high
    assert "interval contains 0" in mse["stalls"].reason


def test_convergence_rule_per_arm(seeded):
    speed = _verdicts(seeded, "speed")
    target = 1.05 * np.mean([ARMS["f1"](j)[-1] for j in (-1, 0, 1)])
    for v in speed.values():
        assert v.measure.startswith("steps to reach val/mse <= ")
        assert float(v.measure.rsplit(" ", 1)[1]) == pytest.approx(target, rel=1e-4)
    # f1's seeds reach the target at 3,250-3,500 steps; slow's at 5,000-5,500.
    assert speed["slow"].verdict == "fail" and speed["slow"].low > 0
    assert speed["slow"].value > speed["slow"].reference_value + 1500
    assert speed["same"].verdict in ("pass", "inconclusive")
    # A run that never reaches the target fails its arm, named, without an interval.
    assert speed["stalls"].verdict == "fail" and speed["stalls"].low is None
    assert "stalls_s2 never reached" in speed["stalls"].reason
    assert speed["stalls"].values["stalls_s2"] is None
    assert speed["worse"].verdict == "fail" and "never reached" in speed["worse"].reason
    # The arms with an interval form the rule's family: same, slow, noisy.
    assert speed["slow"].level == pytest.approx(1 - 0.05 / 3)


def test_stability_rule_per_arm(seeded):
    stable = _verdicts(seeded, "stable")
    assert stable["noisy"].verdict == "fail" and stable["noisy"].low > 0
    # A ±5 % zig-zag moves log MSE by about 0.1 per evaluation; f1's ±0.2 % by 0.004, of
    # which the falling trend (net progress) takes part away.
    assert 0.08 < stable["noisy"].value < 0.1
    assert 0 < stable["noisy"].reference_value < 0.004
    assert stable["same"].verdict in ("pass", "inconclusive")
    # A slower but smooth curve is not called unstable: net progress is not roughness.
    assert stable["slow"].verdict in ("pass", "inconclusive")


def test_seeded_verdicts_are_printed_with_their_rule(seeded):
    text = seeded.format()
    assert " ".join(ARM_VERDICT_RULE.split()) in " ".join(text.split())
    assert "worse (n=3)" in text and "f1 (n=3)" in text and "inconclusive" in text
    assert "speed (" in text and "fail: slow, stalls, worse;" in text  # folder order
    markdown = seeded.files["table"].read_text()
    assert ARM_VERDICT_RULE in markdown and "| mse | worse (n=3) | val/mse |" in markdown
    with open(seeded.files["verdicts"], newline="") as f:
        rows = {(r["rule"], r["judged"]): r for r in csv.DictReader(f)}
    row = rows[("mse", "worse")]
    assert row["level"] == "arm" and row["verdict"] == "fail" and float(row["low"]) > 0
    assert row["per_run"].startswith("worse_s0=")
    assert rows[("speed", "stalls")]["per_run"].endswith("stalls_s2=")


def test_best_of_curve_rules_are_labelled(tmp_path):
    folder = tmp_path / "runs"
    _write(folder, {f"{a}_s{k}": ARMS[a](k - 1) for a in ("f1", "worse") for k in range(3)})
    rule = '  - {name: mse, rule: "<= 1.02 * f1", value: best}\n'
    spec = _spec(tmp_path, rule, "{f1: [], worse: []}")
    [verdict] = compare(folder, spec=spec, plots=False).verdicts
    assert verdict.which == "best" and verdict.quantity == "val/mse BEST-OF-CURVE"


def test_non_finite_run_fails_stability_and_failed_runs_are_left_out(tmp_path):
    folder = tmp_path / "runs"
    curves = {f"{a}_s{k}": ARMS["f1"](k - 1) for a in ("f1", "div", "oom") for k in range(3)}
    status = {name: {"status": "done"} for name in curves}
    status["div_s1"] = {"status": "failed", "error": "TrainingError: non-finite loss nan"}
    status["oom_s1"] = {"status": "failed", "error": "RuntimeError: out of memory"}
    _write(folder, curves, status)
    spec = _spec(
        tmp_path,
        '  - {name: stable, rule: "no less stable than f1"}\n'
        '  - {name: mse, rule: "<= 1.02 * f1"}\n',
        "{f1: [], div: [], oom: []}",
    )
    cmp = compare(folder, spec=spec, plots=False)
    got = {(v.rule, v.run): v for v in cmp.verdicts}
    assert got[("stable", "div")].verdict == "fail"
    assert "div_s1 stopped on a non-finite loss" in got[("stable", "div")].reason
    assert got[("stable", "oom")].n == 2 and "oom_s1: run failed" in got[("stable", "oom")].reason
    assert got[("mse", "oom")].n == 2 and got[("mse", "oom")].low is not None


def test_compare_rejects_a_rule_naming_an_unknown_arm(tmp_path):
    folder = tmp_path / "runs"
    _write(folder, {f"f1_s{k}": ARMS["f1"](k - 1) for k in range(3)})
    spec = _spec(tmp_path, '  - {name: r, rule: "<= 1.02 * f0"}\n', "{f1: []}")
    with pytest.raises(ConfigError, match=r"decision_rules.0' \(r, '<= 1.02 \* f0'\).*arm 'f0'"):
        compare(folder, spec=spec, plots=False)


def test_without_seeds_each_run_is_judged_alone(tmp_path):
    folder = tmp_path / "runs"
    _write(
        folder,
        {
            "f1": ARMS["f1"](0),
            "same": ARMS["same"](0),
            "worse": ARMS["worse"](0),
            "slow": ARMS["slow"](0),
            "noisy": ARMS["noisy"](0),
        },
    )
    spec = _spec(tmp_path, RULES, "{f1: [], same: [], worse: [], slow: [], noisy: []}", False)
    cmp = compare(folder, spec=spec, plots=False)
    got = {(v.rule, v.run): v for v in cmp.verdicts}
    assert not any(v.arm or v.low is not None for v in cmp.verdicts)
    for v in cmp.verdicts:  # a point comparison, said so; or a run that never got there
        assert v.reason in ("one run: no interval", f"{v.run} never reached"), v
    assert got[("mse", "worse")].verdict == "fail" and got[("mse", "same")].verdict == "pass"
    assert got[("mse", "worse")].threshold == pytest.approx(1.02 * ARMS["f1"](0)[-1])
    assert got[("speed", "slow")].verdict == "fail" and got[("speed", "same")].verdict == "pass"
    assert got[("speed", "slow")].value > got[("speed", "slow")].threshold
    assert (
        got[("speed", "worse")].verdict == "fail"
        and "never reached" in got[("speed", "worse")].reason
    )
    assert got[("stable", "noisy")].verdict == "fail"
    assert ARM_VERDICT_RULE not in cmp.format()
