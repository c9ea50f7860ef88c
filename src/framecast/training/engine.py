"""``framecast train``: one entry point for every model kind, built on Lightning.

Reading order: resolve the config (from the checkpoint when resuming), prepare the run
directory, build the kind's module and data, assemble callbacks and loggers, fit, save
the last checkpoint and the loss curves, report where everything is.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)

from framecast.checkpoint import model_state_dict, read_checkpoint, resolve_checkpoint
from framecast.config import Config, validate_config
from framecast.config.loader import apply_overrides
from framecast.errors import CheckpointError, ConfigError
from framecast.training.checkpoint import AtomicCheckpointIO
from framecast.training.loggers import RunCSVLogger, read_metrics_csv
from framecast.training.run import RunDir, default_run_name, prepare_run_dir
from framecast.training.tasks import get_task


@dataclass
class TrainResult:
    """What a finished training run produced."""

    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f"run: {self.run_dir}", f"steps: {self.global_step}"]
        for key in sorted(self.metrics):
            lines.append(f"  {key} = {self.metrics[key]:.5g}")
        if self.best_checkpoint:
            lines.append(f"best checkpoint: {self.best_checkpoint}")
        if self.last_checkpoint:
            lines.append(f"last checkpoint: {self.last_checkpoint}")
        return "\n".join(lines)


def resume_config(run: RunDir, overrides: list[str], given: Config | None) -> tuple[Config, int]:
    """The config and global step of a resumed run, from its last checkpoint.

    Non-model overrides are applied; the architecture always comes from the checkpoint, and
    changing ``model.*`` on resume is refused.
    """
    ckpt = read_checkpoint(run.last_checkpoint)
    stored = ckpt["framecast"]["config"]
    bad = [o for o in overrides if o.split("=", 1)[0].split(".")[0] == "model"]
    if bad:
        raise ConfigError(
            f"--resume: the model comes from the checkpoint; cannot override {', '.join(bad)}"
        )
    if given is not None and given.model.model_dump() != stored["model"]:
        raise ConfigError(
            f"--resume: the config's model section differs from the one in {run.last_checkpoint}; "
            "resume without --config or start a new run"
        )
    config = validate_config(apply_overrides(stored, overrides), str(run.last_checkpoint))
    return config, int(ckpt.get("global_step", 0))


def init_model_weights(module: pl.LightningModule, config: Config) -> Path:
    """Load ``training.init_from``'s model weights (only) into ``module.model``.

    The checkpoint must hold the same model kind and matching shapes; optimiser state,
    step and schedule start fresh (a resumed run never re-initialises).
    """
    t = config.training
    path = resolve_checkpoint(t.init_from, which=t.init_which)
    ckpt = read_checkpoint(path, expected_kind=config.model.kind)
    state = model_state_dict(ckpt)
    try:
        module.model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"training.init_from {t.init_from}: weights of {path} do not fit this config's "
            f"model ({first}); the model sections must describe the same architecture"
        ) from None
    return path


def _trainer_devices(num_gpus: int, num_nodes: int) -> dict:
    if num_gpus <= 0:
        return {"accelerator": "cpu", "devices": 1, "num_nodes": num_nodes}
    if not torch.cuda.is_available():
        raise ConfigError(f"--num-gpus {num_gpus}: no CUDA device is available on this machine")
    if num_gpus > torch.cuda.device_count():
        raise ConfigError(
            f"--num-gpus {num_gpus}: only {torch.cuda.device_count()} CUDA devices are visible"
        )
    multi = num_gpus > 1 or num_nodes > 1
    return {
        "accelerator": "gpu",
        "devices": num_gpus,
        "num_nodes": num_nodes,
        "strategy": "ddp" if multi else "auto",
    }


def train(
    config: Config | None,
    runs_dir: str | os.PathLike = "runs",
    run_name: str | None = None,
    resume: bool = False,
    overrides: list[str] | None = None,
    num_gpus: int = 0,
    num_nodes: int = 1,
    fast_dev_run: bool = False,
    progress: bool | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``config`` into ``runs_dir/run_name``; ``resume`` continues from ``last.ckpt``.

    ``overwrite`` deletes an existing run of the same name first (the demo re-runs itself).
    """
    overrides = list(overrides or [])
    if resume:
        if run_name is None:
            raise ConfigError("--resume needs --run-name (the run to continue)")
        run = prepare_run_dir(runs_dir, run_name, resume=True)
        config, resume_step = resume_config(run, overrides, config)
    else:
        resume_step = None
        if config is None:
            raise ConfigError("train needs --config (or --resume with --run-name)")
        run = prepare_run_dir(
            runs_dir, run_name or default_run_name(config), resume=False, overwrite=overwrite
        )
    t = config.training
    pl.seed_everything(t.seed, workers=True, verbose=False)
    task = get_task(config.model.kind)
    module = task.build_module(config)
    if t.init_from is not None and not resume:
        init_model_weights(module, config)
    datamodule = task.build_datamodule(config)

    if not fast_dev_run:
        run.save_config(config)
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(
            dirpath=run.checkpoints,
            filename="best",
            monitor=t.monitor,
            mode=t.monitor_mode,
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,
            auto_insert_metric_name=False,
        ),
        LearningRateMonitor(logging_interval="step"),
        *task.build_callbacks(config, run),
    ]
    show_progress = config.logging.progress_bar if progress is None else progress
    if show_progress:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps)))
    if t.ema_decay is not None:
        callbacks.append(EMAWeightAveraging(decay=t.ema_decay))
    if t.early_stopping_patience is not None:
        callbacks.append(
            EarlyStopping(
                monitor=t.monitor, mode=t.monitor_mode, patience=t.early_stopping_patience
            )
        )

    loggers: list = [RunCSVLogger(run.metrics_path, resume_step=resume_step)]
    if config.logging.tensorboard:
        loggers.append(
            pl.loggers.TensorBoardLogger(save_dir=str(run.root), name="tensorboard", version="")
        )
    if config.logging.wandb:
        loggers.append(_wandb_logger(config, run))

    automatic = module.automatic_optimization
    trainer = pl.Trainer(
        **_trainer_devices(num_gpus, num_nodes),
        precision=t.precision,
        max_steps=t.max_steps,
        max_epochs=t.max_epochs if t.max_epochs is not None else (-1 if t.max_steps > 0 else None),
        val_check_interval=t.val_every_n_steps,
        check_val_every_n_epoch=None if t.val_every_n_steps else 1,
        limit_val_batches=t.limit_val_batches,
        gradient_clip_val=t.grad_clip if automatic else None,
        log_every_n_steps=t.log_every_n_steps,
        fast_dev_run=fast_dev_run,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run.root),
        enable_progress_bar=show_progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        # On a 2-core machine Lightning's "increase num_workers" advice is noise.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # Frozen submodules (stage 2's autoencoder) are in eval mode on purpose.
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        trainer.fit(
            module,
            datamodule=datamodule,
            ckpt_path=str(run.last_checkpoint) if resume else None,
            weights_only=True,
        )

    last = best = None
    if not fast_dev_run:
        # ModelCheckpoint saves `last` after validations; make it the true final state.
        trainer.save_checkpoint(run.last_checkpoint, weights_only=False)
        last = run.last_checkpoint
        best = run.best_checkpoint if run.best_checkpoint.is_file() else None
        if trainer.is_global_zero:
            _plot_curves(run)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return TrainResult(run.root, last, best, trainer.global_step, metrics)


def _plot_curves(run: RunDir) -> None:
    from framecast.eval.plots import plot_metric_curves

    rows = read_metrics_csv(run.metrics_path)
    if rows:
        plot_metric_curves(rows, run.root / "loss_curves.png", title=run.name)


def _wandb_logger(config: Config, run: RunDir):
    try:
        import wandb  # noqa: F401
        from lightning.pytorch.loggers import WandbLogger
    except ImportError as exc:
        raise ConfigError(
            "--wandb needs the wandb package: pip install 'framecast[wandb]'"
        ) from exc
    return WandbLogger(
        project=config.logging.wandb_project,
        name=run.name,
        save_dir=str(run.root),
        offline=config.logging.wandb_offline,
        config=config.to_dict(),
        log_model=False,
    )
