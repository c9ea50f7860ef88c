"""``framecast train``: one entry point for every model kind, built on Lightning.

Reading order: resolve the config (from the checkpoint when resuming), prepare the run
directory, settle the config's ``auto`` values (precision, then the kind's own), build
the kind's module and data, assemble callbacks and loggers, fit, save
the last checkpoint and the loss curves, report where everything is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    RichProgressBar,
    TQDMProgressBar,
)

from framecast.checkpoint import (
    model_state_dict,
    nonfinite_tensors,
    read_checkpoint,
    resolve_checkpoint,
)
from framecast.config import Config, load_config, validate_config
from framecast.config.loader import apply_overrides
from framecast.errors import CheckpointError, ConfigError
from framecast.hardware import PrecisionChoice, resolve_training_precision
from framecast.training.callbacks import (
    ForeachEMA,
    PatientEarlyStopping,
    PreemptionCallback,
    RestoreRNG,
    ResumeSchedule,
    SampleMediaCallback,
    ValidateAtEnd,
)
from framecast.training.checkpoint import (
    AtomicCheckpointIO,
    GuardedModelCheckpoint,
    unsaveable_reason,
)
from framecast.training.loggers import RunCSVLogger, read_metrics_csv
from framecast.training.run import (
    RunDir,
    clear_run_outputs,
    default_run_name,
    prepare_run_dir,
    remove_if_unused,
    remove_stale_temporaries,
    run_lock,
)
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


# Keys a resumed run may change, because the resumed run really uses the new value: the
# Trainer and the loss read them afresh, the schedule's lambda is rebuilt from them, and
# ``training.lr`` is applied to the restored optimisers (ResumeLearningRate). Everything
# else is restored from the checkpoint or fixed by it (architecture, optimiser moments,
# seeds and data order, monitored metric), so a new value would be recorded in
# config.yaml without being what ran; such changes are refused.
RESUMABLE_KEYS = (
    "data.root",
    "data.num_workers",
    "data.eval_batch_size",
    "training.max_steps",
    "training.max_epochs",
    "training.lr",
    "training.warmup_steps",
    "training.lr_schedule",
    "training.grad_clip",
    "training.precision",
    "training.val_every_n_steps",
    "training.limit_val_batches",
    "training.log_every_n_steps",
    "training.sample_every_n_steps",
    "training.early_stopping_patience",
    "training.smoke_weight",
    "training.background_weight",
    "logging",
)


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


@dataclass
class ResumePoint:
    """Where ``--resume`` continues: a checkpoint (None: restart the run from step 0), the
    steps and batches it holds, and why other checkpoints were passed over."""

    checkpoint: Path | None
    global_step: int = 0
    batches_done: int = 0
    passed_over: list[str] = field(default_factory=list)
    stored: dict | None = None


def find_resume_point(run: RunDir) -> ResumePoint:
    """The newest checkpoint of ``run`` that a resumed run can continue from.

    ``last.ckpt`` and ``best.ckpt`` are candidates; one that cannot be read, holds only
    weights, or holds non-finite weights is passed over (with the reason), and of the
    rest the one with the most steps wins (``last`` on a tie).
    """
    best: ResumePoint | None = None
    notes: list[str] = []
    for path in (run.last_checkpoint, run.best_checkpoint):
        if not path.is_file():
            continue
        try:
            ckpt = read_checkpoint(path, mmap=True)
            if "loops" not in ckpt or "optimizer_states" not in ckpt:
                raise CheckpointError(f"checkpoint {path} holds weights only, no training state")
            bad = nonfinite_tensors(ckpt.get("state_dict", {}))
            if bad:
                raise CheckpointError(f"checkpoint {path} has non-finite weights ({bad[0]})")
        except CheckpointError as exc:
            notes.append(str(exc))
            continue
        point = ResumePoint(
            path,
            int(ckpt.get("global_step", 0)),
            _batches_done(ckpt),
            stored=ckpt["framecast"]["config"],
        )
        if best is None or point.global_step > best.global_step:
            best = point
    best = best or ResumePoint(None)
    best.passed_over = notes
    return best


def _batches_done(ckpt: dict) -> int:
    """Training batches a checkpoint has completed (the metrics.csv step of the next one)."""
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"])
    except (KeyError, TypeError):
        return int(ckpt.get("global_step", 0))


def resume_config(point: ResumePoint, overrides: list[str], given: Config | None) -> Config:
    """The config of a resumed run: the checkpoint's, with ``overrides`` applied.

    Overrides of keys that a resumed run cannot honour (the architecture, seeds, data, optimiser settings; see
    ``RESUMABLE_KEYS``) are refused, so config.yaml always says what ran.
    """
    stored = point.stored or {}
    where = point.checkpoint
    bad = [o for o in overrides if o.split("=", 1)[0].split(".")[0] == "model"]
    if bad:
        raise ConfigError(
            f"--resume: the model comes from the checkpoint; cannot override {', '.join(bad)}"
        )
    if given is not None and given.model.model_dump() != stored["model"]:
        raise ConfigError(
            f"--resume: the config's model section differs from the one in {where}; "
            "resume without --config or start a new run"
        )
    config = validate_config(apply_overrides(stored, overrides), str(where))
    before = _flatten(validate_config(stored, str(where)).to_dict())
    after = _flatten(config.to_dict())
    fixed = sorted(
        key
        for key in before.keys() | after.keys()
        if before.get(key) != after.get(key) and not _resumable(key)
    )
    if fixed:
        raise ConfigError(
            f"--resume: {', '.join(fixed)} cannot change on resume (restored from {where}); "
            "start a new run instead, e.g. with training.init_from="
            f"{where.parent.parent if where else 'RUN'} to begin from its weights"
        )
    return config


# Inputs of the learning-rate schedule: when one changes on resume, the restored rates are
# recomputed from the rebuilt schedule (ResumeSchedule).
_SCHEDULE_KEYS = ("lr", "max_steps", "warmup_steps", "lr_schedule")


def restart_config(run: RunDir, overrides: list[str], given: Config | None) -> Config:
    """The config of a run restarted from step 0 by ``--resume``: ``--config`` if given,
    else the run's config.yaml, with ``overrides`` applied (nothing was trained yet, so
    every key may change)."""
    if given is not None:
        return validate_config(apply_overrides(given.to_dict(), overrides), "--config")
    if not run.config_path.is_file():
        raise ConfigError(
            f"--resume: run {run.root} has no checkpoint and no config.yaml to restart from; "
            "start it again with --config"
        )
    return load_config(run.config_path, overrides)


def notice(message: str) -> None:
    """A one-line note for the user on stderr (rank 0 only)."""
    if launch_rank_is_zero():
        print(f"framecast: {message}", file=sys.stderr)


def init_model_weights(module: pl.LightningModule, config: Config) -> Path:
    """Load ``training.init_from``'s model weights (only) into ``module.model``.

    The checkpoint must hold the same model kind and matching shapes; optimiser state,
    step and schedule start fresh (a resumed run never re-initialises).
    """
    t = config.training
    path = resolve_checkpoint(t.init_from, which=t.init_which)
    ckpt = read_checkpoint(path, expected_kind=config.model.kind)
    state = model_state_dict(ckpt)
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(
            f"training.init_from {t.init_from}: the weights of {path} are not finite "
            f"(NaN or inf in {bad[0]}); start from an earlier checkpoint"
        )
    try:
        module.model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"training.init_from {t.init_from}: weights of {path} do not fit this config's "
            f"model ({first}); the model sections must describe the same architecture"
        ) from None
    return path


# Launch-time rank variables, one per way processes get started: Lightning's own launcher
# (LOCAL_RANK/NODE_RANK for the processes it re-runs), torchrun (RANK), srun (SLURM_PROCID),
# jsrun on LSF (JSM_NAMESPACE_RANK), mpirun (OMPI_COMM_WORLD_RANK, PMI_RANK).
_RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "SLURM_PROCID",
    "JSM_NAMESPACE_RANK",
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
)


def launch_rank_is_zero(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0, judged before the Trainer exists.

    Every process of a multi-process run executes ``train`` from the start; only the one
    for which this is true prepares (and, with ``overwrite``, clears) the run directory and
    writes ``config.yaml``. The others never write into the run directory.
    """
    environ = os.environ if environ is None else environ
    for name in _RANK_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) != 0:
            return False
    return True


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """``"slurm"`` inside a Slurm job, ``"lsf"`` inside an LSF job, else ``None``."""
    environ = os.environ if environ is None else environ
    if environ.get("SLURM_JOB_ID"):
        return "slurm"
    if environ.get("LSB_JOBID"):
        return "lsf"
    return None


