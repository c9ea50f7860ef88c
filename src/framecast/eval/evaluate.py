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

This module runs the loop; the parts live by purpose in :mod:`~framecast.eval.predictors`
(runs of each kind, ``--baseline`` runs), :mod:`~framecast.eval.scoring` (metrics per horizon
and clip, paired intervals, calibration), :mod:`~framecast.eval.result` (the result and its
summary) and :mod:`~framecast.eval.report` (the files).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from framecast.data.dataset import ClipDataset, check_frame_size, split_dir
from framecast.errors import DataError
from framecast.eval.calibration import SpreadScale
from framecast.eval.metrics import SMOKE_BRIGHTNESS
from framecast.eval.predictors import (  # noqa: F401  (re-exported: the public names)
    DEFAULT_SAMPLER,
    SUPPORTED_KINDS,
    Predictor,
    ProgressFn,
    RiverPredictor,
    VAEGANPredictor,
    checkpoint_kind,
    load_baseline_runs,
    load_predictor,
    run_dir,
)
from framecast.eval.report import write_results
from framecast.eval.result import (  # noqa: F401  (re-exported)
    COMPARED_WITH_COPY_LAST,
    HIGHER_IS_BETTER,
    METRICS,
    PAIRED_BOOTSTRAPS,
    PAIRED_LEVEL,
    PAIRED_METRICS,
    EvaluationResult,
    mean_over_horizons,
    paired_text,
)
from framecast.eval.scoring import (  # noqa: F401  (below_baseline, paired_methods re-exported)
    EnsembleCalibration,
    HorizonScores,
    below_baseline,
    below_table,
    blowup_report,
    frame_metrics,
    paired_intervals,
    paired_methods,
)
from framecast.flow.sampling import SamplerConfig

