"""The evaluation runner on the tiny river run: files, baselines, errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from framecast.data.dataset import ClipDataset, split_dir
from framecast.errors import CheckpointError, DataError
from framecast.eval.evaluate import METHODS, METRICS, EvaluationResult, evaluate
from framecast.eval.metrics import mse, per_horizon, psnr, ssim
from framecast.flow.sampling import SamplerConfig
from framecast.flow.solvers import SolverConfig

TINY_SAMPLER = SamplerConfig(solver=SolverConfig(method="euler", steps=2))
CLIPS_PER_VIDEO = 2  # 2 test videos -> 4 clips


@pytest.fixture(scope="module")
def evaluated(tiny_river_run: Path, tiny_dataset: Path, fake_i3d: Path) -> EvaluationResult:
    return evaluate(
        tiny_river_run,
        tiny_dataset,
        split="test",
        sampler=TINY_SAMPLER,
        samples=2,
        clips_per_video=CLIPS_PER_VIDEO,
        batch_size=3,  # a full and a partial batch
        i3d=fake_i3d,
        progress=False,
        max_clips=4,
    )


def test_writes_the_files_with_every_method_metric_and_horizon(
    evaluated: EvaluationResult, tiny_river_run: Path
) -> None:
    assert evaluated.out == tiny_river_run / "eval" / "test"
    for name in ("metrics.json", "per_horizon.csv", "per_horizon.png", "samples.png"):
        assert (evaluated.out / name).stat().st_size > 0
    data = json.loads((evaluated.out / "metrics.json").read_text())
    assert data["num_clips"] == 4 and data["frames"] == 3 and data["context_frames"] == 1
    assert data["horizons"] == [1, 2, 3]
    assert data["sampler"] == TINY_SAMPLER.to_dict()
    assert data["nfe_per_frame"] == 2 and data["seconds_per_frame"] > 0
    assert data["checkpoint"].endswith(".ckpt")
    assert list(data["methods"]) == list(METHODS)
    for method in METHODS:
        expected = set(METRICS) | ({"psnr_best_of_k"} if method == "river" else set())
        assert set(data["methods"][method]) == expected
        for name, entry in data["methods"][method].items():
            assert len(entry["per_horizon"]) == 3
            if name != "smoke_psnr":  # NaN (null) only without smoke
                assert all(v is not None and math.isfinite(v) for v in entry["per_horizon"])
    assert set(data["fvd"]) == set(METHODS)
    # Singular covariances (4 clips, 400 features): rounding can go slightly below 0.
    assert all(math.isfinite(v) and v > -1e-3 for v in data["fvd"].values()), data["fvd"]
    # Best-of-K picks one of the K samples per clip: never below the mean over samples.
    river = evaluated.means["river"]
    assert river["psnr_best_of_k"] >= river["psnr"] - 1e-9
    text = evaluated.format()
    assert "copy_last" in text and str(evaluated.out) in text


def test_json_and_csv_agree(evaluated: EvaluationResult) -> None:
    data = json.loads((evaluated.out / "metrics.json").read_text())
    with open(evaluated.out / "per_horizon.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(METHODS) * 3
    for row in rows:
        entries = data["methods"][row["method"]]
        for name, entry in entries.items():
            value = entry["per_horizon"][int(row["horizon"]) - 1]
            got = float(row[name])
            if value is None:
                assert not math.isfinite(got)
            else:
                assert got == pytest.approx(value, rel=1e-12)
        if row["method"] != "river":
            assert row["psnr_best_of_k"] == ""


def test_copy_last_baseline_matches_a_direct_computation(
    evaluated: EvaluationResult, tiny_dataset: Path
) -> None:
    dataset = ClipDataset(
        split_dir(tiny_dataset, "test"),
        num_frames=4,
        image_size=32,
        train=False,
        clips_per_video=CLIPS_PER_VIDEO,
    )
    clips = torch.stack([dataset[i]["frames"] for i in range(4)])  # (4, 4, 3, 32, 32)
    truth = clips[:, 1:]
    copy = clips[:, :1].expand_as(truth)
    got = evaluated.metrics["copy_last"]
    for name, fn in (("mse", mse), ("psnr", psnr), ("ssim", ssim)):
        expected = per_horizon(fn, copy, truth).tolist()
        assert got[name] == pytest.approx(expected, rel=1e-5)


def test_too_short_videos_raise_a_data_error(
    tiny_river_run: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="too short"):
        evaluate(tiny_river_run, tiny_dataset, frames=20, out=tmp_path, progress=False)


def test_a_non_river_checkpoint_raises_a_checkpoint_error(
    tiny_autoencoder_run: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError):
        evaluate(tiny_autoencoder_run, tiny_dataset, out=tmp_path, progress=False)
