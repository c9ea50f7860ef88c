"""The evaluation runner behind ``framecast evaluate``: a trained run against ground truth.

Clips of ``context + frames`` frames are read from one split with the fixed, evenly
spaced starts of evaluation. For each clip the model predicts ``frames`` future frames
from the ``context`` frames (K samples), and baselines are measured on the same clips:

- ``copy_last``: the last context frame repeated (the floor a predictor must beat);
- ``autoencoder`` (river runs): decode(encode(true future frames)), the ceiling the
  frozen autoencoder allows in latent space.

Two kinds of run are evaluated, told apart by the kind stored in the checkpoint
(:func:`load_predictor`): ``river`` (a latent flow rollout with a sampler) and
``vaegan`` (one forward pass predicts the F frames it was trained for, from the
posterior mean mu, or from K posterior draws with K > 1; sampler options do not apply).
The model's row is named after its kind.

Per horizon h = 1..F the mean over clips (and samples) of MSE, PSNR, SSIM, ST-LPIPS
(alex), smoke PSNR (PSNR inside the true smoke mask), background hallucination, and
``mse_sum`` / ``mae_sum`` (errors summed over each frame's pixels on [0, 1]: the "MSE" and
"MAE" of Moving-MNIST tables), in float32 on frames clamped to [-1, 1]. NaN values (an empty smoke mask) are left out of
the means. With K > 1 also the best-of-K PSNR: per clip, the sample with the highest
PSNR averaged over horizons, at each horizon. With an I3D file also FVD on the whole
clips (context + future) of each method against the true clips.

Long rollouts (e.g. ``--context 3 --frames 20``) are judged on three more things:

- ``intensity_ratio`` per horizon and method: total intensity of the predicted frames
  (pixel values on [0, 1], summed over clips) over that of the true frames; 1.0 means no
  drift, below 1 the smoke fades, above 1 it piles up (:func:`metrics.intensity_ratio`);
- blow-ups: frames with a non-finite value or one beyond ±:data:`metrics.BLOWUP_LIMIT`
  before clamping, and (river) latent frames that are non-finite or whose RMS exceeds
  :data:`metrics.LATENT_BLOWUP_RMS`, counted per horizon. A blow-up does not stop the
  evaluation: non-finite values enter the metrics as 0 (NaN) or ±1 (±inf), so a blown
  frame scores as the bad prediction it is instead of dropping out of the means;
- ``below_copy_last``: for PSNR, SSIM and LPIPS the first horizon at which the model is
  worse than copy_last, and the horizon from which it is worse at every later one
  ("never" where it is not).

With K > 1 samples, a spread–skill calibration of the ensemble (:class:`metrics.SpreadSkill`):
per pixel and channel, the spread of the K samples (std, [0, 1] units) against the error
of their mean, binned by spread (``calibration.csv``, ``calibration.png``), and per horizon
the spread–skill ratio (finite-K corrected, 1 = calibrated), the Pearson and Spearman
correlations of spread and error, and the ensemble CRPS beside the baselines' MAE (the CRPS
of a deterministic guess; ``calibration_per_horizon.csv``). None of it runs with K = 1.

Other trained runs can be scored beside the model as extra baseline rows (``--baseline
RUN``, :func:`load_baseline_runs`): a SimVP or a second river run, on the same clips, in
the same tables, plots, blow-up counts and ``below`` summaries.

Paired differences: every metric is also kept per clip (``per_clip.csv``; the model's K
samples averaged per clip). For the model against each baseline (and each baseline run
against copy_last), the per-clip difference of PSNR, SSIM, LPIPS and MSE is averaged per
horizon and over horizons, with a 95 % bootstrap interval that resamples whole videos
(clips cut from one video are not independent; :func:`stats.paired_bootstrap`):
``metrics.json``'s ``paired`` block, ``paired_per_horizon.csv`` and one printed line per
pair and metric. Each interval holds at 95 % on its own; nothing is corrected for the
number of horizons, metrics or baselines.

Writes ``metrics.json``, ``per_horizon.csv``, ``per_horizon.png``, ``per_clip.csv``,
``paired_per_horizon.csv`` and ``samples.png`` (and with K > 1 the three calibration
files) into ``out`` (default ``RUN/eval/<split>/``), each atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from framecast.checkpoint import read_checkpoint, resolve_checkpoint
from framecast.config import Config
from framecast.data.dataset import ClipDataset, check_frame_size, split_dir
from framecast.errors import CheckpointError, ConfigError, DataError
from framecast.eval import metrics as M
from framecast.eval.plots import (
    plot_spread_skill,
    pyplot,
    save_figure,
    save_image_grid,
    to_uint8_images,
)
from framecast.eval.stats import BOOTSTRAP_METHOD, PairedInterval, paired_bootstrap
from framecast.flow.pipeline import RiverPipeline, load_river
from framecast.flow.sampling import SamplerConfig, announce_precision
from framecast.flow.solvers import SolverConfig
from framecast.losses.latent_smoke import FRAME_SMOKE_THRESHOLD
from framecast.models.vaegan.loading import VAEGANRun, load_vaegan
from framecast.utils import atomic_write_text

METRICS = (
    "mse",
    "psnr",
    "ssim",
    "lpips",
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
    "lpips": False,
    "smoke_psnr": True,
    "background_hallucination": False,
    "mse_sum": False,
    "mae_sum": False,
    "temporal_mse": False,
    "psnr_best_of_k": True,
}
COMPARED_WITH_COPY_LAST = ("psnr", "ssim", "lpips")
"""Metrics for which ``below_copy_last`` reports where the model falls behind copy_last."""
PAIRED_METRICS = ("psnr", "ssim", "lpips", "mse")
"""Metrics whose paired differences (model − baseline, clip by clip) get intervals."""
PAIRED_LEVEL = 0.95
PAIRED_BOOTSTRAPS = 2000
UNITS = {"psnr": " dB", "smoke_psnr": " dB", "psnr_best_of_k": " dB"}
DEFAULT_SAMPLER = SamplerConfig(solver=SolverConfig(method="euler", steps=10))
SAMPLE_CLIPS = 4  # clips shown in samples.png
SUPPORTED_KINDS = ("river", "vaegan", "simvp")
"""Model kinds :func:`load_predictor` (and so ``evaluate`` and ``generate``) accept."""

ProgressFn = Callable[[int], None]
"""Called once per predicted frame (for a progress bar)."""


class Predictor:
    """A trained run as the evaluation and generation loops see it, whatever its kind.

    Attributes:
        kind: the run's model kind; also the name of the method row of its predictions.
        baselines_reported: baseline methods measured beside it, in report order.
        checkpoint: the checkpoint file the model came from.
        config: the run's config.
        image_size: frame size H = W the model expects.
    """

    kind: str
    baselines_reported: tuple[str, ...] = ("copy_last",)
    checkpoint: Path
    config: Config
    image_size: int
    latents: Tensor | None = None
    """Latents (B, K, F, C, h, w) of the last :meth:`predict`, for kinds that have them
    (river): the evaluation's latent blow-up check reads them."""

    @property
    def methods(self) -> tuple[str, ...]:
        """Every reported method: the model, then its baselines."""
        return (self.kind, *self.baselines_reported)

    def frame_counts(self, context: int | None, frames: int | None) -> tuple[int, int]:
        """(context, frames) to use; None means the run's training values."""
        training = self.config.training
        return (
            training.condition_frames if context is None else context,
            training.frames_to_generate if frames is None else frames,
        )

    def start(self) -> None:
        """Called once the inputs are checked, before the first prediction and its progress
        bar (a river run says here which sampling precision ``auto`` became)."""

    def predict(
        self,
        context: Tensor,
        frames: int,
        samples: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
    ) -> tuple[Tensor, float | None]:
        """Context (B, T0, 3, H, W) in [-1, 1] -> (futures (B, K, F, 3, H, W) in [-1, 1],
        network evaluations per predicted frame, or None where that means nothing)."""
        raise NotImplementedError

    def baselines(self, context: Tensor, truth: Tensor) -> dict[str, Tensor]:
        """Each of :attr:`baselines_reported` -> its guess of ``truth`` (B, F, 3, H, W)."""
        return {"copy_last": context[:, -1:].expand_as(truth)}

    def sampler_settings(self) -> dict[str, Any] | None:
        """The sampler as recorded in metrics.json; None for kinds that use none."""
        return None

    def describe(self, samples: int) -> str:
        """How the predictions were made, for metrics.json and the printed header."""
        raise NotImplementedError


