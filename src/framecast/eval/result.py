"""What :func:`framecast.eval.evaluate.evaluate` measured: :class:`EvaluationResult`, its
``metrics.json`` form and its printed summary, and the metric names and directions it uses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framecast.eval import metrics as M
from framecast.eval.stats import BOOTSTRAP_METHOD, PairedInterval
from framecast.flow.sampling import SamplerConfig

METRICS = (
    "mse",
    "psnr",
    "ssim",
    "stlpips",
    "smoke_psnr",
    "background_hallucination",
    "mse_sum",
    "mae_sum",
    "temporal_mse",
    "intensity_ratio",
)
"""Per-horizon metrics of every method (``psnr_best_of_k`` is added for the model, K > 1)."""
HIGHER_IS_BETTER = {
    "mse": False,
    "psnr": True,
    "ssim": True,
    "stlpips": False,
    "smoke_psnr": True,
    "background_hallucination": False,
    "mse_sum": False,
    "mae_sum": False,
    "temporal_mse": False,
    "psnr_best_of_k": True,
}
COMPARED_WITH_COPY_LAST = ("psnr", "ssim", "stlpips")
"""Metrics for which ``below_copy_last`` reports where the model falls behind copy_last."""
PAIRED_METRICS = ("psnr", "ssim", "stlpips", "mse")
"""Metrics whose paired differences (model − baseline, clip by clip) get intervals."""
PAIRED_LEVEL = 0.95
PAIRED_BOOTSTRAPS = 2000
DISPLAY_NAMES = {"stlpips": "ST-LPIPS"}
UNITS = {"psnr": " dB", "smoke_psnr": " dB", "psnr_best_of_k": " dB"}


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured and where it wrote it.

    Attributes:
        metrics: method -> metric -> per-horizon means (length F, horizon 1 first).
        means: method -> metric -> mean over horizons.
        fvd: method -> FVD against the true clips (empty without an I3D file).
        sampler: the sampler settings; None for a kind that uses none (vaegan).
        nfe_per_frame: velocity evaluations per predicted frame (None without a sampler).
        seconds_per_frame: wall time of the predictions (encode, rollout, decode) per
            predicted frame of one sample, at this batch size: clips x samples x frames
            frames in all.
        files: name -> path of each written file.
        kind: the run's model kind, the name of the model's method row.
        prediction: how the predictions were made.
        below_copy_last: metric (PSNR, SSIM, LPIPS) -> {"first": first horizon at which
            the model is worse than copy_last, "from": horizon from which it is worse at
            every later one (each an int or "never"), "worse_at": all such horizons}.
        blowups: method -> {"per_horizon": blown-up frames per horizon, "frames": frames
            checked per horizon, "first_horizon": int or None}; the model's row also
            holds "latent_per_horizon" where its kind has latents.
        calibration: the spread–skill summary with K > 1 (None with K = 1): "overall",
            "per_horizon" (name -> list), "bins", "reference_mae" (baseline -> list).
        baseline_runs: method -> what a ``--baseline`` run is (run, kind, checkpoint,
            sampler, prediction, NFE and seconds per frame); empty without one.
        paired: method -> baseline -> metric (:data:`PAIRED_METRICS`) -> the mean paired
            difference (method − baseline) per horizon and over horizons with its 95 %
            cluster bootstrap interval over videos (:func:`stats.paired_bootstrap`).
        below: method -> baseline -> metric -> :func:`below_baseline`, for the same pairs
            (``below_copy_last`` is ``below[kind]["copy_last"]``).
        clips: per clip, in order: {"clip", "video_index", "video_id", "start"}.
        per_clip: method -> metric -> (N, F) values per clip (mean over K samples).
        calibration_per_clip: with K > 1, name -> (N, F): the ensemble's CRPS, mean squared
            spread and error of the mean per clip (``_calibrated`` with a spread scale) and
            each baseline's MAE (``calibration_per_clip.csv``; not in metrics.json).
    """

    run: str
    checkpoint: str
    split: str
    out: Path
    context_frames: int
    frames: int
    samples: int
    num_clips: int
    sampler: dict[str, Any] | None
    nfe_per_frame: float | None
    seconds_per_frame: float
    seed: int
    metrics: dict[str, dict[str, list[float]]]
    means: dict[str, dict[str, float]]
    fvd: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    smoke_brightness: float = M.SMOKE_BRIGHTNESS
    kind: str = "river"
    prediction: str = ""
    below_copy_last: dict[str, dict[str, int | str]] = field(default_factory=dict)
    blowups: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    baseline_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    paired: dict[str, dict[str, dict[str, PairedInterval]]] = field(default_factory=dict)
    below: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    clips: list[dict[str, Any]] = field(default_factory=list)
    per_clip: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    calibration_per_clip: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` content; non-finite numbers become null (strict JSON)."""
        return {
            "run": self.run,
            "kind": self.kind,
            "checkpoint": self.checkpoint,
            "split": self.split,
            "num_clips": self.num_clips,
            "context_frames": self.context_frames,
            "frames": self.frames,
            "samples": self.samples,
            "sampler": self.sampler,
            "prediction": self.prediction,
            "nfe_per_frame": json_number(self.nfe_per_frame),
            "seconds_per_frame": self.seconds_per_frame,
            "seed": self.seed,
            "smoke_brightness": self.smoke_brightness,
            "horizons": list(range(1, self.frames + 1)),
            "methods": {
                method: {
                    metric: {
                        "per_horizon": [json_number(v) for v in values],
                        "mean": json_number(self.means[method][metric]),
                    }
                    for metric, values in by_metric.items()
                }
                for method, by_metric in self.metrics.items()
            },
            "fvd": {method: json_number(v) for method, v in self.fvd.items()} or None,
            "below_copy_last": self.below_copy_last,
            "blowup": {
                "limit": M.BLOWUP_LIMIT,
                "latent_rms_limit": M.LATENT_BLOWUP_RMS,
                "methods": self.blowups,
            },
            "calibration": json_clean(self.calibration),
            "baseline_runs": json_clean(self.baseline_runs),
            "below": self.below,
            "paired": self._paired_json(),
        }

    def _paired_json(self) -> dict[str, Any]:
        first = next(
            (i for by in self.paired.values() for b in by.values() for i in b.values()), None
        )
        return {
            "difference": "method minus baseline, per clip (mean over K samples), averaged over "
            "clips; 'overall' averages each clip over its horizons first",
            "interval": f"{PAIRED_LEVEL:.0%} {BOOTSTRAP_METHOD}; one interval at a time, "
            "not corrected for the number of horizons, metrics or baselines",
            "clips": first.clips if first else self.num_clips,
            "videos": first.clusters if first else None,
            "comparisons": {
                method: {
                    baseline: {name: iv.to_json() for name, iv in by_metric.items()}
                    for baseline, by_metric in against.items()
                }
                for method, against in self.paired.items()
            },
        }

    @property
    def metric_names(self) -> list[str]:
        """Every metric measured for any method, in first-seen order."""
        return list(dict.fromkeys(m for by in self.metrics.values() for m in by))

    def format(self) -> str:
        """A readable summary: means over horizons per method, cost, and the files."""
        names = self.metric_names
        header = ["method", *names] + (["fvd"] if self.fvd else [])
        rows = [header]
        for method, by_metric in self.metrics.items():
            row = [method]
            for name in names:
                row.append(fmt_number(self.means[method][name]) if name in by_metric else "-")
            if self.fvd:
                row.append(fmt_number(self.fvd[method]) if method in self.fvd else "-")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        table = "\n".join(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        )
        if self.sampler is None:
            cost = f"sampler: none, sampler options ignored ({self.kind}: {self.prediction}); "
        else:
            cost = (
                f"sampler: {SamplerConfig.from_dict(self.sampler).describe()}; "
                f"{self.nfe_per_frame:g} NFE per frame, "
            )
        lines = [
            f"evaluated {self.kind} {self.checkpoint} on {self.num_clips} clips of split "
            f"{self.split!r} ({self.context_frames} context + {self.frames} predicted frames, "
            f"{self.samples} sample(s) each)",
            f"{cost}{self.seconds_per_frame:.4g} s per predicted frame",
            "means over horizons (per-horizon values in the files):",
            table,
            *self._baseline_run_lines(),
            *self._paired_lines(),
            *self._long_rollout_lines(),
            *self._calibration_lines(),
        ]
        if self.files:
            lines.append(f"results in {self.out}:")
            lines += [f"  {path}" for path in self.files.values()]
        return "\n".join(lines)

    def _baseline_run_lines(self) -> list[str]:
        return [
            f"baseline run {method}: {entry['kind']} {entry['checkpoint']} "
            f"({entry['prediction']}; {entry['seconds_per_frame']:.4g} s per predicted frame)"
            for method, entry in self.baseline_runs.items()
        ]

    def _paired_lines(self) -> list[str]:
        """One line per pair and metric: mean paired difference over horizons, interval."""
        lines = []
        for method, against in self.paired.items():
            for baseline, by_metric in against.items():
                for name, iv in by_metric.items():
                    lines.append(f"  {method} − {baseline} {paired_text(name, iv)}")
        if lines:
            first = next(iter(next(iter(self.paired.values())).values()))
            iv = next(iter(first.values()))
            lines.insert(
                0,
                f"paired differences clip by clip, mean over horizons [{iv.level:.0%} interval; "
                f"per horizon in paired_per_horizon.csv] (ahead/behind: the interval "
                f"excludes 0; one interval at a time, {iv.clips} clips):",
            )
        return lines

    def _long_rollout_lines(self) -> list[str]:
        """Where the model falls behind copy_last, intensity drift, blow-ups."""
        lines = []
        if self.below_copy_last:
            parts = [
                f"{name} {v['first']} / {v['from']} / {horizon_list(v.get('worse_at', []))}"
                for name, v in self.below_copy_last.items()
            ]
            lines.append(
                f"{self.kind} worse than copy_last (first horizon / at every horizon from / "
                "all horizons where worse): " + ", ".join(parts)
            )
        for method, against in self.below.items():
            for baseline, by_metric in against.items():
                if (method, baseline) == (self.kind, "copy_last") or baseline == "autoencoder":
                    continue  # said above; below the autoencoder's ceiling is expected
                parts = [
                    f"{name} {v['first']} / {v['from']} / {horizon_list(v.get('worse_at', []))}"
                    for name, v in by_metric.items()
                ]
                lines.append(
                    f"{method} worse than {baseline} (first / from / all): " + ", ".join(parts)
                )
        last = self.frames
        drift = [
            f"{method} {fmt_number(by['intensity_ratio'][0])} -> {fmt_number(by['intensity_ratio'][-1])}"
            for method, by in self.metrics.items()
            if "intensity_ratio" in by
        ]
        if drift:
            lines.append(
                f"total intensity predicted / true (1 = no drift), horizon 1 -> {last}: "
                + ", ".join(drift)
            )
        blown = []
        for method, entry in self.blowups.items():
            frames = sum(entry["per_horizon"])
            latents = sum(entry.get("latent_per_horizon", []))
            if frames or latents:
                blown.append(
                    f"{method}: {frames} of {entry['frames'] * self.frames} frames "
                    f"(first at horizon {entry['first_horizon']}), {latents} latent frames"
                )
        if blown:
            lines.append(
                "BLOW-UP (non-finite or beyond ±"
                f"{M.BLOWUP_LIMIT:g} before clamping; latent RMS > {M.LATENT_BLOWUP_RMS:g}; "
                "counted as bad frames in the metrics): " + "; ".join(blown)
            )
        elif self.blowups:
            lines.append(
                f"no blow-up: every frame finite and within ±{M.BLOWUP_LIMIT:g} before "
                f"clamping (latent RMS within {M.LATENT_BLOWUP_RMS:g} where checked)"
            )
        return lines

    def _calibration_lines(self) -> list[str]:
        if not self.calibration:
            return []
        o = self.calibration["overall"]
        reference = ", ".join(
            f"{method} MAE {fmt_number(mean_over_horizons(values))}"
            for method, values in self.calibration["reference_mae"].items()
        )
        lines = [
            f"calibration of the {self.samples} samples (per pixel, [0, 1] units): spread/skill "
            f"{fmt_number(o['spread_skill'])} (1 = calibrated, < 1 over-confident, > 1 "
            f"over-dispersed; rms spread {fmt_number(o['spread'])}, RMSE of the mean "
            f"{fmt_number(o['rmse'])}); spread-error correlation Pearson {fmt_number(o['pearson'])}, "
            f"Spearman {fmt_number(o['spearman'])}; CRPS {fmt_number(o['crps'])} ({reference})"
        ]
        calibrated = self.calibration.get("calibrated")
        if calibrated:
            c, fitted = calibrated["overall"], calibrated["fitted_on"]
            ratios = calibrated["per_horizon"]["spread_skill"]
            lines.append(
                f"with the spread scale fitted on {fitted.get('split', '?')} (factors "
                f"{min(calibrated['spread_scale']):.3g}-{max(calibrated['spread_scale']):.3g}): "
                f"spread/skill {fmt_number(c['spread_skill'])} (per horizon "
                f"{fmt_number(min(ratios))}-{fmt_number(max(ratios))}), CRPS "
                f"{fmt_number(c['crps'])}"
            )
        for a, against in self.calibration.get("paired", {}).items():
            for b, interval in against.items():
                overall = interval["overall"]
                lines.append(
                    f"paired {a} - {b}: {fmt_number(overall['mean'])} "
                    f"[{fmt_number(overall['low'])}, {fmt_number(overall['high'])}] "
                    f"({interval['level']:.0%} cluster bootstrap over {interval['clusters']} videos)"
                )
        return lines


def fmt_number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def paired_text(metric: str, interval: PairedInterval) -> str:
    """``PSNR +4.50 dB [+3.90, +5.10] ahead (95 % cluster bootstrap over 16 videos)``: the
    mean over horizons, decimals from the interval's width (two significant digits of
    its half-width), and whether the method is ahead, behind or within the interval."""
    mean, low, high = interval.overall_mean, interval.overall_low, interval.overall_high
    unit = UNITS.get(metric, "")
    label = DISPLAY_NAMES.get(metric, metric.upper()) if metric in PAIRED_METRICS else metric
    videos = f"{interval.clusters} video{'s' if interval.clusters != 1 else ''}"
    if not math.isfinite(mean):
        return f"{label} n/a (no finite values)"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{label} {mean:+.4g}{unit} [no interval: {videos}, needs 2 or more]"
    half = (high - low) / 2
    digits = max(0, 1 - math.floor(math.log10(half))) if half > 0 else 4
    word = "within noise"
    if interval.excludes_zero():
        better = (mean > 0) == HIGHER_IS_BETTER.get(metric, True)
        word = "ahead" if better else "behind"
    return (
        f"{label} {mean:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}] {word} "
        f"({interval.level:.0%} cluster bootstrap over {videos})"
    )


def json_number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def json_clean(value: Any) -> Any:
    """Nested dicts and lists with every non-finite float replaced by None."""
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if isinstance(value, float):
        return json_number(value)
    return value


def horizon_list(horizons: list[int]) -> str:
    return ",".join(map(str, horizons)) if horizons else "none"


def mean_over_horizons(values: list[float]) -> float:
    """Mean over horizons, leaving out NaN horizons (NaN if all are)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
