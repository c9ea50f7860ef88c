"""ClipDataset: clip sampling, tensors, short videos, split helpers and DataLoader workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from framecast.config.schema import DataConfig, TrainingConfig
from framecast.data.dataset import ClipDataset, list_splits, make_dataloader, split_dir
from framecast.data.shard import write_shard
from framecast.errors import DataError


@pytest.fixture
def shard_split(tmp_path, random_frames):
    """A split of 3 videos (12, 14, 16 frames of 16x16) in one shard, labelled 0..2."""
    videos = [(f"v{i}", random_frames(12 + 2 * i, seed=i), {"label": i}) for i in range(3)]
    write_shard(tmp_path / "train" / "part-00000.fcshard", videos)
    return tmp_path / "train", [frames for _, frames, _ in videos]


def test_items_are_normalised_clips_at_stride(shard_split):
    path, videos = shard_split
    ds = ClipDataset(path, num_frames=4, frame_stride=2, train=False)
    assert len(ds) == 3
    item = ds[1]
    assert item["frames"].shape == (4, 3, 16, 16) and item["frames"].dtype == torch.float32
    assert (item["video_id"], item["start"], item["video_index"], item["label"]) == (
        "part-00000.fcshard:v1",
        0,
        1,
        1,
    )
    expected = torch.from_numpy(videos[1][0:7:2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(item["frames"], expected)
    assert item["frames"].min() >= -1 and item["frames"].max() <= 1


def test_eval_starts_are_evenly_spaced_and_identical_across_instances(shard_split):
    path, _ = shard_split
    a = ClipDataset(path, num_frames=4, train=False, clips_per_video=3)
    b = ClipDataset(path, num_frames=4, train=False, clips_per_video=3, seed=123)
    starts = [a[i]["start"] for i in range(len(a))]
    assert starts == [b[i]["start"] for i in range(len(b))]
    assert starts[:3] == [0, 4, 8]  # 12 frames, clip of 4: starts 0..8
    assert starts == [a[i]["start"] for i in range(len(a))]  # and again, the same
    torch.testing.assert_close(a[4]["frames"], b[4]["frames"])


def test_train_starts_are_random_and_reproducible(shard_split):
    path, _ = shard_split

    def draw(seed: int) -> list[int]:
        torch.manual_seed(0)
        ds = ClipDataset(path, num_frames=4, train=True, clips_per_video=20, seed=seed)
        return [ds[i]["start"] for i in range(20)]  # 20 clips of video 0: starts 0..8

    starts = draw(0)
    assert len(set(starts)) > 3 and all(0 <= s <= 8 for s in starts)
    assert draw(0) == starts
    assert draw(1) != starts


def test_short_video_raises_or_is_skipped(tmp_path, random_frames):
    write_shard(
        tmp_path / "s.fcshard",
        [("long", random_frames(10), None), ("short", random_frames(5), None)],
    )
    with pytest.raises(
        DataError,
        match=r"'s\.fcshard:short' has 5 frames, too short .* 4 frames at stride 2 \(needs 7",
    ):
        ClipDataset(tmp_path, num_frames=4, frame_stride=2)
    ds = ClipDataset(tmp_path, num_frames=4, frame_stride=2, skip_short=True)
    assert ds.skipped == [("s.fcshard:short", 5)] and len(ds) == 1
    with pytest.raises(DataError, match=r"all 2 videos are shorter"):
        ClipDataset(tmp_path, num_frames=11, skip_short=True)


def test_image_size_crops_and_resizes(tmp_path, random_frames):
    write_shard(tmp_path / "a.fcshard", [("wide", random_frames(4, 16, 24), None)])
    write_shard(tmp_path / "b.fcshard", [("small", random_frames(4, 8, 8), None)])
    with pytest.raises(DataError, match=r"different frame sizes .*set image_size"):
        ClipDataset(tmp_path, num_frames=2)
    ds = ClipDataset(tmp_path, num_frames=2, image_size=12, train=False)
    assert {tuple(ds[i]["frames"].shape) for i in range(len(ds))} == {(2, 3, 12, 12)}


def test_single_channel(shard_split):
    path, videos = shard_split
    item = ClipDataset(path, num_frames=2, train=False, channels=1)[0]
    assert item["frames"].shape == (2, 1, 16, 16)
    luma = videos[0][0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    torch.testing.assert_close(item["frames"][0, 0], torch.from_numpy(luma) / 127.5 - 1)


def test_labels_only_when_every_video_has_one(tmp_path, random_frames, write_frame_folder):
    write_frame_folder(tmp_path / "a", random_frames(3))
    write_frame_folder(tmp_path / "b", random_frames(3))
    (tmp_path / "a" / "meta.json").write_text(json.dumps({"label": 1, "note": "x"}))
    ds = ClipDataset(tmp_path, num_frames=2)
    assert not ds.has_labels and "label" not in ds[0]
    assert ds.videos[0].meta["note"] == "x"


def test_split_helpers(tmp_path, random_frames, write_frame_folder):
    with pytest.raises(DataError, match=r"dataset folder does not exist"):
        list_splits(tmp_path / "nothing")
    with pytest.raises(DataError, match=r"no non-empty split"):
        list_splits(tmp_path)
    write_frame_folder(tmp_path / "train" / "v", random_frames(2))
    (tmp_path / "val").mkdir()
    assert list_splits(tmp_path) == ["train"]
    assert split_dir(tmp_path, "train") == tmp_path / "train"
    with pytest.raises(DataError, match=r"split 'val' is empty"):
        split_dir(tmp_path, "val")
    with pytest.raises(DataError, match=r"split 'test' is missing \(dataset has: train, val"):
        split_dir(tmp_path, "test")
    with pytest.raises(DataError, match=r"val: split has no videos"):
        ClipDataset(tmp_path / "val", num_frames=2)


def test_dataloader_with_two_workers(tmp_path, random_frames, write_frame_folder):
    # Frame folders and a shard side by side: both must survive pickling into workers.
    write_shard(
        tmp_path / "train" / "part-00000.fcshard",
        [(f"s{i}", random_frames(8, seed=i), None) for i in range(3)],
    )
    for i in range(3):
        write_frame_folder(tmp_path / "train" / f"f{i}", random_frames(8, seed=10 + i))
    data = DataConfig(
        image_size=16, batch_size=4, num_workers=2, clips_per_video=2, eval_clips_per_video=1
    )
    training = TrainingConfig(num_observations=4, condition_frames=1, frames_to_generate=3)
    loader = make_dataloader(tmp_path / "train", data, training, train=True)
    assert loader.drop_last and loader.persistent_workers
    batches = list(loader)
    assert len(batches) == 3  # 12 clips, batches of 4
    assert all(b["frames"].shape == (4, 4, 3, 16, 16) for b in batches)
    assert sorted(i for b in batches for i in b["video_index"].tolist()) == sorted(
        list(range(6)) * 2
    )

    eval_loader = make_dataloader(
        tmp_path / "train", data.model_copy(update={"num_workers": 0}), training, train=False
    )
    first = [b["start"].tolist() for b in eval_loader]
    assert first == [b["start"].tolist() for b in eval_loader] == [[0, 0, 0, 0], [0, 0]]


def test_train_loader_smaller_than_one_batch_keeps_it(shard_split):
    path, _ = shard_split
    data = DataConfig(image_size=16, batch_size=8, num_workers=0, clips_per_video=1)
    training = TrainingConfig(num_observations=4, condition_frames=1, frames_to_generate=3)
    with pytest.warns(UserWarning, match=r"3 training clips is less than one batch of 8"):
        loader = make_dataloader(path, data, training, train=True)
    assert [len(b["video_id"]) for b in loader] == [3]
