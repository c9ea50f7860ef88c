"""Post-hoc spread calibration of a model's K-sample ensembles (``framecast calibrate``).

A flow model's K samples can agree more than their error warrants: the reference river's
spread–skill ratio is 0.58 at every horizon (docs/results.md), so an interval drawn from its
samples is about 1.7× too narrow. The standard remedy of ensemble forecasting is variance
inflation: move every member away from the ensemble mean by a factor a_h per horizon,

    x_k' = m + a_h (x_k − m),    m = mean_k x_k,

which leaves the ensemble mean, and so its error, unchanged and multiplies the spread by a_h.
The factors are **fitted on one split** (``val``) so that the finite-K corrected spread–skill
ratio (:class:`~framecast.eval.metrics.SpreadSkill`) is 1 there, and **applied unchanged** to
another (``evaluate --spread-scale``, on ``test``): what evaluate reports with them is
out-of-sample.

Frames live in [-1, 1] and an inflated member beyond that is clamped, which takes back part of
the spread next to black background and saturated smoke; each factor is therefore found by
bisection on the clamped ensemble, not as 1 / ratio.

Inflation changes the forecast distribution, not the model or its sampler: evaluate applies it
to the ensemble statistics (spread–skill, CRPS) and leaves the per-sample quality metrics
(PSNR, SSIM, ST-LPIPS of the model's own samples) as they are.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from framecast.errors import ConfigError
from framecast.utils import atomic_write_text

CALIBRATION_FILE = "spread_scale.json"
"""Where ``framecast calibrate`` writes a run's factors: ``RUN/spread_scale.json``."""
FORMAT = 1
SCALE_BOUNDS = (0.05, 20.0)
"""The bisection's bracket for a factor: a ratio still off 1 at either end is reported."""


def inflate_ensemble(samples: Tensor, factors: Tensor | Sequence[float]) -> Tensor:
    """Each member's deviation from the ensemble mean times its horizon's factor, clamped to
    [-1, 1]. samples (B, K, F, ...) in [-1, 1]; factors (F,) -> (B, K, F, ...)."""
    factors = torch.as_tensor(factors, dtype=torch.float32, device=samples.device)
    if samples.ndim < 3 or factors.shape != samples.shape[2:3]:
        raise ValueError(
            f"expected samples (B, K, F, ...) and F factors, got {tuple(samples.shape)} and "
            f"{tuple(factors.shape)}"
        )
    x = samples.float()
    mean = x.mean(dim=1, keepdim=True)
    shape = (1, 1, -1, *([1] * (x.ndim - 3)))
    return (mean + factors.reshape(shape) * (x - mean)).clamp(-1, 1)


def spread_skill_by_horizon(samples: Tensor, truth: Tensor) -> Tensor:
    """The finite-K corrected spread–skill ratio per horizon, over every clip and pixel:
    sqrt((K + 1) / K) · rms spread / RMSE of the mean (the ratio of
    :class:`~framecast.eval.metrics.SpreadSkill`; it does not depend on the value scale).
    samples (B, K, F, ...) and truth (B, F, ...) -> (F,) float64."""
    k = samples.shape[1]
    if k < 2:
        raise ValueError(f"a spread needs K >= 2 samples, got {tuple(samples.shape)}")
    x = samples.double()
    dims = (0, *range(2, x.ndim - 1))  # all but the horizon (dim 1 after the std / mean)
    spread_sq = x.var(dim=1, correction=1).mean(dim=dims)
    error_sq = (x.mean(dim=1) - truth.double()).square().mean(dim=dims)
    return math.sqrt((k + 1) / k) * (spread_sq / error_sq).sqrt()


def fit_factor(samples: Tensor, truth: Tensor, iterations: int = 40) -> float:
    """The factor that brings one horizon's clamped, inflated ensemble to spread–skill 1,
    by bisection on log(factor) in :data:`SCALE_BOUNDS`. samples (B, K, ...), truth (B, ...)."""

    def ratio(factor: float) -> float:
        inflated = inflate_ensemble(samples.unsqueeze(2), [factor])
        return float(spread_skill_by_horizon(inflated, truth.unsqueeze(1))[0])

    low, high = (math.log(b) for b in SCALE_BOUNDS)
    if not ratio(math.exp(high)) >= 1:
        return math.exp(high)  # the members barely differ: no factor in range reaches 1
    if not ratio(math.exp(low)) <= 1:
        return math.exp(low)
    for _ in range(iterations):
        middle = (low + high) / 2
        if ratio(math.exp(middle)) < 1:
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)


