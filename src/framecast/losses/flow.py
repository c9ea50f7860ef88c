"""Stage-2 losses: RIVER frame sampling and the smoke-weighted flow-matching loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from framecast.flow.path import CondOTPath
from framecast.losses.latent_smoke import latent_smoke_distance


def sample_river_indices(
    num_frames: int,
    condition_frames: int,
    batch: int,
    generator: torch.Generator | None = None,
    context_horizon: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw (target k, reference k - 1, context c) frame indices per sample, as in RIVER.

    Per sample: k ~ U{max(condition_frames, 2) .. num_frames - 1}, reference = k - 1,
    c ~ U{0 .. k - 2}, so the context always lies strictly before the reference and
    tau = reference - c >= 1. With ``context_horizon`` H, c ~ U{max(0, k - 1 - H) .. k - 2}
    (tau <= H); the draws are the same numbers, so H >= num_frames - 2 changes nothing.

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
    if context_horizon is not None and context_horizon < 1:
        raise ValueError(f"context_horizon must be >= 1 or None, got {context_horizon}")
    low = max(condition_frames, 2)
    if num_frames < low + 1:
        raise ValueError(
            f"num_frames={num_frames} is too small: a target index >= {low} "
            f"(max(condition_frames={condition_frames}, 2)) needs num_frames >= {low + 1}"
        )
    device = generator.device if generator is not None else torch.device("cpu")
    target = torch.randint(low, num_frames, (batch,), generator=generator, device=device)
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    context = uniform_earlier_frame(target - 1, u, context_horizon)  # frames 0 .. k - 2
    return target, target - 1, context


def uniform_earlier_frame(count: Tensor, u: Tensor, horizon: int | None) -> Tensor:
    """Index uniform on the last min(count, horizon) of frames 0 .. count - 1, from u ~ U[0, 1).

    count (B,) int64 >= 1, u (B,) float64 -> (B,) int64. The index is
    count - span + floor(u * span): without a horizon, floor(u * count), so the draws are
    the same numbers whatever horizon >= count is given.
    """
    span = count if horizon is None else count.clamp(max=horizon)
    # The minimum guards against u * span rounding up to span in floating point.
    return count - span + torch.minimum((u * span.double()).floor().long(), span - 1)


def smoke_weights(
    z_target: Tensor,
    smoke_threshold: float,
    smoke_weight: float = 5.0,
    background_weight: float = 1.0,
    background_latent: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-pixel loss weights from the target latent.

    z_target: (B, C, H, W). A pixel is smoke where the L2 norm over channels of the target
    latent, measured from ``background_latent`` (C, H, W: the latent of an all-black frame,
    see :mod:`framecast.losses.latent_smoke`; ``None``: from 0, the users' rule verbatim),
    exceeds ``smoke_threshold``.
    Returns ``(weights, smoke_mask)``: (B, 1, H, W) float weights
    ``mask * smoke_weight + (1 - mask) * background_weight`` and the (B, 1, H, W) bool mask.
    """
    distance = latent_smoke_distance(z_target, background_latent).unsqueeze(1)
    mask = distance > smoke_threshold
    maskf = mask.to(z_target.dtype)
    weights = maskf * smoke_weight + (1.0 - maskf) * background_weight
    return weights, mask


@dataclass
class FlowLossOutput:
    """Result of :func:`weighted_flow_matching_loss`; every field but ``loss`` is detached.

    The logging names are the users' (``Training/Loss/...``, ``Training/Stats/...``):

    loss: scalar with graph, the smoke-weighted MSE that is optimised
        (``Training/Loss/flow_matching_mse``).
    mse: unweighted MSE (``Training/Loss/flow_matching_mse_unweighted``): comparable
        across weightings, unlike ``loss``.
    smoke_mse, background_mse: unweighted MSE over smoke / background pixels only
        (``Training/Loss/smoke_mse``, ``background_mse``); NaN when the batch has none.
    smoke_ratio: fraction of smoke pixels (``Training/Stats/smoke_ratio``).
    smoke_pixels: number of smoke latent pixels in the batch (for exact averages over
        batches); background pixels = B * H * W - smoke_pixels.
    """

    loss: Tensor
    mse: Tensor
    smoke_ratio: Tensor
    smoke_mse: Tensor
    background_mse: Tensor
    smoke_pixels: int = 0
    pixels: int = 0

    def logged(self) -> dict[str, Tensor]:
        """The users' logging names -> values (detached)."""
        return {
            "Training/Loss/flow_matching_mse": self.loss.detach(),
            "Training/Loss/flow_matching_mse_unweighted": self.mse,
            "Training/Loss/smoke_mse": self.smoke_mse,
            "Training/Loss/background_mse": self.background_mse,
            "Training/Stats/smoke_ratio": self.smoke_ratio,
        }


