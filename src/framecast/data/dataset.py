"""Clips of consecutive frames drawn from the videos of a split, as a torch Dataset.

Training draws a random start per item; evaluation uses fixed, evenly spaced starts, so
every run and epoch sees the same clips. Items are dicts that the default collate
function batches:

- ``frames``: float32 (T, C, H, W) in [-1, 1]
- ``video_id``: str, ``start``: int (first frame), ``video_index``: int (into ``videos``)
- ``label``: int, only when every video's meta has an integer ``label``; other metadata
  stays out of batches (it need not be collatable) and is at ``dataset.videos[i].meta``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from framecast.config.loader import reconcile_image_channels
from framecast.config.schema import Config, DataConfig, TrainingConfig
from framecast.data.sources import (
    SPLITS,
    VideoSource,
    center_crop_resize,
    has_videos,
    open_split,
    read_json_object,
)
from framecast.errors import ConfigError, DataError

# ITU-R BT.601 luma weights, for single-channel datasets.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
DATASET_JSON = "dataset.json"
# Datasets `framecast data smoke` writes: plumes rendered by brightness, no colour.
SIMULATED_SMOKE_SOURCE = "phiflow-smoke"


def frames_to_array(frames: np.ndarray, channels: int) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> float32 (T, channels, H, W) in [-1, 1]; one channel is the
    BT.601 luma, so grey input (R = G = B) keeps its value and no colour can come back.

    NumPy, not torch: torch's intra-op thread pool in the main process (num_workers=0)
    stalls badly on a busy machine for these small arrays; NumPy stays single-threaded.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    x = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32)  # (T, 3, H, W)
    if channels == 1:
        x = np.einsum("tchw,c->thw", x, _LUMA)[:, None]  # (T, 1, H, W)
    x *= 1 / 127.5
    x -= 1.0
    return x


def frames_to_tensor(frames: np.ndarray, channels: int) -> torch.Tensor:
    """:func:`frames_to_array` as a torch tensor (T, channels, H, W) in [-1, 1]."""
    return torch.from_numpy(frames_to_array(frames, channels))


def read_dataset_json(root: str | os.PathLike) -> dict[str, Any] | None:
    """``root/dataset.json`` as a dict, or None when there is none (imported folders,
    hand-made datasets); :class:`DataError` if it is not a JSON object."""
    return read_json_object(Path(root) / DATASET_JSON, "dataset record")


def dataset_channels(root: str | os.PathLike) -> int:
    """The channels a dataset's content has, for ``data.channels: auto``.

    ``dataset.json``'s ``"channels"`` (1 or 3) when present; else 1 for framecast's
    simulated smoke (``"source": "phiflow-smoke"``: luminance only; the ``simple`` preset's
    record carries no key so that its files stay byte-identical); else 3.
    """
    record = read_dataset_json(root) or {}
    if "channels" in record:
        channels = record["channels"]
        if isinstance(channels, bool) or channels not in (1, 3):
            raise DataError(
                f"{Path(root) / DATASET_JSON}: key 'channels' has value {channels!r}; "
                "expected 1 (greyscale) or 3 (RGB)"
            )
        return int(channels)
    return 1 if record.get("source") == SIMULATED_SMOKE_SOURCE else 3


def resolve_data_channels(config: Config, source: str = "config") -> int:
    """Resolve ``data.channels: auto`` from ``data.root`` in place (then a frame model's
    ``model.image_channels`` follows it, or is refused if set to another number) and
    return the number of channels. A number is returned as it is."""
    if config.data.channels == "auto":
        if not config.data.root:
            raise ConfigError(
                f"{source}: data.channels=auto reads the channels from the dataset's "
                "dataset.json: set data.root, or set data.channels to 1 or 3"
            )
        config.data.channels = dataset_channels(config.data.root)
    elif config.data.root:
        # A number needs no record, but a damaged one (truncated, empty) is still refused:
        # it means the dataset was not written completely.
        read_dataset_json(config.data.root)
    reconcile_image_channels(config, source)
    return int(config.data.channels)


def stored_frame_size(videos: list[VideoSource]) -> tuple[int, int] | None:
    """The (H, W) all ``videos`` are stored at, or None when sizes differ or none given."""
    sizes = {tuple(v.frame_size) for v in videos}
    return sizes.pop() if len(sizes) == 1 else None


def check_frame_size(
    videos: list[VideoSource],
    model_size: int,
    where: str | os.PathLike,
    model: str,
    trained_on: str | os.PathLike | None = None,
) -> None:
    """Refuse square frames of another size than a trained model's ``model_size``.

    Frames are centre-cropped and resized to the model's size (``data.image_size``: the
    size the models see), which is how non-square videos are read. Square frames of
    another size are a mistake (128×128 smoke into a 64×64 autoencoder), unless the model
    was itself trained by resizing frames of that size: ``trained_on``, the model's
    training dataset, is read when it still exists. :class:`DataError` names both sizes.
    """
    size = stored_frame_size(videos)
    if size is None or size[0] != size[1] or size[0] == model_size:
        return
    if trained_on is not None:
        try:
            train = open_split(split_dir(trained_on, "train"), strict=False)
        except DataError:
            train = []
        if train and stored_frame_size(train) == size:
            return  # the model was trained on such frames, resized to its size
    raise DataError(
        f"{where}: frames are {size[0]}×{size[1]}, but {model} sees {model_size}×{model_size} "
        f"frames (its data.image_size={model_size}); expected data of {model_size}×{model_size} "
        f"frames (e.g. `framecast data smoke --size {model_size}`), or a model trained with "
        f"data.image_size={size[0]}"
    )


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """``root/split``; :class:`DataError` if the dataset or the split is missing or empty."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    path = root / split
    if not path.is_dir():
        present = [s for s in SPLITS if (root / s).is_dir()]
        raise DataError(
            f"{path}: split {split!r} is missing (dataset has: {', '.join(present) or 'no splits'}; "
            f"expected folders {', '.join(SPLITS)})"
        )
    if not has_videos(path):
        raise DataError(
            f"{path}: split {split!r} is empty (expected frame folders, video files or .fcshard shards)"
        )
    return path


