"""The RIVER / conditional optimal-transport probability path in latent space.

Noise ε ~ N(0, I) sits at t = 0 and the data latent z at t = 1. With a minimum
noise level σ (config key ``model.sigma``, default 1e-7) the path is

    x_t = (1 - (1 - σ) t) ε + t z,        u = dx_t/dt = z - (1 - σ) ε.

σ keeps the endpoint distribution at t = 1 a (very narrow) Gaussian around z
rather than a point mass, as in Lipman et al. and RIVER.

Shapes: latents are ``(B, ...)``, typically ``(B, C, H, W)``; time is either a
Python float (the same for the whole batch) or a tensor of shape ``(B,)``,
broadcast over the trailing dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_SIGMA = 1e-7


@dataclass(frozen=True)
class PathSample:
    """One draw from the path.

    Attributes:
        x_t: point on the path, ``(B, ...)``.
        u: target velocity ``dx_t/dt``, ``(B, ...)``.
        t: the times used, ``(B,)``.
    """

    x_t: Tensor
    u: Tensor
    t: Tensor


def _batch_time(t: float | Tensor, like: Tensor) -> Tensor:
    """Return ``t`` as a ``(B,)`` tensor on ``like``'s device and dtype."""
    batch = like.shape[0]
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        return t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must be a float or have shape ({batch},), got {tuple(t.shape)}")
    return t


def _broadcast(t: Tensor, like: Tensor) -> Tensor:
    """Reshape ``(B,)`` to ``(B, 1, ..., 1)`` so it multiplies ``like`` per sample."""
    return t.reshape(t.shape[0], *([1] * (like.dim() - 1)))


@dataclass(frozen=True)
class CondOTPath:
    """Conditional OT path with minimum noise ``sigma`` (RIVER's interpolation).

    Args:
        sigma: minimum noise level at t = 1, in ``[0, 1)``.
    """

    sigma: float = DEFAULT_SIGMA

    def __post_init__(self) -> None:
        if not 0.0 <= self.sigma < 1.0:
            raise ValueError(f"sigma must be in [0, 1), got {self.sigma}")

    def interpolate(self, noise: Tensor, z: Tensor, t: float | Tensor) -> Tensor:
        """Point on the path: ``(1 - (1 - σ) t) ε + t z``.

        Args:
            noise: ε, ``(B, ...)``.
            z: data latent, same shape as ``noise``.
            t: float or ``(B,)``.

        Returns:
            x_t, ``(B, ...)``.
        """
        if noise.shape != z.shape:
            raise ValueError(f"noise {tuple(noise.shape)} and z {tuple(z.shape)} differ")
        tb = _broadcast(_batch_time(t, z), z)
        return (1.0 - (1.0 - self.sigma) * tb) * noise + tb * z

    def velocity_target(self, noise: Tensor, z: Tensor) -> Tensor:
        """Target velocity ``z - (1 - σ) ε``; it does not depend on t.

        Args:
            noise: ε, ``(B, ...)``.
            z: data latent, same shape.

        Returns:
            u, ``(B, ...)``.
        """
        if noise.shape != z.shape:
            raise ValueError(f"noise {tuple(noise.shape)} and z {tuple(z.shape)} differ")
        return z - (1.0 - self.sigma) * noise

    def sample(self, z: Tensor, t: float | Tensor, noise: Tensor | None = None) -> PathSample:
        """Draw ``x_t`` and its target velocity for training.

        Args:
            z: data latent (the target frame's latent), ``(B, ...)``.
            t: float or ``(B,)``, usually uniform in [0, 1].
            noise: ε, same shape as ``z``; drawn from N(0, I) when omitted.

        Returns:
            PathSample with ``x_t`` and ``u`` of shape ``(B, ...)`` and ``t`` of shape ``(B,)``.
        """
        if noise is None:
            noise = torch.randn_like(z)
        tb = _batch_time(t, z)
        return PathSample(
            x_t=self.interpolate(noise, z, tb), u=self.velocity_target(noise, z), t=tb
        )

    def warm_start(self, noise: Tensor, z_prev: Tensor, s: float | Tensor) -> Tensor:
        """RIVER warm start: the path point at time ``s`` with the previous latent as data.

        Integrating from t = s starting here skips the noisy part of the path;
        s = 0 is pure noise (a cold start), s = 1 is ``z_prev`` up to σ ε.

        Args:
            noise: ε, ``(B, ...)``.
            z_prev: latent of the previous frame, same shape.
            s: float or ``(B,)`` in [0, 1].

        Returns:
            ``(1 - (1 - σ) s) ε + s z_prev``, ``(B, ...)``.
        """
        return self.interpolate(noise, z_prev, s)
