"""Scoring predictions against the truth: per-frame metrics, their per-horizon and per-clip
accumulation over batches, paired differences and "behind a baseline" summaries."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from framecast.eval import metrics as M
from framecast.eval.result import (
    COMPARED_WITH_COPY_LAST,
    HIGHER_IS_BETTER,
    PAIRED_LEVEL,
    PAIRED_METRICS,
)
from framecast.eval.stats import PairedInterval, paired_bootstrap


def paired_methods(
    model: str, baselines: Sequence[str], runs: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Which method is compared with which, clip by clip: the model with every baseline
    (its own, then the baseline runs), and every baseline run with copy_last."""
    return {model: (*baselines, *runs), **{run: ("copy_last",) for run in runs}}


def finite_frames(frames: Tensor) -> Tensor:
    """float32 frames clamped to [-1, 1], non-finite values as 0 (NaN) or ±1 (±inf): a
    blown-up frame scores as a bad prediction instead of vanishing from NaN-skipping means."""
    return torch.nan_to_num(frames.float(), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)


def below_baseline(
    model: list[float], baseline: list[float], higher_is_better: bool
) -> dict[str, int | str]:
    """Where a per-horizon curve falls behind a baseline's.

    Returns {"first": the first horizon (1-based) at which the model is worse, "from": the
    horizon from which it is worse at every later horizon ("never" where there is none),
    "worse_at": every horizon at which it is worse (a claim such as "beats copy-last at
    every horizon >= 2" is read from this list)}.
    Equal values and NaN horizons do not count as worse (and a NaN horizon ends a run of
    worse ones).
    """
    if len(model) != len(baseline):
        raise ValueError(f"curves of {len(model)} and {len(baseline)} horizons")
    worse = [
        (m < b if higher_is_better else m > b) if not (math.isnan(m) or math.isnan(b)) else False
        for m, b in zip(model, baseline, strict=True)
    ]
    first: int | str = next((h + 1 for h, w in enumerate(worse) if w), "never")
    since: int | str = "never"
    for h in range(len(worse), 0, -1):
        if not worse[h - 1]:
            break
        since = h
    return {"first": first, "from": since, "worse_at": [h + 1 for h, w in enumerate(worse) if w]}


def frame_metrics(
    brightness: float, stlpips: Callable[[Tensor, Tensor], Tensor]
) -> dict[str, M.MetricFn]:
    return {
        "mse": M.mse,
        "psnr": M.psnr,
        "ssim": M.ssim,
        "stlpips": stlpips,
        "smoke_psnr": lambda p, t: M.masked_psnr(p, t, M.bright_smoke_mask(t, brightness)),
        "background_hallucination": lambda p, t: M.background_hallucination(
            p, t, brightness, brightness
        ),
        # Summed over each frame's pixels on [0, 1]: what Moving-MNIST tables (OpenSTL) call
        # MSE and MAE, so a framecast row can stand beside a published one.
        "mse_sum": M.frame_sse,
        "mae_sum": M.frame_sae,
    }


