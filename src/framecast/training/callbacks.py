"""Reusable training callbacks (no model-specific code)."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl

from framecast.training.kl_schedule import KLSchedule


class KLScheduleCallback(pl.Callback):
    """Sets ``pl_module.kl_weight`` from a :class:`KLSchedule` before every training batch.

    Works with any module that reads ``self.kl_weight`` in its loss (the autoencoder, the
    VAE-GAN); logs ``train/kl_weight``.
    """

    def __init__(self, schedule: KLSchedule):
        self.schedule = schedule

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        pl_module.kl_weight = self.schedule.value(trainer.global_step)
        pl_module.log("train/kl_weight", pl_module.kl_weight, on_step=True, on_epoch=False)


class SampleMediaCallback(pl.Callback):
    """Sends the sample PNGs that rank 0 writes into ``samples/`` at each validation to the
    loggers that take images (Weights & Biases' ``log_image``), keyed ``samples/<kind>``."""

    def __init__(self, samples_dir: str | os.PathLike):
        self.samples_dir = Path(samples_dir)
        self._sent: set[str] = set()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sent = {p.name for p in self.samples_dir.glob("*.png")}  # a resumed run's

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        loggers = [lg for lg in trainer.loggers if hasattr(lg, "log_image")]
        for path in sorted(self.samples_dir.glob("*.png")):
            if path.name in self._sent:
                continue
            self._sent.add(path.name)
            key = "samples/" + path.stem.split("_step")[0]
            for logger in loggers:
                logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
