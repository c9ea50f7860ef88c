"""LightningDataModule over a dataset folder's splits (``data.root``/train, val, test)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from framecast.config import Config
from framecast.data.dataset import make_dataloader, split_dir
from framecast.errors import ConfigError


def split_context_future(
    clip: torch.Tensor, context_frames: int, future_frames: int, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, C, H, W) clip → context (B, context_frames, ...), future (B, future_frames, ...).

    ValueError naming the kind and the two config keys when the clip is too short.
    """
    needed = context_frames + future_frames
    if clip.shape[1] < needed:
        raise ValueError(
            f"clips of {clip.shape[1]} frames; kind {kind} needs condition_frames + "
            f"frames_to_generate = {needed}"
        )
    return clip[:, :context_frames], clip[:, context_frames:needed]


class ClipDataModule(pl.LightningDataModule):
    """Clips of ``num_frames`` frames (default ``training.num_observations``) per item.

    Items are dicts with ``frames`` (T, C, H, W) in [-1, 1], ``video_id``, ``start``,
    ``video_index`` and, when every video has one, ``label``.
    """

    def __init__(self, config: Config, num_frames: int | None = None):
        super().__init__()
        if config.data.root is None:
            raise ConfigError("no dataset: set data.root in the config or pass --data DIR")
        self.config = config
        self.num_frames = num_frames

    def _loader(self, split: str, train: bool):
        return make_dataloader(
            split_dir(self.config.data.root, split),
            self.config.data,
            self.config.training,
            train=train,
            num_frames=self.num_frames,
            position=training_position(self.trainer) if train else None,
        )

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)


def training_position(trainer: pl.Trainer | None) -> tuple[int, int] | None:
    """``(epoch, batches done in it)`` of a single-process run, for a resumable data order.

    Lightning asks for the training loader after restoring a resumed run's loop state, so
    this is where the killed run stopped (``(0, 0)`` for a fresh run). None without a
    trainer, and in multi-process runs, where Lightning's DistributedSampler shards and
    shuffles the data per epoch instead (their resume restarts the epoch's order).
    """
    if trainer is None or trainer.world_size > 1:
        return None
    fit_loop = trainer.fit_loop
    epoch = fit_loop.epoch_progress.current.processed
    done = fit_loop.epoch_loop.batch_progress.current.completed
    return epoch, done