class RiverPredictor(Predictor):
    """A river run: encode the context, roll the flow model forward with ``sampler``, decode."""

    kind = "river"
    baselines_reported = ("copy_last", "autoencoder")

    def __init__(self, pipeline: RiverPipeline, sampler: SamplerConfig, precision_choice=None):
        assert pipeline.config is not None and pipeline.checkpoint is not None  # load_river
        self.pipeline = pipeline
        self.sampler = sampler
        self._unannounced = precision_choice  # said by start()
        self.checkpoint = pipeline.checkpoint
        self.config = pipeline.config
        self.image_size = pipeline.image_size

    def predict(
        self,
        context: Tensor,
        frames: int,
        samples: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
    ) -> tuple[Tensor, float | None]:
        self.start()
        prediction = self.pipeline.predict(
            context, frames, self.sampler, samples=samples, generator=generator, progress=progress
        )
        self.latents = prediction.latents
        return prediction.frames, prediction.nfe_per_frame

    def start(self) -> None:
        if self._unannounced is not None:
            announce_precision(self._unannounced)
            self._unannounced = None

    def baselines(self, context: Tensor, truth: Tensor) -> dict[str, Tensor]:
        recon = self.pipeline.decode(self.pipeline.encode(truth))
        return {**super().baselines(context, truth), "autoencoder": recon}

    def sampler_settings(self) -> dict[str, Any]:
        return self.sampler.to_dict()

    def describe(self, samples: int) -> str:
        return "latent flow rollout, decoded by the run's autoencoder"


