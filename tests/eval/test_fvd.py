"""FVD with a TorchScript I3D: loading, the StyleGAN-V call convention, the distance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from framecast.errors import CheckpointError, DataError
from framecast.eval.fvd import fvd, i3d_features, load_i3d


class FakeI3D(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: same call signature, (B, 400) features.

    Features are the first 400 values of the rescaled clip, so shifting every pixel of
    a set of videos by c shifts every feature by c.
    """

    def forward(
        self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> Tensor:
        if rescale:
            x = x / 127.5 - 1
        return x.flatten(1)[:, :400]


def save_fake_i3d(path: Path) -> Path:
    torch.jit.save(torch.jit.script(FakeI3D()), str(path))
    return path


def _videos(n: int, seed: int, offset_levels: int = 0) -> Tensor:
    """(n, 4, 3, 8, 8) videos in [-1, 1] on the 256 levels of uint8 frames."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(20, 200, (n, 4, 3, 8, 8), generator=g) + offset_levels
    return levels / 127.5 - 1


def test_identical_sets_give_zero_and_shifted_sets_the_closed_form(tmp_path: Path) -> None:
    detector = load_i3d(save_fake_i3d(tmp_path / "i3d.pt"))
    real = _videos(12, seed=0)
    feats = i3d_features(detector, real, batch_size=5)
    assert feats.shape == (12, 400) and feats.dtype == torch.float64
    # 12 videos, 400 features: singular covariances, so the matrix square root is only
    # accurate to ~1e-7 of the trace (~100 here).
    assert fvd(feats, feats) == pytest.approx(0.0, abs=1e-4)
    # Shifting by 10 levels shifts each of the 400 features by 10 / 127.5; equal
    # covariances leave only the mean term.
    shifted = i3d_features(detector, _videos(12, seed=0, offset_levels=10), batch_size=5)
    expected = 400 * (10 / 127.5) ** 2
    assert fvd(feats, shifted) == pytest.approx(expected, rel=1e-4)


def test_detector_gets_the_stylegan_v_input_convention() -> None:
    seen: dict = {}

    class Recorder(torch.nn.Module):
        def forward(self, x, **kwargs):
            seen.update(x=x, kwargs=kwargs)
            return torch.zeros(x.shape[0], 400)

    videos = torch.full((2, 5, 3, 8, 6), -1.0)
    videos[:, :, :, 0, 0] = 1.0
    i3d_features(Recorder(), videos)
    x = seen["x"]
    assert x.shape == (2, 3, 5, 8, 6) and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 255
    assert seen["kwargs"] == {"rescale": True, "resize": True, "return_features": True}


def test_load_i3d_names_the_file_when_missing_or_unloadable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.pt"):
        load_i3d(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript archive")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_i3d(junk)
