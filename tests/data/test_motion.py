"""Motion sessions: JSON round trip, bad input, windows, split, normalisation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from framecast.data.motion import (
    DataCollector,
    Normalisation,
    Session,
    load_sessions,
    make_window,
    read_sessions,
    split_for_training,
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
        collector.add_frame([t, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11.5], timestamp=t / 30)
    collector.save_sequence()
    collector.add_frame([0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1], timestamp=0.0)
    path = collector.save()
    sessions = load_sessions(path)
    assert [len(s) for s in sessions] == [3, 1]
    assert sessions[0].raw[2].tolist() == [2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11.5]
    assert np.allclose(sessions[0].timestamps, [0, 1 / 30, 2 / 30])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left behind
    with pytest.raises(DataError, match="right_arm must be a list of 3"):
        collector.add_frame([0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0], timestamp=0.0)
    with pytest.raises(DataError, match="sequence 1 frame 1: timestamp .* earlier"):
        collector.add_frame([0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], timestamp=-1.0)


def test_the_users_collector_calls_work_unchanged(tmp_path, monkeypatch):
    """Document 003's collect_data.py: ``DataCollector()`` writes "training_data.json";
    ``collector.add_frame(head_rot, hips_rot, left_arm, right_arm)`` stamps the frame with
    ``datetime.now().isoformat()``; ``collector.save_sequence()`` closes the sequence and
    writes the file (a JSON list of sequences of frames with timestamp, head, hips,
    left_arm, right_arm), which framecast reads as it is (issue 23 item 8)."""
    monkeypatch.chdir(tmp_path)
    collector = DataCollector()
    for i in range(3):
        collector.add_frame([i, 0, 0], {"x": 0, "y": i, "z": 0}, [1, 2, 3], [4, 5, 6])
    assert collector.save_sequence() == 1
    collector.add_frame([9, 9, 9], [0, 0, 0], [0, 0, 0], [0, 0, 0])
    written = json.loads((tmp_path / "training_data.json").read_text())
    assert len(written) == 1 and len(written[0]) == 3  # the open sequence is not saved yet
    assert set(written[0][0]) == {"timestamp", "head", "hips", "left_arm", "right_arm"}
    datetime.fromisoformat(written[0][0]["timestamp"])  # stamped at the call, ISO-8601
    collector.save_sequence()
    (first, second) = load_sessions(tmp_path / "training_data.json")
    assert first.raw[:, 0].tolist() == [0, 1, 2] and first.raw[:, 4].tolist() == [0, 1, 2]
    assert len(second) == 1
    assert collector.save_sequence() == 2  # nothing open: nothing changes


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
            r"session 1 frame 1: left_arm must be a list of 3 numbers .*got length 2",
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


def users_collector_frames(n: int, start: datetime, seed: int = 0) -> list[dict]:
    """Frames as the users' DataCollector writes them: ``datetime.isoformat()`` timestamps
    (30 fps; microseconds dropped on whole seconds, as isoformat does) and [x, y, z] lists."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        stamp = start + timedelta(seconds=i / 30)
        frame = {"timestamp": stamp.isoformat()}
        for joint in ("head", "hips", "left_arm", "right_arm"):
            frame[joint] = [float(v) for v in rng.normal(0, 10, 3)]
        frames.append(frame)
    return frames


