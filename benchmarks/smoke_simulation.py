"""Smoke simulation throughput: frames per second per preset, frame size and batch size.

For each preset and size, simulates the same videos (same parameters, drawn with seed 0)
at each plumes-per-batch setting, repeats, and prints the median frames/s, its ratio to the
first batch size and to the simple preset at the same size and batch size. Repeats are
interleaved across all settings so that a burst of load on a shared machine hits all of
them. Also prints the median CPU seconds of this process per setting (on a loaded machine
the wall figures include waiting for a core; CPU seconds do not) and checks whether
batching changes a byte of the output (it does for varied batches with obstacles: their
pressure solve is one system over the batch).

    python benchmarks/smoke_simulation.py --videos 8 --frames 20 --sizes 64 128 \\
        --presets simple varied --batch-sizes 1 8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from framecast.data.smoke import (
    DEFAULT_WARMUP_FRAMES,
    PRESETS,
    sample_plume_params,
    sample_varied_params,
    simulate_plumes,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--warmup-frames", type=int, default=DEFAULT_WARMUP_FRAMES)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    params = {
        "simple": sample_plume_params(np.random.default_rng(0), args.videos),
        "varied": sample_varied_params(np.random.default_rng(0), args.videos, args.frames),
    }
    print(
        f"{args.videos} videos x {args.frames} frames (+{args.warmup_frames} warm-up frames "
        f"each), {args.repeats} repeats; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    settings = [
        (preset, size, batch)
        for preset in args.presets
        for size in args.sizes
        for batch in args.batch_sizes
    ]
    seconds: dict[tuple[str, int, int], list[float]] = {s: [] for s in settings}
    cpu: dict[tuple[str, int, int], list[float]] = {s: [] for s in settings}
    outputs: dict[tuple[str, int, int], np.ndarray] = {}
    for _ in range(args.repeats):
        for preset, size, batch in settings:
            videos = params[preset]
            start, cpu_start = time.perf_counter(), time.process_time()
            frames = np.concatenate(
                [
                    simulate_plumes(videos[i : i + batch], args.frames, size, args.warmup_frames)
                    for i in range(0, args.videos, batch)
                ]
            )
            seconds[preset, size, batch].append(time.perf_counter() - start)
            cpu[preset, size, batch].append(time.process_time() - cpu_start)
            outputs[preset, size, batch] = frames

    def fps(setting: tuple[str, int, int]) -> float:
        return args.videos * args.frames / statistics.median(seconds[setting])

    base = args.batch_sizes[0]
    print(
        f"{'preset':>7} {'size':>5} {'plumes/batch':>12} {'median s':>9} {'frames/s':>9} "
        f"{'vs ' + str(base):>7} {'vs simple':>9} {'CPU s':>7}   all runs (s)"
    )
    for preset, size, batch in settings:
        setting = (preset, size, batch)
        simple = ("simple", size, batch)
        versus = f"{fps(setting) / fps(simple):.2f}x" if simple in seconds else "-"
        runs = " ".join(f"{s:.1f}" for s in seconds[setting])
        print(
            f"{preset:>7} {size:>5} {batch:>12} {statistics.median(seconds[setting]):>9.2f} "
            f"{fps(setting):>9.1f} {fps(setting) / fps((preset, size, base)):>6.2f}x "
            f"{versus:>9} {statistics.median(cpu[setting]):>7.2f}   {runs}"
        )
    for preset in args.presets:
        for size in args.sizes:
            first = outputs[preset, size, base]
            same = all(np.array_equal(first, outputs[preset, size, b]) for b in args.batch_sizes)
            print(f"{preset} {size}x{size}: outputs identical across batch sizes: {same}")


if __name__ == "__main__":
    main()