_LSF_JSRUN_VARIABLES = (
    "LSB_JOBID",
    "LSB_DJOB_RANKFILE",
    "JSM_NAMESPACE_LOCAL_RANK",
    "JSM_NAMESPACE_SIZE",
)


def cluster_environment(environ: Mapping[str, str] | None = None):
    """The Lightning cluster-environment plugin for this process, or ``None``.

    - Slurm, processes started by ``srun`` (``SLURM_NTASKS`` set, job name not ``bash`` or
      ``interactive``): ``SLURMEnvironment`` -- ranks, world size and the main address come
      from Slurm; start one task per GPU (``--ntasks-per-node`` = ``--num-gpus``).
    - LSF, processes started by ``jsrun`` (``LSB_DJOB_RANKFILE`` and ``JSM_NAMESPACE_*`` set):
      ``LSFEnvironment``.
    - Anything else, including an LSF job that runs ``framecast train`` once per node
      without ``jsrun``, and a single-node Slurm job without ``srun``: ``None``; Lightning
      starts the per-GPU processes itself (single node; several nodes then need
      ``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK`` set by the user).

    Lightning would pick the same two plugins by itself; passing them makes the choice
    explicit and testable.
    """
    from lightning.pytorch.plugins.environments import LSFEnvironment, SLURMEnvironment

    environ = os.environ if environ is None else environ
    kind = detect_cluster(environ)
    if kind == "slurm":
        if "SLURM_NTASKS" in environ and environ.get("SLURM_JOB_NAME") not in (
            "bash",
            "interactive",
        ):
            # Not Lightning's own requeue (an hpc_ckpt that --resume does not read):
            # PreemptionCallback saves last.ckpt and asks for the requeue itself.
            return SLURMEnvironment(auto_requeue=False)
    elif kind == "lsf":
        if all(name in environ for name in _LSF_JSRUN_VARIABLES):
            return LSFEnvironment()
    return None


