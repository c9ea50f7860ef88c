"""A uniform view of the videos stored in a folder, whatever their form on disk.

A split folder (``train/``, ``val/``, ``test/``), or an import source, holds videos in
any of these forms, mixed freely and at any depth:

- a **frame folder**: a directory with frame images (``*.png``, ``*.jpg``, ``*.jpeg``),
  ordered by natural sort of their names (``frame_2`` before ``frame_10``);
- a **video file** (``*.mp4``, ``*.avi``, ``*.mov``, ``*.mkv``, ``*.webm``, ``*.gif``);
- a **packed shard** (``*.fcshard``) holding several videos.

Every video is a :class:`VideoSource` with an ``id`` unique within the scanned folder,
``num_frames``, ``frame_size`` ``(H, W)``, a ``meta`` dict and
``read(start, stop, step) -> (T, H, W, 3) uint8 RGB``.

Performance: shards and frame folders read only the frames asked for. A compressed
video cannot be cut at an arbitrary frame cheaply, so a video file is decoded whole
once per process and kept in a bounded LRU cache (:data:`VIDEO_CACHE_BYTES`); with more
video data than the cache holds, random clips re-decode whole files. That is fine for
a few small clips; for training, ``framecast data import`` them into shards.

Metadata: a shard stores each video's meta; a frame folder may hold a ``meta.json``; a
video file ``clip.mp4`` may have a ``clip.json`` beside it. Both must be JSON objects.

Stray files: hidden files (``.*``), ``Thumbs.db``, ``desktop.ini`` and ``*.json``
metadata are ignored silently. Any other file that is neither a frame, a video nor a
shard (``notes.txt``, a ``.bmp`` frame) is reported: with ``strict=True`` the scan
raises :class:`DataError` naming it; with ``strict=False`` it is skipped and listed in
:attr:`Scan.ignored` (callers warn or report it).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageSequence

from framecast.data.shard import SHARD_SUFFIX, ShardReader
from framecast.errors import DataError

#: The splits of a dataset folder, in this order.
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"})
HARMLESS_NAMES = frozenset({"thumbs.db", "desktop.ini"})
FRAME_FOLDER_META = "meta.json"

#: Bytes of decoded video-file frames one process keeps (LRU over whole videos).
VIDEO_CACHE_BYTES = 512 << 20


class DataWarning(UserWarning):
    """Something in the data was skipped or cut short, but reading could go on."""


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``frame_2`` < ``frame_10``."""
    parts = re.split(r"(\d+)", name)
    # Even positions are text, odd positions are digit runs: the key types always line up.
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def _is_harmless(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.lower() in HARMLESS_NAMES or path.suffix.lower() == ".json"


def read_json_object(path: Path, what: str) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is no such file; :class:`DataError`
    naming the file and ``what`` it holds (e.g. "metadata") if it is unreadable or not an
    object."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc}); expected a JSON object") from exc
    if not isinstance(record, dict):
        raise DataError(f"{path}: {what} must be a JSON object, got {type(record).__name__}")
    return record


