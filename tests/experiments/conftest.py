"""Fixtures of the sweep tests: overrides that shrink a sweep to 2-step CPU runs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "configs" / "sweeps"


@pytest.fixture
def tiny_sweep_overrides(tiny_dataset, tiny_run):
    """``tiny_sweep_overrides(max_steps=2)`` → overrides making any autoencoder sweep tiny."""

    def make(max_steps: int = 2) -> list[str]:
        return [
            "model.base_channels=8",
            "model.norm_groups=4",
            "model.num_res_blocks=1",
            "model.attention=false",
            *tiny_run(tiny_dataset, max_steps),
        ]

    return make
