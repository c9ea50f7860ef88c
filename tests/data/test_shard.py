"""The packed shard format: round trip, random access, atomic writes, damage detection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from framecast.data.shard import ShardReader, ShardWriter, read_shard_header, write_shard
from framecast.errors import DataError


def test_round_trip_and_random_access(tmp_path, random_frames):
    a, b = random_frames(5, seed=1), random_frames(9, seed=2)
    path = write_shard(
        tmp_path / "s.fcshard", [("a", a, {"label": 3}), ("b", b, None)], meta={"size": 16}
    )
    reader = ShardReader(path)
    assert len(reader) == 2 and reader.meta == {"size": 16} and reader.frame_shape == (16, 16, 3)
    assert reader.videos[0].meta == {"label": 3}
    np.testing.assert_array_equal(reader.read(0), a)
    np.testing.assert_array_equal(reader.read(reader.index_of("b"), 2, 9, 3), b[2:9:3])
    assert read_shard_header(path)["data_offset"] % 4096 == 0
    with pytest.raises(DataError, match=r"'b' has 9 frames; requested frames 8\.\.9"):
        reader.read(1, 8, 10)
    with pytest.raises(DataError, match=r"no video with id 'c'"):
        reader.index_of("c")


def test_reader_pickles_without_its_memory_map(tmp_path, random_frames):
    frames = random_frames(4)
    reader = ShardReader(write_shard(tmp_path / "s.fcshard", [("a", frames, None)]))
    reader.read(0)
    state = pickle.dumps(reader)
    assert len(state) < frames.nbytes  # the payload is not in the pickle
    np.testing.assert_array_equal(pickle.loads(state).read(0), frames)


def test_exception_in_writer_leaves_nothing(tmp_path, random_frames):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "s.fcshard") as writer:
        writer.add("a", random_frames(3))
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_bad_videos(tmp_path, random_frames):
    with ShardWriter(tmp_path / "s.fcshard") as writer:
        writer.add("a", random_frames(2))
        with pytest.raises(
            DataError, match=r"'b' has frames \(8, 8, 3\) uint8, but this shard holds \(16, 16, 3\)"
        ):
            writer.add("b", random_frames(2, 8, 8))
        with pytest.raises(DataError, match=r"'a' added twice"):
            writer.add("a", random_frames(2))
        with pytest.raises(DataError, match=r"'c' has no frames"):
            writer.add("c", random_frames(0))
    assert [v.id for v in ShardReader(tmp_path / "s.fcshard").videos] == ["a"]
    with pytest.raises(DataError, match=r"refusing to write a shard with no videos"):
        ShardWriter(tmp_path / "empty.fcshard").close()
    assert not (tmp_path / "empty.fcshard").exists()


def test_damaged_shards_are_reported(tmp_path, random_frames):
    path = write_shard(tmp_path / "s.fcshard", [("a", random_frames(4), None)])
    data = path.read_bytes()
    (tmp_path / "cut.fcshard").write_bytes(data[:-100])
    with pytest.raises(DataError, match=r"cut\.fcshard: shard is truncated"):
        ShardReader(tmp_path / "cut.fcshard")
    (tmp_path / "magic.fcshard").write_bytes(b"NOTSHARD" + data[8:])
    with pytest.raises(DataError, match=r"magic\.fcshard: not a framecast shard"):
        ShardReader(tmp_path / "magic.fcshard")
    (tmp_path / "tiny.fcshard").write_bytes(data[:12])
    with pytest.raises(DataError, match=r"tiny\.fcshard: unreadable shard"):
        ShardReader(tmp_path / "tiny.fcshard")
