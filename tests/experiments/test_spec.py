"""Sweep specs: the shipped ones expand; malformed ones fail before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from framecast.config.loader import read_yaml
from framecast.errors import ConfigError
from framecast.experiments.rules import RuleSyntaxError, parse_rule
from framecast.experiments.spec import expand_sweep
from framecast.experiments.sweep import run_sweep

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
EXPECTED = {
    "phase1_4": [
        f"{arm}_s{seed}"
        for arm in ("f1_rgb_only", "f2_rgb_seg", "f3_rgb_seg_cls")
        for seed in (0, 1, 2)
    ],
    "latent_shape": [f"c{c}_ds{d}" for c in (4, 8, 16) for d in (2, 3, 4)],
    "kl_annealing": ["2a", "2b", "2c"],
    "smoke_weights": [
        f"{a}_s{s}" for a in ("control", "recommended", "aggressive", "balanced") for s in (0, 1, 2)
    ],
    "smoke_weighting_claims": [f"{a}_s{s}" for a in ("control", "weighted") for s in (0, 1, 2)],
    "ae_output_activation": [f"{a}_s{s}" for a in ("tanh", "clamp") for s in (0, 1, 2)],
    "vaegan_output_activation": [f"{a}_s{s}" for a in ("tanh", "clamp") for s in (0, 1, 2)],
    "wubu_q_controller": [f"{a}_s{s}" for a in ("q_off", "q_on") for s in (0, 1, 2)],
    "wubu_kl_annealing": ["kl1e-4", "kl1e-3", "kl1e-2", "kl1e-1"],
    "wubu_film": [
        f"{arm}_s{seed}"
        for arm in (
            "gfilmfalse_dfilmfalse",
            "gfilmfalse_dfilmtrue",
            "gfilmtrue_dfilmfalse",
            "gfilmtrue_dfilmtrue",
        )
        for seed in (0, 1, 2)
    ],
}


def test_every_shipped_sweep_expands_into_valid_configs(tmp_path):
    assert {p.stem for p in SWEEPS} == set(EXPECTED)
    for path in SWEEPS:
        sweep = expand_sweep(path, tmp_path / path.stem)
        assert sweep.name == path.stem
        assert sweep.run_names == EXPECTED[path.stem], path


def test_phase1_4_reproduces_the_f_configs():
    sweep = expand_sweep(REPO / "configs" / "sweeps" / "phase1_4.yaml")
    assert sweep.spec.seeds == [0, 1, 2]
    for run in sweep.runs:
        shipped = read_yaml(REPO / "configs" / f"{run.experiment}.yaml")["model"]
        resolved = run.config.model.model_dump()
        assert {k: resolved[k] for k in shipped} == shipped, run.name
        assert run.config.training.seed == run.seed and run.name.endswith(f"_s{run.seed}")
    rules = {r.name: r for r in sweep.spec.decision_rules}
    # The users' criteria: MSE within 2 % of F1, no slower, no less stable, heads accurate.
    assert rules["aux_losses_help"].parsed.affine() == ("f1_rgb_only", 1.02, 0.0)
    assert rules["converges_no_slower"].parsed.kind == "convergence"
    assert rules["no_less_stable"].parsed.kind == "stability"
    for name in ("aux_losses_help", "converges_no_slower", "no_less_stable"):
        assert rules[name].parsed.references == ["f1_rgb_only"], name
        assert rules[name].metric == "val/mse" and rules[name].value == "final", name
        assert rules[name].runs == ["f2_rgb_seg", "f3_rgb_seg_cls"], name


def test_shapes_kl_phases_and_smoke_weights(tmp_path):
    shapes = expand_sweep(REPO / "configs" / "sweeps" / "latent_shape.yaml")
    c16 = shapes.run("c16_ds4").config.model
    assert (c16.latent_channels, c16.downsampling_steps) == (16, 4)
    assert len(c16.resolved_channel_multipliers) == 5

    kl = expand_sweep(REPO / "configs" / "sweeps" / "kl_annealing.yaml", tmp_path / "kl")
    weights = [r.config.model.kl_weight for r in kl.runs]
    assert weights == sorted(weights) and len(set(weights)) == 3
    assert kl.runs[0].config.training.init_from is None
    for prev, run in zip(kl.runs, kl.runs[1:]):
        assert run.parent == prev.name
        assert run.config.training.init_from == str((tmp_path / "kl" / prev.name).resolve())
        assert run.config.training.init_which == "best"

    smoke = expand_sweep(REPO / "configs" / "sweeps" / "smoke_weights.yaml")
    got = {
        r.name: (
            r.config.training.smoke_weight,
            r.config.training.background_weight,
            r.config.training.smoke_threshold,
            r.config.training.smoke_threshold_scale,
            r.config.training.seed,
        )
        for r in smoke.runs
    }
    arms = {
        "control": (1.0, 1.0, "auto", 1.0),
        "recommended": (5.0, 1.0, "auto", 1.0),
        "aggressive": (10.0, 1.0, "auto", 0.5),
        "balanced": (3.0, 1.0, "auto", 1.5),
    }
    assert got == {f"{a}_s{s}": (*v, s) for a, v in arms.items() for s in (0, 1, 2)}
    # Ranked and compared on metrics the weighting cannot inflate.
    assert smoke.spec.primary_metric == "eval/psnr"
    assert not {"val/loss", "val/flow_matching_mse"} & set(smoke.spec.report_metrics)
    assert {r.config.training.monitor for r in smoke.runs} == {"val/flow_matching_mse_unweighted"}
    claims = expand_sweep(REPO / "configs" / "sweeps" / "smoke_weighting_claims.yaml")
    assert [r.name for r in claims.runs] == [
        f"{a}_s{s}" for a in ("control", "weighted") for s in (0, 1, 2)
    ]


def test_seeds_must_be_distinct(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {BASE}\nseeds: [1, 1]\n")
    with pytest.raises(ConfigError, match="seeds.*distinct"):
        expand_sweep(spec)


BASE = str(REPO / "configs" / "f1_rgb_only.yaml")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("base: BASE\nexperimnts: {a: []}\n", "unknown key 'experimnts'"),
        ("base: BASE\nphases: [{name: p1, form: best}]\n", "unknown key 'phases.0.form'"),
        ("base: BASE\nphases: [{name: p1, from: worst}]\n", "phases.0.from"),
        ("base: BASE\nexperiments: {a: [training.lr]}\n", "experiments"),
        ("base: BASE\nexperiments: {a: []}\ngrid: {training.lr: [1]}\n", "not both"),
        ("base: nope.yaml\n", "key 'base'"),
        ("base: BASE\nexperiments: {a: [model.latent_channels=-1]}\n", "model.latent_channels"),
        ("base: BASE\ndecision_rules: [{name: r, rule: '1.02 * a'}]\n", "decision_rules.0.rule"),
        ("base: BASE\ndecision_rules: [{name: r, rule: '<= __import__(1)'}]\n", "decision_rules"),
        (
            "base: BASE\nexperiments: {a: []}\ndecision_rules: [{name: r, rule: '<= b'}]\n",
            "run 'b'",
        ),
        ("base: BASE\nresources: {time: 3h}\n", "resources.time"),
        ("base: BASE\nexperiments: {'a/b': []}\n", "experiment name"),
        # The long form {overrides, resources}: its keys are checked like the spec's.
        ("base: BASE\nexperiments: {a: {resources: {gpu: 2}}}\n", "gpu"),
        ("base: BASE\nexperiments: {a: {resources: {memory: lots}}}\n", "memory"),
        ("base: BASE\nexperiments: {a: {overides: []}}\n", "overides"),
        ("base: BASE\nexperiments: {a: {overrides: [training.lr]}}\n", "experiments"),
        ("base: BASE\nresources: {lsf_memory: job}\n", "resources.lsf_memory"),
        ("base: BASE\ndecision_rules: [{name: r, rule: 'not rising over 1'}]\n", "at least 2"),
        ("base: BASE\ndecision_rules: [{name: r, rule: 'not rising'}]\n", "curve rules"),
    ],
)
def test_malformed_spec_fails_before_anything_runs(tmp_path, body, match):
    spec = tmp_path / "bad.yaml"
    spec.write_text(body.replace("BASE", BASE))
    with pytest.raises(ConfigError, match=match):
        run_sweep(spec, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_rule_language_is_parsed_not_evaluated():
    rule = parse_rule("<= 1.02 * f1_rgb_only + 0.5 * (x - 'vae-2a') / 2")
    assert rule.references == ["f1_rgb_only", "x", "vae-2a"]
    ok, threshold = rule.check(1.0, {"f1_rgb_only": 1.0, "x": 3.0, "vae-2a": 1.0})
    assert threshold == pytest.approx(1.52) and ok
    assert parse_rule("> -2").check(0.0, {}) == (True, -2.0)
    with pytest.raises(KeyError):
        parse_rule("<= a").check(1.0, {"a": None})
    for bad in ["", "1 < 2", "<= a b", "<= (a", "<= a.b", "<= open('x')", "<= a < b", "<= 1;"]:
        with pytest.raises(RuleSyntaxError):
            parse_rule(bad)


def test_experiment_resources_long_form_and_list_form_together(tmp_path):
    spec = """