def is_grey(frames: np.ndarray) -> bool:
    """Whether (..., 3) RGB frames are grey: R = G = B at every pixel."""
    return bool(
        (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()
    )


def _load_meta(path: Path) -> dict[str, Any]:
    return read_json_object(path, "metadata") or {}


def _check_range(source: VideoSource, start: int, stop: int | None, step: int) -> int:
    stop = source.num_frames if stop is None else stop
    if step < 1 or not (0 <= start < stop <= source.num_frames):
        raise DataError(
            f"{source.path}: video {source.id!r} has {source.num_frames} frames; "
            f"requested frames {start}:{stop}:{step}"
        )
    return stop


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """A PIL image of any common mode as an (H, W, 3) uint8 RGB array.

    Grey and palette images are expanded to RGB; images with alpha are composited onto
    black (smoke datasets use black backgrounds, and the colour of fully transparent
    pixels is arbitrary); 16-bit images are scaled to 8 bits.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(image, dtype=np.float64) / 257.0
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255
        return rgb.astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_image(path: Path) -> np.ndarray:
    """Decode one frame image to (H, W, 3) uint8 RGB; :class:`DataError` if unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb_uint8(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable image ({exc}); expected a PNG or JPEG frame") from exc


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable image ({exc}); expected a PNG or JPEG frame") from exc
    return height, width


def center_crop_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, then resize: (T, H, W, 3) uint8 -> (T, size, size, 3) uint8.

    Downscaling uses area averaging (no aliasing of fine smoke structure), upscaling
    bilinear interpolation.
    """
    if size <= 0:
        raise ValueError(f"size must be a positive integer, got {size}")
    _, height, width, _ = frames.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frames[:, top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if size < side else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], size, size, frames.shape[3]), dtype=frames.dtype)
    for i, frame in enumerate(square):
        out[i] = cv2.resize(
            np.ascontiguousarray(frame), (size, size), interpolation=interpolation
        ).reshape(size, size, -1)
    return out


class VideoSource(ABC):
    """One video: ``read`` frames ``start:stop:step`` as (T, H, W, 3) uint8 RGB."""

    id: str
    path: Path
    num_frames: int
    frame_size: tuple[int, int]
    meta: dict[str, Any]

    @abstractmethod
    def read(self, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        """Frames ``start:stop:step`` (``stop`` None: to the end) as (T, H, W, 3) uint8."""

    def __repr__(self) -> str:
        height, width = self.frame_size
        return f"{type(self).__name__}({self.id!r}, {self.num_frames} frames, {height}x{width})"


class FrameFolder(VideoSource):
    """A folder of frame images; reading decodes only the frames asked for.

    Only the first frame's header is read on construction. Every frame read is checked
    against that size: a frame of another size raises :class:`DataError` naming it.
    """

    def __init__(self, path: Path, video_id: str, frame_files: list[Path]):
        if not frame_files:
            raise DataError(f"{path}: no frame images (expected *.png, *.jpg or *.jpeg)")
        self.path = path
        self.id = video_id
        self.frame_files = frame_files
        self.num_frames = len(frame_files)
        self.frame_size = _image_size(frame_files[0])
        self.meta = _load_meta(path / FRAME_FOLDER_META)

    def read(self, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        stop = _check_range(self, start, stop, step)
        frames = []
        for path in self.frame_files[start:stop:step]:
            frame = load_image(path)
            if frame.shape[:2] != self.frame_size:
                raise DataError(
                    f"{path}: frame is {frame.shape[0]}x{frame.shape[1]} (HxW) but "
                    f"{self.frame_files[0].name} is {self.frame_size[0]}x{self.frame_size[1]}; "
                    f"all frames of video {self.id!r} must have one size"
                )
            frames.append(frame)
        return np.stack(frames)


class _DecodedCache:
    """Process-local LRU of whole decoded videos, bounded in bytes."""

    def __init__(self, budget: int):
        self.budget = budget
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> np.ndarray | None:
        frames = self._items.get(key)
        if frames is not None:
            self._items.move_to_end(key)
        return frames

    def put(self, key: tuple, frames: np.ndarray) -> None:
        if frames.nbytes > self.budget or key in self._items:
            return
        self._items[key] = frames
        self._bytes += frames.nbytes
        while self._bytes > self.budget:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes


_DECODED = _DecodedCache(VIDEO_CACHE_BYTES)


def decode_video(path: Path, max_frames: int | None = None) -> np.ndarray:
    """Decode a video file to (T, H, W, 3) uint8 RGB (at most ``max_frames`` frames).

    A stream that breaks off (a truncated file) or ends before the frame count in its
    header keeps the frames decoded, with a :class:`DataWarning`; a file that yields no
    frame at all raises :class:`DataError`. GIFs are read with Pillow: FFmpeg's GIF
    demuxer merges frames that have no delay.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames}")
    expected = 0  # frame count the container promises; 0 when unknown
    if path.suffix.lower() == ".gif":
        frames, error = _decode_gif(path, max_frames)
    else:
        frames, error, expected = _decode_av(path, max_frames)
    if not frames:
        reason = f" ({error})" if error else ""
        raise DataError(f"{path}: unreadable or truncated video{reason}; no frame could be decoded")
    size = frames[0].shape
    for i, frame in enumerate(frames):
        if frame.shape != size:
            raise DataError(
                f"{path}: frame {i} is {frame.shape[0]}x{frame.shape[1]} (HxW) but frame 0 is "
                f"{size[0]}x{size[1]}; resolution changes within a video are not supported"
            )
    wanted = expected if max_frames is None else min(expected, max_frames)
    if error is not None:
        message = f"video breaks off after {len(frames)} frames ({error})"
    elif len(frames) < wanted:
        message = f"decoded {len(frames)} of the {expected} frames its header promises (truncated?)"
    else:
        return np.stack(frames)
    warnings.warn(f"{path}: {message}; using those frames", DataWarning, stacklevel=2)
    return np.stack(frames)


def _decode_av(path: Path, max_frames: int | None) -> tuple[list[np.ndarray], str | None, int]:
    # Imported here: only video import needs FFmpeg, so training on packed shards runs
    # where PyAV is missing (a cluster node, a GPU image).
    import av

    frames: list[np.ndarray] = []
    expected = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream (expected a video file)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            expected = stream.frames
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.FFmpegError, OSError, EOFError) as exc:
        return frames, str(exc), expected
    return frames, None, expected


