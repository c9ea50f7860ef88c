"""PhiFlow smoke simulation: frames, dataset layout, reproducibility, argument checks.

Tiny on purpose (32×32, a few frames): PhiFlow costs about 0.1–0.3 s per step here,
whatever the grid size, so the whole file runs a few dozen steps.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from framecast.cli import main
from framecast.data.shard import ShardReader
from framecast.data.smoke import (
    INFLOW_MODES,
    LABEL_NAMES,
    PRESETS,
    VARIED_RANGES,
    Disc,
    Inflow,
    PlumeParams,
    close_slits,
    lean_label,
    sample_varied_params,
    simulate_plumes,
    simulate_smoke_dataset,
)
from framecast.errors import DataError

TINY = {"videos": 4, "frames": 3, "size": 32, "warmup_frames": 2, "splits": (0.5, 0.25, 0.25)}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("smoke") / "ds"
    summary = simulate_smoke_dataset(out, seed=0, plumes_per_batch=4, progress=False, **TINY)
    return out, summary


def test_plumes_rise_as_smoke_on_black() -> None:
    calm_weak = PlumeParams(inflow_x=0.5, radius=0.04, strength=0.1, buoyancy=0.2, wind=0.0)
    windy_strong = PlumeParams(inflow_x=0.3, radius=0.08, strength=0.3, buoyancy=0.5, wind=0.15)
    videos = simulate_plumes([calm_weak, windy_strong], frames=8, size=32, warmup_frames=4)

    assert videos.shape == (2, 8, 32, 32, 3) and videos.dtype == np.uint8
    brightness = videos.astype(np.float64).mean(axis=-1)  # (B, T, H, W)
    lit = brightness > 0
    # Smoke in every frame, on a mostly black background, never fully saturated.
    assert lit.any(axis=(2, 3)).all()
    assert lit.mean(axis=(2, 3)).max() < 0.5
    assert videos.max() < 255
    # Grey-white smoke: channels close to each other.
    assert np.abs(videos[..., 0].astype(int) - videos[..., 2]).max() < 30
    # The source is near the bottom (high row index) and the smoke moves up (row index falls).
    rows = np.arange(32)[:, None]
    centroid = (brightness * rows).sum(axis=(2, 3)) / brightness.sum(axis=(2, 3))  # (B, T)
    assert (centroid > 16).all()
    assert (np.diff(centroid, axis=1) < 0).all()
    # The stronger, more buoyant plume rises faster.
    assert centroid[1, 0] - centroid[1, -1] > centroid[0, 0] - centroid[0, -1]


def test_dataset_layout_meta_and_splits(dataset) -> None:
    out, summary = dataset
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "test", "train", "val"]
    ids: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        shards = sorted((out / split).glob("*.fcshard"))
        assert [p.name for p in shards] == ["part-00000.fcshard"]
        reader = ShardReader(shards[0])
        assert reader.frame_shape == (32, 32, 3) and reader.dtype == np.uint8
        assert reader.meta["source"] == "phiflow-smoke"
        ids[split] = [v.id for v in reader.videos]
        for i, video in enumerate(reader.videos):
            assert reader.read(i).shape == (3, 32, 32, 3)
            meta = video.meta
            assert set(meta) >= {
                "inflow_x",
                "radius",
                "strength",
                "buoyancy",
                "wind",
                "label",
                "label_names",
            }
            assert meta["label"] == lean_label(meta["wind"] / meta["buoyancy"]) and meta[
                "label_names"
            ] == list(LABEL_NAMES)
    assert {k: len(v) for k, v in ids.items()} == {"train": 2, "val": 1, "test": 1}
    all_ids = sum(ids.values(), [])
    assert sorted(all_ids) == [
        f"smoke-{i:05d}" for i in range(4)
    ]  # each video in exactly one split

    record = json.loads((out / "dataset.json").read_text())
    assert record["source"] == "phiflow-smoke"
    assert {s: record["splits"][s]["videos"] for s in ids} == {"train": 2, "val": 1, "test": 1}
    assert record["label_names"] == list(LABEL_NAMES)
    assert summary.videos == {"train": 2, "val": 1, "test": 1}
    assert summary.frames_per_second > 0
    assert summary.shards["val"] == [out / "val" / "part-00000.fcshard"]
    assert str(out / "dataset.json") in summary.format()


def test_same_seed_same_bytes_whatever_the_batching(dataset, tmp_path) -> None:
    out, _ = dataset
    again = tmp_path / "again"
    again.mkdir()
    (again / "notes.txt").write_text("kept")
    (again / "train").mkdir()
    (again / "train" / "stale.fcshard").write_bytes(b"old")
    # overwrite replaces the splits and dataset.json, leaves other files; batching 3+1
    # instead of 4 (two batches, so two worker processes) must not change a byte.
    simulate_smoke_dataset(
        again, seed=0, plumes_per_batch=3, progress=False, overwrite=True, **TINY
    )
    files = _files(again)
    assert files.pop("notes.txt") == b"kept"
    assert files == _files(out)


def test_different_seed_differs(dataset, tmp_path) -> None:
    out, _ = dataset
    other = tmp_path / "other"
    simulate_smoke_dataset(other, seed=1, progress=False, **TINY)
    train = ShardReader(out / "train" / "part-00000.fcshard")
    other_train = ShardReader(other / "train" / "part-00000.fcshard")
    assert [v.meta for v in train.videos] != [v.meta for v in other_train.videos]
    assert not np.array_equal(train.read(0), other_train.read(0))


def test_refuses_non_empty_output(tmp_path) -> None:
    (tmp_path / "something.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        simulate_smoke_dataset(tmp_path, progress=False, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something.txt"]


def test_train_never_empty_with_one_video(tmp_path) -> None:
    summary = simulate_smoke_dataset(
        tmp_path / "one",
        videos=1,
        frames=1,
        size=8,
        warmup_frames=0,
        splits=(0, 0.5, 0.5),
        progress=False,
    )
    assert summary.videos == {"train": 1, "val": 0, "test": 0}
    assert (tmp_path / "one" / "val").is_dir() and not any((tmp_path / "one" / "val").iterdir())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"videos": 0}, "videos"),
        ({"frames": 0}, "frames"),
        ({"size": 4}, "size"),
        ({"size": 32.0}, "size"),
        ({"plumes_per_batch": 0}, "plumes_per_batch"),
        ({"warmup_frames": -1}, "warmup_frames"),
        ({"wind": -0.1}, "wind"),
        ({"splits": (0.8, 0.2)}, "splits"),
        ({"splits": (0.9, -0.1, 0.2)}, "splits"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, named) -> None:
    with pytest.raises(DataError, match=named) as excinfo:
        simulate_smoke_dataset(tmp_path / "ds", progress=False, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(excinfo.value)
    assert not (tmp_path / "ds").exists()


def test_label_bins_the_lean() -> None:
    assert [lean_label(x) for x in (-0.5, -0.15, 0.0, 0.15, 0.5)] == [0, 1, 1, 1, 2]
    # A strong wind on a very buoyant plume barely tilts it: upright; a weak one on a weak plume leans.
    assert PlumeParams(0.5, 0.05, 0.2, buoyancy=0.5, wind=0.06).label == 1
    assert LABEL_NAMES[PlumeParams(0.5, 0.05, 0.2, buoyancy=0.2, wind=-0.06).label] == "leans_left"
    with pytest.raises(DataError, match="buoyancy"):
        PlumeParams(0.5, 0.05, 0.2, buoyancy=0.0, wind=0.0)


# -- presets ------------------------------------------------------------------------------


def test_varied_draws_stay_in_their_documented_ranges() -> None:
    videos = sample_varied_params(np.random.default_rng(0), 300, frames=20)
    assert videos[:5] == sample_varied_params(np.random.default_rng(0), 5, frames=20)
    r = VARIED_RANGES
    inflows = [i for v in videos for i in v.inflows]
    obstacles = [o for v in videos for o in v.obstacles]
    assert {len(v.inflows) for v in videos} == {1, 2, 3}
    assert {len(v.obstacles) for v in videos} == {0, 1, 2}
    assert {i.mode for i in inflows} == set(INFLOW_MODES)
    for key, values in {
        "inflow_x": [i.x for i in inflows],
        "inflow_y": [i.y for i in inflows],
        "radius": [i.radius for i in inflows],
        "rate": [i.rate for i in inflows],
        "buoyancy": [v.buoyancy for v in videos],
        "wind": [v.wind for v in videos],
        "pulse_period": [i.period for i in inflows if i.mode == "pulse"],
        "pulse_duty": [i.duty for i in inflows if i.mode == "pulse"],
        "stop_at": [i.stop_frame / 20 for i in inflows if i.mode == "stop"],
        "obstacle_x": [o.x for o in obstacles],
        "obstacle_y": [o.y for o in obstacles],
        "obstacle_radius": [o.radius for o in obstacles],
    }.items():
        low, high = r[key]
        assert low <= min(values) and max(values) <= high, key
    meta = videos[0].to_meta()
    assert meta["preset"] == "varied" and meta["label"] == lean_label(meta["lean"])
    assert {"inflows", "obstacles", "buoyancy", "wind", "label_names"} <= set(meta)


def test_inflow_modes_switch_the_source() -> None:
    pulse = Inflow(0.5, 0.1, 0.05, 0.2, "pulse", period=4.0, duty=0.5, phase=1.0)
    assert [pulse.on(f) for f in range(-1, 7)] == [1, 1, 0, 0, 1, 1, 0, 0]
    stop = Inflow(0.5, 0.1, 0.05, 0.2, "stop", stop_frame=2)
    assert [stop.on(f) for f in (-3, 0, 1, 2, 5)] == [True, True, True, False, False]
    assert Inflow(0.5, 0.1, 0.05, 0.2).on(100)
    assert set(stop.to_meta()) == {"x", "y", "radius", "rate", "mode", "stop_frame"}


def test_varied_dataset_same_seed_same_bytes(tmp_path) -> None:
    # Same batching: with obstacles in a batch the pressure solve couples its videos.
    tiny = {**TINY, "videos": 2, "frames": 2, "size": 16, "warmup_frames": 1}
    tiny.update(preset="varied", progress=False)
    first = simulate_smoke_dataset(tmp_path / "a", seed=3, plumes_per_batch=2, **tiny)
    simulate_smoke_dataset(tmp_path / "b", seed=3, plumes_per_batch=2, **tiny)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert "preset varied" in first.format()
    record = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert record["preset"] == "varied"
    assert record["simulation"]["ranges"]["obstacles"] == [0, 2]
    reader = ShardReader(tmp_path / "a" / "train" / "part-00000.fcshard")
    assert reader.meta["preset"] == "varied"
    meta = reader.videos[0].meta
    assert meta["preset"] == "varied" and 1 <= len(meta["inflows"]) <= 3
    frames = reader.read(0)
    assert frames.shape == (2, 16, 16, 3) and frames.max() > 0


def test_unknown_preset_is_refused_with_the_allowed_ones(tmp_path, capsys) -> None:
    with pytest.raises(DataError, match="'bogus'.*simple, varied"):
        simulate_smoke_dataset(tmp_path / "ds", preset="bogus", progress=False, **TINY)
    assert not (tmp_path / "ds").exists()
    assert main(["data", "smoke", str(tmp_path / "ds"), "--preset", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'bogus'" in err and "simple, varied" in err


def test_varied_size_limit_is_named(tmp_path) -> None:
    # PhiFlow's obstacle solve indexes (videos * size**2)**2 entries in int32.
    with pytest.raises(DataError, match="size <= 215, got size 216"):
        simulate_smoke_dataset(tmp_path / "ds", preset="varied", size=216, progress=False)
    video = sample_varied_params(np.random.default_rng(0), 1, frames=4)[0]
    video = dataclasses.replace(video, obstacles=(Disc(0.5, 0.5, 0.1),))
    with pytest.raises(DataError, match="216"):
        simulate_plumes([video], frames=1, size=216)


def test_help_documents_every_varied_range(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["data", "smoke", "--help"])
    text = capsys.readouterr().out
    assert all(preset in text for preset in PRESETS)
    for key, (low, high) in VARIED_RANGES.items():
        assert f"{low:g}..{high:g}" in text, key


def test_holdout_conditions_put_a_family_of_plumes_in_its_own_split(tmp_path) -> None:
    """Train on calm plumes, test on windy ones: every video meeting a condition is in
    heldout/, none of the others, and the parameters per video are those of the same seed
    without conditions."""
    import json

    from framecast.data.smoke import HoldoutCondition

    kwargs = dict(videos=8, frames=2, size=16, warmup_frames=1, preset="varied", progress=False)
    plain = simulate_smoke_dataset(tmp_path / "plain", seed=3, **kwargs)
    held = simulate_smoke_dataset(
        tmp_path / "held", seed=3, holdout=["abs_wind > 0.1", "inflows >= 3"], **kwargs
    )
    assert set(held.videos) == {"train", "val", "test", "heldout"}
    conditions = [HoldoutCondition.parse(c) for c in ("abs_wind > 0.1", "inflows >= 3")]
    metas = {}
    for split in held.videos:
        for shard in held.shards[split]:
            for video in ShardReader(shard).videos:
                metas[video.id] = (split, video.meta)
    for split, meta in metas.values():
        assert any(c.holds(meta) for c in conditions) == (split == "heldout")
    assert 0 < held.videos["heldout"] < 8
    plain_metas = {
        v.id: v.meta
        for split in plain.videos
        for shard in plain.shards[split]
        for v in ShardReader(shard).videos
    }
    assert {k: m for k, (_, m) in metas.items()} == plain_metas
    record = json.loads((tmp_path / "held" / "dataset.json").read_text())
    assert record["holdout"]["conditions"] == ["abs_wind > 0.1", "inflows >= 3"]
    assert record["splits"]["heldout"]["videos"] == held.videos["heldout"]
    assert "holdout" not in json.loads((tmp_path / "plain" / "dataset.json").read_text())


@pytest.mark.parametrize(
    "condition, message",
    [
        ("wind", "expected KEY OP NUMBER"),
        ("gravity > 1", "unknown key 'gravity'; allowed: buoyancy"),
        ("buoyancy >> 1", "expected KEY OP NUMBER"),
    ],
)
def test_bad_holdout_conditions_are_named(tmp_path, condition, message) -> None:
    with pytest.raises(DataError, match=message):
        simulate_smoke_dataset(tmp_path / "x", holdout=[condition], progress=False, **TINY)


def test_a_holdout_that_takes_every_video_is_refused(tmp_path) -> None:
    with pytest.raises(DataError, match="nothing is left to train on"):
        simulate_smoke_dataset(tmp_path / "x", holdout=["buoyancy > 0"], progress=False, **TINY)


def test_a_sub_cell_slit_between_discs_is_closed_not_fatal() -> None:
    """Seed 0's video 188 has two discs half a cell apart: PhiFlow's pressure solve fails
    on it (a phiml assertion, in a batch of 8 and alone). It is simulated with the slit
    closed, with a warning naming both geometries; other discs stay as drawn."""
    params = sample_varied_params(
        np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0]), 189, 40, 0.25
    )[188]
    closed = close_slits(params, 64)
    grown = zip(closed.obstacles, params.obstacles, strict=True)
    assert all(d.radius > o.radius for d, o in grown)
    far = dataclasses.replace(params, obstacles=(params.obstacles[0],))
    assert close_slits(far, 64) == far
    with pytest.warns(UserWarning, match="slit under one cell wide"):
        video = simulate_plumes([params], frames=1, size=64, warmup_frames=0)
    assert video.shape == (1, 1, 64, 64, 3)
