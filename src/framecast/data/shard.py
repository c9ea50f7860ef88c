"""Packed shards: many videos in one file with memory-mapped random access.

A shard holds whole videos of one frame shape and dtype (RGB uint8 frames, or float
latents for the latent cache). Reading a clip touches only that clip's bytes: the
payload is opened with :func:`numpy.memmap`, so a split is never loaded into memory.

File layout (little-endian)::

    bytes 0..7    magic b"FCSHARD1"
    bytes 8..15   uint64 header length L
    bytes 16..    UTF-8 JSON header of L bytes:
                  {"version": 1, "dtype": "uint8", "frame_shape": [H, W, C],
                   "data_offset": D, "num_frames": N,
                   "videos": [{"id": str, "first_frame": int, "num_frames": int,
                               "crc32": int, "meta": {...}}, ...],
                   "meta": {...}}
    bytes D..     N frames of frame_shape and dtype, C-contiguous, D aligned to 4096

Shards are written atomically (temporary file, then rename): a crash never leaves a
half-written shard under the final name. A file shorter than its header promises is
reported as truncated, never read past its end. Each video's bytes carry a CRC-32: a
reader checks a video the first time it reads from it (one streamed pass, once per
process), and :func:`verify_shard` (``framecast data verify``) checks every video, so a
flipped byte is reported with the file and video instead of being trained on. Shards
written before checksums (no ``crc32``) are read unchecked.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framecast.errors import DataError
from framecast.utils import atomic_path

MAGIC = b"FCSHARD1"
SHARD_SUFFIX = ".fcshard"
_ALIGN = 4096
_VERSION = 1


@dataclass(frozen=True)
class ShardVideo:
    """One video's entry in a shard index."""

    id: str
    first_frame: int
    num_frames: int
    meta: dict[str, Any] = field(default_factory=dict)
    crc32: int | None = None  # of the video's payload bytes; None in shards without checksums


class ShardWriter:
    """Accumulate videos, then write them as one shard atomically on :meth:`close`.

    Frames are appended to a temporary payload file as they come, so writing a shard
    never needs all videos in memory at once. Use as a context manager: if the body
    raises, nothing is written under ``path``.

    Example::

        with ShardWriter("train/part-000.fcshard") as w:
            w.add("vid0", frames)   # frames: (T, H, W, C) uint8
    """

    def __init__(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.videos: list[ShardVideo] = []
        self._frame_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None
        self._num_frames = 0
        # Frames stream into a hidden temporary file beside the shard; it is always removed.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, payload_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".payload", dir=self.path.parent
        )
        self._payload_path = Path(payload_name)
        self._payload = os.fdopen(fd, "wb")
        self._closed = False

    def add(self, video_id: str, frames: np.ndarray, meta: Mapping[str, Any] | None = None) -> None:
        """Append one video. ``frames``: (T, *frame_shape), same shape/dtype for all videos."""
        frames = np.ascontiguousarray(frames)
        if frames.ndim < 2 or frames.shape[0] == 0:
            raise DataError(f"{self.path}: video {video_id!r} has no frames (shape {frames.shape})")
        if self._frame_shape is None:
            self._frame_shape = tuple(frames.shape[1:])
            self._dtype = frames.dtype
        elif tuple(frames.shape[1:]) != self._frame_shape or frames.dtype != self._dtype:
            raise DataError(
                f"{self.path}: video {video_id!r} has frames {frames.shape[1:]} {frames.dtype}, "
                f"but this shard holds {self._frame_shape} {self._dtype}"
            )
        if any(v.id == video_id for v in self.videos):
            raise DataError(f"{self.path}: video id {video_id!r} added twice")
        payload = memoryview(frames).cast("B")
        self._payload.write(payload)
        self.videos.append(
            ShardVideo(
                video_id, self._num_frames, frames.shape[0], dict(meta or {}), zlib.crc32(payload)
            )
        )
        self._num_frames += frames.shape[0]

    def close(self) -> Path:
        """Write header + payload to ``path`` atomically and return it."""
        if self._closed:
            return self.path
        self._payload.close()
        try:
            if not self.videos:
                raise DataError(f"{self.path}: refusing to write a shard with no videos")
            header = {
                "version": _VERSION,
                "dtype": np.dtype(self._dtype).str,
                "frame_shape": list(self._frame_shape),
                "num_frames": self._num_frames,
                "videos": [v.__dict__ for v in self.videos],
                "meta": self.meta,
            }
            with atomic_path(self.path) as tmp:
                _write_shard_file(tmp, header, self._payload_path)
        finally:
            self._closed = True
            self._payload_path.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Discard everything added; nothing is written."""
        if not self._closed:
            self._payload.close()
            self._closed = True
            self._payload_path.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _write_shard_file(path: Path, header: dict, payload_path: Path) -> None:
    # The header's data_offset depends on the header's own length: iterate to a fixpoint.
    data_offset = 0
    while True:
        header["data_offset"] = data_offset
        blob = json.dumps(header).encode("utf-8")
        needed = -(-(16 + len(blob)) // _ALIGN) * _ALIGN
        if needed == data_offset:
            break
        data_offset = needed
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        f.write(b"\0" * (data_offset - 16 - len(blob)))
        with open(payload_path, "rb") as payload:
            while chunk := payload.read(1 << 24):
                f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def write_shard(
    path: str | os.PathLike,
    videos: Iterable[tuple[str, np.ndarray, Mapping[str, Any] | None]],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``(video_id, frames, meta)`` triples into one shard atomically."""
    with ShardWriter(path, meta) as writer:
        for video_id, frames, video_meta in videos:
            writer.add(video_id, frames, video_meta)
    return Path(path)


