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

import math
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


def frame_sse(pred: Tensor, target: Tensor) -> Tensor:
    """Squared error summed over the pixels (and channels) of each frame, on the [0, 1]
    scale: the "MSE" of the Moving-MNIST tables (OpenSTL: about 23.8 for SimVP at 64×64),
    which is ``mse`` times C·H·W. (B, C, H, W) x2 -> (B,)."""
    _check_images(pred, target)
    return (_to_unit(pred) - _to_unit(target)).square().sum(dim=(1, 2, 3))


def frame_sae(pred: Tensor, target: Tensor) -> Tensor:
    """Absolute error summed over the pixels of each frame on [0, 1] (the tables' "MAE").
    (B, C, H, W) x2 -> (B,)."""
    _check_images(pred, target)
    return (_to_unit(pred) - _to_unit(target)).abs().sum(dim=(1, 2, 3))


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


RENAMED_METRICS = {"lpips": "stlpips"}
"""Old metric name -> current name. The perceptual metric has always been ST-LPIPS (AlexNet,
:mod:`framecast.eval.lpips`) but was named ``lpips`` until 2026-12-03; runs, evaluations
and sweep specs written before still read (:func:`current_metric_name`)."""


def current_metric_name(name: str) -> str:
    """``val/lpips`` -> ``val/stlpips``: the last path part renamed where it was renamed."""
    head, sep, leaf = name.rpartition("/")
    return head + sep + RENAMED_METRICS.get(leaf, leaf)


SMOKE_BRIGHTNESS = 0.1
"""Frame-space smoke: mean brightness over channels, on [0, 1], above this (the default of
``evaluate --smoke-brightness`` and the autoencoder's ``model.smoke_brightness``)."""


def bright_smoke_mask(frames: Tensor, brightness: float = SMOKE_BRIGHTNESS) -> Tensor:
    """Where the smoke is in a frame: mean brightness over channels, on [0, 1], above
    ``brightness`` (stage 2's latent smoke mask, ``training.smoke_threshold``, is another
    rule, in ``losses.latent_smoke``).

    frames (..., C, H, W) in [-1, 1] -> bool (..., 1, H, W), which broadcasts over
    channels. The autoencoder's segmentation targets are this mask as class labels
    (``losses.autoencoder.smoke_class_labels``), so evaluation and training agree on
    what smoke is.
    """
    return _to_unit(frames).mean(dim=-3, keepdim=True) > brightness


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """PSNR (data range 1.0 on [0, 1]) over the pixels where ``mask`` is true.

    pred, target (B, C, H, W); mask bool, broadcastable to (B, C, H, W), typically
    (B, 1, H, W) from :func:`bright_smoke_mask`. Returns (B,): NaN for an image whose mask
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

    Background: pixels that are not smoke in ``target`` (:func:`bright_smoke_mask` with
    ``mask_threshold``). Lit: the prediction's mean brightness over channels, on [0, 1],
    exceeds ``brightness_threshold``. (B, C, H, W) x2 -> (B,) in [0, 1]; NaN for an
    image without background.
    """
    _check_images(pred, target)
    background = ~bright_smoke_mask(target, mask_threshold)
    lit = bright_smoke_mask(pred, brightness_threshold)
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


# --- long rollouts: intensity drift and blow-up ----------------------------------------

BLOWUP_LIMIT = 2.0
"""A frame value beyond ±2 before clamping (half the [-1, 1] range past its edge) counts
as a blow-up; a decoder with a tanh head cannot get there, so only non-finite values can."""
LATENT_BLOWUP_RMS = 10.0
"""A normalised latent frame (unit std per channel on the training data) whose RMS exceeds
10 has left anything training saw: counted as a latent blow-up."""


def intensity(frames: Tensor) -> Tensor:
    """Total smoke intensity of each image: the sum of its values on [0, 1].

    (..., C, H, W) in [-1, 1] -> (...,), float64 (sums over 64×64 pixels lose digits in
    float32 when they are summed again over clips).
    """
    return _to_unit(frames).to(torch.float64).sum(dim=(-3, -2, -1))


ON_TARGET = {"intensity_ratio": 1.0}
"""Metrics that are best at a value rather than high or low (evaluate's plots, compare)."""


