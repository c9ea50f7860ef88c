"""Frame augmentations for stage 1: a wider family of frames than the training plumes.

An autoencoder trained on one family of plumes is the ceiling of every prediction on another
(issue 22: on unseen plumes the round trip, not the flow model, caps PSNR). These transforms
widen what stage 1 sees without new simulations. Each keeps the contract of the data: frames
in [-1, 1] with -1 as black, and black stays black (rotations fill with black, intensity
scales the smoke above black, blur spreads smoke but never lifts an all-black frame).

Everything here acts on a batch ``(B, C, H, W)`` in [-1, 1], draws from the generator it is
given (the training step's global one, which is seeded per rank and restored on resume), and
is plain torch: no Lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FrameAugment:
    """Random per-frame transforms; each is off at its default.

    Attributes:
        hflip: probability of mirroring a frame left-right.
        rotate_degrees: largest rotation in degrees, drawn uniformly in ±this, about the
            frame's centre, corners filled with black (a leaning plume: wind).
        intensity_scale: ``(low, high)``: the smoke (the distance above black) is multiplied
            by a factor drawn log-uniformly in this range, then clipped at white.
        blur_prob: probability of a Gaussian blur of a frame.
        blur_sigma: ``(low, high)`` of the blur's standard deviation in pixels (uniform).
        input_noise_std: Gaussian noise added to the encoder's input only (the target stays
            clean: a denoising autoencoder), in units of the [-1, 1] range.
    """

    hflip: float = 0.0
    rotate_degrees: float = 0.0
    intensity_scale: tuple[float, float] = (1.0, 1.0)
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    input_noise_std: float = 0.0

    @property
    def enabled(self) -> bool:
        return (
            self.hflip > 0
            or self.rotate_degrees > 0
            or self.intensity_scale != (1.0, 1.0)
            or self.blur_prob > 0
            or self.input_noise_std > 0
        )

    def __call__(
        self, frames: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) frames → (encoder input, reconstruction target), both (B, C, H, W).

        The target is the transformed frame; the input is the target plus noise when
        ``input_noise_std`` > 0 (else the same tensor).
        """
        target = frames
        if self.hflip > 0:
            target = random_hflip(target, self.hflip, generator)
        if self.rotate_degrees > 0:
            target = random_rotate(target, self.rotate_degrees, generator)
        if self.intensity_scale != (1.0, 1.0):
            target = random_intensity(target, self.intensity_scale, generator)
        if self.blur_prob > 0:
            target = random_blur(target, self.blur_prob, self.blur_sigma, generator)
        if self.input_noise_std <= 0:
            return target, target
        noise = torch.randn(target.shape, generator=generator, device=target.device)
        return target + self.input_noise_std * noise.to(target.dtype), target


def _per_frame(count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(count,) uniform numbers in [0, 1), one per frame."""
    return torch.rand(count, generator=generator, device=device)


def random_hflip(
    frames: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each frame of (B, C, H, W) left-right with ``probability``."""
    flip = _per_frame(frames.shape[0], generator, frames.device) < probability
    return torch.where(flip[:, None, None, None], frames.flip(-1), frames)


def random_rotate(
    frames: torch.Tensor, max_degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each frame of (B, C, H, W) by an angle uniform in ±``max_degrees``.

    Bilinear; what rotates in from outside the frame is black (-1).
    """
    count = frames.shape[0]
    angles = (2 * _per_frame(count, generator, frames.device) - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(frames.dtype), list(frames.shape), align_corners=False)
    # grid_sample fills with 0, the middle grey of [-1, 1]: shift black to 0 and back.
    rotated = F.grid_sample(frames + 1, grid, mode="bilinear", align_corners=False) - 1
    return rotated.clamp(-1, 1)


def random_intensity(
    frames: torch.Tensor,
    scale_range: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scale the smoke of each frame (B, C, H, W) by a log-uniform factor; black stays black."""
    low, high = scale_range
    u = _per_frame(frames.shape[0], generator, frames.device)
    scale = torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return ((frames + 1) * scale[:, None, None, None].to(frames.dtype) - 1).clamp(-1, 1)


def random_blur(
    frames: torch.Tensor,
    probability: float,
    sigma_range: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian-blur each frame of (B, C, H, W) with ``probability``, sigma uniform in range.

    Separable, per-frame kernels of radius ``ceil(3 * max sigma)``, black padding.
    """
    count, channels = frames.shape[:2]
    u = _per_frame(count, generator, frames.device)
    pick = _per_frame(count, generator, frames.device) < probability
    low, high = sigma_range
    sigma = low + u * (high - low)
    radius = max(1, math.ceil(3 * high))
    offsets = torch.arange(-radius, radius + 1, device=frames.device, dtype=torch.float32)
    kernels = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernels = (kernels / kernels.sum(1, keepdim=True)).to(frames.dtype)  # (B, K)
    # One grouped convolution: every (frame, channel) pair is its own group.
    weight = kernels.repeat_interleave(channels, 0)  # (B·C, K)
    shifted = (frames + 1).reshape(1, count * channels, *frames.shape[2:])
    shifted = F.conv2d(
        F.pad(shifted, (radius, radius, 0, 0)), weight[:, None, None, :], groups=count * channels
    )
    shifted = F.conv2d(
        F.pad(shifted, (0, 0, radius, radius)), weight[:, None, :, None], groups=count * channels
    )
    blurred = shifted.reshape(frames.shape) - 1
    return torch.where(pick[:, None, None, None], blurred, frames)
