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
(alex), smoke PSNR (PSNR inside the true smoke mask) and background hallucination, in
float32 on frames clamped to [-1, 1]. NaN values (an empty smoke mask) are left out of
the means. With K > 1 also the best-of-K PSNR: per clip, the sample with the highest
PSNR averaged over horizons, at each horizon. With an I3D file also FVD on the whole
clips (context + future) of each method against the true clips.

Writes ``metrics.json``, ``per_horizon.csv``, ``per_horizon.png`` and ``samples.png``
into ``out`` (default ``RUN/eval/<split>/``), each atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Callable
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
from framecast.data.dataset import ClipDataset, split_dir
from framecast.errors import CheckpointError, ConfigError, DataError
from framecast.eval import metrics as M
from framecast.eval.plots import pyplot, save_figure, save_image_grid, to_uint8_images
from framecast.flow.pipeline import RiverPipeline, load_river
from framecast.flow.sampling import SamplerConfig
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
    "temporal_mse",
)
"""Per-horizon metrics of every method (``psnr_best_of_k`` is added for the model, K > 1)."""
HIGHER_IS_BETTER = {
    "mse": False,
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "smoke_psnr": True,
    "background_hallucination": False,
    "temporal_mse": False,
    "psnr_best_of_k": True,
}
DEFAULT_SAMPLER = SamplerConfig(solver=SolverConfig(method="euler", steps=10))
SAMPLE_CLIPS = 4  # clips shown in samples.png
SUPPORTED_KINDS = ("river", "vaegan")
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

    def __init__(self, pipeline: RiverPipeline, sampler: SamplerConfig):
        assert pipeline.config is not None and pipeline.checkpoint is not None  # load_river
        self.pipeline = pipeline
        self.sampler = sampler
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
        prediction = self.pipeline.predict(
            context, frames, self.sampler, samples=samples, generator=generator, progress=progress
        )
        return prediction.frames, prediction.nfe_per_frame

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
    """The :class:`Predictor` of a river or vaegan run (``sampler`` is used by river only).

    Raises :class:`CheckpointError` for a missing checkpoint or one of another kind.
    """
    kind = checkpoint_kind(run, which)
    if kind == "river":
        return RiverPredictor(load_river(run, which=which, device=device), sampler)
    if kind == "vaegan":
        return VAEGANPredictor(load_vaegan(run, which=which, device=device))
    raise CheckpointError(
        f"checkpoint {resolve_checkpoint(run, which)} holds a {kind!r} model; "
        f"expected one of {', '.join(repr(k) for k in SUPPORTED_KINDS)}"
    )