def test_users_collector_format_iso_timestamps_and_xyz_objects(tmp_path):
    naive = users_collector_frames(40, datetime(2026, 11, 30, 8, 37, 4))
    assert naive[0]["timestamp"] == "2026-11-30T08:37:04"  # the string in the issue
    offset = users_collector_frames(5, datetime(2026, 11, 30, 8, 37, 4, tzinfo=timezone.utc))
    offset[1]["timestamp"] = offset[1]["timestamp"].replace("+00:00", "Z")
    objects = [
        {**f, "hips": dict(zip("xyz", f["hips"])), "timestamp": 12.5 + i}
        for i, f in enumerate(naive[:3])
    ]
    path = tmp_path / "collector.json"
    path.write_text(json.dumps([naive, offset, objects]))
    a, b, c = load_sessions(path)
    assert len(a) == 40 and np.allclose(np.diff(a.timestamps), 1 / 30, atol=1e-6)
    assert a.timestamps[0] == datetime(2026, 11, 30, 8, 37, 4, tzinfo=timezone.utc).timestamp()
    assert b.timestamps[0] == a.timestamps[0] and np.all(np.diff(b.timestamps) > 0)
    assert np.allclose(
        a.raw[0], [v for k in ("head", "hips", "left_arm", "right_arm") for v in naive[0][k]]
    )
    assert np.array_equal(c.raw, a.raw[:3]) and c.timestamps.tolist() == [12.5, 13.5, 14.5]
    # the users' collector API: ISO string or None (now) and {x, y, z} objects
    collector = DataCollector(tmp_path / "c.json")
    collector.add_frame(
        {"x": 1, "y": 2, "z": 3},
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
        timestamp="2026-11-30T08:37:04.500000+01:00",
    )
    collector.add_frame([1, 2, 3], [0, 0, 0], [0, 0, 0], [0, 0, 0])
    (s,) = load_sessions(collector.save())
    assert s.raw[:, :3].tolist() == [[1, 2, 3], [1, 2, 3]]


def test_bad_frames_are_skipped_and_counted_or_refused_with_strict(tmp_path):
    frames = users_collector_frames(8, datetime(2026, 11, 30, 8, 0, 0))
    frames[2] = {k: v for k, v in frames[2].items() if k != "left_arm"}  # missing joint
    frames[4]["head"] = {"x": 1.0, "y": float("nan"), "z": 0.0}  # NaN
    frames[6]["timestamp"] = frames[0]["timestamp"]  # goes back
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([frames[:1], frames]))  # NaN is written as NaN (json allows)
    loaded = read_sessions(path, strict=False)
    assert [len(s) for s in loaded.sessions] == [1, 5]
    assert len(loaded.skipped_frames) == 3
    assert "session 1 frame 2: missing key(s) left_arm" in loaded.skipped_frames[0]
    assert "session 1 frame 4: head holds nan" in loaded.skipped_frames[1]
    assert "session 1 frame 6: timestamp" in loaded.skipped_frames[2]
    assert "earlier than the previous" in loaded.skipped_frames[2]
    assert loaded.summary().startswith("skipped 3 bad frame(s)")
    with pytest.raises(DataError, match=r"bad.json: session 1 frame 2: missing key\(s\) left_arm"):
        read_sessions(path, strict=True)
    path.write_text(json.dumps([[{**frames[0], "timestamp": "yesterday"}]]))
    with pytest.raises(DataError, match="session 0 frame 0: timestamp 'yesterday' is neither"):
        load_sessions(path)


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_sessions_split_by_time(n):
    sessions = synthetic_sessions(n, length=100, seed=2)
    splits, note = split_for_training(sessions, seed=0, min_frames=11)
    assert note is not None and "split by time" in note
    assert [len(splits[k]) for k in ("train", "val", "test")] == [n, n, n]
    for i, s in enumerate(sessions):
        train, val, test = (splits[k][i] for k in ("train", "val", "test"))
        assert len(train) + len(val) + len(test) == len(s)
        assert min(len(val), len(test)) >= 11
        # in time order, no frame shared: train < val < test
        assert train.timestamps[-1] < val.timestamps[0] < val.timestamps[-1] < test.timestamps[0]
        assert np.array_equal(np.concatenate([train.raw, val.raw, test.raw]), s.raw)
    short = synthetic_sessions(1, length=20, seed=2)
    short[0] = Session(short[0].raw[:30], short[0].clean[:30], short[0].timestamps[:30])
    with pytest.raises(DataError, match="at least 3 x .* = 33 frames"):
        split_for_training(short, seed=0, min_frames=11)
    splits, note = split_for_training(synthetic_sessions(3, length=40, seed=2), 0, 11)
    assert note is None and [len(v) for v in splits.values()] == [1, 1, 1]
