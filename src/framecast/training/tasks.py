"""The trainable model kinds: one explicit table, ``model.kind`` → :class:`Task`.

A new kind adds a config schema (``register_model_kind``), a LightningModule, a
``TASK = Task(...)`` in its training module and one entry in :data:`KINDS`; the engine
and the command line need no change. Each entry imports its module when first asked, so
``framecast --help`` and config validation stay fast; the kinds import only
:mod:`framecast.training.task`, never this table (no import circle).
"""

from __future__ import annotations

from collections.abc import Callable

from framecast.errors import ConfigError
from framecast.training.task import Task

__all__ = ["KINDS", "Task", "get_task"]


def _autoencoder() -> Task:
    from framecast.training.autoencoder import TASK

    return TASK


def _river() -> Task:
    from framecast.training.river import TASK

    return TASK


def _vaegan() -> Task:
    from framecast.training.vaegan import TASK

    return TASK


def _simvp() -> Task:
    from framecast.training.simvp import TASK

    return TASK


def _motion() -> Task:
    from framecast.training.motion import TASK

    return TASK


KINDS: dict[str, Callable[[], Task]] = {
    "autoencoder": _autoencoder,
    "river": _river,
    "vaegan": _vaegan,
    "simvp": _simvp,
    "motion": _motion,
}


def get_task(kind: str) -> Task:
    """The :class:`Task` of ``model.kind``; ConfigError for a kind that cannot be trained."""
    if kind not in KINDS:
        raise ConfigError(
            f"model.kind {kind!r} cannot be trained; trainable kinds: {', '.join(sorted(KINDS))}"
        )
    return KINDS[kind]()