METHODS = (RiverPredictor.kind, *RiverPredictor.baselines_reported)
"""Methods of a river run in the order they are reported: the model, then the baselines."""
SAMPLE_CLIPS = 4  # clips shown in samples.png


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
    smoke_brightness: float = SMOKE_BRIGHTNESS,
    baselines: Sequence[str | os.PathLike] = (),
    n_boot: int = PAIRED_BOOTSTRAPS,
    spread_scale: SpreadScale | str | os.PathLike | None = None,
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
        smoke_brightness: frame-space smoke: mean brightness on [0, 1] above this, for
            smoke_psnr and background_hallucination. (``training.smoke_threshold`` is a
            latent-norm threshold and means something else.)
        baselines: other trained runs (directories or checkpoints, any kind
            :func:`load_predictor` reads; ``which`` picks their checkpoint too) scored on
            the same clips as extra baseline rows (``--baseline``): K samples each, with
            their own generator seeded with ``seed``.
        n_boot: bootstrap draws of the paired intervals.
        spread_scale: a post-hoc spread calibration (:mod:`~framecast.eval.calibration`,
            ``framecast calibrate``; a SpreadScale, its JSON file or the run holding one),
            fitted on another split: the calibration block then also scores the inflated
            ensemble, with paired CRPS intervals (inflated − raw). Needs K >= 2.

    Raises :class:`CheckpointError` for a missing checkpoint or one of another kind,
    :class:`ConfigError` for frame counts a vaegan run was not trained with or a baseline
    run that cannot be scored on the same clips, and :class:`DataError` for a missing
    split or videos too short for one clip.
    """
    from framecast.eval.fvd import load_i3d

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 or None, got {max_clips}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if spread_scale is not None and samples < 2:
        raise ValueError(f"a spread scale calibrates K >= 2 samples, got samples={samples}")
    device = torch.device(device)
    predictor = load_predictor(run, which=which, device=device, sampler=sampler)
    if spread_scale is not None and not isinstance(spread_scale, SpreadScale):
        spread_scale = SpreadScale.load(spread_scale)
    if spread_scale is not None:
        spread_scale.check_matches(str(predictor.checkpoint), predictor.sampler_settings())
    config = predictor.config
    context, frames = predictor.frame_counts(context, frames)
    if context < 1 or frames < 1:
        raise ValueError(f"context and frames must be >= 1, got {context} and {frames}")
    extras = load_baseline_runs(baselines, predictor, context, frames, which, device, sampler)
    batch_size = batch_size or config.data.eval_batch_size or config.data.batch_size
    dataset = evaluation_clips(
        predictor, run, data_root, split, context + frames, clips_per_video, max_clips
    )
    detector = load_i3d(i3d, device) if i3d is not None else None
    if detector is not None and len(dataset) < 2:
        raise DataError(f"FVD needs at least 2 clips; split {split!r} gives {len(dataset)}")

    loop = _EvaluationLoop(
        predictor,
        extras,
        context,
        frames,
        samples,
        seed,
        device,
        smoke_brightness,
        detector,
        spread_scale,
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    loop.start()
    for batch in tqdm(loader, desc=f"evaluate {split}", disable=not progress, unit="batch"):
        loop.add_batch(batch, batch_size)

    out = Path(out) if out is not None else _default_out(predictor.checkpoint, run, split)
    result = loop.result(run, split, out, baselines, n_boot)
    result.files = write_results(result, loop.shown)
    return result


def _default_out(checkpoint: Path, run: str | os.PathLike, split: str) -> Path:
    """``RUN/eval/<split>``: the run directory given, or the one the checkpoint is in."""
    return (Path(run) if Path(run).is_dir() else run_dir(checkpoint)) / "eval" / split


def evaluation_clips(
    predictor: Predictor,
    run: str | os.PathLike,
    data_root: str | os.PathLike,
    split: str,
    num_frames: int,
    clips_per_video: int | None,
    max_clips: int | None,
) -> ClipDataset | Subset:
    """The evaluation clips of ``split``: fixed, evenly spaced starts, the run's frame
    stride, size and channels; the first ``max_clips`` only where given."""
    config = predictor.config
    dataset = ClipDataset(
        split_dir(data_root, split),
        num_frames=num_frames,
        frame_stride=config.data.frame_stride,
        image_size=predictor.image_size,
        train=False,
        clips_per_video=clips_per_video or config.data.eval_clips_per_video,
        channels=config.data.channels,  # a greyscale run reads the frames' luma
    )
    check_frame_size(  # 128×128 frames into a 64×64 model: refused unless trained so
        dataset.videos, predictor.image_size, data_root, f"the run {run}", config.data.root
    )
    if max_clips is not None and max_clips < len(dataset):
        return Subset(dataset, range(max_clips))
    return dataset


class _EvaluationLoop:
    """One evaluation, batch by batch: the model's K samples, the baseline runs' K
    samples and the model's own baselines, scored on the same clips and timed."""

    def __init__(
        self,
        predictor: Predictor,
        extras: dict[str, Predictor],
        context: int,
        frames: int,
        samples: int,
        seed: int,
        device: torch.device,
        smoke_brightness: float,
        detector: Any | None,
        spread_scale: SpreadScale | None = None,
    ):
        from framecast.eval.lpips import load_stlpips

        self.predictor, self.extras = predictor, extras
        self.context, self.frames, self.samples = context, frames, samples
        self.seed, self.device, self.smoke_brightness = seed, device, smoke_brightness
        self.model = predictor.kind
        self.methods = (*predictor.methods, *extras)
        lpips_net = load_stlpips("alex", device)
        fns = frame_metrics(smoke_brightness, lambda p, t: lpips_net(p, t).float())
        self.scores = HorizonScores(self.methods, self.model, fns, frames)
        self.calibration = (
            EnsembleCalibration(frames, samples, seed, predictor.baselines_reported, spread_scale)
            if samples > 1
            else None
        )
        self.fvd = _FVDFeatures(detector, ("truth", *self.methods)) if detector else None
        # Each predictor draws from a generator of its own, seeded alike: the model's
        # predictions do not depend on which baselines are scored beside it, and a baseline
        # run scores here as it does evaluated alone (same seed and batch size).
        self.generators = {
            m: torch.Generator(device="cpu").manual_seed(seed) for m in (self.model, *extras)
        }
        self.seconds = dict.fromkeys((self.model, *extras), 0.0)
        self.nfe: dict[str, float | None] = dict.fromkeys((self.model, *extras))
        self.clips: list[dict[str, Any]] = []
        self.shown: list[tuple[Tensor, Tensor, Tensor]] = []  # for samples.png

    def start(self) -> None:
        for predictor in (self.predictor, *self.extras.values()):
            predictor.start()

    def _predict(self, method: str, predictor: Predictor, context: Tensor) -> Tensor:
        """(B, K, F, C, H, W) predictions of ``predictor``, timed and its NFE kept."""
        _sync(self.device)
        start = time.perf_counter()
        pred, self.nfe[method] = predictor.predict(
            context, self.frames, self.samples, self.generators[method]
        )
        _sync(self.device)
        self.seconds[method] += time.perf_counter() - start
        return pred

    def add_batch(self, batch: dict[str, Any], batch_size: int) -> None:
        """Predict and score one batch of clips (B, T0 + F, C, H, W)."""
        clip = batch["frames"].to(self.device)
        ctx, truth = clip[:, : self.context], clip[:, self.context :]
        b = clip.shape[0]
        for video, video_id, start in zip(
            torch.as_tensor(batch["video_index"]).reshape(b).tolist(),
            batch["video_id"],
            torch.as_tensor(batch["start"]).reshape(b).tolist(),
            strict=True,
        ):
            self.clips.append(
                {
                    "clip": len(self.clips),
                    "video_index": video,
                    "video_id": video_id,
                    "start": start,
                }
            )
        last = ctx[:, -1].float().clamp(-1, 1)  # (B, C, H, W): where the first change starts

        # (B, K, F, C, H, W): checked for blow-ups before clamping, then made finite.
        pred = self._predict(self.model, self.predictor, ctx)
        if self.predictor.latents is not None:
            self.scores.add_latents(self.predictor.latents)
        pred = self.scores.add_sampled(self.model, pred, truth, last)
        if self.calibration is not None:
            self.calibration.add_samples(pred, truth)
        sampled = {self.model: pred}
        for method, extra in self.extras.items():
            guess = self._predict(method, extra, ctx)
            sampled[method] = self.scores.add_sampled(method, guess, truth, last)

        single = {
            method: self.scores.add_single(method, guess, truth, last)
            for method, guess in self.predictor.baselines(ctx, truth).items()
        }
        if self.calibration is not None:
            for method, guess in single.items():
                self.calibration.add_baseline(method, guess, truth)
        if self.fvd is not None:
            self.fvd.add(ctx, truth, sampled, single, batch_size)
        for i in range(min(b, SAMPLE_CLIPS - len(self.shown))):
            self.shown.append((ctx[i].cpu(), truth[i].cpu(), pred[i, 0].cpu()))

    def result(
        self,
        run: str | os.PathLike,
        split: str,
        out: Path,
        baselines: Sequence[str | os.PathLike],
        n_boot: int,
    ) -> EvaluationResult:
        """Means, paired intervals, blow-up and calibration reports of every batch seen."""
        metrics = self.scores.per_horizon()
        clip_values = self.scores.clip_values()
        pairs = paired_methods(self.model, self.predictor.baselines_reported, tuple(self.extras))
        videos = np.asarray([c["video_index"] for c in self.clips])
        below = below_table(metrics, pairs)
        predicted_frames = len(self.clips) * self.samples * self.frames
        nfe = self.nfe[self.model]
        return EvaluationResult(
            run=str(run),
            checkpoint=str(self.predictor.checkpoint),
            split=split,
            out=out,
            context_frames=self.context,
            frames=self.frames,
            samples=self.samples,
            num_clips=len(self.clips),
            sampler=self.predictor.sampler_settings(),
            nfe_per_frame=None if nfe is None else float(nfe),
            seconds_per_frame=self.seconds[self.model] / predicted_frames,
            seed=self.seed,
            metrics=metrics,
            means={
                method: {name: mean_over_horizons(v) for name, v in by.items()}
                for method, by in metrics.items()
            },
            fvd=self.fvd.distances() if self.fvd is not None else {},
            smoke_brightness=self.smoke_brightness,
            kind=self.model,
            prediction=self.predictor.describe(self.samples),
            below_copy_last=below[self.model]["copy_last"],
            blowups=blowup_report(
                self.scores.blown,
                self.scores.latent_blown,
                self.model,
                (self.model, *self.extras),
                len(self.clips),
                self.samples,
            ),
            calibration=(
                None
                if self.calibration is None
                else self.calibration.report(videos, n_boot, self.seed)
            ),
            calibration_per_clip=(
                {} if self.calibration is None else self.calibration.clip_values()
            ),
            baseline_runs={
                method: {
                    "run": str(path),
                    "kind": extra.kind,
                    "checkpoint": str(extra.checkpoint),
                    "sampler": extra.sampler_settings(),
                    "prediction": extra.describe(self.samples),
                    "nfe_per_frame": None if self.nfe[method] is None else float(self.nfe[method]),
                    "seconds_per_frame": self.seconds[method] / predicted_frames,
                }
                for (method, extra), path in zip(self.extras.items(), baselines, strict=True)
            },
            paired=paired_intervals(clip_values, videos, pairs, n_boot, self.seed),
            below=below,
            clips=self.clips,
            per_clip=clip_values,
        )