def _decode_gif(path: Path, max_frames: int | None) -> tuple[list[np.ndarray], str | None]:
    frames: list[np.ndarray] = []
    try:
        with Image.open(path) as image:
            for frame in ImageSequence.Iterator(image):
                frames.append(to_rgb_uint8(frame))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return frames, str(exc)
    return frames, None


def _frame_bytes(frame_size: tuple[int, int]) -> int:
    return frame_size[0] * frame_size[1] * 3


class VideoFile(VideoSource):
    """A compressed video file, decoded whole once per process (see the module doc).

    Construction decodes the file: the frame count in a container header can be wrong,
    only decoding tells how many frames there are.
    """

    def __init__(self, path: Path, video_id: str, max_frames: int | None = None):
        self.path = path
        self.id = video_id
        self.max_frames = max_frames
        frames = self._frames()
        self.num_frames = frames.shape[0]
        self.frame_size = (frames.shape[1], frames.shape[2])
        self.meta = _load_meta(path.with_suffix(".json"))

    def _frames(self, stop: int | None = None) -> np.ndarray:
        """The decoded video from the cache, or decoded now (only up to ``stop`` if too big to cache)."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open video ({exc})") from exc
        key = (str(self.path), stat.st_mtime_ns, stat.st_size, self.max_frames)
        frames = _DECODED.get(key)
        if frames is not None:
            return frames
        limit = self.max_frames
        if stop is not None and self.num_frames * _frame_bytes(self.frame_size) > _DECODED.budget:
            # It will not stay cached: decode no further than needed.
            limit = stop if limit is None else min(limit, stop)
        frames = decode_video(self.path, limit)
        if limit == self.max_frames:
            frames.setflags(write=False)  # shared by every later reader of the cache
            _DECODED.put(key, frames)
        return frames

    def read(self, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        stop = _check_range(self, start, stop, step)
        frames = self._frames(stop)
        if frames.shape[0] < stop:
            raise DataError(
                f"{self.path}: file changed since it was opened (now {frames.shape[0]} frames)"
            )
        return frames[start:stop:step].copy()


class ShardedVideo(VideoSource):
    """One video inside a packed shard; reads through the shard's memory map."""

    def __init__(self, reader: ShardReader, index: int, video_id: str):
        entry = reader.videos[index]
        self.reader = reader
        self.index = index
        self.path = reader.path
        self.id = video_id
        self.num_frames = entry.num_frames
        self.frame_size = (reader.frame_shape[0], reader.frame_shape[1])
        self.meta = dict(entry.meta)

    def read(self, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        stop = _check_range(self, start, stop, step)
        frames = self.reader.read(self.index, start, stop, step)
        if frames.shape[-1] == 1:  # a greyscale shard: R = G = B, like a grey PNG
            frames = np.repeat(frames, 3, axis=-1)
        return frames


def open_shard(path: Path, rel: str) -> list[ShardedVideo]:
    """The videos of one frame shard (RGB, or greyscale (H, W, 1) read as R = G = B),
    with ids ``"<rel>:<video id>"``."""
    reader = ShardReader(path)
    shape = reader.frame_shape
    if reader.dtype != np.uint8 or len(shape) != 3 or shape[2] not in (1, 3):
        raise DataError(
            f"{path}: shard holds {reader.dtype} frames of shape {shape}; expected RGB uint8 "
            "frames (H, W, 3) or grey ones (H, W, 1) - a latent cache is not a video dataset"
        )
    return [ShardedVideo(reader, i, f"{rel}:{v.id}") for i, v in enumerate(reader.videos)]


@dataclass(frozen=True)
class Candidate:
    """A video (or a shard of videos) found by :func:`scan_tree`, not opened yet."""

    kind: Literal["frames", "file", "shard"]
    path: Path
    rel: str
    frame_files: tuple[Path, ...] = ()


@dataclass
class Scan:
    """What :func:`scan_tree` found: candidates in natural order and ignored files with why."""

    root: Path
    candidates: list[Candidate] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)