def list_splits(root: str | os.PathLike) -> list[str]:
    """The non-empty standard splits of a dataset, in train/val/test order.

    Raises :class:`DataError` if ``root`` is missing or holds no non-empty split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    found = [s for s in SPLITS if has_videos(root / s)]
    if not found:
        raise DataError(
            f"{root}: no non-empty split (expected folders {', '.join(SPLITS)} holding videos)"
        )
    return found


def clip_span(num_frames: int, frame_stride: int, clips_per_video: int) -> int:
    """Frames one clip spans in its video, first to last inclusive; the three counts
    must be positive (ValueError naming the one that is not)."""
    for name, value in (
        ("num_frames", num_frames),
        ("frame_stride", frame_stride),
        ("clips_per_video", clips_per_video),
    ):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    return (num_frames - 1) * frame_stride + 1


def all_have_labels(labels: list[Any]) -> bool:
    """Batches need a label for every item: labels are exposed only if all videos have an
    integer one (bools excluded)."""
    return all(isinstance(x, int) and not isinstance(x, bool) for x in labels)


def clip_start(
    last_start: int, clip_index: int, clips_per_video: int, rng: np.random.Generator | None
) -> int:
    """First frame of a clip: random in ``0..last_start`` with ``rng`` (training), else the
    ``clip_index``-th of ``clips_per_video`` evenly spaced starts, both ends included."""
    if rng is not None:
        return int(rng.integers(0, last_start + 1))
    if clips_per_video == 1:
        return 0
    return int(round(clip_index * last_start / (clips_per_video - 1)))


def worker_rng(seed: int, cache: dict) -> np.random.Generator:
    """A NumPy generator re-seeded in each process from ``seed`` and torch's seed.

    DataLoader gives each worker its own torch seed (different per worker and per epoch
    of non-persistent workers), and Lightning's seed_everything fixes the main one;
    mixing that with ``seed`` makes random starts worker-safe and reproducible.
    ``cache`` holds the generator between calls (one dict per dataset).
    """
    key = (os.getpid(), torch.initial_seed())
    if cache.get("key") != key:
        cache["key"] = key
        cache["rng"] = np.random.default_rng([seed, torch.initial_seed()])
    return cache["rng"]


class ClipDataset(Dataset):
    """Clips of ``num_frames`` frames, every ``frame_stride``-th frame, from one split.

    Args:
        split_dir: folder of videos (frame folders, video files, shards; see ``sources``).
        num_frames: frames per clip (T).
        frame_stride: distance between consecutive clip frames in the video.
        image_size: square output size; None keeps the stored size (which must then be
            the same for all videos). Other sizes are centre-cropped square and resized.
        train: random starts per item (True) or fixed evenly spaced starts (False).
        clips_per_video: items per video per epoch.
        seed: mixed into the training start sampler (see :meth:`_rng`).
        channels: 3 (RGB) or 1 (luma).
        skip_short: skip videos too short for one clip and list them in ``skipped``
            instead of raising :class:`DataError`.
        strict: stray files in the split raise (True) or are skipped with a warning.
        max_frames: use at most the first ``max_frames`` frames of each video.
    """

    def __init__(
        self,
        split_dir: str | os.PathLike,
        num_frames: int,
        frame_stride: int = 1,
        image_size: int | None = None,
        train: bool = True,
        clips_per_video: int = 1,
        seed: int = 0,
        channels: int = 3,
        skip_short: bool = False,
        strict: bool = True,
        max_frames: int | None = None,
    ):
        self.span = clip_span(num_frames, frame_stride, clips_per_video)
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive integer or None, got {image_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.split_dir = Path(split_dir)
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.image_size = image_size
        self.train = train
        self.clips_per_video = clips_per_video
        self.seed = seed
        self.channels = channels

        self.videos: list[VideoSource] = []
        self.skipped: list[tuple[str, int]] = []  # (video id, length) of videos too short
        for video in open_split(self.split_dir, strict=strict, max_frames=max_frames):
            if video.num_frames >= self.span:
                self.videos.append(video)
            elif skip_short:
                self.skipped.append((video.id, video.num_frames))
            else:
                raise DataError(
                    f"{video.path}: video {video.id!r} has {video.num_frames} frames, too short for a "
                    f"clip of {num_frames} frames at stride {frame_stride} (needs {self.span} frames)"
                )
        if not self.videos:
            raise DataError(
                f"{self.split_dir}: all {len(self.skipped)} videos are shorter than a clip of "
                f"{num_frames} frames at stride {frame_stride} (needs {self.span} frames)"
            )
        if image_size is None:
            sizes = {v.frame_size for v in self.videos}
            if len(sizes) > 1:
                a, b = (
                    self.videos[0],
                    next(v for v in self.videos if v.frame_size != self.videos[0].frame_size),
                )
                raise DataError(
                    f"{self.split_dir}: videos have different frame sizes ({a.id!r}: {a.frame_size}, "
                    f"{b.id!r}: {b.frame_size}); set image_size to resize them to one size"
                )
        labels = [v.meta.get("label") for v in self.videos]
        self.has_labels = all_have_labels(labels)
        self._rng_cache: dict = {}

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def _rng(self) -> np.random.Generator:
        return worker_rng(self.seed, self._rng_cache)

    def start_of(self, index: int) -> int:
        """First frame of item ``index``: random in training, fixed in evaluation."""
        video = self.videos[index // self.clips_per_video]
        return clip_start(
            video.num_frames - self.span,
            index % self.clips_per_video,
            self.clips_per_video,
            self._rng() if self.train else None,
        )

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        draw = None
        if isinstance(index, tuple):  # (index, draw) from a ResumableSampler
            index, draw = index
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        video_index = index // self.clips_per_video
        video = self.videos[video_index]
        if draw is not None and self.train:
            # The start is a function of the sampler's draw alone: the same in every worker
            # layout and after a resume, where a per-process stream would have moved on.
            video_frames = video.num_frames - self.span
            start = clip_start(video_frames, 0, 1, np.random.default_rng([self.seed, draw]))
        else:
            start = self.start_of(index)
        frames = video.read(start, start + self.span, self.frame_stride)  # (T, H, W, 3) uint8
        if self.image_size is not None and frames.shape[1:3] != (self.image_size, self.image_size):
            frames = center_crop_resize(frames, self.image_size)
        item: dict[str, Any] = {
            "frames": frames_to_tensor(frames, self.channels),  # (T, C, H, W)
            "video_id": video.id,
            "start": start,
            "video_index": video_index,
        }
        if self.has_labels:
            item["label"] = int(video.meta["label"])
        return item

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return (
            f"ClipDataset({str(self.split_dir)!r}, {len(self.videos)} videos, {len(self)} clips of "
            f"{self.num_frames} frames, stride {self.frame_stride}, {mode})"
        )


class ResumableSampler(Sampler):
    """A shuffled order that a resumed run can continue exactly.

    Epoch ``e``'s order is a function of ``(seed, e)`` alone (its own generator: nothing
    drawn from torch's global one), and each position also carries a random ``draw`` that
    the dataset uses for that item's randomness (a clip's start), so items are
    ``(index, draw)`` pairs. ``skip`` leaves out the first positions of the first epoch
    iterated: the batches a resumed run had already trained on.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, skip: int = 0):
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch start (also the resumed one)."""
        self.epoch = epoch

    def order(self, epoch: int) -> list[tuple[int, int]]:
        generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
        indices = torch.randperm(self.size, generator=generator).tolist()
        draws = torch.randint(0, 2**62, (self.size,), generator=generator).tolist()
        return list(zip(indices, draws))

    def __iter__(self):
        skip, self.skip = self.skip, 0
        return iter(self.order(self.epoch)[skip:])

    def __len__(self) -> int:
        # The full epoch: Lightning counts a resumed epoch's batches from its restored
        # position, so the skipped ones must still count.
        return self.size


def _mix(seed: int, epoch: int) -> int:
    """One 63-bit seed from a run's seed and an epoch (distinct for distinct pairs)."""
    return int(np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1, np.uint64)[0]) >> 1


