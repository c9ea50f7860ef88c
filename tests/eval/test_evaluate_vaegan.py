"""``framecast evaluate`` and ``generate`` on a tiny VAE-GAN run: loading, files, baselines,
frame-count errors, the CLI, and refusing checkpoints of other kinds."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from framecast.cli import main
from framecast.data.dataset import ClipDataset, split_dir
from framecast.errors import CheckpointError, ConfigError
from framecast.eval.evaluate import METRICS, EvaluationResult, evaluate
from framecast.eval.generate import generate
from framecast.eval.metrics import per_horizon, psnr
from framecast.models.vaegan.loading import load_vaegan

CLIPS_PER_VIDEO = 2  # 2 test videos -> 4 clips
CONTEXT, FRAMES = 3, 3  # the shrunk wubu_vaegan config: 3 context -> 3 future frames
VAEGAN_METHODS = ["vaegan", "copy_last"]


@pytest.fixture(scope="module")
def evaluated(tiny_vaegan_run: Path, tiny_dataset: Path, fake_i3d: Path) -> EvaluationResult:
    """Two posterior draws per clip, FVD with a fake I3D, a full and a partial batch."""
    return evaluate(
        tiny_vaegan_run,
        tiny_dataset,
        split="test",
        samples=2,
        clips_per_video=CLIPS_PER_VIDEO,
        batch_size=3,
        i3d=fake_i3d,
        progress=False,
        max_clips=4,
    )


def test_load_vaegan_rebuilds_the_trained_model(tiny_vaegan_run: Path) -> None:
    run = load_vaegan(tiny_vaegan_run)
    assert run.checkpoint.suffix == ".ckpt" and run.image_size == 32
    assert (run.context_frames, run.future_frames) == (CONTEXT, FRAMES)
    assert not run.model.training
    context = torch.rand(2, CONTEXT, 3, 32, 32) * 2 - 1
    mean = run.predict(context)
    assert mean.shape == (2, 1, FRAMES, 3, 32, 32)
    assert torch.equal(mean, run.predict(context))  # the posterior mean is deterministic
    draws = [run.predict(context, 2, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert draws[0].shape == (2, 2, FRAMES, 3, 32, 32)
    assert torch.equal(draws[0], draws[1])  # seeded
    # Posterior draws, not K copies of the mean.
    assert not torch.equal(draws[0][:, 0], draws[0][:, 1])
    assert not torch.equal(draws[0][:, :1], mean)


def test_writes_the_files_with_both_methods(
    evaluated: EvaluationResult, tiny_vaegan_run: Path
) -> None:
    assert evaluated.out == tiny_vaegan_run / "eval" / "test"
    for name in ("metrics.json", "per_horizon.csv", "per_horizon.png", "samples.png"):
        assert (evaluated.out / name).stat().st_size > 0
    data = json.loads((evaluated.out / "metrics.json").read_text())
    assert data["kind"] == "vaegan" and data["sampler"] is None
    assert data["nfe_per_frame"] is None and data["seconds_per_frame"] > 0
    assert data["num_clips"] == 4 and data["samples"] == 2
    assert (data["context_frames"], data["frames"]) == (CONTEXT, FRAMES)
    assert list(data["methods"]) == VAEGAN_METHODS
    assert set(data["methods"]["vaegan"]) == {*METRICS, "psnr_best_of_k"}
    assert set(data["methods"]["copy_last"]) == set(METRICS)
    assert set(data["fvd"]) == set(VAEGAN_METHODS)
    assert all(math.isfinite(v) for v in data["fvd"].values())
    means = evaluated.means["vaegan"]
    assert means["psnr_best_of_k"] >= means["psnr"] - 1e-9
    text = evaluated.format()
    assert "sampler: none" in text and "posterior" in text and "copy_last" in text


def test_copy_last_matches_a_direct_computation(
    evaluated: EvaluationResult, tiny_dataset: Path
) -> None:
    dataset = ClipDataset(
        split_dir(tiny_dataset, "test"),
        num_frames=CONTEXT + FRAMES,
        image_size=32,
        train=False,
        clips_per_video=CLIPS_PER_VIDEO,
    )
    clips = torch.stack([dataset[i]["frames"] for i in range(4)])  # (4, 6, 3, 32, 32)
    truth = clips[:, CONTEXT:]
    copy = clips[:, CONTEXT - 1 : CONTEXT].expand_as(truth)
    expected = per_horizon(psnr, copy, truth).tolist()
    assert evaluated.metrics["copy_last"]["psnr"] == pytest.approx(expected, rel=1e-5)


def test_json_and_csv_agree(evaluated: EvaluationResult) -> None:
    data = json.loads((evaluated.out / "metrics.json").read_text())
    with open(evaluated.out / "per_horizon.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["method"] for row in rows] == [m for m in VAEGAN_METHODS for _ in range(FRAMES)]
    for row in rows:
        for name, entry in data["methods"][row["method"]].items():
            value = entry["per_horizon"][int(row["horizon"]) - 1]
            if value is None:
                assert not math.isfinite(float(row[name]))
            else:
                assert float(row[name]) == pytest.approx(value, rel=1e-12)
        if row["method"] == "copy_last":
            assert row["psnr_best_of_k"] == ""


def test_frame_counts_other_than_trained_are_refused(
    tiny_vaegan_run: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="exactly 3 frames from exactly 3 context frames"):
        evaluate(tiny_vaegan_run, tiny_dataset, frames=4, out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="got context 2"):
        evaluate(tiny_vaegan_run, tiny_dataset, context=2, out=tmp_path, progress=False)


def test_cli_evaluates_a_tiny_vaegan_run_and_ignores_sampler_options(
    tiny_vaegan_run: Path, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    river_only = ["--solver", "heun", "--steps", "3", "--warm-start", "0.2"]
    args = [
        "evaluate",
        "--run",
        str(tiny_vaegan_run),
        "--data",
        str(tiny_dataset),
        "--split",
        "test",
    ]
    assert main([*args, *river_only, "--max-clips", "2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "sampler: none" in printed and "vaegan" in printed and str(out) in printed
    data = json.loads((out / "metrics.json").read_text())
    assert data["sampler"] is None and list(data["methods"]) == VAEGAN_METHODS
    assert "psnr_best_of_k" not in data["methods"]["vaegan"]  # one prediction: mu


def test_cli_reports_wrong_frames_in_one_line(
    tiny_vaegan_run: Path, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    args = ["evaluate", "--run", str(tiny_vaegan_run), "--data", str(tiny_dataset), "--frames", "5"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 2
    assert "exactly 3 frames" in capsys.readouterr().err


def test_load_vaegan_refuses_another_kind(tiny_autoencoder_run: Path) -> None:
    with pytest.raises(CheckpointError, match="expected a 'vaegan' model"):
        load_vaegan(tiny_autoencoder_run)


def test_generate_writes_the_animation_and_strip_seeded(
    tiny_vaegan_run: Path, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    shard = tiny_dataset / "test" / "part-00000.fcshard"
    results = [
        generate(
            tiny_vaegan_run, shard, tmp_path / f"{name}.gif", samples=2, seed=3, progress=False
        )
        for name in ("a", "b")
    ]
    first = results[0]
    assert first.predicted.shape == (2, FRAMES, 32, 32, 3) and first.nfe_per_frame is None
    assert first.context == CONTEXT and first.ground_truth == FRAMES
    assert first.out.is_file() and first.strip.is_file()
    assert (first.predicted == results[1].predicted).all()  # the same seed, the same draws
    assert (first.predicted[0] != first.predicted[1]).any()  # two different draws
    assert "one forward pass" in first.format()
    with pytest.raises(ConfigError, match="exactly 3 frames"):
        generate(tiny_vaegan_run, shard, tmp_path / "c.gif", frames=2, progress=False)
    gif = tmp_path / "cli.gif"
    args = ["generate", "--run", str(tiny_vaegan_run), "--input", str(shard), "--out", str(gif)]
    assert main([*args, "--steps", "3", "--no-progress"]) == 0
    assert gif.is_file() and "one forward pass" in capsys.readouterr().out
