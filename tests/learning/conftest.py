"""Learning tests: tiny seeded training runs that must pass a measured floor.

Each test trains a small model for real (tens to hundreds of steps) on CPU, so a loss that
stops teaching the model fails the suite, not only a loss that crashes. One intra-op
thread: on a busy 2-core machine several threads per process thrash (measured: a training
step 4x slower with 2 threads than with 1 while other jobs ran), and one thread keeps the
runs bit-for-bit repeatable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from framecast.data.shard import write_shard


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def moving_blobs(
    count: int, seed: int, frames: int = 8, size: int = 32, speed: tuple[float, float] = (1.5, 2.5)
) -> np.ndarray:
    """(count, frames, size, size, 3) uint8: a soft bright blob (sigma 2.5-4 px) on black,
    moving straight at ``speed`` px per frame in a random direction, starting where it stays
    inside the frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    t = np.arange(frames, dtype=np.float32)
    videos = []
    for _ in range(count):
        angle = rng.uniform(0, 2 * np.pi)
        velocity = rng.uniform(*speed) * np.array([np.cos(angle), np.sin(angle)])
        travel = velocity * (frames - 1)
        margin = 5.0
        low = margin - np.minimum(travel, 0)
        high = size - margin - np.maximum(travel, 0)
        start = rng.uniform(low, high)
        sigma = rng.uniform(2.5, 4.0)
        centre = start[None] + velocity[None] * t[:, None]  # (T, 2): x, y
        dx = xx[None] - centre[:, 0, None, None]
        dy = yy[None] - centre[:, 1, None, None]
        density = np.exp(-(dx**2 + dy**2) / (2 * sigma**2))  # (T, H, W)
        videos.append(np.repeat((density * 230)[..., None], 3, axis=-1))
    return np.round(np.asarray(videos)).astype(np.uint8)


def write_videos(root: Path, splits: dict[str, np.ndarray]) -> Path:
    """A framecast dataset under ``root``: one shard per split of (N, T, H, W, 3) uint8."""
    for split, videos in splits.items():
        entries = [(f"{split}-{i:03d}", video, {}) for i, video in enumerate(videos)]
        write_shard(root / split / "part-00000.fcshard", entries)
    return root


@pytest.fixture
def blob_dataset(tmp_path) -> Callable[..., dict[str, np.ndarray]]:
    """``blob_dataset(seed, counts={"train": 48, "val": 4, "test": 16}, **moving_blobs_kw)``
    writes moving-blob videos to ``tmp_path / "data"`` and returns them per split."""

    def make(seed: int, counts: dict[str, int] | None = None, **kwargs) -> dict[str, np.ndarray]:
        counts = counts or {"train": 48, "val": 4, "test": 16}
        videos = {
            split: moving_blobs(count, seed=1000 * seed + offset, **kwargs)
            for offset, (split, count) in enumerate(counts.items())
        }
        write_videos(tmp_path / "data", videos)
        return videos

    return make


def clip_windows(videos: np.ndarray, span: int) -> torch.Tensor:
    """Videos (N, T, H, W, 3) uint8 -> every window of ``span`` frames, greyscale
    (M, span, 1, H, W) in [-1, 1]."""
    frames = torch.from_numpy(videos[..., :1]).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    return torch.cat([frames[:, s : s + span] for s in range(videos.shape[1] - span + 1)])


@pytest.fixture(scope="session")
def windows() -> Callable[[np.ndarray, int], torch.Tensor]:
    """:func:`clip_windows`, for the tests (conftest functions are not importable)."""
    return clip_windows
