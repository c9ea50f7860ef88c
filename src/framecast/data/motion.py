"""Motion-tracking sessions: the users' JSON format, a collector, synthetic sessions, windows.

A session file is a JSON list of sessions; a session is a list of frames
``{"timestamp": t, "head": [x, y, z], "hips": [...], "left_arm": [...], "right_arm": [...]}``,
``t`` in seconds or an ISO-8601 string (the users' collector writes
``datetime.now().isoformat()``), a joint as ``[x, y, z]`` or ``{"x": .., "y": .., "z": ..}``.
A frame becomes 12 features in the order head xyz, hips xyz, left arm xyz, right arm xyz
(rotations in degrees in the users' app). Bad frames (a missing joint, NaN, a timestamp
going back) are errors naming file, session and frame, or, read leniently, skipped and
counted (:func:`read_sessions`).

Windows: ``sequence_length`` raw frames in, one clean frame out: the frame after the window
(``target="next"``) or the clean version of the window's last frame (``target="denoise"``).
Recorded sessions have no clean track, so their target is the recorded frame itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
Joint = list[float] | tuple[float, float, float] | dict[str, float]


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
_AXES = ("x", "y", "z")


def parse_timestamp(value: Any, where: str) -> float:
    """Seconds from a number or an ISO-8601 string (``datetime.now().isoformat()``, with or
    without a UTC offset or ``Z``). Strings without an offset are read as UTC, so a session
    recorded across a daylight-saving change keeps increasing."""
    if isinstance(value, bool):
        raise DataError(f"{where}: timestamp {value!r} is not a number or an ISO-8601 string")
    if isinstance(value, int | float):
        timestamp = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            timestamp = float(text)  # a number written as text
        except ValueError:
            if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat has no "Z"
                text = text[:-1] + "+00:00"
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise DataError(
                    f"{where}: timestamp {value!r} is neither a number (seconds) nor an "
                    "ISO-8601 date-time such as 2026-11-30T08:37:04.123456"
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            timestamp = moment.timestamp()
    else:
        raise DataError(
            f"{where}: timestamp {value!r} is not a number or an ISO-8601 string "
            f"(got {type(value).__name__})"
        )
    if not math.isfinite(timestamp):
        raise DataError(f"{where}: timestamp is {timestamp!r}, expected a finite number")
    return timestamp


def _joint_values(vec: Any, joint: str, where: str) -> list[float]:
    """``[x, y, z]`` or ``{"x": .., "y": .., "z": ..}`` (other keys ignored) → 3 floats."""
    if isinstance(vec, dict):
        missing = [a for a in _AXES if a not in vec]
        if missing:
            raise DataError(
                f"{where}: {joint} object lacks {', '.join(missing)}; expected "
                '{"x": .., "y": .., "z": ..} or a list [x, y, z]'
            )
        vec = [vec[a] for a in _AXES]
    elif not isinstance(vec, list | tuple) or len(vec) != 3:
        got = f"length {len(vec)}" if isinstance(vec, list | tuple) else type(vec).__name__
        raise DataError(
            f'{where}: {joint} must be a list of 3 numbers or an {{"x", "y", "z"}} object, '
            f"got {got}"
        )
    for v in vec:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise DataError(f"{where}: {joint} holds {v!r}, expected numbers")
        if not math.isfinite(v):
            raise DataError(f"{where}: {joint} holds {v!r} (NaN/inf), expected finite numbers")
    return [float(v) for v in vec]


def _frame_features(frame: Any, where: str) -> tuple[float, list[float]]:
    if not isinstance(frame, dict):
        raise DataError(f"{where}: expected an object with keys {', '.join(FRAME_KEYS)}")
    missing = [k for k in FRAME_KEYS if k not in frame or frame[k] is None]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    timestamp = parse_timestamp(frame["timestamp"], where)
    values: list[float] = []
    for joint in JOINTS:
        values.extend(_joint_values(frame[joint], joint, where))
    return timestamp, values


@dataclass
class LoadedSessions:
    """Sessions read from JSON and the frames skipped on the way (lenient reading): one
    message per skipped frame, naming the file, session and frame index."""

    sessions: list[Session]
    skipped_frames: list[str] = field(default_factory=list)

    def summary(self, limit: int = 5) -> str:
        """One line for a warning: the count and the first ``limit`` messages."""
        n = len(self.skipped_frames)
        shown = "; ".join(self.skipped_frames[:limit])
        more = f"; ... and {n - limit} more" if n > limit else ""
        return f"skipped {n} bad frame(s) (use --strict to stop at the first): {shown}{more}"


def read_sessions_json(data: Any, source: str = "<json>", strict: bool = True) -> LoadedSessions:
    """Parsed JSON (a list of sessions, each a list of frames) → sessions, checked.

    A bad frame (not an object, a missing joint, a joint that is not 3 finite numbers, a
    timestamp that is neither a number nor ISO-8601, or one earlier than the previous
    frame's) raises a :class:`DataError` naming source, session and frame with ``strict``;
    otherwise it is skipped and its message kept in ``skipped_frames``. A file that is not
    a list of lists is an error either way.
    """
    if not isinstance(data, list):
        raise DataError(f"{source}: expected a list of sessions, got {type(data).__name__}")
    sessions, skipped = [], []
    for s, frames in enumerate(data):
        if not isinstance(frames, list):
            raise DataError(
                f"{source}: session {s}: expected a list of frames, got {type(frames).__name__}"
            )
        times: list[float] = []
        rows: list[list[float]] = []
        for f, frame in enumerate(frames):
            where = f"{source}: session {s} frame {f}"
            try:
                t, values = _frame_features(frame, where)
                if times and t < times[-1]:
                    raise DataError(
                        f"{where}: timestamp {t:.6f} s is earlier than the previous kept "
                        f"frame's {times[-1]:.6f} s; expected non-decreasing timestamps"
                    )
            except DataError as exc:
                if strict:
                    raise
                skipped.append(str(exc))
                continue
            times.append(t)
            rows.append(values)
        raw = np.asarray(rows, dtype=np.float32).reshape(len(rows), NUM_FEATURES)
        sessions.append(
            Session(raw, raw.copy(), np.asarray(times, dtype=np.float64), f"{source}#{s}")
        )
    return LoadedSessions(sessions, skipped)


def sessions_from_json(data: Any, source: str = "<json>", strict: bool = True) -> list[Session]:
    """Parsed JSON → sessions (see :func:`read_sessions_json`)."""
    return read_sessions_json(data, source, strict).sessions


def read_sessions(path: str | os.PathLike, strict: bool = True) -> LoadedSessions:
    """Sessions of one JSON file, or of every ``*.json`` in a folder (sorted by name), and
    the frames skipped when not ``strict``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DataError(f"{path}: no *.json session files in this folder")
        out = LoadedSessions([])
        for file in files:
            part = read_sessions(file, strict)
            out.sessions += part.sessions
            out.skipped_frames += part.skipped_frames
        return out
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
    return read_sessions_json(data, str(path), strict)


def load_sessions(path: str | os.PathLike, strict: bool = True) -> list[Session]:
    """Sessions of a file or folder (see :func:`read_sessions`); raises at the first bad
    frame unless ``strict`` is false (then bad frames are dropped silently: use
    :func:`read_sessions` to learn which)."""
    return read_sessions(path, strict).sessions


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


class DataCollector:
    """The users' collector (``collect_data.py`` in their LSTM guide, document 003): the same
    constructor, calls and file, with frames checked as they arrive and atomic writes.

        collector = DataCollector()                  # output_file="training_data.json"
        collector.add_frame(head_rot, hips_rot, left_arm, right_arm)
        collector.save_sequence()                    # closes the sequence, writes the file

    The file is theirs: a JSON list of sequences, each a list of frames
    ``{"timestamp": ISO-8601, "head": ..., "hips": ..., "left_arm": ..., "right_arm": ...}``
    (indent 2), which ``framecast data motion`` and ``data.root`` read as it is.
    """

    def __init__(self, output_file: str | os.PathLike = "training_data.json") -> None:
        self.output_file = Path(output_file)
        self.sequences: list[list[dict[str, Any]]] = []
        self.current_sequence: list[dict[str, Any]] = []

    @property
    def path(self) -> Path:
        """The file written (``output_file``)."""
        return self.output_file

    def add_frame(
        self,
        head_rot: Joint,
        hips_rot: Joint,
        left_arm: Joint,
        right_arm: Joint,
        timestamp: float | str | None = None,
    ) -> None:
        """Append one frame to the current sequence. Joints as ``[x, y, z]`` or
        ``{"x", "y", "z"}``; ``timestamp`` in seconds or ISO-8601, or None: the time of the
        call as ISO-8601, as the users' collector stamps it. A malformed frame, or one earlier
        than the previous, is refused (DataError naming the sequence and frame)."""
        if timestamp is None:
            timestamp = datetime.now().isoformat()
        joints = {"head": head_rot, "hips": hips_rot, "left_arm": left_arm, "right_arm": right_arm}
        frame: dict[str, Any] = {"timestamp": timestamp}
        for name, vec in joints.items():
            frame[name] = dict(vec) if isinstance(vec, dict) else list(vec)
        where = (
            f"{self.output_file}: sequence {len(self.sequences)} frame {len(self.current_sequence)}"
        )
        t, _ = _frame_features(frame, where)  # refuse bad frames when they arrive
        if self.current_sequence:
            previous = parse_timestamp(self.current_sequence[-1]["timestamp"], where)
            if t < previous:
                raise DataError(
                    f"{where}: timestamp {t:.6f} s is earlier than the previous frame's "
                    f"{previous:.6f} s"
                )
        self.current_sequence.append(frame)

    def save_sequence(self) -> int:
        """Close the current sequence (if it has frames) and write the file, as the users'
        ``save_sequence`` does; returns the number of sequences saved."""
        if self.current_sequence:
            self.sequences.append(self.current_sequence)
            self.current_sequence = []
            self.save_to_file()
        return len(self.sequences)

    def save_to_file(self) -> Path:
        """Write the closed sequences to ``output_file`` (atomically)."""
        return self._write(self.sequences)

    def save(self) -> Path:
        """Write the closed sequences and the open one, if it has frames."""
        open_one = [self.current_sequence] if self.current_sequence else []
        return self._write(self.sequences + open_one)

    def _write(self, sequences: list[list[dict[str, Any]]]) -> Path:
        atomic_write_text(self.output_file, json.dumps(sequences, indent=2))
        return self.output_file


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


def _cut(session: Session, start: int, stop: int) -> Session:
    return Session(
        session.raw[start:stop],
        session.clean[start:stop],
        session.timestamps[start:stop],
        f"{session.name}[{start}:{stop}]",
    )


def split_within_sessions(
    sessions: list[Session],
    min_frames: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> dict[str, list[Session]]:
    """Split each session by time: its first frames train, the next ones val, the last ones
    test (no frame in two splits; val and test come after what the model trained on).

    Val and test each get ``fractions`` of a session's frames but at least ``min_frames``
    (one window: ``sequence_length`` + 1); train keeps the rest and needs ``min_frames``
    too. A session too short to cut goes to train whole; at least one must be cut.
    """
    splits: dict[str, list[Session]] = {"train": [], "val": [], "test": []}
    for session in sessions:
        T = len(session)
        n_val = max(min_frames, round(fractions[1] * T))
        n_test = max(min_frames, round(fractions[2] * T))
        n_train = T - n_val - n_test
        if n_train < min_frames:
            splits["train"].append(session)
            continue
        splits["train"].append(_cut(session, 0, n_train))
        splits["val"].append(_cut(session, n_train, n_train + n_val))
        splits["test"].append(_cut(session, n_train + n_val, T))
    if not splits["val"]:
        longest = max((len(s) for s in sessions), default=0)
        raise DataError(
            f"{len(sessions)} usable session(s), the longest {longest} frames: with fewer than "
            f"3 sessions each is split by time into train/val/test, which needs a session of "
            f"at least 3 x (sequence_length + 1) = {3 * min_frames} frames; record longer or "
            "more sessions"
        )
    return splits


def split_for_training(
    sessions: list[Session], seed: int, min_frames: int
) -> tuple[dict[str, list[Session]], str | None]:
    """By session (:func:`split_sessions`) with 3 or more sessions; with 1–2, by time within
    each session (:func:`split_within_sessions`). Returns the splits and a note saying so in
    the second case (None otherwise)."""
    if len(sessions) >= 3:
        return split_sessions(sessions, seed), None
    splits = split_within_sessions(sessions, min_frames)
    note = (
        f"only {len(sessions)} session(s): split by time within each session (first 70 % "
        f"train, next 15 % val, last 15 % test, each at least {min_frames} frames) instead "
        "of by session; val/test then measure later moments of the same recordings, so "
        "record 3 or more sessions for a held-out-session figure"
    )
    return splits, note


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
