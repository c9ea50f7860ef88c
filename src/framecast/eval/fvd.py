"""Fréchet Video Distance with a user-supplied TorchScript I3D.

No weights can be downloaded here, so the detector is a file the user provides: the
``i3d_torchscript.pt`` that StyleGAN-V (``src/metrics/frechet_video_distance.py``) and
the FVD comparisons built on it load with ``torch.jit.load``. It is a Kinetics-400 I3D
reproducing the TF-Hub model of the original FVD code, called as::

    detector(videos, rescale=True, resize=True, return_features=True) -> (B, 400)

with ``videos`` of layout (B, 3, T, H, W) and values in [0, 255] (StyleGAN-V feeds its
uint8 frames). ``rescale=True`` maps [0, 255] to [-1, 1] inside the model and
``resize=True`` resizes every frame to 224×224 inside it; ``return_features=True``
returns the 400 logits before the softmax, the features FVD is computed on. We follow
that call exactly: frames in [-1, 1] are mapped to [0, 255] and rounded to the 256
levels real frames on disk have (so predictions and real clips go through the same
quantisation), as float32. The I3D was trained on clips of 16 frames; the reference
FVD uses 16-frame clips and much shorter clips may be too short for its temporal
pooling (the detector then fails, reported as a :class:`DataError`).

FVD is the Fréchet distance between Gaussians fitted to the two feature sets
(:func:`framecast.eval.metrics.fid_from_features`), which needs at least 2 videos per
set; with fewer videos than 400 the covariances are singular and the estimate is
biased upwards, so compare FVDs only at equal numbers of videos.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from framecast.errors import CheckpointError, DataError
from framecast.eval.metrics import fid_from_features

I3D_KWARGS = {"rescale": True, "resize": True, "return_features": True}
"""Keyword arguments of every detector call (StyleGAN-V's ``detector_kwargs``)."""
I3D_FEATURES = 400


def load_i3d(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the TorchScript I3D at ``path`` (eval mode, on ``device``).

    Raises :class:`DataError` when the file is missing and :class:`CheckpointError` when
    it is not a loadable TorchScript archive; both name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: I3D detector file does not exist (expected the TorchScript "
            "i3d_torchscript.pt used by StyleGAN-V's FVD)"
        )
    try:
        detector = torch.jit.load(str(path), map_location=torch.device(device))
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a loadable TorchScript I3D (expected StyleGAN-V's "
            f"i3d_torchscript.pt): {first}"
        ) from exc
    return detector.eval()


def to_i3d_input(videos: Tensor) -> Tensor:
    """(B, T, 3, H, W) in [-1, 1] -> (B, 3, T, H, W) float32 in [0, 255], on 256 levels.

    Greyscale videos (B, T, 1, H, W) are replicated to three equal channels (I3D is RGB).
    """
    if videos.ndim != 5 or videos.shape[2] not in (1, 3):
        raise ValueError(
            f"expected videos (B, T, 3, H, W) or greyscale (B, T, 1, H, W), got shape "
            f"{tuple(videos.shape)}"
        )
    if videos.shape[2] == 1:
        videos = videos.expand(-1, -1, 3, -1, -1)
    x = ((videos.float().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def i3d_features(detector: torch.nn.Module, videos: Tensor, batch_size: int = 16) -> Tensor:
    """I3D features of videos (B, T, 3, H, W) in [-1, 1] -> (B, 400) float64 on the CPU.

    Runs the detector on chunks of ``batch_size`` videos, on the detector's device when
    it has parameters (else the videos' device).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = list(detector.parameters())
    device = params[0].device if params else videos.device
    out = []
    for chunk in videos.split(batch_size):
        x = to_i3d_input(chunk).to(device)
        try:
            feats = detector(x, **I3D_KWARGS)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "RuntimeError"
            raise DataError(
                f"the I3D detector failed on videos of shape {tuple(x.shape)} "
                f"(B, 3, T, H, W): {first} (it expects clips of about 16 frames)"
            ) from exc
        if feats.ndim != 2 or feats.shape[0] != x.shape[0]:
            raise DataError(
                f"the I3D detector returned features of shape {tuple(feats.shape)} for "
                f"{x.shape[0]} videos; expected ({x.shape[0]}, {I3D_FEATURES})"
            )
        out.append(feats.detach().to("cpu", torch.float64))
    return torch.cat(out)


def fvd(real_feats: Tensor | np.ndarray, fake_feats: Tensor | np.ndarray) -> float:
    """FVD between two sets of I3D features (N, D) and (M, D), N, M >= 2."""
    return fid_from_features(real_feats, fake_feats)
