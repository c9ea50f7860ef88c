"""Motion-tracking sessions: the users' JSON format, a collector, synthetic sessions, windows.

A session file is a JSON list of sessions; a session is a list of frames
``{"timestamp": float, "head": [x, y, z], "hips": [...], "left_arm": [...], "right_arm": [...]}``.
A frame becomes 12 features in the order head xyz, hips xyz, left arm xyz, right arm xyz
(rotations in degrees in the users' app).

Windows: ``sequence_length`` raw frames in, one clean frame out: the frame after the window
(``target="next"``) or the clean version of the window's last frame (``target="denoise"``).
Recorded sessions have no clean track, so their target is the recorded frame itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from framecast.errors import DataError
from framecast.utils import atomic_write_text

JOINTS = ("head", "hips", "left_arm", "right_arm")
FEATURE_GROUPS = {name: slice(3 * i, 3 * i + 3) for i, name in enumerate(JOINTS)}
NUM_FEATURES = 3 * len(JOINTS)
FEATURE_NAMES = tuple(f"{joint}_{axis}" for joint in JOINTS for axis in "xyz")
FRAME_KEYS = ("timestamp", *JOINTS)
Target = Literal["next", "denoise"]


@dataclass
class Session:
    """One recorded or simulated session: ``raw`` (T, 12) as tracked, ``clean`` (T, 12)
    the target track (the raw track itself for recordings), ``timestamps`` (T,)."""

    raw: np.ndarray
    clean: np.ndarray
    timestamps: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return len(self.raw)


# -- JSON ---------------------------------------------------------------------------------
def _frame_features(frame: Any, where: str) -> tuple[float, list[float]]:
    if not isinstance(frame, dict):
        raise DataError(f"{where}: expected an object with keys {', '.join(FRAME_KEYS)}")
    missing = [k for k in FRAME_KEYS if k not in frame]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    try:
        timestamp = float(frame["timestamp"])
    except (TypeError, ValueError):
        raise DataError(f"{where}: timestamp {frame['timestamp']!r} is not a number") from None
    values: list[float] = []
    for joint in JOINTS:
        vec = frame[joint]
        if not isinstance(vec, list | tuple) or len(vec) != 3:
            got = f"length {len(vec)}" if isinstance(vec, list | tuple) else type(vec).__name__
            raise DataError(f"{where}: {joint} must be a list of 3 numbers, got {got}")
        for v in vec:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise DataError(f"{where}: {joint} holds {v!r}, expected numbers")
            if not math.isfinite(v):
                raise DataError(f"{where}: {joint} holds {v!r} (NaN/inf), expected finite numbers")
        values.extend(float(v) for v in vec)
    if not math.isfinite(timestamp):
        raise DataError(f"{where}: timestamp is {timestamp!r}, expected a finite number")
    return timestamp, values


def sessions_from_json(data: Any, source: str = "<json>") -> list[Session]:
    """Parsed JSON (a list of sessions, each a list of frames) → sessions, checked."""
    if not isinstance(data, list):
        raise DataError(f"{source}: expected a list of sessions, got {type(data).__name__}")
    sessions = []
    for s, frames in enumerate(data):
        if not isinstance(frames, list):
            raise DataError(
                f"{source}: session {s}: expected a list of frames, got {type(frames).__name__}"
            )
        times, rows = [], []
        for f, frame in enumerate(frames):
            t, values = _frame_features(frame, f"{source}: session {s} frame {f}")
            times.append(t)
            rows.append(values)
        raw = np.asarray(rows, dtype=np.float32).reshape(len(rows), NUM_FEATURES)
        sessions.append(
            Session(raw, raw.copy(), np.asarray(times, dtype=np.float64), f"{source}#{s}")
        )
    return sessions


def load_sessions(path: str | os.PathLike) -> list[Session]:
    """Sessions of one JSON file, or of every ``*.json`` in a folder (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DataError(f"{path}: no *.json session files in this folder")
        return [s for file in files for s in load_sessions(file)]
    if not path.is_file():
        raise DataError(f"{path}: no such session file or folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; expected a JSON session file") from None
    return sessions_from_json(data, str(path))


def frame_dict(timestamp: float, features: np.ndarray | list[float]) -> dict[str, Any]:
    """One frame of the JSON format from a timestamp and 12 features."""
    values = [float(v) for v in np.asarray(features, dtype=np.float64).reshape(NUM_FEATURES)]
    out: dict[str, Any] = {"timestamp": float(timestamp)}
    for joint, sl in FEATURE_GROUPS.items():
        out[joint] = values[sl]
    return out


def save_sessions(sessions: list[Session], path: str | os.PathLike, clean: bool = False) -> Path:
    """Write sessions (their raw track, or ``clean``) as the JSON format, atomically."""
    data = [
        [frame_dict(t, row) for t, row in zip(s.timestamps, s.clean if clean else s.raw)]
        for s in sessions
    ]
    atomic_write_text(path, json.dumps(data))
    return Path(path)


@dataclass
class DataCollector:
    """Collects frames into sessions as a tracking app receives them, and saves them.

    ``add_frame`` appends to the current session; ``save_sequence`` closes it; ``save``
    writes every closed session (and the open one, if any) to ``path`` atomically.
    """

    path: str | os.PathLike
    sessions: list[list[dict[str, Any]]] = field(default_factory=list)
    current: list[dict[str, Any]] = field(default_factory=list)

    def add_frame(
        self,
        timestamp: float,
        head: list[float],
        hips: list[float],
        left_arm: list[float],
        right_arm: list[float],
    ) -> None:
        frame = {
            "timestamp": timestamp,
            "head": list(head),
            "hips": list(hips),
            "left_arm": list(left_arm),
            "right_arm": list(right_arm),
        }
        where = f"{self.path}: session {len(self.sessions)} frame {len(self.current)}"
        _frame_features(frame, where)  # refuse bad frames when they arrive
        self.current.append(frame)

    def save_sequence(self) -> int:
        """Close the current session (if it has frames); returns the number of sessions."""
        if self.current:
            self.sessions.append(self.current)
            self.current = []
        return len(self.sessions)

    def save(self) -> Path:
        sessions = self.sessions + ([self.current] if self.current else [])
        atomic_write_text(self.path, json.dumps(sessions))
        return Path(self.path)


# -- synthetic sessions ---------------------------------------------------------------------
# Plausible rotation ranges (degrees, amplitude around a resting pose) per joint.
_AMPLITUDE = {"head": (40, 25, 15), "hips": (25, 10, 10), "left_arm": (70, 45, 30)}
_AMPLITUDE["right_arm"] = _AMPLITUDE["left_arm"]


def synthetic_sessions(
    n: int,
    length: int = 200,
    seed: int = 0,
    fps: float = 30.0,
    jitter: float = 0.5,
    dropout_rate: float = 0.005,
    outlier_rate: float = 0.005,
) -> list[Session]:
    """``n`` sessions of smooth articulated motion with sensor faults; clean track kept.

    Per feature: a resting offset, a sum of three sinusoids (0.1–1.2 Hz) and a slow smoothed
    random walk. Raw = clean + Gaussian jitter (``jitter`` degrees), dropouts (a joint holds
    its last value for 2–4 frames) and outliers (a joint jumps 10–30 degrees for one frame).
    Lengths vary ±25 % around ``length``.
    """
    rng = np.random.default_rng(seed)
    sessions = []
    for s in range(n):
        T = int(rng.integers(max(2, int(length * 0.75)), int(length * 1.25) + 2))
        t = np.arange(T) / fps
        amp = np.array([a for joint in JOINTS for a in _AMPLITUDE[joint]], dtype=np.float64)
        clean = np.zeros((T, NUM_FEATURES))
        for k in range(NUM_FEATURES):
            clean[:, k] = rng.uniform(-0.2, 0.2) * amp[k]
            for _ in range(3):
                f = rng.uniform(0.1, 1.2)
                clean[:, k] += (
                    rng.uniform(0.1, 0.35)
                    * amp[k]
                    * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
                )
            walk = np.cumsum(rng.normal(0, 1, T))
            kernel = np.hanning(31) / np.hanning(31).sum()
            walk = np.convolve(walk - walk.mean(), kernel, mode="full")[15 : 15 + T]
            clean[:, k] += 0.1 * amp[k] * walk / (np.abs(walk).max() + 1e-6)
        raw = clean + rng.normal(0, jitter, clean.shape)
        for sl in FEATURE_GROUPS.values():
            i = 1
            while i < T:
                if rng.random() < dropout_rate:
                    hold = int(rng.integers(2, 5))
                    raw[i : i + hold, sl] = raw[i - 1, sl]
                    i += hold
                    continue
                if rng.random() < outlier_rate:
                    raw[i, sl] += rng.choice([-1, 1], 3) * rng.uniform(10, 30, 3)
                i += 1
        sessions.append(
            Session(raw.astype(np.float32), clean.astype(np.float32), t, f"synthetic#{s}")
        )
    return sessions


# -- splits, normalisation, windows -----------------------------------------------------------
def split_sessions(
    sessions: list[Session], seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> dict[str, list[Session]]:
    """Split by session (never a session across splits), seeded; each split gets ≥ 1."""
    n = len(sessions)
    if n < 3:
        raise DataError(
            f"{n} usable session(s); at least 3 are needed (train/val/test split by session)"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    n_train = n - n_val - n_test
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {split: [sessions[i] for i in sorted(idx)] for split, idx in parts.items()}


@dataclass(frozen=True)
class Normalisation:
    """Per-feature mean and std (12,), fitted on training sessions only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, sessions: list[Session], min_std: float = 1e-3) -> Normalisation:
        frames = np.concatenate([s.raw for s in sessions]).astype(np.float64)
        return cls(
            frames.mean(0).astype(np.float32),
            np.maximum(frames.std(0), min_std).astype(np.float32),
        )

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def invert(self, x: np.ndarray) -> np.ndarray:
        return x * self.std + self.mean


def usable_sessions(sessions: list[Session], sequence_length: int) -> tuple[list[Session], int]:
    """Sessions long enough for one window (``sequence_length`` + 1 frames), and how many
    were skipped as too short."""
    kept = [s for s in sessions if len(s) >= sequence_length + 1]
    return kept, len(sessions) - len(kept)


def window_starts(sessions: list[Session], sequence_length: int) -> list[tuple[int, int]]:
    """(session index, start) of every window; a window needs ``sequence_length`` + 1 frames."""
    return [(i, start) for i, s in enumerate(sessions) for start in range(len(s) - sequence_length)]


def make_window(
    session: Session, start: int, sequence_length: int, target: Target, speed: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (T, 12) raw, target (12,) clean) of the window at ``start``.

    ``speed`` ≠ 1 resamples the session (linear interpolation) at ``start + speed * k``:
    the same motion played faster or slower (training augmentation); callers keep
    ``start + speed * sequence_length`` within the session.
    """
    T = sequence_length
    if speed == 1.0:
        inputs = session.raw[start : start + T]
        idx = start + T if target == "next" else start + T - 1
        return inputs, session.clean[idx]
    pos = start + speed * np.arange(T + 1)
    grid = np.arange(len(session))
    raw = np.stack([np.interp(pos, grid, session.raw[:, k]) for k in range(NUM_FEATURES)], 1)
    clean = np.stack([np.interp(pos, grid, session.clean[:, k]) for k in range(NUM_FEATURES)], 1)
    out = clean[T] if target == "next" else clean[T - 1]
    return raw[:T].astype(np.float32), out.astype(np.float32)


def stack_windows(
    sessions: list[Session], sequence_length: int, target: Target
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``sessions``: inputs (N, T, 12), targets (N, 12)."""
    starts = window_starts(sessions, sequence_length)
    if not starts:
        return (
            np.zeros((0, sequence_length, NUM_FEATURES), np.float32),
            np.zeros((0, NUM_FEATURES), np.float32),
        )
    pairs = [make_window(sessions[i], s, sequence_length, target) for i, s in starts]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
