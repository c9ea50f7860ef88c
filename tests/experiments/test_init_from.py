"""training.init_from: a run starts from another run's model weights (sweep phases)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from framecast.checkpoint import model_state_dict, read_checkpoint
from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.errors import CheckpointError
from framecast.training.engine import init_model_weights, train
from framecast.training.tasks import get_task

REPO = Path(__file__).resolve().parents[2]


def _config(overrides):
    raw = read_yaml(REPO / "configs" / "f1_rgb_only.yaml")
    return validate_config(apply_overrides(raw, overrides), "f1")


def test_init_from_loads_weights_and_checks_kind_and_shape(tmp_path, tiny_sweep_overrides):
    source = train(_config(tiny_sweep_overrides()), tmp_path, "source", progress=False)
    config = _config([*tiny_sweep_overrides(), f"training.init_from={source.run_dir}"])
    module = get_task("autoencoder").build_module(config)
    used = init_model_weights(module, config)
    assert used == source.best_checkpoint
    expected = model_state_dict(read_checkpoint(used))
    for key, value in module.model.state_dict().items():
        assert torch.equal(value, expected[key]), key

    wider = _config(
        [*tiny_sweep_overrides(), "model.latent_channels=4", f"training.init_from={source.run_dir}"]
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        init_model_weights(get_task("autoencoder").build_module(wider), wider)

    missing = _config([*tiny_sweep_overrides(), f"training.init_from={tmp_path / 'nope'}"])
    with pytest.raises(CheckpointError, match="does not exist"):
        train(missing, tmp_path, "missing", progress=False)