def weighted_flow_matching_loss(
    v_pred: Tensor,
    u_target: Tensor,
    z_target: Tensor,
    smoke_threshold: float,
    smoke_weight: float = 5.0,
    background_weight: float = 1.0,
    background_latent: Tensor | None = None,
) -> FlowLossOutput:
    """Flow-matching regression with smoke pixels weighted up.

    v_pred, u_target: (B, C, H, W) predicted and target velocities.
    z_target: (B, C, H, W) clean target latent z_k, which decides the smoke mask
    (:func:`smoke_weights`, with ``background_latent``).
    loss = mean over (B, C, H, W) of weight * (v_pred - u_target)^2, the weight broadcast
    over channels; at weights 1/1 it equals ``F.mse_loss(v_pred, u_target)``.
    """
    weights, mask = smoke_weights(
        z_target, smoke_threshold, smoke_weight, background_weight, background_latent
    )
    squared_error = (v_pred - u_target).pow(2)
    loss = (weights * squared_error).mean()
    with torch.no_grad():
        per_pixel = squared_error.detach().mean(dim=1, keepdim=True)  # (B, 1, H, W)
        smoke_pixels = int(mask.sum())
        pixels = mask.numel()
        smoke_sum = per_pixel[mask].sum()
        background_sum = per_pixel.sum() - smoke_sum
        nan = torch.tensor(float("nan"), device=per_pixel.device)
        smoke_mse = smoke_sum / smoke_pixels if smoke_pixels else nan
        background_count = pixels - smoke_pixels
        background_mse = background_sum / background_count if background_count else nan
    return FlowLossOutput(
        loss=loss,
        mse=squared_error.detach().mean(),
        smoke_ratio=mask.float().mean(),
        smoke_mse=smoke_mse,
        background_mse=background_mse,
        smoke_pixels=smoke_pixels,
        pixels=pixels,
    )


@torch.no_grad()
def predicted_reference(
    vector_field: nn.Module,
    path: CondOTPath,
    latents: Tensor,
    target: Tensor,
    probability: float,
    steps: int,
    warm_start: float,
    generator: torch.Generator | None = None,
    context_horizon: int | None = None,
) -> Tensor:
    """Each clip's reference latent z_{k-1} (B, C, h, w), replaced with ``probability`` (for
    clips with k >= 3) by the model's own prediction of it: ``steps`` Euler steps over
    [warm_start, 1] from the warm start off z_{k-2}, with z_{k-2} as reference and a context
    c' ~ U{0 .. k-3} (the last ``context_horizon`` of them where given), as one frame of a
    rollout (a cheaper solve than the sampler's: the point is a reference with the model's
    kind of error, not its best frame).

    latents (B, N, C, h, w); target (B,) the k of each clip.
    """
    batch = latents.shape[0]
    rows = torch.arange(batch)
    reference = target - 1
    chosen = (torch.rand(batch, generator=generator) < probability) & (target >= 3)
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    before = (reference - 1).clamp(min=0)  # k - 2
    # Frames 0 .. k - 3 precede z_{k-2}; with k = 2 there are none and frame 0 stands in.
    context = uniform_earlier_frame(before.clamp(min=1), u, context_horizon)
    context = context.clamp(max=before)
    noise = torch.randn(latents[:, 0].shape, generator=generator).to(latents.device, latents.dtype)
    z_before = latents[rows, before]
    z_context = latents[rows, context]
    tau = (before - context).clamp(min=1).to(latents.device)
    x = path.warm_start(noise, z_before, warm_start)
    dt = (1.0 - warm_start) / steps
    for i in range(steps):
        t = torch.full((batch,), warm_start + i * dt, device=latents.device)
        x = x + dt * vector_field(x, z_before, z_context, tau, t).to(x.dtype)
    true_reference = latents[rows, reference]
    mask = chosen.to(latents.device).reshape(batch, *([1] * (x.ndim - 1)))
    return torch.where(mask, x.to(true_reference.dtype), true_reference)


