"""Run directories: ``runs/<run-name>/`` with config, metrics, checkpoints and samples."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from framecast.config import Config, save_config
from framecast.errors import ConfigError


@dataclass(frozen=True)
class RunDir:
    """Paths of one run. Created on demand; only rank 0 writes into it."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.ckpt"

    def create(self) -> RunDir:
        for path in (self.root, self.checkpoints, self.samples):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def save_config(self, config: Config) -> Path:
        return save_config(config, self.config_path)


def default_run_name(config: Config) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{config.model.kind}-{stamp}"


def prepare_run_dir(
    runs_dir: str | os.PathLike, run_name: str, resume: bool, overwrite: bool = False
) -> RunDir:
    """Pick the run directory; refuse to train over an existing run unless resuming or overwriting."""
    run = RunDir(Path(runs_dir) / run_name)
    if overwrite and not resume and run.root.exists():
        shutil.rmtree(run.root)
    if resume:
        if not run.last_checkpoint.is_file():
            raise ConfigError(
                f"--resume: run {run.root} has no checkpoints/last.ckpt to resume from"
            )
    elif run.last_checkpoint.exists() or run.metrics_path.exists():
        raise ConfigError(
            f"run {run.root} already exists; pass --resume to continue it or choose another --run-name"
        )
    return run.create()