class VAEGANPredictor(Predictor):
    """A VAE-GAN run: one forward pass predicts the F frames it was trained for; the
    encoder takes exactly the context frames it was trained with."""

    kind = "vaegan"

    def __init__(self, run: VAEGANRun):
        self.run = run
        self.checkpoint = run.checkpoint
        self.config = run.config
        self.image_size = run.image_size

    def frame_counts(self, context: int | None, frames: int | None) -> tuple[int, int]:
        trained = (self.run.context_frames, self.run.future_frames)
        asked = super().frame_counts(context, frames)
        if asked != trained:
            raise ConfigError(
                f"the vaegan run {self.checkpoint} predicts exactly {trained[1]} frames from "
                f"exactly {trained[0]} context frames (training.condition_frames and "
                f"frames_to_generate); got context {asked[0]} and frames {asked[1]}: leave "
                "--context and --frames out or give the trained values"
            )
        return trained

    def predict(
        self,
        context: Tensor,
        frames: int,
        samples: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
    ) -> tuple[Tensor, float | None]:
        futures = self.run.predict(context, samples=samples, generator=generator)
        if progress is not None:  # every frame comes out of the one forward pass at once
            for frame in range(frames):
                progress(frame)
        return futures, None

    def describe(self, samples: int) -> str:
        if samples == 1:
            return "one forward pass from the posterior mean mu"
        return f"one forward pass per posterior draw z = mu + sigma * eps, {samples} draws"


def checkpoint_kind(run: str | os.PathLike, which: str = "best") -> str:
    """The model kind stored in the checkpoint of ``run`` (a run directory or checkpoint)."""
    # Memory-mapped: only the metadata is read here; the loader reads the tensors.
    return read_checkpoint(resolve_checkpoint(run, which), mmap=True)["framecast"]["kind"]


