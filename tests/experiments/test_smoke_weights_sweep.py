"""The shipped smoke-weighting sweep end to end at tiny settings: seeds, the evaluate step,
and a comparison that ranks and judges arms on weight-independent metrics only."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from framecast.cli import main
from framecast.experiments.compare import (
    ArmSummary,
    RunSummary,
    badness,
    compare,
    metric_mode,
    summarise_arms,
)
from framecast.experiments.sweep import run_sweep

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "configs" / "sweeps" / "smoke_weights.yaml"


def _tiny_spec(tmp_path: Path) -> Path:
    """The shipped spec with one seed instead of three (the suite's time), all else as is;
    grouping seeds into arms is tested on hand-made runs below."""
    raw = yaml.safe_load(SPEC.read_text())
    raw["base"] = str((SPEC.parent / raw["base"]).resolve())
    raw["seeds"] = [0]
    raw["evaluate"].update(max_clips=2)
    spec = tmp_path / "smoke_weights.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    return spec


@pytest.mark.slow
def test_smoke_weights_sweep_end_to_end(
    tmp_path, tiny_dataset, tiny_autoencoder_run, tiny_run, capsys
):
    overrides = [
        f"model.autoencoder={tiny_autoencoder_run}",
        "model.vector_field_regressor.state_res=[4, 4]",
        "model.vector_field_regressor.inner_dim=32",
        "model.vector_field_regressor.num_heads=2",
        "model.vector_field_regressor.depth=1",
        "training.ema_decay=null",
        *tiny_run(tiny_dataset, 2),
    ]
    result = run_sweep(_tiny_spec(tmp_path), tmp_path / "runs", extra_overrides=overrides)
    arms = ("control", "recommended", "aggressive", "balanced")
    names = [f"{a}_s0" for a in arms]
    assert list(result.runs) == names and not result.failed
    for name in names:
        run_dir = result.sweep_dir / name
        metrics = json.loads((run_dir / "eval" / "test" / "metrics.json").read_text())
        assert metrics["context_frames"] == 3 and metrics["frames"] == 7
        assert "temporal_mse" in metrics["methods"]["river"]
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert isinstance(config["training"]["smoke_threshold"], float)  # auto, resolved
        assert config["training"]["seed"] == int(name[-1])
    # The relative thresholds: half and 1.5 × the auto threshold of the same data.
    threshold = {
        n: yaml.safe_load((result.sweep_dir / n / "config.yaml").read_text())["training"][
            "smoke_threshold"
        ]
        for n in names
    }
    assert threshold["aggressive_s0"] == pytest.approx(0.5 * threshold["control_s0"])
    assert threshold["balanced_s0"] == pytest.approx(1.5 * threshold["control_s0"])

    comparison = compare(result.sweep_dir)
    assert comparison.primary_metric == "eval/psnr"
    assert [a.name for a in comparison.arms] == list(arms)
    assert all(a.count.get("eval/psnr") == 1 for a in comparison.arms)
    judged = {w.metric for w in comparison.winners}
    assert {"eval/psnr", "eval/smoke_psnr", "eval/temporal_mse"} <= judged
    assert not judged & {"val/loss", "val/flow_matching_mse"}  # never the weighted loss
    header, rows = comparison.arm_table()
    assert header[-3:] == ["lead [corrected interval]", "p (Holm)", "best arm"]
    assert all(" ± " in cell for cell in rows[0][1:-3])
    # One seed per arm: no variance, so no interval and no verdict.
    assert all(w.verdict.endswith("(no interval: < 2 seeds)") for w in comparison.winners)
    with open(comparison.files["arms_per_horizon"], encoding="utf-8") as handle:
        per_horizon = list(csv.DictReader(handle))
    assert {r["arm"] for r in per_horizon} >= {*arms, "copy_last"}
    assert {int(r["horizon"]) for r in per_horizon} == set(range(1, 8))
    assert comparison.files["arms_plot"].is_file()
    # The CLI prints the arm table; a second sweep finds every evaluation up to date.
    assert main(["compare", str(result.sweep_dir)]) == 0
    assert "arms: mean ± std over seeds of each run's final value" in capsys.readouterr().out
    again = run_sweep(_tiny_spec(tmp_path), tmp_path / "runs", extra_overrides=overrides)
    assert not again.failed


def test_arms_winner_is_clear_only_when_its_corrected_interval_excludes_zero():
    def run(name, arm, value):
        return RunSummary(name, Path(name), "done", final={"eval/psnr": value}, arm=arm)

    # Two seeds each, 5 dB apart, 2 dB spread within: mean ± std intervals do not overlap
    # (the old rule called this clear), but Welch's 95 % interval with ~2 degrees of
    # freedom is 5 ± 6.1 dB: within noise.
    runs = [run("a_s0", "a", 20.0), run("a_s1", "a", 22.0), run("b_s0", "b", 25.0)]
    runs.append(run("b_s1", "b", 27.0))
    arms, winners = summarise_arms(runs, ["eval/psnr"], "eval/psnr", "max")
    assert [a.name for a in arms] == ["a", "b"]
    assert isinstance(arms[0], ArmSummary) and arms[0].mean["eval/psnr"] == 21.0
    assert arms[0].std["eval/psnr"] == pytest.approx(2**0.5)  # sample std
    [winner] = winners
    assert winner.winner == "b" and winner.margin == pytest.approx(5.0)
    lead = winner.leads["a"]
    assert (lead.low, lead.high) == (
        pytest.approx(5 - 6.085, abs=1e-3),
        pytest.approx(11.085, abs=1e-3),
    )
    assert not winner.clear and winner.verdict == "b (within noise)"
    # A third seed per arm at the same spread: 5 ± 2.27 dB, clear.
    runs += [run("a_s2", "a", 21.0), run("b_s2", "b", 26.0)]
    _, [winner] = summarise_arms(runs, ["eval/psnr"], "eval/psnr", "max")
    assert winner.clear and winner.verdict == "b (clear)" and winner.family == 1
    assert winner.leads["a"].low == pytest.approx(5 - 2.776 * (2 / 3) ** 0.5, abs=1e-3)
    # Lower is better for an error: the smaller mean wins, its lead is positive.
    for r, v in zip(runs, (0.10, 0.12, 0.30, 0.31, 0.11, 0.29)):
        r.final["eval/stlpips"] = v
    _, winners = summarise_arms(runs, ["eval/psnr", "eval/stlpips"], "eval/psnr", "max")
    lpips = winners[1]
    assert lpips.winner == "a" and lpips.margin == pytest.approx(0.19) and lpips.clear
    assert winners[0].family == lpips.family == 2  # Bonferroni over both metrics
    assert lpips.level == pytest.approx(0.975)
    # Best-of-curve only when asked: the best values here are not the final ones.
    for r in runs:
        r.best["eval/psnr"] = 30.0 if r.arm == "a" else r.final["eval/psnr"]
    _, [winner] = summarise_arms(runs, ["eval/psnr"], "eval/psnr", "max", value="best")
    assert winner.winner == "a"


def test_intensity_ratio_is_ranked_by_its_distance_from_one():
    """Neither higher nor lower: 0.97 (fades 3 %) beats 1.10 (piles up 10 %) and 0.80."""
    runs = [
        RunSummary(f"{arm}_s{seed}", Path(arm), "done", final={"eval/intensity_ratio": v}, arm=arm)
        for arm, values in {
            "fades": (0.80, 0.80),
            "near": (0.97, 0.97),
            "piles": (1.1, 1.1),
        }.items()
        for seed, v in enumerate(values)
    ]
    arms, [winner] = summarise_arms(runs, ["eval/intensity_ratio"], "eval/psnr", "max")
    assert winner.mode == "target" and winner.winner == "near" and winner.clear
    assert winner.margin == pytest.approx(0.10 - 0.03)
    assert metric_mode("val/intensity_ratio", "val/loss", "min") == "target"
    # The best value over a validation curve is the one nearest 1, too.
    assert min((1.3, 0.95, 0.7), key=lambda v: badness("val/intensity_ratio", "target", v)) == 0.95