def intensity_ratio(pred_intensity: Tensor, true_intensity: Tensor) -> Tensor:
    """Drift of total intensity per horizon: sum over clips of the predicted frames'
    intensity over the sum of the true frames' (1.0 = no drift, < 1 the smoke fades,
    > 1 it piles up).

    pred_intensity, true_intensity: (N, F) from :func:`intensity`. Returns (F,) float64.
    A ratio of sums rather than a mean of per-clip ratios: a true frame that is nearly
    black (a plume just starting) would make its clip's ratio explode and dominate the
    mean. NaN where the true frames hold no intensity at all.
    """
    if pred_intensity.shape != true_intensity.shape or pred_intensity.ndim != 2:
        raise ValueError(
            f"expected two (N, F) intensity tables, got {tuple(pred_intensity.shape)} and "
            f"{tuple(true_intensity.shape)}"
        )
    pred, true = pred_intensity.to(torch.float64), true_intensity.to(torch.float64)
    total = true.sum(dim=0)
    return torch.where(total > 0, pred.sum(dim=0) / total, torch.nan)


def blown_up(frames: Tensor, limit: float = BLOWUP_LIMIT) -> Tensor:
    """Images holding a non-finite value or one beyond ±``limit`` (check before clamping).

    (..., C, H, W) -> bool (...,).
    """
    bad = ~torch.isfinite(frames) | (frames.abs() > limit)
    return bad.flatten(-3).any(dim=-1)


def latent_blown_up(latents: Tensor, rms_limit: float = LATENT_BLOWUP_RMS) -> Tensor:
    """Normalised latent frames that are non-finite or whose RMS exceeds ``rms_limit``.

    (..., C, h, w) -> bool (...,).
    """
    flat = latents.float().flatten(-3)
    rms = flat.square().mean(dim=-1).sqrt()
    return ~torch.isfinite(flat).all(dim=-1) | (rms > rms_limit)


# --- ensembles: spread, skill, CRPS --------------------------------------------------


def ensemble_spread(samples: Tensor) -> Tensor:
    """Per-element spread of an ensemble: the standard deviation over its K members
    (unbiased, ddof 1), on the [0, 1] scale.

    samples (B, K, ...) in [-1, 1], K >= 2 -> (B, ...).
    """
    if samples.ndim < 2 or samples.shape[1] < 2:
        raise ValueError(f"expected samples (B, K, ...) with K >= 2, got {tuple(samples.shape)}")
    return _to_unit(samples).std(dim=1, correction=1)


def ensemble_crps(samples: Tensor, truth: Tensor) -> Tensor:
    """Per-element CRPS of an ensemble, the standard (empirical-CDF) estimator, on [0, 1].

    CRPS = mean_k |x_k - y| - 1/(2 K^2) sum_{j,k} |x_j - x_k|, lower is better, in the
    units of the data. The pair sum is computed from the sorted members in O(K log K):
    sum_{j,k} |x_j - x_k| = 2 sum_i (2i - K + 1) x_(i), i = 0..K-1 ascending. For K = 1
    (or K identical members) it is the absolute error, so a deterministic forecast's
    CRPS is its MAE. (The "fair" estimator, 1/(2K(K-1)), would remove the finite-K bias
    of the second term; the standard one is what the literature's tables report.)

    samples (B, K, ...) and truth (B, ...), both in [-1, 1] -> (B, ...).
    """
    if samples.ndim < 2 or samples.shape[:1] + samples.shape[2:] != truth.shape:
        raise ValueError(
            f"expected samples (B, K, ...) and truth (B, ...), got {tuple(samples.shape)} and "
            f"{tuple(truth.shape)}"
        )
    x, y = _to_unit(samples), _to_unit(truth)
    k = x.shape[1]
    skill = (x - y[:, None]).abs().mean(dim=1)
    ordered = x.sort(dim=1).values
    weights = (2 * torch.arange(k, dtype=x.dtype, device=x.device) - k + 1).reshape(
        1, k, *([1] * (x.ndim - 2))
    )
    return skill - (weights * ordered).sum(dim=1) / k**2


