"""Where the smoke is in latent space: the mask of the smoke-weighted flow-matching loss.

The users' rule: a latent cell is smoke when the L2 norm over channels of the target
latent exceeds ``training.smoke_threshold``. That rule assumes the black background
encodes to latents near 0, which a trained autoencoder does not guarantee: stage-1
latents are normalised per channel (mean 0, std 1 over all cells), so the background
sits wherever its share of the data puts it, often at a norm of several units. We keep
the rule and measure it where the background *is* zero: relative to the latent of an
all-black frame,

    smoke  <=>  || z - z_black ||_2 (over channels)  >  smoke_threshold

where ``z_black`` (C, h, w) is the autoencoder's latent of an all-black frame (it varies
over the grid because convolutions pad at the borders). For an autoencoder whose
background does encode to 0 this is exactly the users' rule.

``smoke_threshold: auto`` picks the threshold from the data: frame-space smoke (mean
brightness on [0, 1] above ``eval.metrics.SMOKE_BRIGHTNESS``) is pooled onto the latent grid, a
cell counts as smoke when at least ``SMOKE_CELL_SHARE`` of its pixels are smoke, and the
threshold is the quantile of the distances that marks the same share of cells.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from framecast.eval.metrics import SMOKE_BRIGHTNESS, bright_smoke_mask

# A latent cell counts as smoke when at least this share of its pixels is frame-space smoke
# (eval.metrics.bright_smoke_mask at its default brightness, SMOKE_BRIGHTNESS).
SMOKE_CELL_SHARE = 0.25
# Written with the statistics, so a cache made under another definition is not trusted.
MASK_DEFINITION = "distance_from_black_frame"
# Quantiles are taken on at most this many distances (torch.quantile's input limit is 16M).
_MAX_QUANTILE_INPUT = 1_000_000


class NoSmokeFoundError(ValueError):
    """The frames hold no smoke on a black background to derive a threshold from."""


@torch.no_grad()
def black_frame_latent(
    encode: Callable[[Tensor], Tensor], channels: int, image_size: int
) -> Tensor:
    """The latent (C, h, w) of an all-black frame: ``encode`` of a (1, channels, H, W) -1s."""
    black = torch.full((1, channels, image_size, image_size), -1.0)
    return encode(black)[0].float()


def latent_smoke_distance(latents: Tensor, background: Tensor | None) -> Tensor:
    """L2 norm over channels of ``latents - background``: (..., C, h, w) -> (..., h, w).

    ``background`` (C, h, w) broadcasts over leading dimensions; ``None`` measures the
    plain norm (the users' rule for latents whose background is already 0).
    """
    if background is not None:
        latents = latents - background.to(latents.device, latents.dtype)
    return torch.linalg.vector_norm(latents, dim=-3)


def frame_smoke_cells(frames: Tensor, latent_hw: tuple[int, int]) -> Tensor:
    """Latent cells whose frame patch is smoke: frames (N, C, H, W) in [-1, 1] -> (N, h, w) bool."""
    pixels = bright_smoke_mask(frames.float(), SMOKE_BRIGHTNESS).float()  # (N, 1, H, W)
    return F.adaptive_avg_pool2d(pixels, latent_hw)[:, 0] >= SMOKE_CELL_SHARE


def threshold_statistics(cell_masks: Tensor, distances: Tensor) -> dict[str, float | str]:
    """How well ``distance > threshold`` finds the frames' smoke, and the threshold to use.

    cell_masks: (N, h, w) bool from :func:`frame_smoke_cells`. distances: (N, h, w) from
    :func:`latent_smoke_distance`. The suggested threshold marks the same share of cells as
    smoke as the frames do; ``iou`` says how well the two masks then overlap.
    Raises :class:`NoSmokeFoundError` when no cell holds smoke.
    """
    share = float(cell_masks.float().mean())
    if share == 0.0:
        raise NoSmokeFoundError(
            f"no smoke in {cell_masks.shape[0]} frames: no latent cell has "
            f"≥ {SMOKE_CELL_SHARE:.0%} of its pixels brighter than {SMOKE_BRIGHTNESS} "
            "on [0, 1] (smoke on a black background is expected)"
        )
    flat = distances.flatten().double()
    stride = max(1, flat.numel() // _MAX_QUANTILE_INPUT)
    suggested = float(torch.quantile(flat[::stride], 1.0 - share))
    mask = flat > suggested
    cells = cell_masks.flatten()
    union = (mask | cells).sum().clamp_min(1)
    return {
        "mask_definition": MASK_DEFINITION,
        "frame_smoke_cell_share": share,
        "suggested_smoke_threshold": suggested,
        "suggested_threshold_iou": float((mask & cells).sum() / union),
        "smoke_ratio_at_0.1": float((flat > 0.1).double().mean()),
        "frames": int(cell_masks.shape[0]),
    }
