"""Post-hoc spread calibration: analytic cases of the inflation and the fit, the file, and
``framecast calibrate`` + ``evaluate --spread-scale`` on the tiny river run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from framecast.cli import main
from framecast.errors import ConfigError
from framecast.eval.calibration import (
    SpreadScale,
    fit_spread_scale,
    inflate_ensemble,
    spread_skill_by_horizon,
)
from framecast.eval.evaluate import evaluate
from framecast.eval.metrics import SpreadSkill


def _ensemble(spread: float, k: int = 8, n: int = 64, frames: int = 3, seed: int = 0):
    """Truth and K members drawn around a per-clip centre: the truth with std 0.1, the
    members with std ``spread`` (0.1: calibrated), far from the [-1, 1] bounds.
    -> samples (N, K, F, 1, 8, 8), truth (N, F, 1, 8, 8)."""
    g = torch.Generator().manual_seed(seed)
    centre = 0.4 * torch.rand(n, 1, frames, 1, 8, 8, generator=g) - 0.2
    truth = centre[:, 0] + 0.1 * torch.randn(n, frames, 1, 8, 8, generator=g)
    samples = centre + spread * torch.randn(n, k, frames, 1, 8, 8, generator=g)
    return samples, truth


def test_inflation_keeps_the_mean_and_scales_the_spread() -> None:
    samples, _ = _ensemble(0.05)
    inflated = inflate_ensemble(samples, [2.0, 1.0, 0.5])
    assert torch.allclose(inflated.mean(dim=1), samples.mean(dim=1), atol=1e-6)
    ratio = inflated.std(dim=1) / samples.std(dim=1)
    for h, factor in enumerate((2.0, 1.0, 0.5)):
        assert torch.allclose(ratio[:, h], torch.full_like(ratio[:, h], factor), atol=1e-4)
    assert inflate_ensemble(samples * 10, [3.0, 3.0, 3.0]).abs().max() <= 1  # clamped
    with pytest.raises(ValueError, match="3 factors|F factors"):
        inflate_ensemble(samples, [1.0, 2.0])


def test_ratio_is_one_for_a_calibrated_ensemble_and_matches_spread_skill() -> None:
    samples, truth = _ensemble(0.1)
    ratio = spread_skill_by_horizon(samples, truth)
    assert ratio.shape == (3,)
    assert ((ratio - 1).abs() < 0.08).all(), ratio
    streaming = SpreadSkill(3, 8)
    streaming.update(samples, truth)
    expected = [row["spread_skill"] for row in streaming.per_horizon()]
    assert torch.allclose(ratio, torch.tensor(expected, dtype=torch.float64), rtol=1e-4)
    # Half the spread: half the ratio.
    narrow, _ = _ensemble(0.05)
    assert ((spread_skill_by_horizon(narrow, truth) / ratio - 0.5).abs() < 0.06).all()


def test_fit_brings_an_over_confident_ensemble_to_one() -> None:
    samples, truth = _ensemble(0.05)
    scale = fit_spread_scale(samples, truth, {"split": "synthetic"})
    assert all(abs(b - 0.5) < 0.06 for b in scale.before), scale.before
    assert all(abs(a - 1) < 1e-3 for a in scale.after), scale.after
    # Without clamping the factor is exactly 1 / ratio.
    for factor, before in zip(scale.factors, scale.before, strict=True):
        assert factor == pytest.approx(1 / before, rel=1e-3)


def test_fit_accounts_for_clamping_at_black() -> None:
    """Members next to -1 (black background): clamping takes spread back, so the factor
    must exceed 1 / ratio for the clamped ensemble to reach 1."""
    samples, truth = _ensemble(0.05)
    samples, truth = (samples - 0.85).clamp(-1, 1), (truth - 0.85).clamp(-1, 1)
    scale = fit_spread_scale(samples, truth, {})
    assert all(abs(a - 1) < 1e-3 for a in scale.after), scale.after
    assert all(f > 1.02 / b for f, b in zip(scale.factors, scale.before, strict=True))


def test_file_round_trip_and_clear_errors(tmp_path: Path) -> None:
    scale = SpreadScale((1.5, 1.7), (0.6, 0.6), (1.0, 1.0), {"split": "val", "clips": 4})
    path = scale.save(tmp_path / "run" / "spread_scale.json")
    assert SpreadScale.load(path) == scale
    assert SpreadScale.load(path.parent) == scale  # the run directory
    assert scale.factors_for(4).tolist() == pytest.approx([1.5, 1.7, 1.7, 1.7])
    assert scale.factors_for(1).tolist() == pytest.approx([1.5])
    with pytest.raises(ConfigError, match="framecast calibrate"):
        SpreadScale.load(tmp_path)
    (tmp_path / "bad.json").write_text('{"factors": [1.0]}')
    with pytest.raises(ConfigError, match="bad.json.*framecast_spread_scale"):
        SpreadScale.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="broken.json"):
        SpreadScale.load(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="positive"):
        SpreadScale((1.0, -2.0))


def test_calibrate_then_evaluate_gives_ratio_one_on_the_fitted_clips(
    tiny_river_run: Path, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    """Fitted and scored on the same clips with the same seed, the samples are the same,
    so the inflated ensemble's spread–skill is 1 at every horizon (in-sample, by design; the
    shipped use fits on val and scores on test)."""
    out = tmp_path / "scale.json"
    common = ["--run", str(tiny_river_run), "--data", str(tiny_dataset), "--split", "test"]
    common += ["--steps", "2", "--frames", "3", "--clips-per-video", "2", "--batch-size", "3"]
    assert main(["calibrate", *common, "--samples", "4", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "factor" in printed and "spread scale fitted on test" in printed
    scale = SpreadScale.load(out)
    assert len(scale.factors) == 3 and scale.fitted_on["samples"] == 4
    assert scale.fitted_on["clips"] == 4 and scale.fitted_on["sampler"]["solver"]["steps"] == 2

    evaluated_dir = tmp_path / "eval"
    assert (
        main(
            ["evaluate", *common, "--samples", "4", "--spread-scale", str(out)]
            + ["--out", str(evaluated_dir), "--no-progress", "--bootstraps", "50"]
        )
        == 0
    )
    assert "with the spread scale fitted on test" in capsys.readouterr().out
    data = json.loads((evaluated_dir / "metrics.json").read_text())
    calibrated = data["calibration"]["calibrated"]
    assert calibrated["spread_scale"] == pytest.approx(list(scale.factors))
    assert calibrated["per_horizon"]["spread_skill"] == pytest.approx([1.0] * 3, abs=2e-3)
    raw = data["calibration"]["per_horizon"]["spread_skill"]
    assert raw == pytest.approx(list(scale.before), rel=1e-4)
    paired = data["calibration"]["paired"]
    assert set(paired["crps"]) == {"copy_last_mae", "autoencoder_mae"}
    assert set(paired["crps_calibrated"]) == {"copy_last_mae", "autoencoder_mae", "crps"}
    with open(evaluated_dir / "calibration_per_clip.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 3
    assert {"crps", "crps_calibrated", "spread_sq", "error_sq", "copy_last_mae"} <= set(rows[0])
    # The per-clip sums give back the pooled ratio.
    for h in (1, 2, 3):
        at = [r for r in rows if int(r["horizon"]) == h]
        pooled = math.sqrt(5 / 4) * math.sqrt(
            sum(float(r["spread_sq"]) for r in at) / sum(float(r["error_sq"]) for r in at)
        )
        assert pooled == pytest.approx(raw[h - 1], rel=1e-4)
        crps = sum(float(r["crps"]) for r in at) / len(at)
        assert crps == pytest.approx(data["calibration"]["per_horizon"]["crps"][h - 1], rel=1e-4)


def test_spread_scale_needs_samples_and_warns_on_another_sampler(
    tiny_river_run: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    from framecast.flow.sampling import SamplerConfig
    from framecast.flow.solvers import SolverConfig

    scale = SpreadScale((2.0,), fitted_on={"sampler": {"solver": "other"}})
    with pytest.raises(ValueError, match="K >= 2"):
        evaluate(tiny_river_run, tiny_dataset, spread_scale=scale, samples=1, progress=False)
    with pytest.warns(UserWarning, match="fitted with the sampler"):
        result = evaluate(
            tiny_river_run,
            tiny_dataset,
            out=tmp_path,
            sampler=SamplerConfig(SolverConfig("euler", 1)),
            samples=2,
            max_clips=2,
            spread_scale=scale,
            progress=False,
            n_boot=20,
        )
    ratios = result.calibration["per_horizon"]["spread_skill"]
    inflated = result.calibration["calibrated"]["per_horizon"]["spread_skill"]
    assert all(c > r for c, r in zip(inflated, ratios, strict=True))  # factor 2 widens


def test_identical_members_reach_the_bracket_with_a_warning() -> None:
    samples, truth = _ensemble(0.0)  # K identical members: no factor can widen them
    with pytest.warns(UserWarning, match="reached the bracket"):
        scale = fit_spread_scale(samples, truth, {})
    assert scale.factors == pytest.approx((20.0,) * 3)