class ShardReader:
    """Random access to the videos of one shard without loading it.

    The memory map is opened lazily on first access and dropped when pickled, so a
    reader can be handed to DataLoader workers: each worker maps the file itself.
    With ``verify`` (the default) a video's checksum is checked the first time this
    process reads from it; a mismatch raises :class:`DataError` naming file and video.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = Path(path)
        self.header = read_shard_header(self.path)
        self.dtype = np.dtype(self.header["dtype"])
        self.frame_shape = tuple(self.header["frame_shape"])
        self.videos = [ShardVideo(**v) for v in self.header["videos"]]
        self.meta: dict[str, Any] = self.header.get("meta", {})
        self._by_id = {v.id: i for i, v in enumerate(self.videos)}
        self._data: np.memmap | None = None
        self.verify = verify
        self._verified: set[int] = set()

    def __len__(self) -> int:
        return len(self.videos)

    def _array(self) -> np.memmap:
        if self._data is None:
            self._data = np.memmap(
                self.path,
                dtype=self.dtype,
                mode="r",
                offset=self.header["data_offset"],
                shape=(self.header["num_frames"], *self.frame_shape),
            )
        return self._data

    def index_of(self, video_id: str) -> int:
        try:
            return self._by_id[video_id]
        except KeyError:
            raise DataError(f"{self.path}: no video with id {video_id!r}") from None

    def read(
        self, video: int, start: int = 0, stop: int | None = None, step: int = 1
    ) -> np.ndarray:
        """Frames ``start:stop:step`` of video number ``video`` as a fresh array (T, *frame_shape)."""
        entry = self.videos[video]
        stop = entry.num_frames if stop is None else stop
        if not (0 <= start < stop <= entry.num_frames):
            raise DataError(
                f"{self.path}: video {entry.id!r} has {entry.num_frames} frames; "
                f"requested frames {start}..{stop - 1}"
            )
        if self.verify and video not in self._verified:
            self.check(video)
        base = entry.first_frame
        return np.array(self._array()[base + start : base + stop : step])

    def check(self, video: int) -> None:
        """Compare video number ``video``'s bytes with its stored CRC-32 (DataError if not)."""
        entry = self.videos[video]
        if entry.crc32 is not None:
            payload = self._array()[entry.first_frame : entry.first_frame + entry.num_frames]
            computed = zlib.crc32(memoryview(np.ascontiguousarray(payload)).cast("B"))
            if computed != entry.crc32:
                raise DataError(
                    f"{self.path}: video {entry.id!r} (frames {entry.first_frame}.."
                    f"{entry.first_frame + entry.num_frames - 1}) does not match its checksum "
                    f"(crc32 {computed:08x}, stored {entry.crc32:08x}): the file is corrupt; "
                    "write it again (data import / data smoke / encode --overwrite)"
                )
        self._verified.add(video)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_data"] = None  # never pickle the mapped payload
        state["_verified"] = set()  # each process checks what it reads itself
        return state


def verify_shard(path: str | os.PathLike) -> tuple[int, int]:
    """Check a shard's header and every video's checksum; DataError at the first mismatch.

    Returns ``(videos checked, videos without a stored checksum)``.
    """
    reader = ShardReader(path)
    failure = next(_corrupt_videos(reader), None)
    if failure is not None:
        raise DataError(failure)
    return len(reader), sum(v.crc32 is None for v in reader.videos)


def _corrupt_videos(reader: ShardReader) -> Iterator[str]:
    """The message for each video of ``reader`` whose bytes fail their checksum."""
    for video in range(len(reader)):
        try:
            reader.check(video)
        except DataError as exc:
            yield str(exc)


