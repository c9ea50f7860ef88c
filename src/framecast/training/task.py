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

    def needs_find_unused_parameters(self, config: Config) -> bool:
        """Whether DDP must look for unused parameters when training ``config``."""
        value = self.find_unused_parameters
        return bool(value(config) if callable(value) else value)