def river_flow_loss(
    vector_field: nn.Module,
    path: CondOTPath,
    latents: Tensor,
    condition_frames: int,
    smoke_threshold: float,
    smoke_weight: float = 5.0,
    background_weight: float = 1.0,
    generator: torch.Generator | None = None,
    background_latent: Tensor | None = None,
    context_noise: float = 0.0,
    pushforward: float = 0.0,
    pushforward_steps: int = 2,
    pushforward_warm_start: float = 0.1,
    context_horizon: int | None = None,
) -> FlowLossOutput:
    """The RIVER training objective on one random (target, reference, context) per clip.

    latents: (B, N, C, h, w) clip latents. Per clip: k, k - 1 and c from
    :func:`sample_river_indices`, t ~ U[0, 1], ε ~ N(0, I), x_t on ``path``; the
    regressor's velocity ``vector_field(x_t, z_ref, z_ctx, tau, t)`` is regressed onto
    u = z_k - (1 - σ) ε with the smoke weighting (mask measured from ``background_latent``,
    (C, h, w), see :func:`smoke_weights`). Random draws use ``generator`` (CPU)
    and are moved to the latents' device. The loss is computed in fp32.

    ``context_noise`` > 0 adds N(0, (u · context_noise)²) noise, u ~ U[0, 1] per clip, to the
    reference and context latents (not the target): noise augmentation of the conditioning,
    so the regressor learns to trust frames that may be its own imperfect predictions. With
    0 no extra numbers are drawn, so the draws are those of a run without it.

    ``pushforward`` > 0 trains on the model's own rollouts (the pushforward trick of
    Brandstetter et al., 2022): with that probability per clip (k >= 3), the reference
    z_{k-1} is replaced by the model's own prediction of it (:func:`predicted_reference`,
    no gradient), so the target is learned from a reference the rollout would have made.
    Off, nothing extra is drawn.

    ``context_horizon`` limits how far before the reference the context is drawn
    (:func:`sample_river_indices`).
    """
    batch, num_frames = latents.shape[:2]
    target, reference, context = sample_river_indices(
        num_frames, condition_frames, batch, generator, context_horizon
    )
    rows = torch.arange(batch)
    z_target = latents[rows, target]
    times = torch.rand(batch, generator=generator).to(latents.device)
    noise = torch.randn(z_target.shape, generator=generator).to(latents.device, latents.dtype)
    sample = path.sample(z_target, times, noise)
    tau = (reference - context).to(latents.device)
    z_reference, z_context = latents[rows, reference], latents[rows, context]
    if pushforward > 0:
        z_reference = predicted_reference(
            vector_field,
            path,
            latents,
            target,
            pushforward,
            pushforward_steps,
            pushforward_warm_start,
            generator,
            context_horizon,
        )
    if context_noise > 0:
        level = (context_noise * torch.rand(batch, generator=generator)).to(latents.device)
        level = level.reshape(batch, *([1] * (z_reference.ndim - 1))).to(latents.dtype)
        noise_shape = (2, *z_reference.shape)
        extra = torch.randn(noise_shape, generator=generator).to(latents.device, latents.dtype)
        z_reference = z_reference + level * extra[0]
        z_context = z_context + level * extra[1]
    velocity = vector_field(sample.x_t, z_reference, z_context, tau, sample.t)
    return weighted_flow_matching_loss(
        velocity.float(),
        sample.u.float(),
        z_target.float(),
        smoke_threshold=smoke_threshold,
        smoke_weight=smoke_weight,
        background_weight=background_weight,
        background_latent=background_latent,
    )
