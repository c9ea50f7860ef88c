"""Stage-1 losses: reconstruction, KL, VQ commitment, segmentation and classification."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from framecast.eval.metrics import SMOKE_BRIGHTNESS, bright_smoke_mask

if TYPE_CHECKING:
    from framecast.models.autoencoder import AutoencoderOutput


def smoke_class_labels(frames: Tensor, brightness: float = SMOKE_BRIGHTNESS) -> Tensor:
    """Segmentation targets: :func:`~framecast.eval.metrics.bright_smoke_mask` as labels.

    frames: (..., C, H, W) in [-1, 1] (black background = -1).
    Returns (..., H, W) long in {0, 1}: 1 where the channel-mean intensity, rescaled to
    [0, 1], exceeds ``brightness``.
    """
    return bright_smoke_mask(frames, brightness).squeeze(-3).long()


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), mean over batch and latent elements.

    A per-element mean (like the per-pixel MSE) keeps ``kl_weight`` independent of the
    latent size. mu, logvar: (B, C, h, w).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def autoencoder_loss(
    output: AutoencoderOutput,
    target_rgb: Tensor,
    seg_target: Tensor | None = None,
    cls_target: Tensor | None = None,
    *,
    mse_weight: float = 1.0,
    seg_weight: float = 0.0,
    cls_weight: float = 0.0,
    kl_weight: float = 0.0,
    perceptual_weight: float = 0.0,
    perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
    smoke_brightness: float = SMOKE_BRIGHTNESS,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the stage-1 terms; returns ``(total, components)``.

    target_rgb: (B, C, H, W) in [-1, 1].
    seg_target: (B, H, W) long class indices; defaults to ``smoke_class_labels(target_rgb,
        smoke_brightness)`` when the model has a segmentation head.
    cls_target: (B,) long class indices; needed when ``cls_weight > 0``.
    perceptual: callable (reconstruction, target) -> scalar (e.g. LPIPS); needed when
        ``perceptual_weight > 0``.

    Components (detached, unweighted, present only when computed): ``mse``, ``perceptual``,
    ``seg_ce``, ``cls_ce``, ``kl``, ``vq`` (the commitment loss, already weighted by the
    quantiser and added to the total as is). ``total`` keeps the graph.
    """
    components: dict[str, Tensor] = {}
    terms: list[Tensor] = []

    def add(name: str, value: Tensor, weight: float) -> None:
        components[name] = value.detach()
        terms.append(weight * value)

    add("mse", F.mse_loss(output.rgb, target_rgb), mse_weight)

    if perceptual_weight > 0:
        if perceptual is None:
            raise ValueError("perceptual_weight > 0 needs a perceptual callable")
        add("perceptual", perceptual(output.rgb, target_rgb), perceptual_weight)

    if output.seg_logits is not None:
        if seg_target is None:
            seg_target = smoke_class_labels(target_rgb, smoke_brightness)
        add("seg_ce", F.cross_entropy(output.seg_logits, seg_target), seg_weight)
    elif seg_weight > 0:
        raise ValueError("seg_weight > 0 but the model has no segmentation head")

    if output.cls_logits is not None and cls_target is not None:
        add("cls_ce", F.cross_entropy(output.cls_logits, cls_target), cls_weight)
    elif cls_weight > 0:
        missing = "cls_target" if output.cls_logits is not None else "a classification head"
        raise ValueError(f"cls_weight > 0 but there is no {missing}")

    if output.mu is not None and output.logvar is not None:
        add("kl", kl_divergence(output.mu, output.logvar), kl_weight)
    elif kl_weight > 0:
        raise ValueError("kl_weight > 0 but the model is not variational")

    if output.vq_loss is not None:
        add("vq", output.vq_loss, 1.0)

    return torch.stack(terms).sum(), components
