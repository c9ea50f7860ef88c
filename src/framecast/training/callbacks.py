"""Reusable training callbacks (no model-specific code)."""

from __future__ import annotations

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
