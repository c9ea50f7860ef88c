"""Registry of trainable model kinds: ``model.kind`` → how to build module and data.

A new kind adds a config schema (``register_model_kind``), a LightningModule and one
``register_task`` call; the engine and the command line need no change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lightning.pytorch as pl

from framecast.config import Config
from framecast.errors import ConfigError


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


TASKS: dict[str, Task] = {}


def register_task(kind: str, task: Task) -> None:
    TASKS[kind] = task


def get_task(kind: str) -> Task:
    _import_builtin_tasks()
    if kind not in TASKS:
        raise ConfigError(
            f"model.kind {kind!r} cannot be trained; trainable kinds: {', '.join(sorted(TASKS))}"
        )
    return TASKS[kind]


def _import_builtin_tasks() -> None:
    # Imported lazily so that `framecast --help` and config validation stay fast.
    import framecast.training.autoencoder  # noqa: F401
    import framecast.training.motion  # noqa: F401
    import framecast.training.river  # noqa: F401
    import framecast.training.vaegan  # noqa: F401
