"""Motion sessions: JSON round trip, bad input, windows, split, normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framecast.data.motion import (
    DataCollector,
    Normalisation,
    Session,
    load_sessions,
    make_window,
    split_sessions,
    stack_windows,
    synthetic_sessions,
    usable_sessions,
)
from framecast.errors import DataError

FRAME = {
    "timestamp": 0.0,
    "head": [1, 2, 3],
    "hips": [4, 5, 6],
    "left_arm": [7, 8, 9],
    "right_arm": [10, 11, 12],
}


def test_collector_round_trip(tmp_path):
    collector = DataCollector(tmp_path / "s.json")
    for t in range(3):
        collector.add_frame(t / 30, [t, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11.5])
    collector.save_sequence()
    collector.add_frame(0.0, [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1])
    path = collector.save()
    sessions = load_sessions(path)
    assert [len(s) for s in sessions] == [3, 1]
    assert sessions[0].raw[2].tolist() == [2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11.5]
    assert np.allclose(sessions[0].timestamps, [0, 1 / 30, 2 / 30])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left behind
    with pytest.raises(DataError, match="right_arm must be a list of 3"):
        collector.add_frame(0.0, [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0])


def _write(tmp_path, data, text=None):
    path = tmp_path / "bad.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


@pytest.mark.parametrize(
    "data, text, match",
    [
        (None, '[[{"timestamp": 0,', r"bad.json: malformed JSON at line 1"),
        (
            [[FRAME, {k: v for k, v in FRAME.items() if k != "hips"}]],
            None,
            r"bad.json: session 0 frame 1: missing key\(s\) hips",
        ),
        (
            [[FRAME], [FRAME, {**FRAME, "left_arm": [1, 2]}]],
            None,
            r"session 1 frame 1: left_arm must be a list of 3 numbers, got length 2",
        ),
        (
            None,
            json.dumps([[FRAME]])[:-3] + ', "head": [NaN, 0, 0]}]]',
            r"session 0 frame 0: head holds nan",
        ),
        ({"a": 1}, None, "expected a list of sessions"),
    ],
    ids=["malformed", "missing-key", "vector-length", "nan", "not-a-list"],
)
def test_bad_input_names_file_session_frame(tmp_path, data, text, match):
    with pytest.raises(DataError, match=match):
        load_sessions(_write(tmp_path, data, text))


def test_short_sessions_are_skipped_and_counted():
    sessions = [
        Session(np.zeros((n, 12), np.float32), np.zeros((n, 12), np.float32), np.arange(n) / 30)
        for n in (5, 10, 11, 30)
    ]
    kept, skipped = usable_sessions(sessions, 10)
    assert [len(s) for s in kept] == [11, 30] and skipped == 2


def test_windows_and_targets_on_a_hand_made_sequence():
    raw = np.arange(6 * 12, dtype=np.float32).reshape(6, 12)
    clean = raw + 1000
    s = Session(raw, clean, np.arange(6) / 30)
    x, y = stack_windows([s], 3, "next")
    assert x.shape == (3, 3, 12) and y.shape == (3, 12)
    assert np.array_equal(x[1], raw[1:4]) and np.array_equal(y[1], clean[4])
    x, y = stack_windows([s], 3, "denoise")
    assert np.array_equal(y[1], clean[3])
    # speed 1 and speed resampling agree on a linear track; speed 2 skips every other frame
    xs, ys = make_window(s, 0, 2, "next", speed=2.0)
    assert np.allclose(xs, raw[[0, 2]]) and np.allclose(ys, clean[4])


def test_split_by_session_and_normalisation_fitted_on_train_only():
    sessions = synthetic_sessions(20, length=30, seed=1)
    for i, s in enumerate(sessions):
        s.raw += i * 100  # each session its own level: the stats show where they came from
    splits = split_sessions(sessions, seed=0)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    names = [s.name for k in splits for s in splits[k]]
    assert sorted(names) == sorted(s.name for s in sessions)
    norm = Normalisation.fit(splits["train"])
    train_frames = np.concatenate([s.raw for s in splits["train"]])
    assert np.allclose(norm.mean, train_frames.mean(0), rtol=1e-4)
    all_frames = np.concatenate([s.raw for s in sessions])
    assert not np.allclose(norm.mean, all_frames.mean(0), rtol=1e-3)
    assert np.allclose(norm.invert(norm.apply(all_frames)), all_frames, atol=1e-2)
    with pytest.raises(DataError, match="at least 3"):
        split_sessions(sessions[:2], seed=0)


def test_synthetic_sessions_are_noisy_versions_of_a_smooth_track():
    (s,) = synthetic_sessions(1, length=300, seed=0)
    assert s.raw.shape == s.clean.shape and np.isfinite(s.raw).all()
    noise = s.raw - s.clean
    assert 0.2 < np.median(np.abs(noise)) < 1  # jitter of about half a degree
    assert np.abs(noise).max() > 10  # some outliers
    assert np.abs(np.diff(s.clean, axis=0)).max() < 10  # smooth at 30 fps
