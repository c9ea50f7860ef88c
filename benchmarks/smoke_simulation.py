"""Smoke simulation throughput: frames per second for several plumes-per-batch settings.

Simulates the same videos (same parameters) at each batch size, repeats, and prints the
median frames/s per batch size and its ratio to the first one. Repeats are interleaved
across batch sizes so that a burst of load on a shared machine hits all of them. Also
checks that batching does not change a byte of the output.

    python benchmarks/smoke_simulation.py --videos 8 --frames 20 --size 64 --batch-sizes 1 8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from framecast.data.smoke import DEFAULT_WARMUP_FRAMES, sample_plume_params, simulate_plumes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--warmup-frames", type=int, default=DEFAULT_WARMUP_FRAMES)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    params = sample_plume_params(np.random.default_rng(0), args.videos)
    print(
        f"{args.videos} videos x {args.frames} frames at {args.size}x{args.size} "
        f"(+{args.warmup_frames} warm-up frames each), {args.repeats} repeats; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    seconds: dict[int, list[float]] = {b: [] for b in args.batch_sizes}
    outputs: dict[int, np.ndarray] = {}
    for _ in range(args.repeats):
        for batch_size in args.batch_sizes:
            start = time.perf_counter()
            videos = np.concatenate(
                [
                    simulate_plumes(
                        params[i : i + batch_size], args.frames, args.size, args.warmup_frames
                    )
                    for i in range(0, args.videos, batch_size)
                ]
            )
            seconds[batch_size].append(time.perf_counter() - start)
            outputs[batch_size] = videos

    base = args.batch_sizes[0]
    base_fps = args.videos * args.frames / statistics.median(seconds[base])
    print(
        f"{'plumes/batch':>12} {'median s':>9} {'frames/s':>9} {'vs ' + str(base):>7}   all runs (s)"
    )
    for batch_size in args.batch_sizes:
        median = statistics.median(seconds[batch_size])
        fps = args.videos * args.frames / median
        runs = " ".join(f"{s:.1f}" for s in seconds[batch_size])
        print(f"{batch_size:>12} {median:>9.2f} {fps:>9.1f} {fps / base_fps:>6.2f}x   {runs}")
    identical = all(np.array_equal(outputs[base], outputs[b]) for b in args.batch_sizes)
    print(f"outputs identical across batch sizes: {identical}")


if __name__ == "__main__":
    main()