class _FVDFeatures:
    """I3D features of the true clips and of each method's clips (context + prediction)."""

    def __init__(self, detector: Any, names: Sequence[str]):
        self.detector = detector
        self.features: dict[str, list[Tensor]] = {name: [] for name in names}

    def add(
        self,
        context: Tensor,
        truth: Tensor,
        sampled: dict[str, Tensor],
        single: dict[str, Tensor],
        batch_size: int,
    ) -> None:
        """``sampled``: method -> (B, K, F, C, H, W); ``single``: method -> (B, F, C, H, W)."""
        from framecast.eval.fvd import i3d_features

        def features(clips: Tensor) -> Tensor:
            return i3d_features(self.detector, clips, batch_size)

        for method, pred in sampled.items():
            ctx_k = context[:, None].expand(-1, pred.shape[1], -1, -1, -1, -1)
            self.features[method].append(
                features(torch.cat([ctx_k, pred.to(context.dtype)], dim=2).flatten(0, 1))
            )
        self.features["truth"].append(features(torch.cat([context, truth], dim=1)))
        for method, guess in single.items():
            self.features[method].append(
                features(torch.cat([context, guess.to(context.dtype)], dim=1))
            )

    def distances(self) -> dict[str, float]:
        """method -> FVD of its clips against the true clips."""
        from framecast.eval.fvd import fvd

        real = torch.cat(self.features["truth"])
        return {m: fvd(real, torch.cat(f)) for m, f in self.features.items() if m != "truth"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
