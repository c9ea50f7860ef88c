"""Run directories: ``runs/<run-name>/`` with config, metrics, checkpoints and samples."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from framecast.config import Config, save_config
from framecast.errors import ConfigError
from framecast.utils import owner_exited, owner_record


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


LOCK_GRACE_SECONDS = 30.0
"""An empty or unreadable lock file younger than this is a holder still writing it."""


def lock_path(runs_dir: str | os.PathLike, run_name: str) -> Path:
    """``runs_dir/.<run_name>.lock``: beside the run folder, so that ``overwrite`` (which
    deletes the folder) cannot delete another process's lock with it."""
    return Path(runs_dir) / f".{run_name}.lock"


def _lock_holder(path: Path) -> dict | None:
    """The holder recorded in a lock file, or None when it is unreadable."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _stale_reason(path: Path, holder: dict | None) -> str | None:
    """Why an existing lock no longer holds anything, or None when it may."""
    if holder is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return "gone"
        return f"unreadable and {age:.0f} s old" if age > LOCK_GRACE_SECONDS else None
    return owner_exited(holder)  # None: alive here, or on another host where it cannot be checked


@contextlib.contextmanager
def run_lock(runs_dir: str | os.PathLike, run_name: str) -> Iterator[Path]:
    """Hold the run ``runs_dir/run_name`` for this process: a second ``train`` (or
    ``--resume``) of the same run stops with one line naming the holder instead of writing
    into the same folder. The lock file records pid, host and start; one whose process has
    exited on this host is taken over (with a notice), one held on another host is not
    (remove it by hand once that job is gone). Released on exit, also on errors."""
    path = lock_path(runs_dir, run_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = owner_record()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _lock_holder(path)
            reason = _stale_reason(path, holder)
            if reason is None:
                who = (
                    f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
                    if holder
                    else "a process that is still writing its lock"
                )
                raise ConfigError(
                    f"run {Path(runs_dir) / run_name} is in use by {who} (lock {path}); wait "
                    "for it to finish, or remove the lock if that process is gone"
                ) from None
            if reason != "gone":
                print(
                    f"framecast: run {run_name}: taking over a stale lock ({reason})",
                    file=sys.stderr,
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        break
    else:  # pragma: no cover - three processes racing for one stale lock
        raise ConfigError(f"run {Path(runs_dir) / run_name}: could not take the lock {path}")
    try:
        yield path
    finally:
        if (_lock_holder(path) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


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
