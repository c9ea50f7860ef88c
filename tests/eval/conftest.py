"""Fixtures shared by the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


class FakeI3D(torch.nn.Module):
    """Same call signature as i3d_torchscript.pt; features: 400 values of the last frame."""

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        return x[:, :, -1].flatten(1)[:, :400] / 255


@pytest.fixture(scope="session")
def fake_i3d(tmp_path_factory) -> Path:
    """A TorchScript stand-in for I3D (no weights can be downloaded here), saved to disk."""
    path = tmp_path_factory.mktemp("i3d") / "i3d.pt"
    torch.jit.save(torch.jit.script(FakeI3D()), str(path))
    return path
