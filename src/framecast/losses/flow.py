"""Stage-2 losses: RIVER frame sampling and the smoke-weighted flow-matching loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from framecast.flow.path import CondOTPath


def sample_river_indices(
    num_frames: int,
    condition_frames: int,
    batch: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw (target k, reference k - 1, context c) frame indices per sample, as in RIVER.

    Per sample: k ~ U{max(condition_frames, 2) .. num_frames - 1}, reference = k - 1,
    c ~ U{0 .. k - 2}, so the context always lies strictly before the reference and
    tau = reference - c >= 1.

    RIVER itself draws k from {2 .. N - 1} whatever the conditioning length; we also keep
    k >= condition_frames so that a target is never one of the given frames. k = 1 is
    excluded even with condition_frames = 1 because it leaves no frame below the
    reference for the context.

    Returns three (B,) int64 tensors on the generator's device (CPU by default).
    Raises ValueError when condition_frames < 1, batch < 1 or num_frames is too small for
    one valid draw (num_frames < max(condition_frames, 2) + 1).
    """
    if condition_frames < 1:
        raise ValueError(f"condition_frames must be >= 1, got {condition_frames}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    low = max(condition_frames, 2)
    if num_frames < low + 1:
        raise ValueError(
            f"num_frames={num_frames} is too small: a target index >= {low} "
            f"(max(condition_frames={condition_frames}, 2)) needs num_frames >= {low + 1}"
        )
    device = generator.device if generator is not None else torch.device("cpu")
    target = torch.randint(low, num_frames, (batch,), generator=generator, device=device)
    # c = floor(u * (k - 1)) with u ~ U[0, 1) is uniform on {0 .. k - 2}, vectorised over k.
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    # The minimum guards against u * (k - 1) rounding up to k - 1 in floating point.
    context = torch.minimum((u * (target - 1).double()).floor().long(), target - 2)
    return target, target - 1, context


def smoke_weights(
    z_target: Tensor,
    smoke_threshold: float = 0.1,
    smoke_weight: float = 5.0,
    background_weight: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Per-pixel loss weights from the target latent.

    z_target: (B, C, H, W). A pixel is smoke where the L2 norm over channels of the target
    latent exceeds ``smoke_threshold`` (the background encodes to latents near 0).
    Returns ``(weights, smoke_mask)``: (B, 1, H, W) float weights
    ``mask * smoke_weight + (1 - mask) * background_weight`` and the (B, 1, H, W) bool mask.
    """
    mask = torch.linalg.vector_norm(z_target, dim=1, keepdim=True) > smoke_threshold
    maskf = mask.to(z_target.dtype)
    weights = maskf * smoke_weight + (1.0 - maskf) * background_weight
    return weights, mask


@dataclass
class FlowLossOutput:
    """Result of :func:`weighted_flow_matching_loss`.

    loss: scalar with graph, the smoke-weighted mean squared error.
    mse: scalar, detached, unweighted MSE (logged as ``Training/Loss/flow_matching_mse``).
    smoke_ratio: scalar, detached, fraction of smoke pixels (``Training/Stats/smoke_ratio``).
    """

    loss: Tensor
    mse: Tensor
    smoke_ratio: Tensor


def weighted_flow_matching_loss(
    v_pred: Tensor,
    u_target: Tensor,
    z_target: Tensor,
    smoke_threshold: float = 0.1,
    smoke_weight: float = 5.0,
    background_weight: float = 1.0,
) -> FlowLossOutput:
    """Flow-matching regression with smoke pixels weighted up.

    v_pred, u_target: (B, C, H, W) predicted and target velocities.
    z_target: (B, C, H, W) clean target latent z_k, which decides the smoke mask.
    loss = mean over (B, C, H, W) of weight * (v_pred - u_target)^2, the weight broadcast
    over channels; at weights 1/1 it equals ``F.mse_loss(v_pred, u_target)``.
    """
    weights, mask = smoke_weights(z_target, smoke_threshold, smoke_weight, background_weight)
    squared_error = (v_pred - u_target).pow(2)
    loss = (weights * squared_error).mean()
    return FlowLossOutput(
        loss=loss,
        mse=squared_error.detach().mean(),
        smoke_ratio=mask.float().mean(),
    )


def river_flow_loss(
    vector_field: nn.Module,
    path: CondOTPath,
    latents: Tensor,
    condition_frames: int,
    smoke_threshold: float = 0.1,
    smoke_weight: float = 5.0,
    background_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> FlowLossOutput:
    """The RIVER training objective on one random (target, reference, context) per clip.

    latents: (B, N, C, h, w) clip latents. Per clip: k, k - 1 and c from
    :func:`sample_river_indices`, t ~ U[0, 1], ε ~ N(0, I), x_t on ``path``; the
    regressor's velocity ``vector_field(x_t, z_ref, z_ctx, tau, t)`` is regressed onto
    u = z_k - (1 - σ) ε with the smoke weighting. Random draws use ``generator`` (CPU)
    and are moved to the latents' device. The loss is computed in fp32.
    """
    batch, num_frames = latents.shape[:2]
    target, reference, context = sample_river_indices(
        num_frames, condition_frames, batch, generator
    )
    rows = torch.arange(batch)
    z_target = latents[rows, target]
    times = torch.rand(batch, generator=generator).to(latents.device)
    noise = torch.randn(z_target.shape, generator=generator).to(latents.device, latents.dtype)
    sample = path.sample(z_target, times, noise)
    tau = (reference - context).to(latents.device)
    velocity = vector_field(
        sample.x_t, latents[rows, reference], latents[rows, context], tau, sample.t
    )
    return weighted_flow_matching_loss(
        velocity.float(),
        sample.u.float(),
        z_target.float(),
        smoke_threshold=smoke_threshold,
        smoke_weight=smoke_weight,
        background_weight=background_weight,
    )
