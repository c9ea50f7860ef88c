"""What the engine needs to train one model kind: :class:`Task`.

Each kind's training module defines ``TASK = Task(...)``; :mod:`framecast.training.tasks`
lists the kinds. This module imports no kind, so the kinds can import it freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lightning.pytorch as pl

from framecast.config import Config


@dataclass(frozen=True)
class Task:
    """How to train one model kind."""

    build_module: Callable[[Config], pl.LightningModule]
    build_datamodule: Callable[[Config], pl.LightningDataModule]
    build_callbacks: Callable[[Config, object], list[pl.Callback]] = field(
        default=lambda config, run: []
    )
    # DDP must find the parameters a backward did not reach (each of a GAN's two backward
    # passes reaches only one player); costs a graph traversal per backward. A callable
    # decides per config (the autoencoder has a second player only with its discriminator).
    find_unused_parameters: bool | Callable[[Config], bool] = False
    # Whether the kind trains under ``16-mixed`` (Lightning's loss scaler): not where
    # optimisers are stepped by hand (a GAN's two players). ``training.precision: auto``
    # then takes fp32 on a GPU without bf16 instead of fp16.
    fp16_supported: bool | Callable[[Config], bool] = True

    def needs_find_unused_parameters(self, config: Config) -> bool:
        """Whether DDP must look for unused parameters when training ``config``."""
        return _decide(self.find_unused_parameters, config)

    def supports_fp16(self, config: Config) -> bool:
        """Whether ``config`` may train under ``16-mixed``."""
        return _decide(self.fp16_supported, config)


def _decide(value: bool | Callable[[Config], bool], config: Config) -> bool:
    return bool(value(config) if callable(value) else value)