def scan_tree(root: str | os.PathLike, strict: bool = True, exclude: Path | None = None) -> Scan:
    """Find the videos under ``root`` (a folder, or one video or shard file) without opening them.

    A directory with frame images is a frame folder (its subdirectories are scanned as
    well); hidden directories and ``exclude`` are not entered. Stray files follow the
    rules in the module doc.
    """
    root = Path(root)
    scan = Scan(root)
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    if root.is_file():
        kind = _file_kind(root)
        if kind is None:
            raise DataError(
                f"{root}: not a video, frame folder or shard (expected a folder, "
                f"{', '.join(sorted(VIDEO_SUFFIXES))} or {SHARD_SUFFIX})"
            )
        scan.candidates.append(Candidate(kind, root, root.name))
        return scan
    excluded = exclude.resolve() if exclude is not None else None
    visited: set[Path] = set()
    _scan_dir(root, root, scan, strict, excluded, visited)
    return scan


def _file_kind(path: Path) -> Literal["file", "shard"] | None:
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "file"
    if suffix == SHARD_SUFFIX:
        return "shard"
    return None


def _scan_dir(
    root: Path, folder: Path, scan: Scan, strict: bool, exclude: Path | None, visited: set[Path]
) -> None:
    resolved = folder.resolve()
    if resolved in visited or resolved == exclude:
        return
    visited.add(resolved)
    try:
        entries = sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc})") from exc
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    rel = folder.relative_to(root).as_posix()
    if images:
        scan.candidates.append(
            Candidate("frames", folder, root.name if rel == "." else rel, tuple(images))
        )
    subdirs = []
    for path in entries:
        if path.name.startswith("."):
            continue
        if path.is_dir():
            subdirs.append(path)
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES or _is_harmless(path):
            continue
        kind = _file_kind(path)
        if kind is not None:
            scan.candidates.append(Candidate(kind, path, path.relative_to(root).as_posix()))
            continue
        where = "frame folder" if images else "folder"
        reason = (
            f"not a frame image, video or shard in {where} {folder} (expected "
            f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))} or {SHARD_SUFFIX})"
        )
        if strict:
            raise DataError(f"{path}: {reason}")
        scan.ignored.append((path, reason))
    for sub in subdirs:
        _scan_dir(root, sub, scan, strict, exclude, visited)


def open_candidate(candidate: Candidate, max_frames: int | None = None) -> list[VideoSource]:
    """Open a candidate: one video, or every video of a shard. Raises :class:`DataError`."""
    if candidate.kind == "frames":
        files = list(candidate.frame_files)
        if max_frames is not None:
            files = files[:max_frames]
        return [FrameFolder(candidate.path, candidate.rel, files)]
    if candidate.kind == "file":
        return [VideoFile(candidate.path, candidate.rel, max_frames)]
    return list(open_shard(candidate.path, candidate.rel))


def open_split(
    split_dir: str | os.PathLike, strict: bool = True, max_frames: int | None = None
) -> list[VideoSource]:
    """Open every video of a split folder, in natural order of their ids.

    ``strict=False`` skips stray files with a :class:`DataWarning` that lists them.
    Raises :class:`DataError` for a missing folder, a folder with no video, or an
    unreadable video.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split folder does not exist")
    scan = scan_tree(split_dir, strict=strict)
    if scan.ignored:
        shown = "; ".join(str(path) for path, _ in scan.ignored[:5])
        more = f" and {len(scan.ignored) - 5} more" if len(scan.ignored) > 5 else ""
        warnings.warn(
            f"{split_dir}: ignored {len(scan.ignored)} file(s) that are not frames, videos or shards: "
            f"{shown}{more}",
            DataWarning,
            stacklevel=2,
        )
    videos = [
        video for candidate in scan.candidates for video in open_candidate(candidate, max_frames)
    ]
    if not videos:
        raise DataError(
            f"{split_dir}: split has no videos (expected frame folders, video files "
            f"or {SHARD_SUFFIX} shards)"
        )
    return sorted(videos, key=lambda v: natural_key(v.id))


def has_videos(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds any video candidate (listing only, nothing decoded)."""
    folder = Path(folder)
    return folder.is_dir() and bool(scan_tree(folder, strict=False).candidates)