@dataclass
class VerifyReport:
    """What :func:`verify_folder` checked: shards, videos, videos without a checksum."""

    root: str
    shards: int = 0
    videos: int = 0
    unchecked: int = 0
    failures: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [
            f"{self.root}: {self.shards} shards, {self.videos} videos checked"
            + (
                f" ({self.unchecked} written without checksums: header only)"
                if self.unchecked
                else ""
            )
        ]
        if self.failures:
            lines.append(f"{len(self.failures)} corrupt:")
            lines.extend(f"  {failure}" for failure in self.failures)
        else:
            lines.append("all checksums match")
        return "\n".join(lines)


def verify_folder(root: str | os.PathLike, progress: bool = True) -> VerifyReport:
    """Check every shard under ``root`` (frame splits and the latent cache): headers, sizes
    and each video's checksum. Every corrupt file or video is listed, not only the first."""
    from tqdm.auto import tqdm

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    paths = sorted(root.rglob(f"*{SHARD_SUFFIX}"))
    if not paths:
        raise DataError(f"{root}: no {SHARD_SUFFIX} shards found")
    report = VerifyReport(str(root))
    for path in tqdm(paths, desc="verify", unit="shard", disable=not progress):
        report.shards += 1
        try:
            reader = ShardReader(path)
        except DataError as exc:
            report.failures.append(str(exc))
            continue
        report.videos += len(reader)
        report.unchecked += sum(v.crc32 is None for v in reader.videos)
        report.failures.extend(_corrupt_videos(reader))
    return report


def read_shard_header(path: str | os.PathLike) -> dict:
    """Read and validate a shard's header; raise :class:`DataError` naming the file if bad."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(8)
            if magic != MAGIC:
                raise DataError(f"{path}: not a framecast shard (bad magic bytes {magic!r})")
            (length,) = struct.unpack("<Q", f.read(8))
            if length > size:
                raise DataError(f"{path}: shard header length {length} exceeds file size {size}")
            header = json.loads(f.read(length).decode("utf-8"))
    except DataError:
        raise
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable shard ({exc})") from exc
    if not isinstance(header, dict):
        raise DataError(f"{path}: shard header is {type(header).__name__}, expected an object")
    if header.get("version") != _VERSION:
        raise DataError(f"{path}: shard version {header.get('version')!r}, expected {_VERSION}")
    _check_header(header, path)
    frame_bytes = int(np.prod(header["frame_shape"])) * np.dtype(header["dtype"]).itemsize
    expected = header["data_offset"] + header["num_frames"] * frame_bytes
    if size < expected:
        raise DataError(f"{path}: shard is truncated ({size} bytes, header promises {expected})")
    return header


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_header(header: dict, path: Path) -> None:
    """Every key a reader uses, with the type and range it needs: DataError naming the file
    and key otherwise (a hand-edited or corrupt header, not a KeyError or TypeError)."""

    def bad(key: str, expected: str) -> DataError:
        return DataError(
            f"{path}: shard header key {key!r} is {header.get(key, '(missing)')!r}; "
            f"expected {expected}"
        )

    try:
        np.dtype(header.get("dtype"))
    except TypeError:
        raise bad("dtype", "a numpy dtype name such as 'uint8'") from None
    shape = header.get("frame_shape")
    if not (isinstance(shape, list) and shape and all(_is_count(n) and n > 0 for n in shape)):
        raise bad("frame_shape", "a list of positive integers [H, W, C]")
    for key in ("num_frames", "data_offset"):
        if not _is_count(header.get(key)):
            raise bad(key, "an integer >= 0")
    videos = header.get("videos")
    if not isinstance(videos, list):
        raise bad("videos", "a list of {id, first_frame, num_frames}")
    for i, video in enumerate(videos):
        fields = {"id", "first_frame", "num_frames"}
        if not isinstance(video, dict) or not fields <= set(video):
            raise DataError(f"{path}: shard header videos[{i}] is {video!r}; expected {fields}")
        if not (_is_count(video["first_frame"]) and _is_count(video["num_frames"])):
            raise DataError(
                f"{path}: shard header videos[{i}] ({video['id']!r}): first_frame and "
                "num_frames must be integers >= 0"
            )
        end = video["first_frame"] + video["num_frames"]
        if end > header["num_frames"]:
            raise DataError(
                f"{path}: shard header videos[{i}] ({video['id']!r}) claims frames "
                f"{video['first_frame']}..{end - 1}, past the end of the shard's "
                f"{header['num_frames']} frames"
            )
        crc = video.get("crc32")
        if crc is not None and not (_is_count(crc) and crc < 2**32):
            raise DataError(
                f"{path}: shard header videos[{i}] ({video['id']!r}): crc32 is {crc!r}; "
                "expected an unsigned 32-bit integer"
            )
        unknown = set(video) - fields - {"meta", "crc32"}
        if unknown:
            raise DataError(f"{path}: shard header videos[{i}] has unknown keys {sorted(unknown)}")
