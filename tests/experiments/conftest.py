"""Fixtures of the sweep tests: overrides that shrink a sweep to 2-step CPU runs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "configs" / "sweeps"


@pytest.fixture
def tiny_sweep_overrides(tiny_dataset):
    """``tiny_sweep_overrides(max_steps=2)`` → overrides making any autoencoder sweep tiny."""

    def make(max_steps: int = 2) -> list[str]:
        return [
            "model.base_channels=8",
            "model.norm_groups=4",
            "model.num_res_blocks=1",
            "model.attention=false",
            f"data.root={tiny_dataset}",
            "data.image_size=32",
            "data.batch_size=2",
            "data.eval_batch_size=2",
            "data.num_workers=0",
            "data.clips_per_video=1",
            "data.eval_clips_per_video=1",
            f"training.max_steps={max_steps}",
            "training.max_epochs=null",
            f"training.val_every_n_steps={max_steps}",
            "training.limit_val_batches=1",
            "training.warmup_steps=0",
            "training.precision=32",
            "training.log_every_n_steps=1",
            "logging.tensorboard=false",
            "logging.progress_bar=false",
        ]

    return make
