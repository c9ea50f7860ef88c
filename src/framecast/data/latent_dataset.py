"""Clips of cached latents (stage 2 trains on these instead of frames).

The latent cache (``framecast encode``, see :mod:`framecast.data.latent_cache`) holds per
split one shard of (T, C, h, w) float32 normalised latents, with the video ids of the frame
dataset. :class:`LatentClipDataset` cuts clips from it exactly as :class:`ClipDataset` cuts
frame clips (same start rule, same metadata), so a latent clip and its frames line up.
Items:

- ``latents``: float32 (T, C, h, w)
- ``video_id``: str, ``start``: int, ``video_index``: int
- ``label``: int, only when every video's meta has an integer ``label``
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from framecast.config.schema import DataConfig, TrainingConfig
from framecast.data.dataset import (
    all_have_labels,
    clip_span,
    clip_start,
    loader_for,
    worker_rng,
)
from framecast.data.latent_cache import CACHE_DIR
from framecast.data.shard import ShardReader
from framecast.errors import DataError

LATENT_SHARD = "part-00000.fcshard"


def latent_shard_path(data_root: str | os.PathLike, split: str) -> Path:
    """``DATA/latents/<split>/part-00000.fcshard``; :class:`DataError` if it is missing."""
    path = Path(data_root) / CACHE_DIR / split / LATENT_SHARD
    if not path.is_file():
        raise DataError(
            f"{path}: no latent cache for split {split!r} "
            f"(run `framecast encode --autoencoder RUN --data {data_root}`)"
        )
    return path


class LatentClipDataset(Dataset):
    """Clips of ``num_frames`` latents, every ``frame_stride``-th, from one cached split.

    Args:
        shard_path: the split's latent shard.
        num_frames, frame_stride, train, clips_per_video, seed: as for ``ClipDataset``.
    """

    def __init__(
        self,
        shard_path: str | os.PathLike,
        num_frames: int,
        frame_stride: int = 1,
        train: bool = True,
        clips_per_video: int = 1,
        seed: int = 0,
    ):
        self.span = clip_span(num_frames, frame_stride, clips_per_video)
        self.reader = ShardReader(shard_path)
        if self.reader.dtype != np.float32 or len(self.reader.frame_shape) != 3:
            raise DataError(
                f"{shard_path}: holds {self.reader.dtype} frames of shape "
                f"{self.reader.frame_shape}; expected float32 latents (C, h, w)"
            )
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.train = train
        self.clips_per_video = clips_per_video
        self.seed = seed
        short = [v for v in self.reader.videos if v.num_frames < self.span]
        if short:
            raise DataError(
                f"{shard_path}: video {short[0].id!r} has {short[0].num_frames} latents, too short "
                f"for a clip of {num_frames} at stride {frame_stride} (needs {self.span})"
            )
        # The cache stores each video under its id in the frame dataset.
        self.video_ids = [v.id for v in self.reader.videos]
        labels = [v.meta.get("label") for v in self.reader.videos]
        self.has_labels = all_have_labels(labels)
        self._rng_cache: dict = {}

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent."""
        return tuple(self.reader.frame_shape)

    def __len__(self) -> int:
        return len(self.reader) * self.clips_per_video

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        draw = None
        if isinstance(index, tuple):  # (index, draw) from a ResumableSampler
            index, draw = index
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        video_index = index // self.clips_per_video
        entry = self.reader.videos[video_index]
        if draw is not None and self.train:
            # As in ClipDataset: the start follows from the sampler's draw alone, so a resumed
            # run and any worker layout read the same clips.
            rng = np.random.default_rng([self.seed, draw])
            start = clip_start(entry.num_frames - self.span, 0, 1, rng)
        else:
            start = clip_start(
                entry.num_frames - self.span,
                index % self.clips_per_video,
                self.clips_per_video,
                worker_rng(self.seed, self._rng_cache) if self.train else None,
            )
        latents = self.reader.read(video_index, start, start + self.span, self.frame_stride)
        item: dict[str, Any] = {
            "latents": torch.from_numpy(latents),
            "video_id": self.video_ids[video_index],
            "start": start,
            "video_index": video_index,
        }
        if self.has_labels:
            item["label"] = int(entry.meta["label"])
        return item

    def __repr__(self) -> str:
        return (
            f"LatentClipDataset({str(self.reader.path)!r}, {len(self.reader)} videos, "
            f"{len(self)} clips of {self.num_frames} latents {self.latent_shape})"
        )


def make_latent_dataloader(
    data_root: str | os.PathLike,
    split: str,
    data_config: DataConfig,
    training_config: TrainingConfig,
    train: bool,
    num_frames: int | None = None,
    position: tuple[int, int] | None = None,
) -> DataLoader:
    """DataLoader of latent clips of ``num_frames`` (default ``training.num_observations``);
    ``position`` (epoch, batches done) makes the training order resumable (see
    :func:`framecast.data.dataset.loader_for`)."""
    path = latent_shard_path(data_root, split)
    dataset = LatentClipDataset(
        path,
        num_frames=num_frames or training_config.num_observations,
        frame_stride=data_config.frame_stride,
        train=train,
        clips_per_video=data_config.clips_per_video if train else data_config.eval_clips_per_video,
        seed=training_config.seed,
    )
    return loader_for(dataset, data_config, train, path, position, training_config.seed)
