"""``framecast data import``: frame folders and video files -> a packed-shard dataset.

Every video found under SRC (see :mod:`framecast.data.sources` for what counts as one)
is converted to RGB, optionally turned into smoke on black
(:func:`framecast.data.extract_smoke.extract_smoke`), centre-cropped square and resized
to ``size``×``size`` uint8, then assigned whole to train, val or test by a seeded
shuffle and written as ``OUT/<split>/part-00000.fcshard``, ... with ``OUT/dataset.json``.
Frames are stored RGB; dataset.json's ``"channels"`` is 1 when every frame is grey
(R = G = B: greyscale sources, extracted smoke), else 3, for ``data.channels: auto``.

Atomicity: everything is written under a hidden staging folder inside OUT and moved
into place only when all shards are complete; on any error the staging folder is
removed, so no shard of a failed import is ever left behind. A staging folder left by an
import that was killed (its ``owner.json`` names a process of this host that has exited)
is removed by the next import into OUT, with a note. Memory: one source video
is decoded at a time, at its own resolution; the prepared videos go to a temporary
pool shard on disk, so split assignment can be made over the videos that actually
imported (a bad item never leaves a split short) without holding them in memory.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from framecast.data.extract_smoke import extract_smoke as extract_smoke_frames
from framecast.data.shard import SHARD_SUFFIX, ShardReader, ShardWriter, write_shard
from framecast.data.sources import (
    SPLITS,
    Candidate,
    DataWarning,
    VideoSource,
    center_crop_resize,
    is_grey,
    natural_key,
    open_candidate,
    scan_tree,
)
from framecast.data.splits import assign_splits, split_fractions
from framecast.errors import DataError
from framecast.utils import atomic_write_text, owner_exited, owner_record

DATASET_JSON = "dataset.json"
STAGING_PREFIX = ".framecast-import-"
STAGING_OWNER = "owner.json"
# A staging folder without its owner file yet, younger than this, may be a live import
# between mkdtemp and writing the file.
_STAGING_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class SkippedItem:
    """A source item (video, frame folder, shard or stray file) that was not imported."""

    path: str
    reason: str


@dataclass
class ImportSummary:
    """What an import wrote: counts per split, skipped items with reasons, paths."""

    source: str
    out: str
    size: int
    seed: int
    ratios: tuple[float, float, float]
    extract_smoke: bool
    videos: dict[str, int]
    frames: dict[str, int]
    shards: dict[str, list[str]]
    skipped: list[SkippedItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dataset_json: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """Human-readable summary, as the CLI prints it."""
        smoke = ", smoke extracted" if self.extract_smoke else ""
        lines = [
            f"imported {_plural(sum(self.videos.values()), 'video')} "
            f"({_plural(sum(self.frames.values()), 'frame')} at {self.size}x{self.size}{smoke}) "
            f"from {self.source} into {self.out}"
        ]
        for split in SPLITS:
            n = self.videos[split]
            empty = "  (empty: add videos or change the split ratios)" if n == 0 else ""
            lines.append(
                f"  {split:<5} {_plural(n, 'video'):>11} {_plural(self.frames[split], 'frame'):>14} "
                f"in {_plural(len(self.shards[split]), 'shard')}{empty}"
            )
        if self.skipped:
            lines.append(f"skipped {_plural(len(self.skipped), 'item')}:")
            lines.extend(f"  {item.path}: {item.reason}" for item in self.skipped)
        if self.notes:
            lines.append(f"notes ({len(self.notes)}):")
            lines.extend(f"  {note}" for note in self.notes)
        lines.append(f"wrote {self.dataset_json}")
        return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# Shortest video imported without a note: a clip of the default training.num_observations
# (10 frames) fits; --min-frames changes it.
MIN_FRAMES = 10


def _empty_folders(src: Path, exclude: Path | None) -> list[Path]:
    """Folders under ``src`` with nothing in them (hidden ones and ``exclude`` not entered):
    a scan finds no video there, and the user should hear that it was passed over."""
    if not src.is_dir():
        return []
    excluded = exclude.resolve() if exclude is not None else None
    found = []
    for folder, dirs, files in os.walk(src):
        path = Path(folder)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (path / d).resolve() != excluded
        )
        if not dirs and not files and path != src:
            found.append(path)
    return found


def _check_arguments(
    size: int, splits: Sequence[float], videos_per_shard: int, max_frames: int | None
) -> tuple[float, float, float]:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise DataError(
            f"import size must be a positive integer (frame side in pixels), got {size!r}"
        )
    if (
        isinstance(videos_per_shard, bool)
        or not isinstance(videos_per_shard, int)
        or videos_per_shard <= 0
    ):
        raise DataError(f"videos_per_shard must be a positive integer, got {videos_per_shard!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames <= 0):
        raise DataError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    return split_fractions(splits)


def _existing_dataset(out: Path) -> list[Path]:
    """The parts of a dataset already in ``out`` (dataset.json, non-empty split folders)."""
    found = []
    if (out / DATASET_JSON).exists():
        found.append(out / DATASET_JSON)
    for split in SPLITS:
        path = out / split
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            found.append(path)
    return found


def _prepare(video: VideoSource, size: int, extract_smoke: bool) -> np.ndarray:
    """All frames of ``video`` as (T, size, size, 3) uint8."""
    frames = video.read()
    if extract_smoke:
        frames = extract_smoke_frames(frames)
    return center_crop_resize(frames, size)


def import_dataset(
    src: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 64,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    extract_smoke: bool = False,
    strict: bool = False,
    videos_per_shard: int = 64,
    progress: bool = True,
    overwrite: bool = False,
    max_frames: int | None = None,
    min_frames: int = MIN_FRAMES,
) -> ImportSummary:
    """Import the videos under ``src`` into a dataset at ``out``; see the module doc.

    Args:
        src: folder searched recursively for frame folders, video files and shards, or
            one video file.
        out: dataset folder to create; refused if it already holds a dataset unless
            ``overwrite`` (which replaces its splits and dataset.json, nothing else).
        size: side of the square output frames.
        splits: train, val, test ratios (normalised to sum 1).
        strict: stop at the first bad item with :class:`DataError` naming it, instead
            of skipping it and listing it in the summary.
        max_frames: import at most the first ``max_frames`` frames of each video.
        min_frames: videos with fewer frames are named in the summary's notes (with
            ``strict``: a :class:`DataError`): clips of more frames cannot be cut from them.
    """
    ratios = _check_arguments(size, splits, videos_per_shard, max_frames)
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"{src}: import source does not exist")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: output exists and is not a folder")
    existing = _existing_dataset(out) if out.exists() else []
    if existing and not overwrite:
        raise DataError(
            f"{out}: already contains a dataset ({', '.join(p.name for p in existing)}); "
            "choose another folder or pass overwrite (--overwrite) to replace it"
        )
    if min_frames < 1:
        raise DataError(f"min_frames must be a positive integer, got {min_frames}")
    scan = scan_tree(src, strict=strict, exclude=out)
    skipped = [SkippedItem(str(path), reason) for path, reason in scan.ignored]
    for folder in _empty_folders(src, exclude=out):
        reason = "empty folder (no frame images, videos or shards)"
        if strict:
            raise DataError(f"{folder}: {reason}")
        skipped.append(SkippedItem(str(folder), reason))
    if not scan.candidates:
        raise DataError(
            f"{src}: no videos found (expected frame folders, video files or {SHARD_SUFFIX} shards)"
        )

    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [
        f"removed {path.name}, left in {out} by an import that was killed ({why})"
        for path, why in remove_stale_staging(out)
    ]
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        atomic_write_text(staging / STAGING_OWNER, json.dumps(owner_record()))
        pool_path = staging / f"pool{SHARD_SUFFIX}"
        with ShardWriter(pool_path) as pool:
            bar = tqdm(scan.candidates, desc="import", unit="item", disable=not progress)
            for candidate in bar:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", DataWarning)
                    _import_candidate(
                        candidate,
                        pool,
                        size,
                        extract_smoke,
                        max_frames,
                        strict,
                        skipped,
                        min_frames,
                    )
                for w in caught:
                    if issubclass(w.category, DataWarning):
                        notes.append(str(w.message))
                    else:
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if not pool.videos:
                first = f" (first: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
                raise DataError(
                    f"{src}: none of the {len(scan.candidates)} items could be imported{first}"
                )
        assignment = assign_splits([v.id for v in pool.videos], ratios, seed)
        reader = ShardReader(pool_path)
        videos = {s: 0 for s in SPLITS}
        frames = {s: 0 for s in SPLITS}
        shards: dict[str, list[str]] = {s: [] for s in SPLITS}
        colour: list[str] = []  # ids of videos with colour (R, G, B not all equal)
        for split in SPLITS:
            members = sorted(
                (v for v in reader.videos if assignment[v.id] == split),
                key=lambda v: natural_key(v.id),
            )
            videos[split] = len(members)
            frames[split] = sum(v.num_frames for v in members)
            for k in range(0, len(members), videos_per_shard):
                chunk = members[k : k + videos_per_shard]
                name = f"part-{k // videos_per_shard:05d}{SHARD_SUFFIX}"
                write_shard(
                    staging / split / name,
                    (
                        (
                            v.id,
                            _note_colour(v.id, reader.read(reader.index_of(v.id)), colour),
                            v.meta,
                        )
                        for v in chunk
                    ),
                    meta={"split": split, "size": size},
                )
                shards[split].append(str(out / split / name))
        del reader  # drop the pool's memory map before the staging folder goes

        for path in _existing_dataset(out):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        for split in SPLITS:
            if (out / split).is_dir():
                (out / split).rmdir()  # empty, or _existing_dataset would have listed it
            if (staging / split).is_dir():
                os.replace(staging / split, out / split)
        summary = ImportSummary(
            source=str(src),
            out=str(out),
            size=size,
            seed=seed,
            ratios=ratios,
            extract_smoke=extract_smoke,
            videos=videos,
            frames=frames,
            shards=shards,
            skipped=skipped,
            notes=notes,
            dataset_json=str(out / DATASET_JSON),
        )
        record = {
            "framecast_dataset": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": str(src.resolve()),
            "size": size,
            # 1 when every frame is grey (R = G = B): data.channels: auto then reads the luma.
            "channels": 3 if colour else 1,
            "seed": seed,
            "split_ratios": dict(zip(SPLITS, ratios, strict=True)),
            "extract_smoke": extract_smoke,
            "max_frames": max_frames,
            "splits": {
                s: {
                    "videos": videos[s],
                    "frames": frames[s],
                    "shards": [Path(p).name for p in shards[s]],
                }
                for s in SPLITS
            },
            "skipped": [asdict(item) for item in skipped],
            "notes": notes,
        }
        atomic_write_text(out / DATASET_JSON, json.dumps(record, indent=2) + "\n")
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(out: Path) -> list[tuple[Path, str]]:
    """Remove the staging folders in ``out`` whose import is known to be gone; return each
    with the reason. A live import's folder (its process runs, or runs on another host)
    is kept."""
    removed = []
    for path in sorted(out.glob(STAGING_PREFIX + "*")):
        if not path.is_dir():
            continue
        try:
            owner = json.loads((path / STAGING_OWNER).read_text(encoding="utf-8"))
            why = owner_exited(owner) if isinstance(owner, dict) else "unreadable owner"
        except FileNotFoundError:
            age = time.time() - path.stat().st_mtime
            why = f"no owner file, {age:.0f} s old" if age > _STAGING_GRACE_SECONDS else None
        except (OSError, ValueError):
            why = "unreadable owner"
        if why is not None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append((path, why))
    return removed


def _note_colour(video_id: str, frames: np.ndarray, colour: list[str]) -> np.ndarray:
    """``frames`` unchanged; ``video_id`` appended to ``colour`` unless R = G = B throughout
    (checked only until one coloured video is found)."""
    if not colour and not is_grey(frames):
        colour.append(video_id)
    return frames


def _import_candidate(
    candidate: Candidate,
    pool: ShardWriter,
    size: int,
    extract_smoke: bool,
    max_frames: int | None,
    strict: bool,
    skipped: list[SkippedItem],
    min_frames: int = 1,
) -> None:
    """Prepare the video(s) of one candidate into ``pool``; bad ones go to ``skipped``."""
    try:
        videos = open_candidate(candidate, max_frames)
    except DataError as exc:
        if strict:
            raise
        skipped.append(SkippedItem(str(candidate.path), str(exc)))
        return
    for video in videos:
        if video.num_frames < min_frames:
            short = (
                f"{video.id}: only {video.num_frames} frame{'s' if video.num_frames != 1 else ''}, "
                f"fewer than --min-frames {min_frames}: training with clips (num_observations x "
                "frame_stride) longer than that will refuse it"
            )
            if strict:
                raise DataError(short)
            # Imported (single-frame training such as an autoencoder's can use it), but named.
            warnings.warn(short, DataWarning, stacklevel=2)
        try:
            frames = _prepare(video, size, extract_smoke)
        except DataError as exc:
            if strict:
                raise
            skipped.append(SkippedItem(video.id, str(exc)))
            continue
        height, width = video.frame_size
        meta = {
            "source": video.id,
            "source_frames": video.num_frames,
            "source_size": [height, width],
        }
        meta.update(video.meta)  # the user's own metadata wins over ours
        pool.add(video.id, frames, meta)