def _trainer_devices(num_gpus: int, num_nodes: int, num_processes: int = 1) -> dict:
    """Accelerator, devices and strategy: CUDA with ``num_gpus`` > 0, else ``num_processes``
    CPU processes; more than one process in all means DDP (NCCL on GPUs, gloo on CPU)."""
    if num_processes < 1:
        raise ConfigError(f"--num-processes {num_processes}: must be at least 1")
    if num_gpus <= 0:
        accelerator, devices = "cpu", num_processes
    else:
        if num_processes > 1:
            raise ConfigError(
                "--num-processes is for CPU runs; with --num-gpus there is one process per GPU"
            )
        if not torch.cuda.is_available():
            raise ConfigError(f"--num-gpus {num_gpus}: no CUDA device is available on this machine")
        if num_gpus > torch.cuda.device_count():
            raise ConfigError(
                f"--num-gpus {num_gpus}: only {torch.cuda.device_count()} CUDA devices are visible"
            )
        accelerator, devices = "gpu", num_gpus
    multi = devices > 1 or num_nodes > 1
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": "ddp" if multi else "auto",
    }


def _progress_bar(refresh_rate: int) -> pl.Callback:
    """Rich's bar on a terminal when rich is installed, else the TQDM bar (logs, pipes)."""
    if sys.stdout.isatty():
        try:
            import rich  # noqa: F401
        except ImportError:
            pass
        else:
            return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=refresh_rate)