SPREAD_BIN_EDGES = (0.0, *np.logspace(-4, 0, 17).tolist())
"""Left edges of the spread bins of :class:`SpreadSkill`, on [0, 1]: one bin for spread
below 1e-4 (members that agree, e.g. saturated black background), then four log-spaced
bins per decade up to 1, and one open bin above 1. Fixed rather than quantiles so that
the bins do not depend on the batch order and need no pass over the data first."""
SPEARMAN_SAMPLE_RATE = 1 / 64
"""Share of elements, drawn uniformly per batch and horizon with the accumulator's own
seeded generator, kept for the rank correlation (ranks cannot be accumulated)."""


class SpreadSkill:
    """Streaming spread–skill calibration of an ensemble of K members, per horizon.

    Per element (pixel and channel, on [0, 1]): spread s = std over the K members
    (ddof 1), error e = |ensemble mean - truth|. :meth:`update` adds a batch to running
    float64 sums, so memory does not grow with clips or horizons:

    - per horizon: sums of s^2, e^2, s, e, s e (Pearson), CRPS and element counts;
    - per spread bin (:data:`SPREAD_BIN_EDGES`, over all horizons): count, sums of s,
      s^2, e and e^2;
    - a seeded uniform subsample (:data:`SPEARMAN_SAMPLE_RATE`) of (s, e) pairs for the
      Spearman rank correlation.

    Spread–skill ratio: sqrt((K + 1) / K) * sqrt(mean s^2) / RMSE(ensemble mean). For
    members and truth drawn from one distribution of variance sigma^2, E[s^2] = sigma^2
    and E[e^2] = sigma^2 (1 + 1/K): the finite-ensemble factor sqrt((K + 1) / K) brings
    a calibrated ensemble to 1. Below 1: over-confident (the members agree more than
    the error warrants); above 1: over-dispersed. The binned curve (RMSE against the
    corrected rms spread per bin) lies on y = x for a calibrated ensemble only where the
    per-element spread is estimated well: with few members, the spread of one element
    is itself noisy, which flattens the curve (bins by a noisy estimate regress to the
    mean); the overall ratio has no such bias.

    Args:
        horizons: F, the predicted frames.
        samples: K >= 2 members.
        seed: seeds the Spearman subsample (its own generator: the sampling noise of the
            model is not touched).
    """

    def __init__(self, horizons: int, samples: int, seed: int = 0):
        if samples < 2:
            raise ValueError(f"spread needs at least 2 samples, got {samples}")
        self.horizons, self.samples = horizons, samples
        self.edges = torch.tensor(SPREAD_BIN_EDGES, dtype=torch.float64)
        zeros = lambda *shape: torch.zeros(shape, dtype=torch.float64)  # noqa: E731
        # Per horizon, sums of: count, s^2, e^2, s, e, s*e, CRPS.
        self.by_horizon = zeros(horizons, 7)
        self.by_bin = zeros(len(SPREAD_BIN_EDGES), 5)  # count, s, s^2, e, e^2
        self.rank_pairs: list[list[Tensor]] = [[] for _ in range(horizons)]
        self.generator = torch.Generator().manual_seed(seed)

    def update(self, samples: Tensor, truth: Tensor) -> dict[str, Tensor]:
        """samples (B, K, F, C, H, W) and truth (B, F, C, H, W), both in [-1, 1]. Returns
        what it summed, per pixel (B, F, C, H, W) in float64 on the [0, 1] scale: ``spread``
        (the samples' std), ``error`` (|ensemble mean - truth|) and ``crps``, so a caller
        that keeps per-clip values need not compute them again."""
        if samples.ndim != 6 or samples.shape[1:3] != (self.samples, self.horizons):
            raise ValueError(
                f"expected samples (B, {self.samples}, {self.horizons}, C, H, W), got "
                f"{tuple(samples.shape)}"
            )
        if truth.shape != samples.shape[:1] + samples.shape[2:]:
            raise ValueError(
                f"expected truth {tuple(samples.shape[:1] + samples.shape[2:])}, got "
                f"{tuple(truth.shape)}"
            )
        # The running sums live on the CPU in float64; the batch joins them there.
        samples, truth = samples.detach().float().cpu(), truth.detach().float().cpu()
        spread = ensemble_spread(samples).double()  # (B, F, C, H, W)
        error = (_to_unit(samples).mean(dim=1) - _to_unit(truth)).abs().double()
        crps = ensemble_crps(samples, truth).double()
        # (F, B·C·H·W): one row per horizon.
        s = spread.transpose(0, 1).flatten(1)
        e = error.transpose(0, 1).flatten(1)
        c = crps.transpose(0, 1).flatten(1)
        self.by_horizon += torch.stack(
            [
                torch.full_like(s[:, 0], s.shape[1]),
                s.square().sum(1),
                e.square().sum(1),
                s.sum(1),
                e.sum(1),
                (s * e).sum(1),
                c.sum(1),
            ],
            dim=1,
        )
        bins = torch.bucketize(s.flatten(), self.edges[1:], right=True)
        for column, weights in enumerate(
            (None, s.flatten(), s.flatten().square(), e.flatten(), e.flatten().square())
        ):
            self.by_bin[:, column] += torch.bincount(
                bins, weights=weights, minlength=len(self.edges)
            ).double()
        keep = max(1, round(s.shape[1] * SPEARMAN_SAMPLE_RATE))
        for h in range(self.horizons):
            index = torch.randint(s.shape[1], (keep,), generator=self.generator)
            self.rank_pairs[h].append(torch.stack([s[h, index], e[h, index]]).float())
        return {"spread": spread, "error": error, "crps": crps}

    def _summary(self, sums: Tensor, pairs: list[Tensor]) -> dict[str, float]:
        count, s2, e2, s1, e1, se, crps = sums.tolist()
        spread = math.sqrt(s2 / count)
        rmse = math.sqrt(e2 / count)
        factor = math.sqrt((self.samples + 1) / self.samples)
        cov = se / count - (s1 / count) * (e1 / count)
        var_s = s2 / count - (s1 / count) ** 2
        var_e = e2 / count - (e1 / count) ** 2
        pearson = cov / math.sqrt(var_s * var_e) if var_s > 0 and var_e > 0 else math.nan
        return {
            "spread": spread,
            "spread_corrected": factor * spread,
            "rmse": rmse,
            "spread_skill": factor * spread / rmse if rmse > 0 else math.nan,
            "pearson": pearson,
            "spearman": _spearman(torch.cat(pairs, dim=1)) if pairs else math.nan,
            "crps": crps / count,
            "mae": e1 / count,
            "elements": int(count),
        }

    def per_horizon(self) -> list[dict[str, float]]:
        """Per horizon: spread (rms of s), spread_corrected, rmse (of the ensemble mean),
        spread_skill, pearson and spearman (of s against e), crps, mae (of the ensemble
        mean), elements."""
        return [self._summary(self.by_horizon[h], self.rank_pairs[h]) for h in range(self.horizons)]

    def overall(self) -> dict[str, float]:
        """The same numbers over every horizon together."""
        return self._summary(self.by_horizon.sum(0), [p for h in self.rank_pairs for p in h])

    def bins(self) -> list[dict[str, float]]:
        """Non-empty spread bins: low, high (edges on [0, 1]; the last is open), elements,
        mean_spread, rms_spread, rms_spread_corrected, rmse and mae of the ensemble mean."""
        factor = math.sqrt((self.samples + 1) / self.samples)
        edges = [*SPREAD_BIN_EDGES, math.inf]
        rows = []
        for i, (count, s1, s2, e1, e2) in enumerate(self.by_bin.tolist()):
            if count == 0:
                continue
            rows.append(
                {
                    "low": edges[i],
                    "high": edges[i + 1],
                    "elements": int(count),
                    "mean_spread": s1 / count,
                    "rms_spread": math.sqrt(s2 / count),
                    "rms_spread_corrected": factor * math.sqrt(s2 / count),
                    "rmse": math.sqrt(e2 / count),
                    "mae": e1 / count,
                }
            )
        return rows


def _spearman(pairs: Tensor) -> float:
    """Spearman rank correlation of the rows of pairs (2, N), ties averaged; NaN if either
    row is constant."""
    import scipy.stats

    x, y = pairs.double().numpy()
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(scipy.stats.spearmanr(x, y).statistic)


def mae(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error on the [0, 1] scale: (B, C, H, W) x2 -> (B,). The CRPS of a
    deterministic forecast, so the baselines' reference beside an ensemble's CRPS."""
    _check_images(pred, target)
    return (_to_unit(pred) - _to_unit(target)).abs().mean(dim=(1, 2, 3))
