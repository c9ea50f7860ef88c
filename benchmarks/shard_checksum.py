"""What the shard checksum costs a reader: the first read of each video checks its CRC-32.

Writes one shard of 128 random videos (40 frames of 64×64×3 uint8, as the demo's data) and
times reading the first 10-frame clip of every video with a fresh reader, checksums on and
off, alternating, 5 rounds; prints medians and their ratio. The cost is paid once per
video and process; later reads of a video are unchanged.

    python benchmarks/shard_checksum.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from framecast.data.shard import ShardReader, write_shard

VIDEOS, FRAMES, SIZE, CLIP, ROUNDS = 128, 40, 64, 10, 5


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        videos = (
            (f"v{i}", rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8), None)
            for i in range(VIDEOS)
        )
        path = write_shard(Path(folder) / "bench.fcshard", videos)
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(ROUNDS):
            for verify in (False, True):
                reader = ShardReader(path, verify=verify)
                start = time.perf_counter()
                for video in range(len(reader)):
                    reader.read(video, 0, CLIP)
                seconds[verify].append(time.perf_counter() - start)
    off, on = (statistics.median(seconds[v]) for v in (False, True))
    mib = FRAMES * SIZE * SIZE * 3 / 2**20
    print(
        f"first {CLIP}-frame clip of each of {VIDEOS} videos ({FRAMES} frames, {mib:.2f} MiB each)"
    )
    print(f"  checksums off: median {off * 1e3:.1f} ms ({off / VIDEOS * 1e3:.3f} ms a video)")
    print(f"  checksums on:  median {on * 1e3:.1f} ms ({on / VIDEOS * 1e3:.3f} ms a video)")
    print(f"  on / off: {on / off:.1f}x, once per video and process")


if __name__ == "__main__":
    main()