def train(
    config: Config | None,
    runs_dir: str | os.PathLike = "runs",
    run_name: str | None = None,
    resume: bool = False,
    overrides: list[str] | None = None,
    num_gpus: int = 0,
    num_nodes: int = 1,
    num_processes: int = 1,
    fast_dev_run: bool = False,
    detect_anomaly: bool = False,
    progress: bool | None = None,
    overwrite: bool = False,
    callbacks: list[pl.Callback] | None = None,
) -> TrainResult:
    """Train ``config`` into ``runs_dir/run_name``.

    ``resume`` continues the run from its newest usable checkpoint (``last``, else ``best``;
    see :func:`find_resume_point`), restoring the data order and every random generator so
    that a CPU run ends as if never interrupted; a run with no usable checkpoint starts
    over from step 0 (with a note on stderr). ``overrides`` (``KEY=VALUE``) apply to
    ``config`` for a new run; on resume they are limited to ``RESUMABLE_KEYS``.

    ``overwrite`` deletes an existing run of the same name first (the demo re-runs itself).
    ``callbacks`` are added to the kind's own (tests and scripts hook in here).
    ``detect_anomaly`` runs autograd's anomaly detection (slow; names the op that made a NaN).
    ``num_gpus`` GPUs per node, or ``num_processes`` CPU processes, on ``num_nodes`` nodes:
    more than one process in all trains with DDP; every process runs this function, each
    trains on its own shard of the data (Lightning's DistributedSampler), and only global
    rank 0 writes into the run directory.
    """
    rank_zero = launch_rank_is_zero()
    devices = _trainer_devices(num_gpus, num_nodes, num_processes)
    if not resume and run_name is None and devices["devices"] * num_nodes > 1:
        raise ConfigError("a multi-process run needs --run-name (one name for every rank)")
    name = run_name or (default_run_name(config) if config is not None and not resume else None)
    # Rank 0 holds the run for the whole start and fit: a second train (or --resume) of
    # the same run stops with one line instead of writing into the same folder.
    lock = run_lock(runs_dir, name) if rank_zero and name else contextlib.nullcontext()
    with lock:
        return _train(
            config, runs_dir, name, resume, overrides, devices, rank_zero,
            fast_dev_run, detect_anomaly, progress, overwrite, callbacks,
        )  # fmt: skip


def _train(
    config: Config | None,
    runs_dir: str | os.PathLike,
    run_name: str | None,
    resume: bool,
    overrides: list[str] | None,
    devices: dict,
    rank_zero: bool,
    fast_dev_run: bool,
    detect_anomaly: bool,
    progress: bool | None,
    overwrite: bool,
    callbacks: list[pl.Callback] | None,
) -> TrainResult:
    """:func:`train` once the run is held: ``run_name`` is resolved (None only for a
    ``resume`` without one, or a new run without a config, both refused here)."""
    overrides = list(overrides or [])
    point: ResumePoint | None = None
    if resume:
        if run_name is None:
            raise ConfigError("--resume needs --run-name (the run to continue)")
        run = _run_dir(runs_dir, run_name, True, False, rank_zero)
        if rank_zero:
            for path in remove_stale_temporaries(run):
                notice(f"--resume: removed {path}, left by a save that was killed")
        point = find_resume_point(run)
        if point.checkpoint is not None:
            config = resume_config(point, overrides, config)
            if point.passed_over:
                notice(
                    f"--resume: {'; '.join(point.passed_over)}; continuing from "
                    f"{point.checkpoint} (step {point.global_step})"
                )
        else:
            config = restart_config(run, overrides, config)
            why = "; ".join(point.passed_over) or "no checkpoint was written"
            notice(
                f"--resume: run {run.root} has nothing to resume ({why}); restarting it from step 0"
            )
            if rank_zero:
                clear_run_outputs(run)
            point = None
        created = False
    else:
        if config is None:
            raise ConfigError("train needs --config (or --resume with --run-name)")
        if overrides:
            config = validate_config(apply_overrides(config.to_dict(), overrides), "overrides")
        created = not (Path(runs_dir) / run_name).exists() or overwrite
        run = _run_dir(runs_dir, run_name, False, overwrite, rank_zero)
    try:
        result = _fit(
            config,
            run,
            point,
            devices,
            rank_zero,
            fast_dev_run,
            detect_anomaly,
            progress,
            callbacks,
        )
    except BaseException:
        # A start that failed before training wrote anything leaves no run folder behind
        # (it would block the same --run-name with "already exists").
        if created and rank_zero:
            remove_if_unused(run)
        raise
    if fast_dev_run and created and rank_zero:
        remove_if_unused(run)  # --fast-dev-run writes no files: no empty folder either
    return result


