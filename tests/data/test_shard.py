"""The packed shard format: round trip, random access, atomic writes, damage detection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from framecast.data.shard import (
    ShardReader,
    ShardWriter,
    _write_shard_file,
    read_shard_header,
    verify_shard,
    write_shard,
)
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


def _flip_byte(path, offset_from_end: int = 1) -> None:
    """Flip every bit of one payload byte in place (the header stays valid)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_payload_byte_is_reported_with_file_and_video(tmp_path, random_frames):
    path = write_shard(
        tmp_path / "s.fcshard", [("a", random_frames(3), None), ("b", random_frames(4), None)]
    )
    assert all(isinstance(v.crc32, int) for v in ShardReader(path).videos)
    _flip_byte(path)  # the last byte: video 'b'
    reader = ShardReader(path)
    reader.read(0)  # video 'a' is intact
    with pytest.raises(DataError, match=r"s\.fcshard: video 'b' .* does not match its checksum"):
        reader.read(1, 0, 2)
    with pytest.raises(DataError, match=r"video 'b'"):
        verify_shard(path)
    # Checked once per process and video, again in each process a reader is pickled to.
    clean = write_shard(tmp_path / "c.fcshard", [("a", random_frames(3), None)])
    reader = ShardReader(clean)
    reader.read(0)
    assert reader._verified == {0} and pickle.loads(pickle.dumps(reader))._verified == set()


def test_shards_without_checksums_still_read(tmp_path, random_frames):
    """Shards written before checksums: no ``crc32`` key, read unchecked."""
    frames = random_frames(3)
    path = write_shard(tmp_path / "s.fcshard", [("a", frames, None)])
    header = read_shard_header(path)
    payload = path.read_bytes()[header["data_offset"] :]
    del header["videos"][0]["crc32"]
    (tmp_path / "payload").write_bytes(payload)
    old = tmp_path / "old.fcshard"
    _write_shard_file(old, header, tmp_path / "payload")
    np.testing.assert_array_equal(ShardReader(old).read(0), frames)
    assert verify_shard(old) == (1, 1)
    bad = dict(header, videos=[dict(header["videos"][0], crc32="oops")])
    _write_shard_file(tmp_path / "bad.fcshard", bad, tmp_path / "payload")
    with pytest.raises(DataError, match=r"crc32 is 'oops'; expected an unsigned 32-bit integer"):
        ShardReader(tmp_path / "bad.fcshard")


def test_data_verify_lists_every_corrupt_video_and_exits_2(tmp_path, random_frames, capsys):
    from framecast.cli import main

    for split in ("train", "val"):
        write_shard(tmp_path / split / "part-00000.fcshard", [("a", random_frames(3), None)])
    write_shard(
        tmp_path / "latents" / "train" / "part-00000.fcshard", [("a", random_frames(2), None)]
    )
    assert main(["data", "verify", str(tmp_path), "--no-progress"]) == 0
    assert "3 shards, 3 videos checked" in capsys.readouterr().out
    _flip_byte(tmp_path / "val" / "part-00000.fcshard")
    _flip_byte(tmp_path / "latents" / "train" / "part-00000.fcshard", 5)
    assert main(["data", "verify", str(tmp_path), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "2 corrupt:" in captured.out
    assert "latents/train/part-00000.fcshard: video 'a'" in captured.out
    assert "val/part-00000.fcshard: video 'a'" in captured.out
    assert "2 corrupt shard(s) or video(s)" in captured.err
