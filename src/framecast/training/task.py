"""What the engine needs to train one model kind: :class:`Task`.

Each kind's training module defines ``TASK = Task(...)``; :mod:`framecast.training.tasks`
lists the kinds. This module imports no kind, so the kinds can import it freely.

A run's effective config is settled in one place, before any module is built: the
kind's ``resolve_config`` turns every ``auto`` it owns into the number the run uses
(``data.channels`` from the dataset; river's ``training.smoke_threshold`` from the
data), so config.yaml records what ran. Modules only build, and refuse a config still
holding ``auto`` (:func:`refuse_auto`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl

from framecast.config import Config
from framecast.data.dataset import resolve_data_channels
from framecast.errors import ConfigError

# Named in the errors of modules built from an unresolved config.
RESOLVER = "framecast.training.resolve_run_config"


@dataclass(frozen=True)
class ResolvedRun:
    """A run's effective config (no ``auto`` left that the kind resolves) and what the
    resolution learned that the module needs besides (keyword arguments of its
    constructor, e.g. river's smoke-threshold provenance and the loaded stage 1)."""

    config: Config
    module_kwargs: Mapping[str, Any] = field(default_factory=dict)


def resolve_frame_channels(config: Config) -> ResolvedRun:
    """The resolver of the kinds that read frames: ``data.channels: auto`` becomes the
    dataset's number in place (``model.image_channels`` follows it); a number is kept.
    Idempotent, so a resumed run's config passes through unchanged."""
    resolve_data_channels(config)
    return ResolvedRun(config)


def keep_config(config: Config) -> ResolvedRun:
    """The resolver of a kind with nothing to resolve."""
    return ResolvedRun(config)


def refuse_auto(config: Config, key: str, resolver: str = RESOLVER) -> None:
    """Raise a :class:`ConfigError` if ``key`` (``section.name``) of ``config`` is still
    ``auto``: a module builds from a resolved config and decides nothing itself."""
    section, name = key.split(".")
    if getattr(getattr(config, section), name) == "auto":
        raise ConfigError(
            f"{key}=auto: the {config.model.kind} module is built from a resolved config; "
            f"call {resolver}(config) first and build from its result (the engine does so "
            "when a run starts)"
        )


@dataclass(frozen=True)
class Task:
    """How to train one model kind."""

    build_module: Callable[..., pl.LightningModule]  # (config, **ResolvedRun.module_kwargs)
    build_datamodule: Callable[[Config], pl.LightningDataModule]
    # The run's effective config, settled once before anything is built (see above).
    resolve_config: Callable[[Config], ResolvedRun] = resolve_frame_channels
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
