"""The simvp kind end to end on tiny data: what a run logs and writes, its checkpoint,
reloading it without Lightning (``load_simvp``), and the evaluation's ``SimVPPredictor``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from framecast.checkpoint import read_checkpoint
from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.errors import CheckpointError, ConfigError
from framecast.eval.simvp_predictor import SimVPPredictor
from framecast.models.simvp_loading import load_simvp
from framecast.training.engine import train
from framecast.training.loggers import read_metrics_csv
from framecast.training.simvp import SimVPModule

REPO = Path(__file__).resolve().parents[2]
SIMVP = REPO / "configs" / "simvp_smoke.yaml"
CONTEXT, CHUNK = 3, 3  # the shrunk config: condition_frames 3, frames_to_generate 3
TINY = {"hid_channels": 4, "hid_translator": 8, "num_translator_blocks": 1, "mlp_ratio": 2.0}


@pytest.fixture(scope="module")
def simvp_run(tmp_path_factory, tiny_dataset, tiny_run):
    """configs/simvp_smoke.yaml shrunk (32×32×1, 3 -> 3 frames) and trained 3 steps."""
    runs = tmp_path_factory.mktemp("simvp_runs")
    overrides = [f"model.{k}={v}" for k, v in TINY.items()] + tiny_run(tiny_dataset, 3)
    config = validate_config(apply_overrides(read_yaml(SIMVP), overrides), str(SIMVP))
    result = train(config, runs_dir=runs, run_name="simvp", progress=False)
    return config, result


def test_run_logs_the_metrics_and_writes_a_sample_panel(simvp_run):
    config, result = simvp_run
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    logged = set().union(*rows)
    assert {"train/loss", "train/mse"} <= logged
    assert {"val/loss", "val/mse", "val/psnr", "val/ssim"} <= logged
    last = next(r for r in reversed(rows) if "val/mse" in r)
    # val/mse is on evaluate's [0, 1] scale: a quarter of the [-1, 1] objective.
    assert last["val/mse"] == pytest.approx(last["val/loss"] / 4, rel=1e-4)
    assert list((result.run_dir / "samples").glob("simvp_step*.png"))
    meta = read_checkpoint(result.last_checkpoint, expected_kind="simvp")["framecast"]
    assert meta["image_size"] == 32
    assert meta["config"]["model"]["image_channels"] == 1  # follows data.channels: 1


def test_load_simvp_rebuilds_the_trained_model(simvp_run):
    config, result = simvp_run
    run = load_simvp(result.run_dir, which="last")
    assert not run.model.training and run.image_size == 32
    assert (run.context_frames, run.chunk_frames) == (CONTEXT, CHUNK)
    module = SimVPModule(config)
    module.load_state_dict(torch.load(result.last_checkpoint, weights_only=True)["state_dict"])
    module.eval()
    context = torch.rand(2, CONTEXT, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(run.predict(context, CHUNK), module.model(context))
    assert run.predict(context, 8).shape == (2, 8, 1, 32, 32)  # rolled out past one chunk


def test_load_simvp_refuses_other_kinds_and_shapes(simvp_run, tmp_path):
    _, result = simvp_run
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    ckpt["framecast"]["kind"] = "vaegan"
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="holds a 'vaegan' model; expected a 'simvp' model"):
        load_simvp(tmp_path / "other.ckpt")
    ckpt["framecast"]["kind"] = "simvp"
    ckpt["framecast"]["config"]["model"]["hid_channels"] = 8
    torch.save(ckpt, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match=r"shape\.ckpt: weights do not fit"):
        load_simvp(tmp_path / "shape.ckpt")
    del ckpt["framecast"]["image_size"]
    torch.save(ckpt, tmp_path / "size.ckpt")
    with pytest.raises(CheckpointError, match=r"size\.ckpt: no image_size"):
        load_simvp(tmp_path / "size.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_simvp(tmp_path / "nowhere")


def test_predictor_rolls_out_and_repeats_its_one_prediction(simvp_run):
    _, result = simvp_run
    predictor = SimVPPredictor(load_simvp(result.run_dir))
    assert predictor.methods == ("simvp", "copy_last")
    assert predictor.frame_counts(None, None) == (CONTEXT, CHUNK)
    assert predictor.frame_counts(5, 7) == (5, 7)  # more context: the newest 3 are read
    with pytest.raises(ConfigError, match=r"reads 3 context frames.*got context 2"):
        predictor.frame_counts(2, 7)
    context = torch.rand(2, 5, 1, 32, 32) * 2 - 1
    seen: list[int] = []
    one, nfe = predictor.predict(context, 7, 1, torch.Generator(), progress=seen.append)
    assert one.shape == (2, 1, 7, 1, 32, 32) and nfe is None and seen == list(range(7))
    many, _ = predictor.predict(context, 7, 3, torch.Generator())
    assert many.shape == (2, 3, 7, 1, 32, 32)
    assert all(torch.equal(many[:, k], one[:, 0]) for k in range(3))
    assert predictor.baselines(context, one[:, 0])["copy_last"].shape == (2, 7, 1, 32, 32)
    assert "rolled out" in predictor.describe(1) and "repeated" in predictor.describe(3)


def test_trains_under_bf16_mixed(tiny_dataset, tiny_run, tmp_path):
    """Under bf16 autocast the loss and the validation metrics are still taken in fp32."""
    overrides = [f"model.{k}={v}" for k, v in TINY.items()] + tiny_run(tiny_dataset, 2)
    raw = apply_overrides(read_yaml(SIMVP), [*overrides, "training.precision=bf16-mixed"])
    result = train(validate_config(raw), runs_dir=tmp_path, run_name="bf16", progress=False)
    assert result.global_step == 2
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    last = next(r for r in reversed(rows) if "val/ssim" in r)
    assert all(math.isfinite(last[k]) for k in ("val/loss", "val/mse", "val/psnr", "val/ssim"))
