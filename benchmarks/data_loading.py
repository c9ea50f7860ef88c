"""Clip loading throughput: packed shards vs PNG frame folders, through a DataLoader.

Builds a small temporary dataset (16 videos x 40 frames of 64x64 smooth synthetic
smoke-like frames) stored twice, as PNG folders and as packed shards (imported with
``import_dataset``), then times passes of ``ClipDataset`` (clips of 10 frames, random
starts) through a DataLoader with 0 and 2 persistent workers, after one warm-up pass.
Prints the median clips/s of a few passes and the shards/PNG ratio measured in the
same run; asserts nothing.

    .venv/bin/python benchmarks/data_loading.py [--repeats 5] [--clips-per-video 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from framecast.data.dataset import ClipDataset
from framecast.data.importer import import_dataset


def smooth_video(num_frames: int, size: int, seed: int) -> np.ndarray:
    """(T, size, size, 3) uint8: drifting soft blobs on black, compressible like real smoke."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    centres = rng.uniform(0, size, (4, 2))
    velocity = rng.normal(0, 0.6, (4, 2))
    colour = rng.uniform(0.5, 1.0, 3)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        density = np.zeros((size, size), dtype=np.float32)
        for (cy, cx), (vy, vx) in zip(centres, velocity, strict=True):
            density += np.exp(
                -((y - cy - vy * t) ** 2 + (x - cx - vx * t) ** 2) / (2 * (size / 8) ** 2)
            )
        frames[t] = (np.clip(density, 0, 1)[..., None] * colour * 255).astype(np.uint8)
    return frames


def build(root: Path, videos: int, frames: int, size: int) -> tuple[Path, Path]:
    """PNG folders under ``root/png/train`` and the same videos imported as shards."""
    png = root / "png" / "train"
    for v in range(videos):
        folder = png / f"video_{v:03d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(smooth_video(frames, size, seed=v)):
            Image.fromarray(frame).save(folder / f"{t:04d}.png")
    import_dataset(png, root / "shards", size=size, splits=(1, 0, 0), progress=False)
    return png, root / "shards" / "train"


def loader_for(split: Path, workers: int, clips_per_video: int, num_frames: int) -> DataLoader:
    dataset = ClipDataset(split, num_frames=num_frames, train=True, clips_per_video=clips_per_video)
    return DataLoader(
        dataset, batch_size=8, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )


def clips_per_second(loader: DataLoader) -> float:
    """One pass (epoch) through ``loader``."""
    start = time.perf_counter()
    clips = sum(batch["frames"].shape[0] for batch in loader)
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=10, help="frames per clip")
    parser.add_argument("--clips-per-video", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    # DataLoader workers run torch single-threaded; do the same in the main process, or
    # with num_workers=0 the batch collation measures intra-op thread contention instead
    # of loading (on a busy 2-core machine: ~100 vs ~5000 clips/s).
    torch.set_num_threads(1)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs "
        f"(torch threads in main process {torch.get_num_threads()}), Python {platform.python_version()}, torch {torch.__version__}"
    )
    print(
        f"data: {args.videos} videos x {args.frames} frames of {args.size}x{args.size}; clips of "
        f"{args.num_frames} frames, {args.videos * args.clips_per_video} clips per pass, batch 8, "
        f"median of {args.repeats} passes"
    )
    with tempfile.TemporaryDirectory(prefix="framecast-bench-") as tmp:
        png, shards = build(Path(tmp), args.videos, args.frames, args.size)
        for workers in (0, 2):
            rates = {}
            for name, split in (("png", png), ("shards", shards)):
                loader = loader_for(split, workers, args.clips_per_video, args.num_frames)
                clips_per_second(loader)  # warm-up: worker start-up, page cache
                runs = [clips_per_second(loader) for _ in range(args.repeats)]
                del loader  # stops its persistent workers
                rates[name] = statistics.median(runs)
                print(
                    f"  workers={workers} {name:<6} {rates[name]:9.1f} clips/s "
                    f"(runs: {', '.join(f'{r:.0f}' for r in runs)})"
                )
            print(f"  workers={workers} shards/png ratio: {rates['shards'] / rates['png']:.1f}x")


if __name__ == "__main__":
    main()