def load_predictor(
    run: str | os.PathLike,
    which: str = "best",
    device: str | torch.device = "cpu",
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> Predictor:
    """The :class:`Predictor` of a river, vaegan or simvp run (``sampler``: river only).

    Raises :class:`CheckpointError` for a missing checkpoint or one of another kind.
    """
    kind = checkpoint_kind(run, which)
    if kind == "river":
        # precision auto becomes what this device computes fast, recorded in metrics.json;
        # said when the first rollout starts (a run refused before that prints its error alone)
        sampler, choice = sampler.resolve_precision(device)
        return RiverPredictor(load_river(run, which=which, device=device), sampler, choice)
    if kind == "vaegan":
        return VAEGANPredictor(load_vaegan(run, which=which, device=device))
    if kind == "simvp":
        # Imported here: simvp_predictor imports this module for Predictor.
        from framecast.eval.simvp_predictor import SimVPPredictor
        from framecast.models.simvp_loading import load_simvp

        return SimVPPredictor(load_simvp(run, which=which, device=device))
    raise CheckpointError(
        f"checkpoint {resolve_checkpoint(run, which)} holds a {kind!r} model; "
        f"expected one of {', '.join(repr(k) for k in SUPPORTED_KINDS)}"
    )


METHODS = (RiverPredictor.kind, *RiverPredictor.baselines_reported)
"""Methods of a river run in the order they are reported: the model, then the baselines."""


def _run_dir(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to (``RUN/checkpoints/best.ckpt``)."""
    checkpoint = Path(checkpoint)
    return (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )


def load_baseline_runs(
    runs: Sequence[str | os.PathLike],
    predictor: Predictor,
    context: int,
    frames: int,
    which: str = "best",
    device: str | torch.device = "cpu",
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> dict[str, Predictor]:
    """Method name -> :class:`Predictor` of each run of ``--baseline``, in order.

    A baseline run is scored on the evaluated run's clips, so it must predict ``frames``
    frames from ``context`` at the same frame size and channels; :class:`ConfigError`
    (or :class:`CheckpointError`) names the ``--baseline`` run otherwise. Its method row
    is named after its kind (``simvp``), or ``kind:run-directory`` where that name is
    already taken (a second river run beside the evaluated one).
    """
    out: dict[str, Predictor] = {}
    taken = set(predictor.methods)
    for run in runs:
        where = f"--baseline {run}"
        try:
            extra = load_predictor(run, which=which, device=device, sampler=sampler)
            counts = extra.frame_counts(context, frames)
        except CheckpointError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if counts != (context, frames):
            raise ConfigError(
                f"{where}: the run predicts {counts[1]} frames from {counts[0]}; the evaluated "
                f"run {context} from {context} context frames; expected a run that takes "
                f"--context {context} --frames {frames}"
            )
        if extra.image_size != predictor.image_size:
            raise ConfigError(
                f"{where}: the run sees {extra.image_size}×{extra.image_size} frames, the "
                f"evaluated run {predictor.image_size}×{predictor.image_size}; baselines are "
                "scored on the same clips, so expected a run trained with data.image_size="
                f"{predictor.image_size}"
            )
        channels = (extra.config.data.channels, predictor.config.data.channels)
        if channels[0] != channels[1]:
            raise ConfigError(
                f"{where}: the run reads {channels[0]}-channel frames, the evaluated run "
                f"{channels[1]}-channel ones (data.channels); expected data.channels="
                f"{channels[1]}"
            )
        name = extra.kind
        if name in taken:
            name = f"{extra.kind}:{_run_dir(extra.checkpoint).name}"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}#{n}", n + 1
        taken.add(name)
        out[name] = extra
    return out


def paired_methods(
    model: str, baselines: Sequence[str], runs: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Which method is compared with which, clip by clip: the model with every baseline
    (its own, then the baseline runs), and every baseline run with copy_last."""
    return {model: (*baselines, *runs), **{run: ("copy_last",) for run in runs}}


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
    smoke_threshold: float = FRAME_SMOKE_THRESHOLD
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
            "nfe_per_frame": _json_number(self.nfe_per_frame),
            "seconds_per_frame": self.seconds_per_frame,
            "seed": self.seed,
            "smoke_threshold": self.smoke_threshold,
            "horizons": list(range(1, self.frames + 1)),
            "methods": {
                method: {
                    metric: {
                        "per_horizon": [_json_number(v) for v in values],
                        "mean": _json_number(self.means[method][metric]),
                    }
                    for metric, values in by_metric.items()
                }
                for method, by_metric in self.metrics.items()
            },
            "fvd": {method: _json_number(v) for method, v in self.fvd.items()} or None,
            "below_copy_last": self.below_copy_last,
            "blowup": {
                "limit": M.BLOWUP_LIMIT,
                "latent_rms_limit": M.LATENT_BLOWUP_RMS,
                "methods": self.blowups,
            },
            "calibration": _json_clean(self.calibration),
            "baseline_runs": _json_clean(self.baseline_runs),
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
                row.append(_fmt(self.means[method][name]) if name in by_metric else "-")
            if self.fvd:
                row.append(_fmt(self.fvd[method]) if method in self.fvd else "-")
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
                f"{name} {v['first']} / {v['from']} / {_horizon_list(v.get('worse_at', []))}"
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
                    f"{name} {v['first']} / {v['from']} / {_horizon_list(v.get('worse_at', []))}"
                    for name, v in by_metric.items()
                ]
                lines.append(
                    f"{method} worse than {baseline} (first / from / all): " + ", ".join(parts)
                )
        last = self.frames
        drift = [
            f"{method} {_fmt(by['intensity_ratio'][0])} -> {_fmt(by['intensity_ratio'][-1])}"
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
            f"{method} MAE {_fmt(_mean(values))}"
            for method, values in self.calibration["reference_mae"].items()
        )
        return [
            f"calibration of the {self.samples} samples (per pixel, [0, 1] units): spread/skill "
            f"{_fmt(o['spread_skill'])} (1 = calibrated, < 1 over-confident, > 1 "
            f"over-dispersed; rms spread {_fmt(o['spread'])}, RMSE of the mean "
            f"{_fmt(o['rmse'])}); spread-error correlation Pearson {_fmt(o['pearson'])}, "
            f"Spearman {_fmt(o['spearman'])}; CRPS {_fmt(o['crps'])} ({reference})"
        ]


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def paired_text(metric: str, interval: PairedInterval) -> str:
    """``PSNR +4.50 dB [+3.90, +5.10] ahead (95 % cluster bootstrap over 16 videos)``: the
    mean over horizons, decimals from the interval's width (two significant digits of
    its half-width), and whether the method is ahead, behind or within the interval."""
    mean, low, high = interval.overall_mean, interval.overall_low, interval.overall_high
    unit = UNITS.get(metric, "")
    label = metric.upper() if metric in PAIRED_METRICS else metric
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


def _json_number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _json_clean(value: Any) -> Any:
    """Nested dicts and lists with every non-finite float replaced by None."""
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if isinstance(value, float):
        return _json_number(value)
    return value


def _finite_frames(frames: Tensor) -> Tensor:
    """float32 frames clamped to [-1, 1], non-finite values as 0 (NaN) or ±1 (±inf): a
    blown-up frame scores as a bad prediction instead of vanishing from NaN-skipping means."""
    return torch.nan_to_num(frames.float(), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)


def _horizon_list(horizons: list[int]) -> str:
    return ",".join(map(str, horizons)) if horizons else "none"


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


def _default_out(checkpoint: Path, run: str | os.PathLike, split: str) -> Path:
    run = Path(run)
    if run.is_dir():
        return run / "eval" / split
    ckpt = Path(checkpoint)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run_dir / "eval" / split


def _frame_metrics(
    threshold: float, lpips: Callable[[Tensor, Tensor], Tensor]
) -> dict[str, M.MetricFn]:
    return {
        "mse": M.mse,
        "psnr": M.psnr,
        "ssim": M.ssim,
        "lpips": lpips,
        "smoke_psnr": lambda p, t: M.masked_psnr(p, t, M.bright_smoke_mask(t, threshold)),
        "background_hallucination": lambda p, t: M.background_hallucination(
            p, t, threshold, threshold
        ),
        # Summed over each frame's pixels on [0, 1]: what Moving-MNIST tables (OpenSTL) call
        # MSE and MAE, so a framecast row can stand beside a published one.
        "mse_sum": M.frame_sse,
        "mae_sum": M.frame_sae,
    }


def _measure(fns: dict[str, M.MetricFn], pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-frame values (N, F) of every metric, float32 on the CPU."""
    pred, target = pred.float().clamp(-1, 1), target.float().clamp(-1, 1)
    return {name: M.per_frame(fn, pred, target).float().cpu() for name, fn in fns.items()}


@torch.no_grad()
def evaluate(
    run: str | os.PathLike,
    data_root: str | os.PathLike,
    split: str = "test",
    out: str | os.PathLike | None = None,
    context: int | None = None,
    frames: int | None = None,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
    samples: int = 1,
    clips_per_video: int | None = None,
    batch_size: int | None = None,
    i3d: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_clips: int | None = None,
    which: str = "best",
    smoke_threshold: float = FRAME_SMOKE_THRESHOLD,
    baselines: Sequence[str | os.PathLike] = (),
    n_boot: int = PAIRED_BOOTSTRAPS,
) -> EvaluationResult:
    """Evaluate the river, vaegan or simvp run ``run`` on ``split`` of the dataset at ``data_root``.

    Args:
        run: run directory or checkpoint (``which`` picks best/last in a run).
        data_root: dataset folder holding ``split``.
        out: output folder (default ``RUN/eval/<split>/``).
        context: observed frames per clip (default ``training.condition_frames``; a vaegan
            run accepts only that value).
        frames: predicted frames F (default ``training.frames_to_generate``; a vaegan run
            accepts only that value).
        sampler: solver, steps and warm start of the rollout (river only; ignored for vaegan).
        samples: K stochastic predictions per clip (vaegan: K = 1 decodes the posterior
            mean, K > 1 decodes K posterior draws).
        clips_per_video: evenly spaced clips per video (default
            ``data.eval_clips_per_video``).
        batch_size: clips per batch (default ``data.eval_batch_size`` or
            ``data.batch_size``).
        i3d: TorchScript I3D file; with it, FVD is computed (needs >= 2 clips).
        seed: seeds the sampling noise and context draws.
        max_clips: use only the first ``max_clips`` clips.
        progress: show a tqdm bar over batches.
        smoke_threshold: frame-space smoke: mean brightness on [0, 1] above this, for
            smoke_psnr and background_hallucination. (``training.smoke_threshold`` is a
            latent-norm threshold and means something else.)
        baselines: other trained runs (directories or checkpoints, any kind
            :func:`load_predictor` reads; ``which`` picks their checkpoint too) scored on
            the same clips as extra baseline rows (``--baseline``): K samples each, with
            their own generator seeded with ``seed``.
        n_boot: bootstrap draws of the paired intervals.

    Raises :class:`CheckpointError` for a missing checkpoint or one of another kind,
    :class:`ConfigError` for frame counts a vaegan run was not trained with or a baseline
    run that cannot be scored on the same clips, and :class:`DataError` for a missing
    split or videos too short for one clip.
    """
    from framecast.eval.fvd import fvd as fvd_distance
    from framecast.eval.fvd import i3d_features, load_i3d
    from framecast.eval.lpips import load_stlpips

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 or None, got {max_clips}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    device = torch.device(device)
    predictor = load_predictor(run, which=which, device=device, sampler=sampler)
    config = predictor.config
    context, frames = predictor.frame_counts(context, frames)
    if context < 1 or frames < 1:
        raise ValueError(f"context and frames must be >= 1, got {context} and {frames}")
    extras = load_baseline_runs(baselines, predictor, context, frames, which, device, sampler)
    clips_per_video = clips_per_video or config.data.eval_clips_per_video
    batch_size = batch_size or config.data.eval_batch_size or config.data.batch_size
    threshold = smoke_threshold

    dataset: Any = ClipDataset(
        split_dir(data_root, split),
        num_frames=context + frames,
        frame_stride=config.data.frame_stride,
        image_size=predictor.image_size,
        train=False,
        clips_per_video=clips_per_video,
        channels=config.data.channels,  # a greyscale run reads the frames' luma
    )
    check_frame_size(  # 128×128 frames into a 64×64 model: refused unless trained so
        dataset.videos, predictor.image_size, data_root, f"the run {run}", config.data.root
    )
    if max_clips is not None and max_clips < len(dataset):
        dataset = Subset(dataset, range(max_clips))
    num_clips = len(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    detector = load_i3d(i3d, device) if i3d is not None else None
    if detector is not None and num_clips < 2:
        raise DataError(f"FVD needs at least 2 clips; split {split!r} gives {num_clips}")

    lpips_net = load_stlpips("alex", device)
    fns = _frame_metrics(threshold, lambda p, t: lpips_net(p, t).float())
    generator = torch.Generator(device="cpu").manual_seed(seed)
    # Each baseline run draws from a generator of its own, seeded like the model's: the
    # model's predictions do not depend on which baselines are scored beside it, and a
    # baseline run scores here as it does evaluated alone (same seed and batch size).
    extra_generators = {m: torch.Generator(device="cpu").manual_seed(seed) for m in extras}
    model_method = predictor.kind
    methods = (*predictor.methods, *extras)
    sampled = (model_method, *extras)  # methods with K predictions per clip
    names = [*fns, "temporal_mse"]
    values: dict[str, dict[str, list[Tensor]]] = {m: {k: [] for k in names} for m in methods}
    # Per clip (N, F), the mean over the K samples: what the paired differences pair up.
    per_clip: dict[str, dict[str, list[Tensor]]] = {m: {k: [] for k in names} for m in methods}
    clip_videos: list[Tensor] = []
    clip_ids: list[str] = []
    clip_starts: list[Tensor] = []
    best_of_k: list[Tensor] = []
    # Total intensity per frame (N, F), predicted and true, for the drift ratio of sums.
    intensities: dict[str, tuple[list[Tensor], list[Tensor]]] = {m: ([], []) for m in methods}
    blown = {m: torch.zeros(frames, dtype=torch.long) for m in methods}  # frames per horizon
    latent_blown: Tensor | None = None
    calibration = M.SpreadSkill(frames, samples, seed) if samples > 1 else None
    reference_mae: dict[str, list[Tensor]] = {m: [] for m in predictor.baselines_reported}
    feats: dict[str, list[Tensor]] = {m: [] for m in ("truth", *methods)}
    shown: list[tuple[Tensor, Tensor, Tensor]] = []
    predict_seconds = 0.0
    nfe_per_frame: float | None = None
    extra_seconds = dict.fromkeys(extras, 0.0)
    extra_nfe: dict[str, float | None] = dict.fromkeys(extras)

    def score_samples(method: str, pred: Tensor, truth: Tensor, last: Tensor) -> dict:
        """Blow-ups, intensity, frame metrics and temporal error of K predictions per clip
        (B, K, F, C, H, W); returns the per-frame metrics (B·K, F) of the finite frames."""
        b = truth.shape[0]
        blown[method] += M.blown_up(pred).flatten(0, 1).sum(dim=0).cpu()
        pred = _finite_frames(pred)
        true_intensity = M.intensity(truth.float().clamp(-1, 1)).cpu()  # (B, F)
        intensities[method][0].append(M.intensity(pred).flatten(0, 1).cpu())
        intensities[method][1].append(true_intensity.repeat_interleave(samples, dim=0))
        truth_k = truth[:, None].expand_as(pred)
        predicted = _measure(fns, pred.flatten(0, 1), truth_k.flatten(0, 1))  # (B·K, F)
        predicted["temporal_mse"] = M.temporal_difference_error(
            pred.flatten(0, 1),
            truth_k.flatten(0, 1).float().clamp(-1, 1),
            last[:, None].expand(-1, samples, -1, -1, -1).flatten(0, 1),
        ).cpu()
        for name, v in predicted.items():
            values[method][name].append(v)
            per_clip[method][name].append(torch.nanmean(v.reshape(b, samples, frames), dim=1))
        if detector is not None:
            ctx_k = ctx[:, None].expand(-1, samples, -1, -1, -1, -1)
            model_clips = torch.cat([ctx_k, pred.to(ctx.dtype)], dim=2).flatten(0, 1)
            feats[method].append(i3d_features(detector, model_clips, batch_size))
        return predicted

    predictor.start()
    for extra in extras.values():
        extra.start()
    for batch in tqdm(loader, desc=f"evaluate {split}", disable=not progress, unit="batch"):
        clip = batch["frames"].to(device)
        ctx, truth = clip[:, :context], clip[:, context:]
        b = clip.shape[0]
        clip_videos.append(torch.as_tensor(batch["video_index"]).reshape(b))
        clip_ids += list(batch["video_id"])
        clip_starts.append(torch.as_tensor(batch["start"]).reshape(b))
        _sync(device)
        start = time.perf_counter()
        pred, nfe_per_frame = predictor.predict(ctx, frames, samples, generator)
        _sync(device)
        predict_seconds += time.perf_counter() - start
        # (B, K, F, C, H, W): checked for blow-ups before clamping, then made finite.
        if predictor.latents is not None:
            count = M.latent_blown_up(predictor.latents).flatten(0, 1).sum(dim=0).cpu()
            latent_blown = count if latent_blown is None else latent_blown + count
        last = ctx[:, -1].float().clamp(-1, 1)  # (B, C, H, W): where the first change starts
        predicted = score_samples(model_method, pred, truth, last)
        pred = _finite_frames(pred)
        if calibration is not None:
            calibration.update(pred, truth.float().clamp(-1, 1))
        if samples > 1:
            psnr_k = predicted["psnr"].reshape(b, samples, frames)
            best = psnr_k.mean(dim=2).argmax(dim=1)  # (B,)
            best_of_k.append(psnr_k[torch.arange(b), best])
        for method, extra in extras.items():
            _sync(device)
            start = time.perf_counter()
            guess, extra_nfe[method] = extra.predict(ctx, frames, samples, extra_generators[method])
            _sync(device)
            extra_seconds[method] += time.perf_counter() - start
            score_samples(method, guess, truth, last)
        baselines_now = predictor.baselines(ctx, truth)
        for method, guess in baselines_now.items():
            blown[method] += M.blown_up(guess).sum(dim=0).cpu()
        baselines_now = {m: _finite_frames(g) for m, g in baselines_now.items()}
        true_intensity = M.intensity(truth.float().clamp(-1, 1)).cpu()  # (B, F)
        for method, guess in baselines_now.items():
            measured = _measure(fns, guess, truth)
            measured["temporal_mse"] = M.temporal_difference_error(
                guess, truth.float().clamp(-1, 1), last
            ).cpu()
            for name, v in measured.items():
                values[method][name].append(v)
                per_clip[method][name].append(v)
            intensities[method][0].append(M.intensity(guess).cpu())
            intensities[method][1].append(true_intensity)
            if calibration is not None:
                reference_mae[method].append(
                    M.per_frame(M.mae, guess, truth.float().clamp(-1, 1)).cpu()
                )

        if detector is not None:
            feats["truth"].append(i3d_features(detector, clip, batch_size))
            for method, guess in baselines_now.items():
                video = torch.cat([ctx, guess.to(ctx.dtype)], dim=1)
                feats[method].append(i3d_features(detector, video, batch_size))
        for i in range(min(b, SAMPLE_CLIPS - len(shown))):
            shown.append((ctx[i].cpu(), truth[i].cpu(), pred[i, 0].cpu()))

    metrics: dict[str, dict[str, list[float]]] = {}
    for method, by_name in values.items():
        metrics[method] = {
            name: torch.nanmean(torch.cat(v), dim=0).tolist() for name, v in by_name.items()
        }
    for method, (predicted_sums, true_sums) in intensities.items():
        metrics[method]["intensity_ratio"] = M.intensity_ratio(
            torch.cat(predicted_sums), torch.cat(true_sums)
        ).tolist()
    clip_values = {
        method: {name: torch.cat(v).double().numpy() for name, v in by_name.items()}
        for method, by_name in per_clip.items()
    }
    if best_of_k:
        best = torch.cat(best_of_k)
        metrics[model_method]["psnr_best_of_k"] = torch.nanmean(best, dim=0).tolist()
        clip_values[model_method]["psnr_best_of_k"] = best.double().numpy()
    means = {
        method: {name: _mean(v) for name, v in by_name.items()}
        for method, by_name in metrics.items()
    }
    fvds: dict[str, float] = {}
    if detector is not None:
        real = torch.cat(feats["truth"])
        fvds = {m: fvd_distance(real, torch.cat(feats[m])) for m in methods}
    videos = torch.cat(clip_videos).numpy()
    pairs = paired_methods(model_method, predictor.baselines_reported, tuple(extras))
    paired = {
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
    below = {
        a: {
            b: {
                name: below_baseline(metrics[a][name], metrics[b][name], HIGHER_IS_BETTER[name])
                for name in COMPARED_WITH_COPY_LAST
            }
            for b in against
        }
        for a, against in pairs.items()
    }

    out = Path(out) if out is not None else _default_out(predictor.checkpoint, run, split)
    result = EvaluationResult(
        run=str(run),
        checkpoint=str(predictor.checkpoint),
        split=split,
        out=out,
        context_frames=context,
        frames=frames,
        samples=samples,
        num_clips=num_clips,
        sampler=predictor.sampler_settings(),
        nfe_per_frame=None if nfe_per_frame is None else float(nfe_per_frame),
        seconds_per_frame=predict_seconds / (num_clips * samples * frames),
        seed=seed,
        metrics=metrics,
        means=means,
        fvd=fvds,
        smoke_threshold=threshold,
        kind=predictor.kind,
        prediction=predictor.describe(samples),
        below_copy_last=below[model_method]["copy_last"],
        blowups=_blowup_report(blown, latent_blown, model_method, sampled, num_clips, samples),
        calibration=None
        if calibration is None
        else _calibration_report(calibration, reference_mae),
        baseline_runs={
            method: {
                "run": str(path),
                "kind": extra.kind,
                "checkpoint": str(extra.checkpoint),
                "sampler": extra.sampler_settings(),
                "prediction": extra.describe(samples),
                "nfe_per_frame": None if extra_nfe[method] is None else float(extra_nfe[method]),
                "seconds_per_frame": extra_seconds[method] / (num_clips * samples * frames),
            }
            for (method, extra), path in zip(extras.items(), baselines, strict=True)
        },
        paired=paired,
        below=below,
        clips=[
            {"clip": i, "video_index": int(v), "video_id": vid, "start": int(s)}
            for i, (v, vid, s) in enumerate(
                zip(videos, clip_ids, torch.cat(clip_starts).tolist(), strict=True)
            )
        ],
        per_clip=clip_values,
    )
    result.files = write_results(result, shown)
    return result


def _blowup_report(
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


def _calibration_report(
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mean(values: list[float]) -> float:
    """Mean over horizons, leaving out NaN horizons (NaN if all are)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def write_results(
    result: EvaluationResult, shown: list[tuple[Tensor, Tensor, Tensor]]
) -> dict[str, Path]:
    """Write metrics.json, per_horizon.csv, per_horizon.png, per_clip.csv,
    paired_per_horizon.csv and samples.png into result.out, and with a calibration (K > 1)
    calibration.csv, calibration_per_horizon.csv and calibration.png."""
    out = result.out
    files = {
        "metrics": out / "metrics.json",
        "csv": out / "per_horizon.csv",
        "plot": out / "per_horizon.png",
    }
    atomic_write_text(
        files["metrics"], json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
    )
    atomic_write_text(files["csv"], _csv_text(result))
    _plot(result, files["plot"])
    if result.per_clip:
        files["per_clip"] = out / "per_clip.csv"
        atomic_write_text(files["per_clip"], _per_clip_text(result))
    if result.paired:
        files["paired"] = out / "paired_per_horizon.csv"
        atomic_write_text(files["paired"], _paired_text(result))
    if result.calibration:
        files["calibration_csv"] = out / "calibration.csv"
        files["calibration_per_horizon_csv"] = out / "calibration_per_horizon.csv"
        files["calibration_plot"] = out / "calibration.png"
        bins, reference = result.calibration["bins"], result.calibration["reference_mae"]
        atomic_write_text(files["calibration_csv"], _table_text(bins))
        per_horizon = result.calibration["per_horizon"]
        rows = [
            {
                "horizon": h + 1,
                **{key: values[h] for key, values in per_horizon.items()},
                **{f"{method}_mae": values[h] for method, values in reference.items()},
            }
            for h in range(result.frames)
        ]
        atomic_write_text(files["calibration_per_horizon_csv"], _table_text(rows))
        o = result.calibration["overall"]
        plot_spread_skill(
            bins,
            per_horizon,
            reference,
            files["calibration_plot"],
            title=(
                f"{result.split}: {result.num_clips} clips × {result.samples} samples; "
                f"spread/skill {_fmt(o['spread_skill'])}, Pearson {_fmt(o['pearson'])}, "
                f"Spearman {_fmt(o['spearman'])}"
            ),
            model=result.kind,
        )
    if shown:
        files["samples"] = out / "samples.png"
        rows, labels = [], []
        for i, (ctx, truth, pred) in enumerate(shown):
            rows += [to_uint8_images(ctx), to_uint8_images(truth), to_uint8_images(pred)]
            labels += [f"{i} context", f"{i} truth", f"{i} {result.kind}"]
        save_image_grid(rows, files["samples"], labels=labels)
    return files


def _csv_text(result: EvaluationResult) -> str:
    """One row per method × horizon; a column per metric (empty where not measured)."""
    names = result.metric_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # NFE per frame: the model's velocity evaluations (empty for a kind without a sampler),
    # 0 for the baselines, which evaluate no model (a baseline run: its own, or empty).
    writer.writerow(["method", "horizon", *names, "nfe_per_frame"])
    for method, by_metric in result.metrics.items():
        if method in result.baseline_runs:  # a trained run: its own sampler's NFE, if any
            run_nfe = result.baseline_runs[method]["nfe_per_frame"]
            nfe = "" if run_nfe is None else repr(float(run_nfe))
        elif method != result.kind:
            nfe = "0"
        else:
            nfe = "" if result.nfe_per_frame is None else repr(float(result.nfe_per_frame))
        for h in range(result.frames):
            cells = [repr(float(by_metric[n][h])) if n in by_metric else "" for n in names]
            writer.writerow([method, h + 1, *cells, nfe])
    return buffer.getvalue()


def _per_clip_text(result: EvaluationResult) -> str:
    """One row per clip × method × horizon: the clip's video, and each metric (the mean
    over the K samples for sampled methods; ``samples`` says how many)."""
    names = [n for n in result.metric_names if n != "intensity_ratio"]  # a ratio of sums
    sampled = {result.kind, *result.baseline_runs}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["clip", "video_index", "video_id", "start", "method", "samples", "horizon"] + names
    )
    for method, by_metric in result.per_clip.items():
        k = result.samples if method in sampled else 1
        for i, clip in enumerate(result.clips):
            for h in range(result.frames):
                cells = [repr(float(by_metric[n][i, h])) if n in by_metric else "" for n in names]
                writer.writerow(
                    [
                        clip["clip"],
                        clip["video_index"],
                        clip["video_id"],
                        clip["start"],
                        method,
                        k,
                        h + 1,
                    ]
                    + cells
                )
    return buffer.getvalue()


def _paired_text(result: EvaluationResult) -> str:
    """One row per pair × metric × horizon (and ``all``: over horizons): the mean paired
    difference and its interval."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "method",
            "baseline",
            "metric",
            "horizon",
            "mean",
            "low",
            "high",
            "clips",
            "videos",
            "level",
        ]
    )
    number = lambda v: repr(float(v)) if math.isfinite(v) else ""  # noqa: E731
    for method, against in result.paired.items():
        for baseline, by_metric in against.items():
            for name, iv in by_metric.items():
                rows = [(h + 1, iv.mean[h], iv.low[h], iv.high[h]) for h in range(len(iv.mean))]
                rows.append(("all", iv.overall_mean, iv.overall_low, iv.overall_high))
                for horizon, mean, low, high in rows:
                    writer.writerow(
                        [
                            method,
                            baseline,
                            name,
                            horizon,
                            number(mean),
                            number(low),
                            number(high),
                            iv.clips,
                            iv.clusters,
                            iv.level,
                        ]
                    )
    return buffer.getvalue()


def _table_text(rows: list[dict[str, Any]]) -> str:
    """CSV of dict rows sharing their keys; floats written exactly (repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if rows:
        writer.writerow(list(rows[0]))
    for row in rows:
        writer.writerow([repr(float(v)) if isinstance(v, float) else v for v in row.values()])
    return buffer.getvalue()


def _plot(result: EvaluationResult, path: Path) -> None:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    names = result.metric_names
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    horizons = list(range(1, result.frames + 1))
    for ax, name in zip(axes.flat, names):
        for method, by_metric in result.metrics.items():
            if name in by_metric:
                ax.plot(horizons, by_metric[name], marker=".", label=method)
        if name in M.ON_TARGET:
            arrow = f"(best at {M.ON_TARGET[name]:g})"
            ax.axhline(M.ON_TARGET[name], color="black", linewidth=0.8, linestyle=":")
        else:
            arrow = "↑" if HIGHER_IS_BETTER.get(name, True) else "↓"
        crossing = result.below_copy_last.get(name, {}).get("from", "never")
        if crossing != "never":  # where the model stays behind copy_last
            ax.axvline(crossing, color="grey", linewidth=0.8, linestyle="--")
            arrow += f"; < copy_last from h={crossing}"
        ax.set_title(f"{name} {arrow}", fontsize=9)
        ax.set_xlabel("horizon (frames ahead)", fontsize=8)
        # Every horizon labelled up to 10; beyond, integer ticks matplotlib spaces out.
        if len(horizons) <= 10:
            ax.set_xticks(horizons)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    cost = "" if result.nfe_per_frame is None else f", {result.nfe_per_frame:g} NFE per frame"
    blown = sum(sum(entry["per_horizon"]) for entry in result.blowups.values())
    warning = f"; BLOW-UP in {blown} frames" if blown else ""
    fig.suptitle(
        f"{result.split}: {result.num_clips} clips, {result.samples} sample(s){cost}{warning}"
    )
    fig.tight_layout()
    save_figure(fig, path)
