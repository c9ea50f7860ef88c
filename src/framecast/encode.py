"""``framecast encode``: encode a dataset once with a trained autoencoder (the latent cache).

Above ``data/``: it runs a model over the frames and writes through
:mod:`framecast.data.latent_cache`'s layout, measuring on the way where the smoke is in
latent space (:mod:`framecast.losses.latent_smoke`) for ``training.smoke_threshold: auto``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from framecast.data.dataset import check_frame_size, frames_to_tensor
from framecast.data.latent_cache import CACHE_DIR, CACHE_INFO, model_fingerprint, read_cache_info
from framecast.data.shard import ShardWriter
from framecast.data.sources import SPLITS, center_crop_resize, has_videos, open_split
from framecast.errors import DataError
from framecast.losses.latent_smoke import (
    NoSmokeFoundError,
    black_frame_latent,
    frame_smoke_cells,
    latent_smoke_distance,
    threshold_statistics,
)
from framecast.models.autoencoder.autoencoder import ChannelMoments
from framecast.utils import atomic_write_text


@dataclass
class LatentCacheSummary:
    """What ``encode_dataset`` wrote (or found up to date)."""

    path: Path
    reused: bool
    videos: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    latent_shape: tuple[int, ...] = ()
    channel_mean: list[float] = field(default_factory=list)
    channel_std: list[float] = field(default_factory=list)
    smoke: dict[str, float | str] = field(default_factory=dict)

    def format(self) -> str:
        if self.reused:
            return f"latent cache {self.path} is up to date (same autoencoder weights); nothing encoded"
        lines = [f"latent cache: {self.path}", f"latent shape per frame: {self.latent_shape}"]
        for split in self.videos:
            lines.append(f"  {split}: {self.videos[split]} videos, {self.frames[split]} frames")
        mean = ", ".join(f"{m:+.3f}" for m in self.channel_mean)
        std = ", ".join(f"{s:.3f}" for s in self.channel_std)
        lines.append(
            f"train latents per channel: mean [{mean}]  std [{std}] (normalised: expect ≈0 and ≈1)"
        )
        if self.smoke:
            lines.append(
                f"smoke in latent space (||z - z_black|| > threshold): the frames' smoke covers "
                f"{self.smoke['frame_smoke_cell_share']:.1%} of latent cells; "
                f"training.smoke_threshold: auto will use "
                f"{self.smoke['suggested_smoke_threshold']:.3g} "
                f"(IoU {self.smoke['suggested_threshold_iou']:.2f} with the frames' smoke)"
            )
        else:
            lines.append(
                "no smoke found in the training frames: smoke_threshold: auto cannot be used"
            )
        return "\n".join(lines)


@torch.no_grad()
def encode_dataset(
    model: torch.nn.Module,
    data_root: str | os.PathLike,
    image_size: int,
    autoencoder_name: str,
    overwrite: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
    trained_on: str | os.PathLike | None = None,
) -> LatentCacheSummary:
    """Encode all frames of every split of ``data_root`` with ``model.encode_latents``.

    ``model``: a frozen autoencoder in eval mode; (B, C, H, W) in [-1, 1] → (B, C_lat, h, w)
    with C its ``image_channels`` (3 if it has none): greyscale models get the frames' luma.
    ``trained_on``: the model's training dataset; square frames of another size than
    ``image_size`` are refused unless the model was trained on frames of that size
    (:func:`~framecast.data.dataset.check_frame_size`).
    """
    channels = getattr(model, "image_channels", 3)
    data_root = Path(data_root)
    out = data_root / CACHE_DIR
    fingerprint = model_fingerprint(model)
    info = read_cache_info(data_root)
    if info is not None and not overwrite:
        if info.get("fingerprint") == fingerprint:
            return LatentCacheSummary(out, reused=True)
        raise DataError(
            f"{out} holds latents of another autoencoder ({info.get('autoencoder')}); "
            "pass --overwrite to replace them"
        )
    splits = [s for s in SPLITS if has_videos(data_root / s)]
    if not splits:
        raise DataError(
            f"{data_root}: no split with videos to encode (expected {', '.join(SPLITS)})"
        )

    # Written into a staging folder and swapped in at the end: a failure keeps the old cache.
    staging = data_root / f".{CACHE_DIR}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    summary = LatentCacheSummary(out, reused=False)
    train_moments = ChannelMoments()
    cell_masks: list[torch.Tensor] = []  # train split: frame-space smoke per latent cell
    distances: list[torch.Tensor] = []  # train split: ||z - z_black|| per latent cell
    background: torch.Tensor | None = None
    opened = {split: open_split(data_root / split) for split in splits}
    for split, videos in opened.items():  # before any work: refuse 128×128 data into a 64 model
        check_frame_size(
            videos, image_size, data_root / split, f"the autoencoder {autoencoder_name}", trained_on
        )
    try:
        for split in splits:
            videos = opened[split]
            frames_total = 0
            with ShardWriter(
                staging / split / "part-00000.fcshard", {"autoencoder": autoencoder_name}
            ) as writer:
                for video in tqdm(
                    videos, desc=f"encode {split}", disable=not progress, unit="video"
                ):
                    frames = video.read()
                    if frames.shape[1:3] != (image_size, image_size):
                        frames = center_crop_resize(frames, image_size)
                    x = frames_to_tensor(frames, channels)  # (T, C, H, W) in [-1, 1]
                    latents = torch.cat(
                        [
                            model.encode_latents(chunk.to(device)).float().cpu()
                            for chunk in x.split(batch_size)
                        ]
                    )  # (T, C, h, w)
                    writer.add(video.id, latents.numpy().astype(np.float32), video.meta)
                    frames_total += latents.shape[0]
                    if split == "train":
                        train_moments.update(latents)
                        if background is None:
                            background = black_frame_latent(
                                lambda f: model.encode_latents(f.to(device)).float().cpu(),
                                x.shape[1],
                                image_size,
                            )
                        cell_masks.append(frame_smoke_cells(x, tuple(latents.shape[-2:])))
                        distances.append(latent_smoke_distance(latents, background))
                    summary.latent_shape = tuple(latents.shape[1:])
            summary.videos[split] = len(videos)
            summary.frames[split] = frames_total
        if train_moments.count:
            mean, std = train_moments.mean_std()
            summary.channel_mean, summary.channel_std = mean.tolist(), std.tolist()
            try:
                summary.smoke = threshold_statistics(torch.cat(cell_masks), torch.cat(distances))
            except NoSmokeFoundError:
                summary.smoke = {}  # not smoke data: caching still works, auto will refuse
        atomic_write_text(
            staging / CACHE_INFO,
            json.dumps(
                {
                    "autoencoder": autoencoder_name,
                    "fingerprint": fingerprint,
                    "image_size": image_size,
                    "latent_shape": list(summary.latent_shape),
                    "dtype": "float32",
                    "videos": summary.videos,
                    "frames": summary.frames,
                    "train_channel_mean": summary.channel_mean,
                    "train_channel_std": summary.channel_std,
                    "smoke": summary.smoke,
                },
                indent=2,
            ),
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