base: BASE
experiments:
  f1_rgb_only: []
  f3: {overrides: [model.cls_weight=0.01, model.num_classes=3], resources: {gpu_model: H100}}
resources: {gpus: 2, memory: 32G, gpu_model: V100}
"""
    path = tmp_path / "two.yaml"
    path.write_text(spec.replace("BASE", BASE))
    sweep = expand_sweep(path)
    f1, f3 = sweep.run("f1_rgb_only"), sweep.run("f3")
    assert (f1.resources.gpu_model, f3.resources.gpu_model) == ("V100", "H100")
    assert f3.resources.gpus == 2 and f3.resources.memory == "32G"  # inherited
    assert f3.config.model.cls_weight == 0.01 and f1.config.model.cls_weight == 0.0
    assert sweep.spec.resources.gpu_model == "V100"  # the spec's own stay as they were


def test_curve_rules_judge_stability():
    finite = parse_rule("finite")
    assert finite.references == []
    assert finite.check_curve([1.0, 0.5, 0.2])[0] is True
    ok, bad, _, reason = finite.check_curve([1.0, float("nan"), 0.2])
    assert ok is False and bad == 1.0 and "non-finite" in reason
    assert finite.check_curve([])[0] is None

    rising = parse_rule("not rising over 4")
    assert rising.check_curve([5.0, 1.0, 0.9, 0.8, 0.7])[0] is True
    ok, change, allowed, _ = rising.check_curve([1.0, 0.5, 0.6, 0.7, 0.8])
    assert ok is False and change == pytest.approx(0.3) and allowed == 0.0
    # One noisy evaluation does not decide: the fitted line over the window still falls.
    assert rising.check_curve([1.0, 0.8, 0.6, 0.65, 0.4])[0] is True
    assert rising.check_curve([0.5, 0.4])[0] is None  # too few evaluations for a verdict
    assert rising.check_curve([0.5, float("inf"), 0.4, 0.3, 0.2])[0] is False

    # Tolerance in % of the window's level; "falling" for higher-is-better metrics.
    assert parse_rule("not rising over 3 within 5%").check_curve([1.0, 1.01, 1.02])[0] is True
    assert parse_rule("not rising over 3 within 1%").check_curve([1.0, 1.01, 1.03])[0] is False
    falling = parse_rule("not falling over 3")
    assert falling.check_curve([20.0, 21.0, 22.0])[0] is True
    assert falling.check_curve([22.0, 21.0, 20.0])[0] is False