def run_device(devices: dict) -> str:
    """The torch device this process trains on: ``cpu``, or ``cuda:LOCAL_RANK``."""
    if devices["accelerator"] != "gpu":
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}"


def resolve_precision(config: Config, task, devices: dict) -> PrecisionChoice:
    """Set ``training.precision`` to what this run's hardware computes fast (from ``auto``),
    before the module is built and config.yaml written; :func:`announce_precision` says
    the choice once the run is set up.

    An explicit ``bf16-mixed`` on hardware without native bf16 is kept (the choice then
    carries a warning that gives the measured slowdown). ``16-mixed`` for a kind that
    steps its optimisers by hand is refused.
    """
    t = config.training
    fp16_ok = task.supports_fp16(config)
    if t.precision == "16-mixed" and not fp16_ok:
        raise ConfigError(
            f"training.precision '16-mixed' is not supported for this {config.model.kind} "
            "config (optimisers stepped by hand, no loss scaler); use 'auto', 'bf16-mixed' or '32'"
        )
    choice = resolve_training_precision(t.precision, run_device(devices), fp16_supported=fp16_ok)
    t.precision = choice.value
    return choice


def announce_precision(choice: PrecisionChoice) -> None:
    """One line for ``auto`` (what it became and why), one warning for an explicit bf16 on
    hardware that emulates it; rank 0 only. Called once the module and data are built, so
    a run refused while setting up prints its error alone."""
    if choice.warning:
        if launch_rank_is_zero():
            warnings.warn(choice.warning, stacklevel=3)
    elif choice.requested == "auto":
        notice(choice.describe())


