"""Optical-flow motion features for the WuBu-GAAD VAE-GAN's motion branch.

The motion branch does not see pixels; it sees how the pixels move. Dense optical flow
between consecutive frames is reduced to a few statistics per GAAD region (mean speed,
mean direction, their spreads), so the encoder gets a compact, box-aligned description
of motion.

Flow comes from OpenCV's Farneback estimator rather than a learned network (RAFT in the
original research code): it needs no weights, runs on CPU and is accurate enough on the
small (64x64) smoke and moving-object clips this project trains on. Flow is a fixed input
feature, so it is computed without gradient.

Directions are circular quantities: averaging raw angles breaks at the +-pi seam, so the
mean direction is the direction of the mean unit vector, returned as (cos, sin), and the
angular spread is the circular standard deviation ``sqrt(-2 ln R)`` where ``R`` is the
length of that mean unit vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

MOTION_STAT_COMPONENTS: tuple[str, ...] = ("mag_mean", "angle_mean", "mag_std", "angle_std")

# Features each component contributes; the mean direction is a (cos, sin) pair so it has no
# seam at +-pi.
_COMPONENT_DIMS = {"mag_mean": 1, "angle_mean": 2, "mag_std": 1, "angle_std": 1}

# Farneback parameters, sized for 64x64 frames:
# - pyr_scale 0.5, levels 3: pyramid 64 -> 32 -> 16 px; the 16-px level still has structure
#   and lets displacements of several pixels be found at the coarse level.
# - winsize 11: averaging window of about a sixth of the frame; large enough to carry flow
#   into flat object interiors, small enough not to smear a small object's motion over
#   its background.
# - iterations 3: per pyramid level, OpenCV's usual value.
# - poly_n 5, poly_sigma 1.1: the small polynomial neighbourhood OpenCV recommends for
#   low-resolution images (poly_n 7 / sigma 1.5 smooths too much at 64x64).
FARNEBACK_PARAMS = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 11,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.1,
    "flags": 0,
}

# Smallest magnitude / resultant length treated as non-zero; below it a direction is undefined.
_EPS = 1e-6


def _to_gray_uint8(frames: Tensor) -> np.ndarray:
    """(B, T, C, H, W) floats in [-1, 1] -> (B, T, H, W) uint8 grayscale on CPU."""
    images = frames.detach().float().cpu()
    if images.shape[2] == 3:
        # ITU-R BT.601 luma, the weights cv2.cvtColor uses for RGB -> GRAY.
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)
        gray = (images * weights).sum(dim=2)
    else:
        # One channel is already gray; any other count has no standard luma, so average.
        gray = images.mean(dim=2)
    gray = ((gray.clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return gray.to(torch.uint8).numpy()


@torch.no_grad()
def farneback_flow(frames: Tensor) -> Tensor:
    """Dense optical flow between consecutive frames.

    Args:
        frames: (B, T, C, H, W) floats in [-1, 1], T >= 2.

    Returns:
        (B, T-1, 2, H, W) float32 on ``frames.device``; channel 0 is dx, channel 1 is dy, in
        pixels, such that frame t+1 at (x + dx, y + dy) matches frame t at (x, y).
    """
    if frames.ndim != 5:
        raise ValueError(f"frames must be (B, T, C, H, W), got shape {tuple(frames.shape)}")
    batch, num_frames, _, height, width = frames.shape
    if num_frames < 2:
        raise ValueError(f"optical flow needs at least 2 frames, got T={num_frames}")
    gray = _to_gray_uint8(frames)
    flow = np.empty((batch, num_frames - 1, height, width, 2), dtype=np.float32)
    for b in range(batch):
        for t in range(num_frames - 1):
            flow[b, t] = cv2.calcOpticalFlowFarneback(
                gray[b, t], gray[b, t + 1], None, **FARNEBACK_PARAMS
            )
    # OpenCV returns (H, W, 2); the model wants channels first.
    return torch.from_numpy(flow).permute(0, 1, 4, 2, 3).contiguous().to(frames.device)


def _check_components(components: Sequence[str]) -> tuple[str, ...]:
    if isinstance(components, str):
        # A bare string would otherwise be iterated character by character.
        components = (components,)
    for name in components:
        if name not in _COMPONENT_DIMS:
            raise ValueError(
                f"unknown motion statistic {name!r}; allowed: {', '.join(MOTION_STAT_COMPONENTS)}"
            )
    return tuple(components)


def stats_dim(components: Sequence[str] = ("mag_mean", "angle_mean")) -> int:
    """Feature count ``D`` that ``flow_region_stats`` returns for these components."""
    return sum(_COMPONENT_DIMS[name] for name in _check_components(components))


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """Binary pixel masks of boxes.

    A pixel (column i, row j) belongs to a box when its centre (i + 0.5, j + 0.5) lies in
    ``[x1, x2) x [y1, y2)``, so the box [0, 0, 4, 4] covers exactly pixels 0..3 of each axis
    and adjacent boxes sharing an edge never count a pixel twice.

    Args:
        boxes: (..., 4) ``[x1, y1, x2, y2]`` in pixels.

    Returns:
        (..., H, W) float mask on ``boxes.device``.
    """
    boxes = boxes.float()
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
    x1, y1, x2, y2 = (boxes[..., k, None] for k in range(4))
    inside_x = (xs >= x1) & (xs < x2)  # (..., W)
    inside_y = (ys >= y1) & (ys < y2)  # (..., H)
    return (inside_y[..., :, None] & inside_x[..., None, :]).float()


def flow_region_stats(
    flow: Tensor,
    boxes: Tensor,
    components: Sequence[str] = ("mag_mean", "angle_mean"),
) -> Tensor:
    """Per-region statistics of a flow field.

    Every statistic is a masked mean over the pixels inside a box, computed for all boxes
    at once (no loop over boxes). Features come in the order of ``components``:

    - ``mag_mean`` (1): mean flow magnitude in pixels.
    - ``angle_mean`` (2): (cos, sin) of the circular mean direction, i.e. of the mean of
      the pixels' unit flow vectors; pixels without motion have no direction and add a
      zero vector. (0, 0) when no pixel in the box has a defined direction.
    - ``mag_std`` (1): standard deviation of the magnitude (population, two-pass).
    - ``angle_std`` (1): circular standard deviation ``sqrt(-2 ln R)``, R the length of the
      mean unit vector (0 for one direction, growing as directions disagree; R is floored
      at 1e-6, so at most about 5.3).

    Boxes that contain no pixel give all-zero features, never NaN.

    Args:
        flow: (B, F, 2, H, W) flow (dx, dy) in pixels, e.g. from ``farneback_flow``.
        boxes: (B, N, 4) or (N, 4) ``[x1, y1, x2, y2]`` pixel boxes; (N, 4) is shared by
            the whole batch.
        components: names from ``MOTION_STAT_COMPONENTS``.

    Returns:
        (B, F, N, D) float32, D = ``stats_dim(components)``.
    """
    components = _check_components(components)
    if flow.ndim != 5 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (B, F, 2, H, W), got shape {tuple(flow.shape)}")
    batch, _, _, height, width = flow.shape
    if boxes.ndim == 2:
        boxes = boxes.unsqueeze(0).expand(batch, -1, -1)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != batch:
        raise ValueError(
            f"boxes must be (B, N, 4) or (N, 4) with B={batch}, got shape {tuple(boxes.shape)}"
        )

    flow = flow.float()
    masks = box_masks(boxes.to(flow.device), height, width)  # (B, N, H, W)
    pixel_counts = masks.sum(dim=(-2, -1))  # (B, N)
    has_pixels = (pixel_counts > 0).float()[:, None, :, None]  # (B, 1, N, 1)
    # Normalised masks turn a masked mean into one einsum; empty boxes divide by 1, not 0.
    weights = masks / pixel_counts.clamp_min(1.0)[..., None, None]

    def region_mean(values: Tensor) -> Tensor:
        """(B, F, H, W) -> (B, F, N) mean over each box's pixels."""
        return torch.einsum("bnhw,bfhw->bfn", weights, values)

    dx, dy = flow[:, :, 0], flow[:, :, 1]
    magnitude = torch.sqrt(dx * dx + dy * dy)
    features: list[Tensor] = []
    mag_mean = region_mean(magnitude) if {"mag_mean", "mag_std"} & set(components) else None
    unit_mean = None
    if {"angle_mean", "angle_std"} & set(components):
        # Unit vectors instead of atan2 angles: their mean is the circular mean, seam-free.
        inverse_magnitude = torch.where(
            magnitude > _EPS, 1.0 / magnitude.clamp_min(_EPS), torch.zeros_like(magnitude)
        )
        mean_cos = region_mean(dx * inverse_magnitude)
        mean_sin = region_mean(dy * inverse_magnitude)
        resultant = torch.sqrt(mean_cos * mean_cos + mean_sin * mean_sin)
        unit_mean = (mean_cos, mean_sin, resultant)

    for name in components:
        if name == "mag_mean":
            features.append(mag_mean[..., None])
        elif name == "angle_mean":
            mean_cos, mean_sin, resultant = unit_mean
            defined = resultant > _EPS
            safe = resultant.clamp_min(_EPS)
            features.append(
                torch.stack(
                    (
                        torch.where(defined, mean_cos / safe, torch.zeros_like(mean_cos)),
                        torch.where(defined, mean_sin / safe, torch.zeros_like(mean_sin)),
                    ),
                    dim=-1,
                )
            )
        elif name == "mag_std":
            # Two-pass (deviations from the box mean) instead of E[m^2] - E[m]^2, which
            # cancels catastrophically in float32 for near-constant flow.
            deviation = magnitude[:, :, None] - mag_mean[..., None, None]  # (B, F, N, H, W)
            variance = torch.einsum("bnhw,bfnhw->bfn", weights, deviation * deviation)
            features.append(torch.sqrt(variance.clamp_min(0.0))[..., None])
        else:  # angle_std
            resultant = unit_mean[2].clamp(_EPS, 1.0)
            features.append(torch.sqrt((-2.0 * torch.log(resultant)).clamp_min(0.0))[..., None])
    return torch.cat(features, dim=-1) * has_pixels