@dataclass(frozen=True)
class SpreadScale:
    """Per-horizon inflation factors fitted on one split, with what they were fitted on.

    Attributes:
        factors: a_h for horizons 1..F of the fit; a longer rollout reuses the last one.
        before, after: spread–skill per horizon on the fitting split, raw and inflated
            (≈ 1 by construction: these are in-sample).
        fitted_on: run, checkpoint, data, split, clips, samples, context, frames, sampler
            and seed of the fit.
    """

    factors: tuple[float, ...]
    before: tuple[float, ...] = ()
    after: tuple[float, ...] = ()
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not self.factors or not all(math.isfinite(a) and a > 0 for a in self.factors):
            raise ValueError(f"spread factors must be positive and finite, got {self.factors}")

    def factors_for(self, frames: int) -> Tensor:
        """(frames,) factors: the fitted ones, the last repeated beyond the fit."""
        a = list(self.factors[:frames])
        return torch.tensor(a + [self.factors[-1]] * (frames - len(a)), dtype=torch.float32)

    def apply(self, samples: Tensor) -> Tensor:
        """samples (B, K, F, C, H, W) in [-1, 1] -> the inflated ensemble, same shape."""
        return inflate_ensemble(samples, self.factors_for(samples.shape[2]))

    def to_json(self) -> dict[str, Any]:
        return {"framecast_spread_scale": FORMAT, **asdict(self)}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpreadScale:
        """Read ``path``, or ``RUN/spread_scale.json`` for a run directory."""
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        if not path.is_file():
            raise ConfigError(
                f"{path}: no spread calibration there; make one with `framecast calibrate "
                "--run RUN --data DATA` (fitted on the val split)"
            )
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: not a readable spread calibration ({err})") from err
        if not isinstance(data, dict) or data.get("framecast_spread_scale") != FORMAT:
            raise ConfigError(
                f"{path}: expected a framecast spread calibration (framecast_spread_scale: "
                f"{FORMAT}), got keys {sorted(data) if isinstance(data, dict) else type(data)}"
            )
        try:
            return cls(
                factors=tuple(float(a) for a in data["factors"]),
                before=tuple(float(a) for a in data.get("before", ())),
                after=tuple(float(a) for a in data.get("after", ())),
                fitted_on=dict(data.get("fitted_on", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: invalid spread calibration: {err}") from err

    def check_matches(self, checkpoint: str, sampler: dict[str, Any] | None) -> None:
        """Warn where the factors were fitted for another checkpoint or sampler: a spread
        depends on both, so the factors may not carry over."""
        fitted = self.fitted_on
        if (
            fitted.get("checkpoint")
            and Path(fitted["checkpoint"]).resolve() != Path(checkpoint).resolve()
        ):
            warnings.warn(
                f"the spread scale was fitted on {fitted['checkpoint']}, not {checkpoint}",
                stacklevel=3,
            )
        if fitted.get("sampler") is not None and fitted["sampler"] != sampler:
            warnings.warn(
                f"the spread scale was fitted with the sampler {fitted['sampler']}, this "
                f"evaluation samples with {sampler}",
                stacklevel=3,
            )


def fit_spread_scale(samples: Tensor, truth: Tensor, fitted_on: dict[str, Any]) -> SpreadScale:
    """Fit one factor per horizon. samples (N, K, F, C, H, W) and truth (N, F, C, H, W),
    both finite and in [-1, 1]."""
    if samples.shape[1] < 2:
        raise ValueError(f"calibration needs K >= 2 samples per clip, got {samples.shape[1]}")
    factors = tuple(fit_factor(samples[:, :, h], truth[:, h]) for h in range(samples.shape[2]))
    at_bound = [
        h + 1 for h, a in enumerate(factors) if any(math.isclose(a, b) for b in SCALE_BOUNDS)
    ]
    if at_bound:
        warnings.warn(
            f"spread factors at horizons {at_bound} reached the bracket {SCALE_BOUNDS}: those "
            "horizons stay off spread-skill 1 (members nearly identical, or far too wide)",
            stacklevel=2,
        )
    before = spread_skill_by_horizon(samples, truth)
    after = spread_skill_by_horizon(inflate_ensemble(samples, factors), truth)
    return SpreadScale(
        factors=factors,
        before=tuple(before.tolist()),
        after=tuple(after.tolist()),
        fitted_on=fitted_on,
    )


@torch.no_grad()
def calibrate(
    run: str | os.PathLike,
    data_root: str | os.PathLike,
    split: str = "val",
    out: str | os.PathLike | None = None,
    context: int | None = None,
    frames: int | None = None,
    sampler=None,
    samples: int = 8,
    clips_per_video: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_clips: int | None = None,
    which: str = "best",
    progress: bool = True,
) -> SpreadScale:
    """Sample K futures of every ``split`` clip with the run's sampler (or ``sampler``), fit
    the per-horizon factors and write them to ``out`` (default ``RUN/spread_scale.json``).

    The clips are those evaluate scores (fixed, evenly spaced starts); all K × F predicted
    frames of all clips are held in memory for the fit (N · K · F · C · H · W floats:
    84 MB for 32 clips, K = 8, 20 frames of 64 × 64 × 1), ``max_clips`` caps them.
    """
    from torch.utils.data import DataLoader

    from framecast.eval.evaluate import DEFAULT_SAMPLER, evaluation_clips, run_dir
    from framecast.eval.predictors import load_predictor
    from framecast.eval.scoring import finite_frames

    if samples < 2:
        raise ValueError(f"calibration needs --samples >= 2, got {samples}")
    device = torch.device(device)
    predictor = load_predictor(run, which=which, device=device, sampler=sampler or DEFAULT_SAMPLER)
    context, frames = predictor.frame_counts(context, frames)
    dataset = evaluation_clips(
        predictor, run, data_root, split, context + frames, clips_per_video, max_clips
    )
    config = predictor.config
    loader = DataLoader(
        dataset,
        batch_size=batch_size or config.data.eval_batch_size or config.data.batch_size,
        shuffle=False,
        num_workers=0,
    )
    generator = torch.Generator(device="cpu").manual_seed(seed)
    predictor.start()
    predicted, truths = [], []
    for batch in tqdm(loader, desc=f"calibrate {split}", disable=not progress, unit="batch"):
        clip = batch["frames"].to(device)
        pred, _ = predictor.predict(clip[:, :context], frames, samples, generator)
        predicted.append(finite_frames(pred).cpu())
        truths.append(finite_frames(clip[:, context:]).cpu())
    fitted_on = {
        "run": str(run),
        "checkpoint": str(predictor.checkpoint),
        "data": str(data_root),
        "split": split,
        "clips": len(dataset),
        "samples": samples,
        "context": context,
        "frames": frames,
        "sampler": predictor.sampler_settings(),
        "seed": seed,
    }
    scale = fit_spread_scale(torch.cat(predicted), torch.cat(truths), fitted_on)
    if out is None:
        out = (Path(run) if Path(run).is_dir() else run_dir(predictor.checkpoint)) / (
            CALIBRATION_FILE
        )
    scale.save(out)
    return scale


def format_spread_scale(scale: SpreadScale) -> str:
    """A table: horizon, factor, spread–skill before and after on the fitting split."""
    fitted = scale.fitted_on
    lines = [
        f"spread scale fitted on {fitted.get('split', '?')} ({fitted.get('clips', '?')} clips, "
        f"K = {fitted.get('samples', '?')}, {fitted.get('context', '?')} -> "
        f"{fitted.get('frames', '?')} frames)",
        f"{'horizon':>7} {'factor':>7} {'before':>7} {'after':>7}",
    ]
    for h, factor in enumerate(scale.factors):
        before = scale.before[h] if h < len(scale.before) else float("nan")
        after = scale.after[h] if h < len(scale.after) else float("nan")
        lines.append(f"{h + 1:>7} {factor:7.3f} {before:7.3f} {after:7.3f}")
    return "\n".join(lines)