def make_dataloader(
    split_dir: str | os.PathLike,
    data_config: DataConfig,
    training_config: TrainingConfig,
    train: bool,
    num_frames: int | None = None,
    position: tuple[int, int] | None = None,
) -> DataLoader:
    """A DataLoader of :class:`ClipDataset` clips configured from the run's config.

    Clips have ``num_frames`` frames (default ``training.num_observations``). Training shuffles and drops the
    last incomplete batch, except when the split has less than one full batch (then
    the only, smaller batch is kept, with a warning, instead of an empty epoch).

    ``position``: ``(epoch, batches done in it)`` makes the training order a
    :class:`ResumableSampler` starting there (a resumed run passes where it stopped).
    """
    channels = data_config.channels
    if channels == "auto":  # a run resolves it at its start; callers outside a run here
        channels = dataset_channels(Path(split_dir).parent)
    dataset = ClipDataset(
        split_dir,
        num_frames=num_frames or training_config.num_observations,
        frame_stride=data_config.frame_stride,
        image_size=data_config.image_size,
        train=train,
        clips_per_video=data_config.clips_per_video if train else data_config.eval_clips_per_video,
        seed=training_config.seed,
        channels=channels,
    )
    return loader_for(dataset, data_config, train, split_dir, position, training_config.seed)


