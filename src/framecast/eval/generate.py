"""``framecast generate``: predict the future of one video with a trained river, vaegan or simvp run.

The input is a video file, a frame folder, or a folder or shard holding several videos
(``video`` picks one by index or id). The first ``context`` frames are the observed
context; the frames after them, up to ``frames``, are the ground truth when the video
has them. Writes:

- the animation at ``out`` (.gif or .mp4): the context frames, then the predicted ones;
  with ground truth, truth and prediction side by side; with K samples, the K futures
  side by side (the truth column first, black after the truth runs out);
- a PNG strip ``<stem>_strip.png`` beside it, rows: context | prediction (one row per
  sample) | ground truth (when known).

Sampling is seeded with a CPU generator: the same seed gives the same frames. A vaegan run
predicts exactly the frames it was trained for from exactly its trained context, in one
forward pass (the posterior mean, or K posterior draws); sampler options do not apply.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from framecast.data.dataset import frames_to_tensor
from framecast.data.sources import (
    VideoSource,
    center_crop_resize,
    natural_key,
    open_candidate,
    open_shard,
    scan_tree,
)
from framecast.errors import ConfigError, DataError
from framecast.eval.plots import save_image_grid, to_uint8_images
from framecast.eval.predictors import load_predictor
from framecast.eval.video import check_video_path, tile_videos, write_video
from framecast.flow.sampling import SamplerConfig


@dataclass
class GenerateResult:
    """What :func:`generate` wrote and what it cost.

    Attributes:
        out: the animation (.gif or .mp4).
        strip: the PNG strip beside it.
        source: the input path.
        video_id: the id of the video used (within ``source``).
        context: context frames taken from the video.
        ground_truth: future frames the video had to compare with (0..frames).
        predicted: (K, F, H, W, 3) uint8 predicted frames.
        nfe_per_frame: velocity evaluations per predicted frame (None for vaegan, which
            predicts every frame in one forward pass).
        seconds: wall time of encoding, sampling and decoding.
        sampler: the sampler's steps and their meaning (None for vaegan).
    """

    out: Path
    strip: Path
    source: Path
    video_id: str
    context: int
    ground_truth: int
    predicted: np.ndarray
    nfe_per_frame: float | None
    seconds: float
    sampler: str | None = None

    @property
    def samples(self) -> int:
        return self.predicted.shape[0]

    @property
    def frames(self) -> int:
        return self.predicted.shape[1]

    def format(self) -> str:
        per_frame = self.seconds / max(1, self.frames * self.samples)
        samples = f" x {self.samples} samples" if self.samples > 1 else ""
        truth = f", {self.ground_truth} ground-truth frames" if self.ground_truth else ""
        cost = (
            "one forward pass"
            if self.nfe_per_frame is None
            else f"{self.nfe_per_frame:.4g} NFE per frame"
            + (f" (sampler: {self.sampler})" if self.sampler else "")
        )
        return (
            f"video {self.video_id!r} of {self.source}: {self.context} context frames{truth}\n"
            f"predicted {self.frames} frames{samples}: {cost}, "
            f"{self.seconds:.2f} s ({per_frame:.3f} s per frame)\n"
            f"animation: {self.out}\nstrip: {self.strip}"
        )


def strip_path(out: str | os.PathLike) -> Path:
    """The PNG strip written beside the animation ``out``: ``<stem>_strip.png``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_strip.png")


def _candidates(source: Path) -> list[tuple[str, object]]:
    """(id, opener) of every video under ``source``, in natural order of ids, nothing decoded."""
    scan = scan_tree(source, strict=False)
    found: list[tuple[str, object]] = []
    for candidate in scan.candidates:
        if candidate.kind == "shard":
            found += [(video.id, video) for video in open_shard(candidate.path, candidate.rel)]
        else:
            found.append((candidate.rel, candidate))
    if not found:
        raise DataError(
            f"{source}: no video found (expected a video file, a frame folder, "
            "or a folder or shard of videos)"
        )
    return sorted(found, key=lambda item: natural_key(item[0]))


