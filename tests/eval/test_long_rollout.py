"""``evaluate`` on long rollouts (3 -> 20 frames) and ensembles: intensity drift, blow-ups,
where the model falls behind copy_last, spread–skill calibration files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from framecast.data.dataset import ClipDataset, split_dir
from framecast.data.shard import write_shard
from framecast.eval.evaluate import (
    COMPARED_WITH_COPY_LAST,
    METHODS,
    EvaluationResult,
    RiverPredictor,
    below_baseline,
    evaluate,
)
from framecast.flow.sampling import SamplerConfig
from framecast.flow.solvers import SolverConfig

TINY_SAMPLER = SamplerConfig(solver=SolverConfig(method="euler", steps=2))
CONTEXT, FRAMES = 3, 20


def _rising_blob(frames: int, size: int, seed: int) -> np.ndarray:
    """(T, size, size, 3) uint8: a soft bright blob rising on black, like the tiny
    dataset's (tests/conftest.py), but long enough for 3 + 20 frames."""
    rng = np.random.default_rng(seed)
    x0, y0, radius = rng.uniform(0.3, 0.7) * size, 0.8 * size, rng.uniform(0.1, 0.2) * size
    yy, xx = np.mgrid[0:size, 0:size]
    video = [
        np.exp(-((xx - x0) ** 2 + (yy - y0 + t * size / (2 * frames)) ** 2) / (2 * radius**2))
        for t in range(frames)
    ]
    return np.repeat((np.asarray(video) * 230)[..., None], 3, axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def long_dataset(tmp_path_factory) -> Path:
    """Two 24-frame test videos of 32×32 blobs: one clip of 3 + 20 frames each."""
    root = tmp_path_factory.mktemp("long_dataset")
    videos = [(f"blob-{i}", _rising_blob(CONTEXT + FRAMES + 1, 32, i), {}) for i in range(2)]
    write_shard(root / "test" / "part-00000.fcshard", videos)
    return root


def _evaluate(run: Path, data: Path, out: Path, samples: int, **kwargs) -> EvaluationResult:
    return evaluate(
        run,
        data,
        out=out,
        context=CONTEXT,
        frames=FRAMES,
        sampler=TINY_SAMPLER,
        samples=samples,
        clips_per_video=1,
        batch_size=2,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def ensemble(tiny_river_run: Path, long_dataset: Path, tmp_path_factory) -> EvaluationResult:
    return _evaluate(tiny_river_run, long_dataset, tmp_path_factory.mktemp("ensemble"), 3)


def test_twenty_horizons_of_every_metric_drift_and_copy_last_crossing(
    ensemble: EvaluationResult, long_dataset: Path
) -> None:
    data = json.loads((ensemble.out / "metrics.json").read_text())
    assert data["horizons"] == list(range(1, FRAMES + 1)) and data["context_frames"] == CONTEXT
    for method in METHODS:
        entries = data["methods"][method]
        assert all(len(e["per_horizon"]) == FRAMES for e in entries.values())
        ratio = entries["intensity_ratio"]["per_horizon"]
        assert all(v is not None and v > 0 for v in ratio), (method, ratio)
    # copy_last's drift, computed directly: the last context frame's total intensity
    # (on [0, 1]) over each true frame's, summed over the clips.
    dataset = ClipDataset(
        split_dir(long_dataset, "test"),
        num_frames=CONTEXT + FRAMES,
        image_size=32,
        train=False,
        clips_per_video=1,
    )
    clips = (torch.stack([dataset[i]["frames"] for i in range(2)]).double() + 1) / 2
    last = clips[:, CONTEXT - 1].sum(dim=(1, 2, 3))  # (N,)
    truth = clips[:, CONTEXT:].sum(dim=(2, 3, 4))  # (N, F)
    expected = (last.sum() / truth.sum(dim=0)).tolist()
    got = data["methods"]["copy_last"]["intensity_ratio"]["per_horizon"]
    assert got == pytest.approx(expected, rel=1e-5)
    assert set(data["below_copy_last"]) == set(COMPARED_WITH_COPY_LAST)
    for entry in data["below_copy_last"].values():
        for key in ("first", "from"):
            assert entry[key] == "never" or 1 <= entry[key] <= FRAMES
    assert data["blowup"]["methods"]["river"]["per_horizon"] == [0] * FRAMES
    assert len(data["blowup"]["methods"]["river"]["latent_per_horizon"]) == FRAMES
    text = ensemble.format()
    assert "worse than copy_last" in text and "no blow-up" in text and "intensity" in text


def test_calibration_files_agree_with_metrics_json(ensemble: EvaluationResult) -> None:
    data = json.loads((ensemble.out / "metrics.json").read_text())
    calibration = data["calibration"]
    assert calibration["samples"] == 3
    overall = calibration["overall"]
    assert overall["spread"] > 0 and overall["rmse"] > 0 and overall["crps"] > 0
    # A spread per element of 2 clips × 20 frames × C channels × 32 × 32 (C: 1 or 3,
    # greyscale or RGB, as the run was trained).
    assert overall["elements"] in (2 * FRAMES * c * 32 * 32 for c in (1, 3))
    for key in ("spread_skill", "pearson", "spearman", "crps", "rmse"):
        assert len(calibration["per_horizon"][key]) == FRAMES
    assert set(calibration["reference_mae"]) == {"copy_last", "autoencoder"}
    with open(ensemble.out / "calibration.csv", newline="") as f:
        bins = list(csv.DictReader(f))
    assert sum(int(row["elements"]) for row in bins) == overall["elements"]
    with open(ensemble.out / "calibration_per_horizon.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["horizon"]) for r in rows] == list(range(1, FRAMES + 1))
    for row, crps in zip(rows, calibration["per_horizon"]["crps"], strict=True):
        assert float(row["crps"]) == pytest.approx(crps, rel=1e-12)
        assert float(row["copy_last_mae"]) > 0
    assert (ensemble.out / "calibration.png").stat().st_size > 0
    assert (ensemble.out / "per_horizon.png").stat().st_size > 0
    assert "spread/skill" in ensemble.format()


def test_one_sample_writes_no_calibration(
    tiny_river_run: Path, long_dataset: Path, tmp_path: Path
) -> None:
    result = _evaluate(tiny_river_run, long_dataset, tmp_path, 1, max_clips=1)
    assert result.calibration is None
    assert json.loads((tmp_path / "metrics.json").read_text())["calibration"] is None
    assert not (tmp_path / "calibration.csv").exists()
    assert "calibration" not in result.files and "spread/skill" not in result.format()


def test_a_blow_up_is_counted_and_does_not_crash(
    tiny_river_run: Path, long_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    original = RiverPredictor.predict

    def blowing_up(self, context, frames, samples, generator, progress=None):
        futures, nfe = original(self, context, frames, samples, generator, progress)
        futures = futures.clone()
        futures[0, :, 14:] = float("nan")  # clip 0 diverges from horizon 15 on
        futures[1, 0, 19] = float("inf")
        self.latents = self.latents.clone()
        self.latents[0, :, 16:] = 1e4
        return futures, nfe

    monkeypatch.setattr(RiverPredictor, "predict", blowing_up)
    result = _evaluate(tiny_river_run, long_dataset, tmp_path, 2)
    river = result.blowups["river"]
    assert river["frames"] == 4  # 2 clips × 2 samples per horizon
    assert river["per_horizon"] == [0] * 14 + [2] * 5 + [3]
    assert river["first_horizon"] == 15
    assert river["latent_per_horizon"] == [0] * 16 + [2] * 4
    assert result.blowups["copy_last"]["per_horizon"] == [0] * FRAMES
    # The blown frames score as (bad) predictions: no NaN hides them from the means.
    for name in ("psnr", "ssim", "stlpips", "intensity_ratio"):
        assert all(math.isfinite(v) for v in result.metrics["river"][name]), name
    assert "BLOW-UP" in result.format()
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["blowup"]["methods"]["river"]["first_horizon"] == 15


def test_below_baseline() -> None:
    higher = [3.0, 2.0, 1.0, 0.5]
    assert below_baseline(higher, [1.0, 1.0, 1.0, 1.0], True) == {
        "first": 4,
        "from": 4,
        "worse_at": [4],
    }
    assert below_baseline(higher, [0.0] * 4, True) == {
        "first": "never",
        "from": "never",
        "worse_at": [],
    }
    assert below_baseline(higher, [4.0, 1.0, 2.0, 2.0], True) == {
        "first": 1,
        "from": 3,
        "worse_at": [1, 3, 4],
    }
    # Lower is better (LPIPS): worse means higher; equal is not worse.
    assert below_baseline([0.1, 0.3, 0.3], [0.2, 0.2, 0.3], False) == {
        "first": 2,
        "from": "never",
        "worse_at": [2],
    }
    # A NaN horizon is not worse and ends a run.
    assert below_baseline([1.0, math.nan, 1.0], [2.0, 2.0, 2.0], True) == {
        "first": 1,
        "from": 3,
        "worse_at": [1, 3],
    }
    with pytest.raises(ValueError, match="horizons"):
        below_baseline([1.0], [1.0, 2.0], True)


def test_latents_of_the_river_predictor_cover_every_frame(
    tiny_river_run: Path, long_dataset: Path
) -> None:
    from framecast.eval.evaluate import load_predictor

    predictor = load_predictor(tiny_river_run, sampler=TINY_SAMPLER)
    context = torch.zeros(1, CONTEXT, 3, 32, 32)
    frames, _ = predictor.predict(context, 4, 2, torch.Generator().manual_seed(0))
    assert predictor.latents is not None and predictor.latents.shape[:3] == (1, 2, 4)
    assert frames.shape[:3] == (1, 2, 4)