def loader_for(
    dataset: Dataset,
    data_config: DataConfig,
    train: bool,
    where: str | os.PathLike,
    position: tuple[int, int] | None = None,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader with the run's batch size and workers; training shuffles and drops the
    last partial batch (unless the split holds less than one batch, which is warned about)."""
    batch_size = (
        data_config.batch_size if train else (data_config.eval_batch_size or data_config.batch_size)
    )
    drop_last = train and len(dataset) >= batch_size
    if train and not drop_last:
        warnings.warn(
            f"{where}: {len(dataset)} training clips is less than one batch of {batch_size}; "
            "keeping the smaller batch",
            stacklevel=2,
        )
    workers = data_config.num_workers
    sampler = None
    if train and position is not None:
        epoch, batches_done = position
        sampler = ResumableSampler(len(dataset), seed, epoch, skip=batches_done * batch_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        # Worker seeds (and any shuffle) from a generator of the loader's own: creating an
        # iterator then draws nothing from torch's global generator, whose state a resume
        # restores. Validation loaders too: with persistent workers their first iterator
        # is made at a process's first validation, which a resumed run reaches at another
        # step than the uninterrupted one (river runs, whose flow loss draws from the
        # global generator, then drifted apart after the first validation).
        generator=torch.Generator().manual_seed(seed),
    )
