"""Frame metrics for predicted image sequences, and the Fréchet distance for FID/FVD.

Image metrics take frames in [-1, 1] (the models' range), shape (B, C, H, W), and
return one value per image, shape (B,). They work on [0, 1] internally, the range in
which PSNR and SSIM are conventionally reported (data range 1.0), so MSE is also on
[0, 1] and ``psnr == -10 * log10(mse)``. Inputs are not clamped: clamp model outputs
to [-1, 1] before measuring, as the reported numbers assume.

:func:`per_frame` and :func:`per_horizon` apply any such metric to sequences
(B, T, C, H, W). A value of NaN means "undefined for this image" (an empty mask) and is
left out of the average; +inf (PSNR of a perfect prediction) is kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor

MetricFn = Callable[[Tensor, Tensor], Tensor]
"""A per-image metric: (pred, target) each (N, C, H, W) in [-1, 1] -> (N,)."""

# SSIM constants of Wang et al. (2004), as in torchmetrics and skimage.
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _check_images(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"expected pred and target of one shape (B, C, H, W), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )


def _to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], in at least float32 (half precision loses PSNR digits)."""
    return (x.to(torch.promote_types(x.dtype, torch.float32)) + 1) / 2


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error on the [0, 1] scale: (B, C, H, W) x2 -> (B,)."""
    _check_images(pred, target)
    return (_to_unit(pred) - _to_unit(target)).square().mean(dim=(1, 2, 3))


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB with data range 1.0 on [0, 1]: (B, C, H, W) x2 -> (B,).

    +inf where pred equals target (no cap: a cap would be a made-up number).
    """
    return -10 * torch.log10(mse(pred, target))


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> Tensor:
    coords = torch.arange(_SSIM_WINDOW, dtype=dtype, device=device) - (_SSIM_WINDOW - 1) / 2
    g = torch.exp(-coords.square() / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM per image (Gaussian window 11, sigma 1.5, data range 1.0 on [0, 1]).

    (B, C, H, W) x2 -> (B,), H and W > 5. Defined as torchmetrics'
    ``structural_similarity_index_measure(..., data_range=1.0, reduction="none")``:
    reflection padding, so the SSIM map covers every pixel; local variances clamped
    at 0; mean over channels and pixels.
    """
    _check_images(pred, target)
    p, t = _to_unit(pred), _to_unit(target)
    channels = p.shape[1]
    pad = _SSIM_WINDOW // 2
    window = _gaussian_window(p.dtype, p.device).expand(channels, 1, -1, -1)
    # The five local moments in one depthwise convolution.
    stack = torch.cat([p, t, p * p, t * t, p * t])
    stack = F.pad(stack, (pad, pad, pad, pad), mode="reflect")
    mu_p, mu_t, e_pp, e_tt, e_pt = F.conv2d(stack, window, groups=channels).chunk(5)
    var_p = (e_pp - mu_p.square()).clamp(min=0)
    var_t = (e_tt - mu_t.square()).clamp(min=0)
    cov = e_pt - mu_p * mu_t
    c1, c2 = _SSIM_K1**2, _SSIM_K2**2
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p.square() + mu_t.square() + c1) * (var_p + var_t + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3))


def smoke_mask(frames: Tensor, threshold: float) -> Tensor:
    """Where the smoke is: mean brightness over channels, on [0, 1], above threshold.

    frames (..., C, H, W) in [-1, 1] -> bool (..., 1, H, W), which broadcasts over
    channels. The same rule as the training targets' mask in
    ``losses.autoencoder`` (a test holds the two together), so that evaluation and
    training agree on what smoke is; that one returns (..., H, W) integer labels.
    """
    return _to_unit(frames).mean(dim=-3, keepdim=True) > threshold


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """PSNR (data range 1.0 on [0, 1]) over the pixels where ``mask`` is true.

    pred, target (B, C, H, W); mask bool, broadcastable to (B, C, H, W), typically
    (B, 1, H, W) from :func:`smoke_mask`. Returns (B,): NaN for an image whose mask
    is empty, +inf where pred equals target inside the mask.
    """
    _check_images(pred, target)
    mask = mask.to(torch.bool).expand_as(pred)
    # where, not a product: a NaN or inf outside the mask must not leak in.
    err = torch.where(mask, (_to_unit(pred) - _to_unit(target)).square(), 0.0)
    count = mask.sum(dim=(1, 2, 3))
    mse_in = err.sum(dim=(1, 2, 3)) / count  # 0 / 0 = NaN for an empty mask
    return -10 * torch.log10(mse_in)


def background_hallucination(
    pred: Tensor, target: Tensor, mask_threshold: float, brightness_threshold: float
) -> Tensor:
    """Share of true-background pixels that the prediction lights up.

    Background: pixels that are not smoke in ``target`` (:func:`smoke_mask` with
    ``mask_threshold``). Lit: the prediction's mean brightness over channels, on [0, 1],
    exceeds ``brightness_threshold``. (B, C, H, W) x2 -> (B,) in [0, 1]; NaN for an
    image without background.
    """
    _check_images(pred, target)
    background = ~smoke_mask(target, mask_threshold)
    lit = smoke_mask(pred, brightness_threshold)
    n_background = background.sum(dim=(1, 2, 3))
    n_lit = (background & lit).sum(dim=(1, 2, 3))
    return n_lit / n_background  # 0 / 0 = NaN without background


def temporal_difference_error(pred: Tensor, target: Tensor, last_context: Tensor) -> Tensor:
    """Temporal coherence: how far the predicted frame-to-frame changes are from the true ones.

    pred, target: (B, F, C, H, W) predicted and true future frames in [-1, 1];
    last_context: (B, C, H, W), the last observed frame (the change into horizon 1 starts
    there). For horizon h: mean over pixels of ((p_h - p_{h-1}) - (x_h - x_{h-1}))^2 on
    [0, 1], with p_0 = x_0 = the last context frame. Returns (B, F), lower is better.
    A prediction that flickers or freezes scores badly even where each frame alone is
    close; copying the last frame scores the true motion energy (its changes are all 0).
    """
    if (
        pred.shape != target.shape
        or pred.ndim != 5
        or tuple(last_context.shape) != (pred.shape[0], *pred.shape[2:])
    ):
        raise ValueError(
            f"expected pred and target (B, F, C, H, W) and last_context (B, C, H, W), got "
            f"{tuple(pred.shape)}, {tuple(target.shape)} and {tuple(last_context.shape)}"
        )
    start = _to_unit(last_context)[:, None]
    pred, target = _to_unit(pred), _to_unit(target)
    pred_change = torch.diff(torch.cat([start, pred], dim=1), dim=1)
    true_change = torch.diff(torch.cat([start, target], dim=1), dim=1)
    return (pred_change - true_change).square().mean(dim=(2, 3, 4))


def per_frame(metric_fn: MetricFn, pred: Tensor, target: Tensor) -> Tensor:
    """Apply a per-image metric to every frame: (B, T, C, H, W) x2 -> (B, T).

    One call on all B*T frames (batching matters for LPIPS). Keep the (B, T) values to
    average across batches without bias from NaNs.
    """
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(
            f"expected pred and target of one shape (B, T, C, H, W), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    b, t = pred.shape[:2]
    values = metric_fn(pred.flatten(0, 1), target.flatten(0, 1))
    if values.shape != (b * t,):
        raise ValueError(
            f"metric_fn must return one value per frame ({b * t},), got {tuple(values.shape)}"
        )
    return values.reshape(b, t)


def per_horizon(metric_fn: MetricFn, pred: Tensor, target: Tensor) -> Tensor:
    """Metric per prediction horizon, averaged over the batch: (B, T, C, H, W) x2 -> (T,).

    NaN values (undefined for that frame) are left out; a horizon where every frame is
    NaN stays NaN.
    """
    return torch.nanmean(per_frame(metric_fn, pred, target), dim=0)


def _float64(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def frechet_distance(
    mu1: Tensor | np.ndarray,
    sigma1: Tensor | np.ndarray,
    mu2: Tensor | np.ndarray,
    sigma2: Tensor | np.ndarray,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    d = ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).
    mu (D,), sigma (D, D). As in the reference FID code (pytorch-fid, the FVD code):
    if the matrix square root is not finite (a singular product), eps is added to both
    diagonals and it is retried; imaginary parts from rounding are dropped, and large
    ones (diagonal |imag| > 1e-3) raise ValueError.
    """
    m1, m2 = _float64(mu1), _float64(mu2)
    s1, s2 = _float64(sigma1), _float64(sigma2)
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"expected means (D,) and covariances (D, D), got {m1.shape}, {s1.shape}, "
            f"{m2.shape}, {s2.shape}"
        )
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        worst = np.abs(np.diagonal(covmean).imag).max()
        if worst > 1e-3:
            raise ValueError(f"matrix square root has an imaginary component {worst:.3g}")
        covmean = covmean.real
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_from_features(feats_a: Tensor | np.ndarray, feats_b: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    feats_a (N, D), feats_b (M, D) with N, M >= 2 (sample covariance, ddof 1, as in
    the reference FID code). Fewer samples than D give singular covariances, which
    :func:`frechet_distance` handles.
    """
    a, b = _float64(feats_a), _float64(feats_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected features (N, D) and (M, D), got {a.shape} and {b.shape}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(
            f"need at least 2 feature vectors per set, got {a.shape[0]} and {b.shape[0]}"
        )
    return frechet_distance(
        a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0), np.cov(b, rowvar=False)
    )