def measure(fns: dict[str, M.MetricFn], pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-frame values (N, F) of every metric, float32 on the CPU."""
    pred, target = pred.float().clamp(-1, 1), target.float().clamp(-1, 1)
    return {name: M.per_frame(fn, pred, target).float().cpu() for name, fn in fns.items()}


def blowup_report(
    blown: dict[str, Tensor],
    latent_blown: Tensor | None,
    model_method: str,
    sampled: Sequence[str],
    num_clips: int,
    samples: int,
) -> dict[str, dict[str, Any]]:
    """``sampled``: the methods with K predictions per clip (the model, baseline runs)."""
    report: dict[str, dict[str, Any]] = {}
    for method, counts in blown.items():
        per_horizon = [int(c) for c in counts]
        entry: dict[str, Any] = {
            "per_horizon": per_horizon,
            "frames": num_clips * (samples if method in sampled else 1),
            "first_horizon": next((h + 1 for h, c in enumerate(per_horizon) if c), None),
        }
        if method == model_method and latent_blown is not None:
            entry["latent_per_horizon"] = [int(c) for c in latent_blown]
        report[method] = entry
    return report


def calibration_report(
    calibration: M.SpreadSkill, reference_mae: dict[str, list[Tensor]]
) -> dict[str, Any]:
    per_horizon = calibration.per_horizon()
    return {
        "samples": calibration.samples,
        "correction": "spread_skill = sqrt((K + 1) / K) * rms spread / RMSE of the mean",
        "overall": calibration.overall(),
        "per_horizon": {key: [row[key] for row in per_horizon] for key in per_horizon[0]},
        "bins": calibration.bins(),
        "reference_mae": {
            method: torch.cat(v).double().mean(dim=0).tolist()
            for method, v in reference_mae.items()
        },
    }


def paired_intervals(
    clip_values: dict[str, dict[str, np.ndarray]],
    videos: np.ndarray,
    pairs: dict[str, tuple[str, ...]],
    n_boot: int,
    seed: int,
) -> dict[str, dict[str, dict[str, PairedInterval]]]:
    """method -> baseline -> metric -> the paired difference (method − baseline) per clip
    with its cluster bootstrap interval over ``videos`` (the video index of each clip)."""
    return {
        a: {
            b: {
                name: paired_bootstrap(
                    clip_values[a][name] - clip_values[b][name],
                    videos,
                    n_boot=n_boot,
                    seed=seed,
                    level=PAIRED_LEVEL,
                )
                for name in PAIRED_METRICS
            }
            for b in against
        }
        for a, against in pairs.items()
    }


def below_table(
    metrics: dict[str, dict[str, list[float]]], pairs: dict[str, tuple[str, ...]]
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """method -> baseline -> metric -> :func:`below_baseline` for every compared pair."""
    return {
        a: {
            b: {
                name: below_baseline(metrics[a][name], metrics[b][name], HIGHER_IS_BETTER[name])
                for name in COMPARED_WITH_COPY_LAST
            }
            for b in against
        }
        for a, against in pairs.items()
    }


class HorizonScores:
    """Every method's per-frame scores, accumulated batch by batch.

    Holds per method: each metric per frame (for the per-horizon means over clips and
    samples), per clip (the mean over the K samples: what paired differences pair up),
    total intensities (predicted and true, for the drift ratio of sums) and blown-up frames
    per horizon; for the model with K > 1, the best-of-K PSNR. Sampled methods (the model,
    baseline runs) give K predictions per clip; the others (copy_last, the autoencoder) one.
    """

    def __init__(self, methods: Sequence[str], model: str, fns: dict[str, M.MetricFn], frames: int):
        self.model = model  # the method whose best-of-K PSNR is kept (K > 1)
        self.fns = fns
        self.frames = frames
        names = [*fns, "temporal_mse"]
        self.values: dict[str, dict[str, list[Tensor]]] = {
            m: {k: [] for k in names} for m in methods
        }
        self.per_clip: dict[str, dict[str, list[Tensor]]] = {
            m: {k: [] for k in names} for m in methods
        }
        self.intensities: dict[str, tuple[list[Tensor], list[Tensor]]] = {
            m: ([], []) for m in methods
        }
        self.blown = {m: torch.zeros(frames, dtype=torch.long) for m in methods}
        self.latent_blown: Tensor | None = None
        self.best_of_k: list[Tensor] = []

    def add_sampled(self, method: str, pred: Tensor, truth: Tensor, last: Tensor) -> Tensor:
        """Score K predictions per clip, ``pred`` (B, K, F, C, H, W), of ``truth``
        (B, F, C, H, W) whose last context frame is ``last`` (B, C, H, W); returns the
        predictions made finite (:func:`finite_frames`)."""
        b, k = pred.shape[:2]
        self.blown[method] += M.blown_up(pred).flatten(0, 1).sum(dim=0).cpu()
        pred = finite_frames(pred)
        truth_k = truth[:, None].expand_as(pred).flatten(0, 1)
        measured = self._measure(pred.flatten(0, 1), truth_k, last.repeat_interleave(k, dim=0))
        for name, v in measured.items():
            self.values[method][name].append(v)
            self.per_clip[method][name].append(torch.nanmean(v.reshape(b, k, self.frames), dim=1))
        true_intensity = M.intensity(truth.float().clamp(-1, 1)).cpu()  # (B, F)
        self.intensities[method][0].append(M.intensity(pred).flatten(0, 1).cpu())
        self.intensities[method][1].append(true_intensity.repeat_interleave(k, dim=0))
        if k > 1 and method == self.model:
            psnr_k = measured["psnr"].reshape(b, k, self.frames)
            best = psnr_k.mean(dim=2).argmax(dim=1)  # (B,): the best sample over horizons
            self.best_of_k.append(psnr_k[torch.arange(b), best])
        return pred

    def add_single(self, method: str, guess: Tensor, truth: Tensor, last: Tensor) -> Tensor:
        """Score one guess per clip, ``guess`` (B, F, C, H, W); returns it made finite."""
        self.blown[method] += M.blown_up(guess).sum(dim=0).cpu()
        guess = finite_frames(guess)
        for name, v in self._measure(guess, truth, last).items():
            self.values[method][name].append(v)
            self.per_clip[method][name].append(v)
        self.intensities[method][0].append(M.intensity(guess).cpu())
        self.intensities[method][1].append(M.intensity(truth.float().clamp(-1, 1)).cpu())
        return guess

    def add_latents(self, latents: Tensor) -> None:
        """Count blown-up latent frames of the model, ``latents`` (B, K, F, C, h, w)."""
        count = M.latent_blown_up(latents).flatten(0, 1).sum(dim=0).cpu()
        self.latent_blown = count if self.latent_blown is None else self.latent_blown + count

    def _measure(self, pred: Tensor, truth: Tensor, last: Tensor) -> dict[str, Tensor]:
        """Per-frame values (N, F) of every metric and the temporal error, float32 on the CPU."""
        truth = truth.float().clamp(-1, 1)
        measured = measure(self.fns, pred, truth)
        measured["temporal_mse"] = M.temporal_difference_error(pred, truth, last).cpu()
        return measured

    def per_horizon(self) -> dict[str, dict[str, list[float]]]:
        """method -> metric -> mean per horizon over clips and samples (NaN left out),
        with ``intensity_ratio`` and, for the model with K > 1, ``psnr_best_of_k``."""
        metrics = {
            method: {name: torch.nanmean(torch.cat(v), dim=0).tolist() for name, v in by.items()}
            for method, by in self.values.items()
        }
        for method, (predicted, true) in self.intensities.items():
            metrics[method]["intensity_ratio"] = M.intensity_ratio(
                torch.cat(predicted), torch.cat(true)
            ).tolist()
        if self.best_of_k:
            best = torch.nanmean(torch.cat(self.best_of_k), dim=0).tolist()
            metrics[self.model]["psnr_best_of_k"] = best
        return metrics

    def clip_values(self) -> dict[str, dict[str, np.ndarray]]:
        """method -> metric -> (N, F) per clip, the mean over K samples (float64)."""
        values = {
            method: {name: torch.cat(v).double().numpy() for name, v in by.items()}
            for method, by in self.per_clip.items()
        }
        if self.best_of_k:
            values[self.model]["psnr_best_of_k"] = torch.cat(self.best_of_k).double().numpy()
        return values


class EnsembleCalibration:
    """Spread–skill calibration of the model's K > 1 samples (:class:`metrics.SpreadSkill`),
    with the MAE of each baseline beside it (the CRPS of a deterministic guess).

    With a ``spread_scale`` (:class:`~framecast.eval.calibration.SpreadScale`, fitted on
    another split) the inflated ensemble is scored as well, on the same samples. Per clip
    and horizon it keeps the CRPS (raw and inflated) and the mean squared spread and error
    of the mean, for paired intervals over clips and for pooling runs (the spread–skill of
    any set of clips is sqrt((K + 1) / K) · sqrt(mean spread_sq / mean error_sq)).
    """

    def __init__(
        self,
        frames: int,
        samples: int,
        seed: int,
        baselines: Sequence[str],
        spread_scale: Any | None = None,
    ):
        self.spread_skill = M.SpreadSkill(frames, samples, seed)
        self.spread_scale = spread_scale
        self.calibrated = M.SpreadSkill(frames, samples, seed) if spread_scale else None
        self.reference_mae: dict[str, list[Tensor]] = {m: [] for m in baselines}
        self.per_clip: dict[str, list[Tensor]] = {}

    def add_samples(self, pred: Tensor, truth: Tensor) -> None:
        """``pred`` (B, K, F, C, H, W), finite, against ``truth`` (B, F, C, H, W)."""
        truth = truth.float().clamp(-1, 1)
        self._keep_per_clip("", self.spread_skill.update(pred, truth))
        if self.calibrated is not None:
            inflated = self.spread_scale.apply(pred.float())
            self._keep_per_clip("_calibrated", self.calibrated.update(inflated, truth))

    def _keep_per_clip(self, suffix: str, per_pixel: dict[str, Tensor]) -> None:
        """(B, F) per-clip values, means over the pixels on the [0, 1] scale, of what
        :meth:`metrics.SpreadSkill.update` returned per pixel."""
        pixels = tuple(range(2, per_pixel["crps"].ndim))
        values = {
            "crps": per_pixel["crps"].mean(dim=pixels),
            "spread_sq": per_pixel["spread"].square().mean(dim=pixels),
            "error_sq": per_pixel["error"].square().mean(dim=pixels),
        }
        for name, v in values.items():
            self.per_clip.setdefault(name + suffix, []).append(v)

    def add_baseline(self, method: str, guess: Tensor, truth: Tensor) -> None:
        """``guess`` (B, F, C, H, W), finite."""
        mae = M.per_frame(M.mae, guess, truth.float().clamp(-1, 1)).cpu()
        self.reference_mae[method].append(mae)

    def clip_values(self) -> dict[str, np.ndarray]:
        """name -> (N, F): crps, spread_sq, error_sq (and their ``_calibrated`` twins) of the
        model's ensemble, ``<baseline>_mae`` of each baseline."""
        values = {name: torch.cat(v).numpy() for name, v in self.per_clip.items()}
        for method, v in self.reference_mae.items():
            values[f"{method}_mae"] = torch.cat(v).double().numpy()
        return values

    def report(self, videos: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0):
        """The summary; with ``videos`` (the video of each clip) also paired CRPS intervals:
        the ensemble against each baseline's MAE and, with a spread scale, inflated
        against raw."""
        report = calibration_report(self.spread_skill, self.reference_mae)
        if self.calibrated is not None:
            per_horizon = self.calibrated.per_horizon()
            report["calibrated"] = {
                "spread_scale": list(self.spread_scale.factors),
                "fitted_on": self.spread_scale.fitted_on,
                "overall": self.calibrated.overall(),
                "per_horizon": {key: [row[key] for row in per_horizon] for key in per_horizon[0]},
            }
        if videos is not None:
            values = self.clip_values()
            ensembles = ["crps"] + (["crps_calibrated"] if self.calibrated is not None else [])
            against = [f"{m}_mae" for m in self.reference_mae] + ensembles[:1]
            report["paired"] = {
                a: {
                    b: paired_bootstrap(
                        values[a] - values[b], videos, n_boot=n_boot, seed=seed, level=PAIRED_LEVEL
                    ).to_json()
                    for b in against
                    if b != a
                }
                for a in ensembles
            }
        return report
