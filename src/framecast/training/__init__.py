"""framecast.training.

:func:`resolve_run_config` is the one way to settle a config before building a kind's
module by hand (the engine calls the same resolver when a run starts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framecast.config import Config
    from framecast.training.task import ResolvedRun

__all__ = ["resolve_run_config"]


def resolve_run_config(config: Config) -> ResolvedRun:
    """``config`` resolved in place by its kind's ``Task.resolve_config`` (every ``auto``
    it owns becomes a number), with the keyword arguments its module takes::

        resolved = resolve_run_config(config)
        module = get_task(config.model.kind).build_module(
            resolved.config, **resolved.module_kwargs
        )

    Idempotent: a resolved config (a resumed run's) passes through unchanged.
    """
    # Imported here: the kinds import this package, and must not import the table of kinds.
    from framecast.training.tasks import get_task

    return get_task(config.model.kind).resolve_config(config)