METHODS = (RiverPredictor.kind, *RiverPredictor.baselines_reported)
"""Methods of a river run in the order they are reported: the model, then the baselines."""


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
        ]
        if self.files:
            lines.append(f"results in {self.out}:")
            lines += [f"  {path}" for path in self.files.values()]
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def _json_number(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


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
        "smoke_psnr": lambda p, t: M.masked_psnr(p, t, M.smoke_mask(t, threshold)),
        "background_hallucination": lambda p, t: M.background_hallucination(
            p, t, threshold, threshold
        ),
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
) -> EvaluationResult:
    """Evaluate the river or vaegan run ``run`` on ``split`` of the dataset at ``data_root``.

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

    Raises :class:`CheckpointError` for a missing checkpoint or one of another kind,
    :class:`ConfigError` for frame counts a vaegan run was not trained with, and
    :class:`DataError` for a missing split or videos too short for one clip.
    """
    from framecast.eval.fvd import fvd as fvd_distance
    from framecast.eval.fvd import i3d_features, load_i3d
    from framecast.eval.lpips import load_stlpips

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 or None, got {max_clips}")
    device = torch.device(device)
    predictor = load_predictor(run, which=which, device=device, sampler=sampler)
    config = predictor.config
    context, frames = predictor.frame_counts(context, frames)
    if context < 1 or frames < 1:
        raise ValueError(f"context and frames must be >= 1, got {context} and {frames}")
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
    model_method, methods = predictor.kind, predictor.methods
    names = [*fns, "temporal_mse"]
    values: dict[str, dict[str, list[Tensor]]] = {m: {k: [] for k in names} for m in methods}
    best_of_k: list[Tensor] = []
    feats: dict[str, list[Tensor]] = {m: [] for m in ("truth", *methods)}
    shown: list[tuple[Tensor, Tensor, Tensor]] = []
    predict_seconds = 0.0
    nfe_per_frame: float | None = None

    for batch in tqdm(loader, desc=f"evaluate {split}", disable=not progress, unit="batch"):
        clip = batch["frames"].to(device)
        ctx, truth = clip[:, :context], clip[:, context:]
        b = clip.shape[0]
        _sync(device)
        start = time.perf_counter()
        pred, nfe_per_frame = predictor.predict(ctx, frames, samples, generator)
        _sync(device)
        predict_seconds += time.perf_counter() - start
        pred = pred.float().clamp(-1, 1)  # (B, K, F, 3, H, W)

        truth_k = truth[:, None].expand_as(pred)
        predicted = _measure(fns, pred.flatten(0, 1), truth_k.flatten(0, 1))  # (B·K, F)
        for name, v in predicted.items():
            values[model_method][name].append(v)
        last = ctx[:, -1].float().clamp(-1, 1)  # (B, C, H, W): where the first change starts
        values[model_method]["temporal_mse"].append(
            M.temporal_difference_error(
                pred.flatten(0, 1),
                truth_k.flatten(0, 1).float().clamp(-1, 1),
                last[:, None].expand(-1, samples, -1, -1, -1).flatten(0, 1),
            ).cpu()
        )
        if samples > 1:
            psnr_k = predicted["psnr"].reshape(b, samples, frames)
            best = psnr_k.mean(dim=2).argmax(dim=1)  # (B,)
            best_of_k.append(psnr_k[torch.arange(b), best])
        baselines = {m: g.float().clamp(-1, 1) for m, g in predictor.baselines(ctx, truth).items()}
        for method, guess in baselines.items():
            for name, v in _measure(fns, guess, truth).items():
                values[method][name].append(v)
            values[method]["temporal_mse"].append(
                M.temporal_difference_error(guess, truth.float().clamp(-1, 1), last).cpu()
            )

        if detector is not None:
            feats["truth"].append(i3d_features(detector, clip, batch_size))
            ctx_k = ctx[:, None].expand(-1, samples, -1, -1, -1, -1)
            model_clips = torch.cat([ctx_k, pred.to(ctx.dtype)], dim=2).flatten(0, 1)
            feats[model_method].append(i3d_features(detector, model_clips, batch_size))
            for method, guess in baselines.items():
                video = torch.cat([ctx, guess.to(ctx.dtype)], dim=1)
                feats[method].append(i3d_features(detector, video, batch_size))
        for i in range(min(b, SAMPLE_CLIPS - len(shown))):
            shown.append((ctx[i].cpu(), truth[i].cpu(), pred[i, 0].cpu()))

    metrics: dict[str, dict[str, list[float]]] = {}
    for method, by_name in values.items():
        metrics[method] = {
            name: torch.nanmean(torch.cat(v), dim=0).tolist() for name, v in by_name.items()
        }
    if best_of_k:
        metrics[model_method]["psnr_best_of_k"] = torch.nanmean(
            torch.cat(best_of_k), dim=0
        ).tolist()
    means = {
        method: {name: _mean(v) for name, v in by_name.items()}
        for method, by_name in metrics.items()
    }
    fvds: dict[str, float] = {}
    if detector is not None:
        real = torch.cat(feats["truth"])
        fvds = {m: fvd_distance(real, torch.cat(feats[m])) for m in methods}

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
    )
    result.files = write_results(result, shown)
    return result


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
    """Write metrics.json, per_horizon.csv, per_horizon.png and samples.png into result.out."""
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
    # 0 for the baselines, which evaluate no model.
    writer.writerow(["method", "horizon", *names, "nfe_per_frame"])
    for method, by_metric in result.metrics.items():
        if method != result.kind:
            nfe = "0"
        else:
            nfe = "" if result.nfe_per_frame is None else repr(float(result.nfe_per_frame))
        for h in range(result.frames):
            cells = [repr(float(by_metric[n][h])) if n in by_metric else "" for n in names]
            writer.writerow([method, h + 1, *cells, nfe])
    return buffer.getvalue()


def _plot(result: EvaluationResult, path: Path) -> None:
    plt = pyplot()
    names = result.metric_names
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    horizons = list(range(1, result.frames + 1))
    for ax, name in zip(axes.flat, names):
        for method, by_metric in result.metrics.items():
            if name in by_metric:
                ax.plot(horizons, by_metric[name], marker=".", label=method)
        arrow = "↑" if HIGHER_IS_BETTER.get(name, True) else "↓"
        ax.set_title(f"{name} {arrow}", fontsize=9)
        ax.set_xlabel("horizon (frames ahead)", fontsize=8)
        ax.set_xticks(horizons)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    cost = "" if result.nfe_per_frame is None else f", {result.nfe_per_frame:g} NFE per frame"
    fig.suptitle(f"{result.split}: {result.num_clips} clips, {result.samples} sample(s){cost}")
    fig.tight_layout()
    save_figure(fig, path)