def _fit(
    config: Config,
    run: RunDir,
    point: ResumePoint | None,
    devices: dict,
    rank_zero: bool,
    fast_dev_run: bool,
    detect_anomaly: bool,
    progress: bool | None,
    callbacks: list[pl.Callback] | None,
) -> TrainResult:
    """Build the kind's module, data, callbacks and loggers, fit, save ``last``."""
    resume = point is not None
    t = config.training
    pl.seed_everything(t.seed, workers=True, verbose=False)
    task = get_task(config.model.kind)
    precision = resolve_precision(config, task, devices)
    if task.needs_find_unused_parameters(config) and devices["strategy"] == "ddp":
        # Each backward reaches only part of the model (a GAN's two players).
        devices["strategy"] = "ddp_find_unused_parameters_true"
    # Every `auto` of the kind becomes the number this run uses, before anything is built
    # and before config.yaml records the config (a resumed run's has numbers already).
    resolved = task.resolve_config(config)
    config, t = resolved.config, resolved.config.training
    module = task.build_module(config, **resolved.module_kwargs)
    if t.init_from is not None and not resume:
        init_model_weights(module, config)
    datamodule = task.build_datamodule(config)
    announce_precision(precision)

    if not fast_dev_run and rank_zero:
        run.save_config(config)
    extra_callbacks = callbacks
    callbacks = [
        GuardedModelCheckpoint(
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
        ValidateAtEnd(),
        PreemptionCallback(),
        RestoreRNG(t.seed),
        *task.build_callbacks(config, run),
        *(extra_callbacks or []),
    ]
    if resume:
        before = (point.stored or {}).get("training", {})
        reschedule = any(before.get(k) != getattr(t, k) for k in _SCHEDULE_KEYS)
        # First: the LearningRateMonitor logs at the step this fixes.
        callbacks.insert(0, ResumeSchedule(before.get("lr"), t.lr, reschedule))
    show_progress = config.logging.progress_bar if progress is None else progress
    if show_progress:
        callbacks.append(_progress_bar(max(1, t.log_every_n_steps)))
    if t.ema_decay is not None:
        callbacks.append(ForeachEMA(decay=t.ema_decay))
    if t.early_stopping_patience is not None:
        callbacks.append(
            PatientEarlyStopping(
                monitor=t.monitor, mode=t.monitor_mode, patience=t.early_stopping_patience
            )
        )

    loggers: list = [
        RunCSVLogger(run.metrics_path, resume_step=point.batches_done - 1 if resume else None)
    ]
    if config.logging.tensorboard:
        loggers.append(
            pl.loggers.TensorBoardLogger(save_dir=str(run.root), name="tensorboard", version="")
        )
    if config.logging.wandb:
        loggers.append(_wandb_logger(config, run))
        callbacks.append(SampleMediaCallback(run.samples))

    automatic = module.automatic_optimization
    with _quiet_lightning():
        trainer = pl.Trainer(
            **devices,
            precision=t.precision,
            max_steps=t.max_steps,
            max_epochs=t.max_epochs
            if t.max_epochs is not None
            else (-1 if t.max_steps > 0 else None),
            val_check_interval=t.val_every_n_steps,
            check_val_every_n_epoch=None if t.val_every_n_steps else 1,
            limit_val_batches=t.limit_val_batches,
            gradient_clip_val=t.grad_clip if automatic else None,
            log_every_n_steps=t.log_every_n_steps,
            fast_dev_run=fast_dev_run,
            detect_anomaly=detect_anomaly,
            callbacks=callbacks,
            logger=loggers,
            plugins=[AtomicCheckpointIO(), *filter(None, [cluster_environment()])],
            default_root_dir=str(run.root),
            enable_progress_bar=show_progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        try:
            trainer.fit(
                module,
                datamodule=datamodule,
                ckpt_path=str(point.checkpoint) if resume else None,
                weights_only=True,
            )
        except MisconfigurationException as exc:
            if "could not find the monitored key" not in str(exc):
                raise
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
            raise ConfigError(
                f"training.monitor {t.monitor!r} is not a metric this model logs in validation "
                f"(it logs: {', '.join(logged) or 'nothing'})"
            ) from exc

    last = best = None
    if not fast_dev_run:
        # ModelCheckpoint saves `last` after validations; make it the true final state,
        # unless that state diverged (then the last good one stays).
        reason = unsaveable_reason(trainer, t.monitor)
        if reason is None:
            trainer.save_checkpoint(run.last_checkpoint, weights_only=False)
        else:
            notice(f"not saving the final state as last.ckpt, {reason}")
        last = run.last_checkpoint if run.last_checkpoint.is_file() else None
        best = run.best_checkpoint if run.best_checkpoint.is_file() else None
        if trainer.is_global_zero:
            _plot_curves(run)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return TrainResult(run.root, last, best, trainer.global_step, metrics)


# Lightning's messages that are not the user's business: advertising, accelerators this
# machine does not have, a restatement of the config's limit_val_batches.
_LIGHTNING_NOISE = ("Tip:", "TPU available:", "HPU available:", "was configured so")


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in _LIGHTNING_NOISE)


@contextlib.contextmanager
def _quiet_lightning():
    """Silence Lightning's advertising and the warnings that are not about the user's run."""
    loggers = [
        logging.getLogger(name)
        for name in (
            "lightning.pytorch.utilities.rank_zero",
            "lightning.fabric.utilities.rank_zero",
            "lightning.pytorch",
            "lightning.fabric",
        )
    ]
    noise = _NoiseFilter()
    for logger in loggers:
        logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            # On a 2-core machine Lightning's "increase num_workers" advice is noise.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # Frozen submodules (stage 2's autoencoder) are in eval mode on purpose.
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
            # Lightning's own use of a torch API torch deprecated: nothing the user can change.
            warnings.filterwarnings(
                "ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning
            )
            # The data order is resumable (ResumableSampler), which Lightning cannot see.
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
            # A resumed run's checkpoints folder is not empty, by definition.
            warnings.filterwarnings("ignore", message="Checkpoint directory .* is not empty")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


def _run_dir(
    runs_dir: str | os.PathLike, name: str, resume: bool, overwrite: bool, rank_zero: bool
) -> RunDir:
    """Rank 0 checks, clears (``overwrite``) and creates the run directory; the other ranks
    of a multi-process run only need its paths (they may start before rank 0 made it)."""
    if rank_zero:
        return prepare_run_dir(runs_dir, name, resume=resume, overwrite=overwrite)
    return RunDir(Path(runs_dir) / name)


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
