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
        if not run.root.is_dir():
            raise ConfigError(f"--resume: run {run.root} does not exist")
    elif run.last_checkpoint.exists() or run.metrics_path.exists():
        raise ConfigError(
            f"run {run.root} already exists; pass --resume to continue it or choose another --run-name"
        )
    return run.create()


def remove_stale_temporaries(run: RunDir) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files that killed atomic writes left in the run
    (checkpoints, metrics.csv, config.yaml); return what was removed."""
    removed = []
    for folder in (run.root, run.checkpoints):
        for path in folder.glob(".*.tmp"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def clear_run_outputs(run: RunDir) -> None:
    """Remove what a run wrote while training (metrics, curves, samples, logger folders,
    checkpoints), keeping the folder: a ``--resume`` with nothing to resume starts over."""
    for path in (run.metrics_path, run.root / "loss_curves.png"):
        path.unlink(missing_ok=True)
    for folder in (run.samples, run.checkpoints, run.root / "tensorboard", run.root / "wandb"):
        if folder.is_dir():
            shutil.rmtree(folder)
    run.create()


def remove_if_unused(run: RunDir) -> bool:
    """Remove a run folder that holds no file but its config.yaml (a start that failed
    before training wrote anything); return whether it was removed."""
    if not run.root.is_dir():
        return False
    files = [p for p in run.root.rglob("*") if p.is_file()]
    if any(p != run.config_path for p in files):
        return False
    shutil.rmtree(run.root)
    return True