def select_video(source: str | os.PathLike, video: int | str | None = None) -> VideoSource:
    """The video of ``source`` to generate from: the first, or ``video`` by index or id.

    An id may be given whole (``part-00000.fcshard:clip_3``) or, when unambiguous, by
    its last part (``clip_3``). Only the chosen video is opened (decoded for a file).
    """
    source = Path(source)
    found = _candidates(source)
    ids = [video_id for video_id, _ in found]
    if video is None:
        index = 0
    elif isinstance(video, int) or (str(video).isdigit() and str(video) not in ids):
        index = int(video)
        if not 0 <= index < len(found):
            raise DataError(
                f"{source}: video index {index} out of range; it holds {len(found)} video(s) "
                f"(indices 0..{len(found) - 1})"
            )
    else:
        matches = [i for i, v in enumerate(ids) if v == video]
        if not matches:
            matches = [i for i, v in enumerate(ids) if v.rsplit(":", 1)[-1] == video]
        if len(matches) != 1:
            shown = ", ".join(repr(v) for v in ids[:8]) + (" ..." if len(ids) > 8 else "")
            what = "is ambiguous" if matches else "not found"
            raise DataError(f"{source}: video {video!r} {what}; videos: {shown}")
        index = matches[0]
    opener = found[index][1]
    if isinstance(opener, VideoSource):
        return opener
    (opened,) = open_candidate(opener)
    return opened


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@torch.no_grad()
def generate(
    run: str | os.PathLike,
    input: str | os.PathLike,
    out: str | os.PathLike,
    context: int | None = None,
    frames: int | None = None,
    sampler: SamplerConfig = SamplerConfig(),
    samples: int = 1,
    video: int | str | None = None,
    seed: int = 0,
    fps: float = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
    which: str = "best",
) -> GenerateResult:
    """Predict ``frames`` future frames of a video from its first ``context`` frames.

    Args:
        run: a river, vaegan or simvp run directory or checkpoint.
        input: a video file, frame folder, or folder/shard of several videos.
        out: the animation to write (.gif or .mp4); the strip goes to :func:`strip_path`.
        context: observed frames (default: the run's ``training.condition_frames``; a
            vaegan run accepts only that value).
        frames: frames to predict (default: the run's ``training.frames_to_generate``; a
            vaegan run accepts only that value).
        sampler: ODE solver, steps and warm start (river only; ignored for vaegan).
        samples: K stochastic futures, shown side by side (vaegan: K = 1 decodes the
            posterior mean, K > 1 posterior draws).
        video: which video of a multi-video input (index or id; default the first).
        seed: seeds the sampling noise and context draws.
        fps: animation frame rate.
        device: torch device to sample on.
        progress: show a progress bar over predicted frames.
        which: checkpoint of the run (``best`` or ``last``).

    Frames are read at the run's ``data.frame_stride`` and centre-cropped and resized to
    its image size. Raises :class:`ConfigError` (bad suffix or counts), :class:`DataError`
    (unreadable input, a video shorter than ``context``) or :class:`CheckpointError` (not
    a river, vaegan or simvp run).
    """
    out = check_video_path(out)
    samples = _positive("samples", samples)
    predictor = load_predictor(run, which=which, device=device, sampler=sampler)
    config = predictor.config
    context, frames = predictor.frame_counts(context, frames)
    context, frames = _positive("context", context), _positive("frames", frames)
    stride = config.data.frame_stride

    source = select_video(input, video)
    available = (source.num_frames + stride - 1) // stride  # frames at the run's stride
    if available < context:
        every = f" (every {stride}th frame)" if stride > 1 else ""
        raise DataError(
            f"{source.path}: video {source.id!r} has {available} frames{every}; "
            f"generating needs at least {context} context frames"
        )
    stop = min(source.num_frames, (context + frames - 1) * stride + 1)
    clip = center_crop_resize(source.read(0, stop, stride), predictor.image_size)
    channels = config.data.channels  # a greyscale run sees (and shows) the frames' luma
    observed = frames_to_tensor(clip[:context], channels)  # (T0, C, H, W) in [-1, 1]
    shown = to_uint8_images(frames_to_tensor(clip, channels))  # what the model saw, as RGB
    context_u8, truth_u8 = shown[:context], shown[context : context + frames]

    generator = torch.Generator().manual_seed(seed)
    predictor.start()
    bar = tqdm(total=frames, desc="generate", unit="frame", disable=not progress)
    start = time.perf_counter()
    try:
        futures, nfe_per_frame = predictor.predict(
            observed[None], frames, samples, generator, progress=lambda _: bar.update(1)
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    predicted = np.stack([to_uint8_images(sample) for sample in futures[0]])

    strip = strip_path(out)
    _write_outputs(context_u8, truth_u8, predicted, out, strip, fps)
    return GenerateResult(
        out=out,
        strip=strip,
        source=Path(input),
        video_id=source.id,
        context=context,
        ground_truth=len(truth_u8),
        predicted=predicted,
        nfe_per_frame=nfe_per_frame,
        seconds=seconds,
        sampler=None if nfe_per_frame is None else predictor.sampler.describe(),
    )


def _write_outputs(
    context: np.ndarray,
    truth: np.ndarray,
    predicted: np.ndarray,
    out: Path,
    strip: Path,
    fps: float,
) -> None:
    """The animation (truth column, then one column per sample) and the PNG strip."""
    num_samples, num_frames = predicted.shape[:2]
    names = ["predicted"] if num_samples == 1 else [f"sample {k + 1}" for k in range(num_samples)]
    columns = [np.concatenate([context, sample]) for sample in predicted]
    labels = list(names)
    if len(truth):
        missing = np.zeros((num_frames - len(truth), *truth.shape[1:]), dtype=np.uint8)
        columns.insert(0, np.concatenate([context, truth, missing]))
        labels.insert(0, "truth")
    animation = tile_videos(columns, labels=labels if len(columns) > 1 else None)
    write_video(animation, out, fps=fps)

    rows = [context, *predicted]
    row_labels = ["context", *names]
    if len(truth):
        rows.append(truth)
        row_labels.append("truth")
    save_image_grid(rows, strip, labels=row_labels)
