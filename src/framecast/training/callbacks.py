"""Reusable training callbacks (no model-specific code)."""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from framecast.errors import Preempted
from framecast.training.kl_schedule import KLSchedule
from framecast.utils import seed_everything

PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")
"""What schedulers send before they kill a job: Slurm (``--signal``, and SIGTERM at the
time limit or on ``scancel``), LSF (the warning action, ``bsub -wa``), Kubernetes (SIGTERM)."""


class PreemptionCallback(pl.Callback):
    """On SIGTERM, SIGUSR1 or SIGUSR2: finish the current step (and its validation), save
    ``last.ckpt`` before the next one (the checkpoint callback's own atomic, guarded save),
    and stop with :class:`Preempted` (exit 128 + signal, one line saying where to resume).

    Under Slurm, a job that got SIGUSR1 (what the job scripts' ``--signal=B:USR1@120``
    sends) asks ``scontrol requeue`` for itself, so the job starts again and its script
    resumes; under DDP every rank saves and stops when any rank got the signal. Handlers
    are installed for the training loop only (main thread) and the previous ones restored
    after it; a signal during validation is acted on before the next training step.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame) -> None:
        self.received = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning's signal connector (it registers between on_fit_start and
        # on_train_start): its SIGTERM handler would stop the fit cleanly, exit 0, unsaved.
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled in the main thread
        for name in PREEMPTION_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                self._previous[signum] = signal.signal(signum, self._handler)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Acted on here, between two steps: the previous step is complete (its validation,
        # epoch end, metrics row), so the checkpoint is the one a validation would write
        # and the resumed run continues with the same numbers.
        received = self.received is not None
        if trainer.world_size > 1:
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        if not received:
            return
        signum = self.received if self.received is not None else signal.SIGTERM
        name = signal.Signals(signum).name
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None:
            raise Preempted(f"received {name} at step {trainer.global_step}: stopped", signum)
        for logger in trainer.loggers:
            logger.save()
        # The loop has counted this batch as fetched ("ready"); the checkpoint must look like
        # one written at the end of the previous step, or the resumed run's validation
        # schedule shifts by a step.
        progress = trainer.fit_loop.epoch_loop.batch_progress
        progress.total.ready -= 1
        progress.current.ready -= 1
        progress.is_last_batch = False  # that of the fetched batch, not started yet
        checkpoint._save_last_checkpoint(trainer, checkpoint._monitor_candidates(trainer))
        saved = checkpoint.last_model_path or "no checkpoint (the model was not finite)"
        requeued = ""
        if signum == getattr(signal, "SIGUSR1", None) and _slurm_requeue(trainer):
            requeued = "; asked Slurm to requeue the job"
        raise Preempted(
            f"received {name} at step {trainer.global_step}: saved {saved}{requeued}; "
            "continue with framecast train --run-name NAME --resume",
            signum,
        )


def _slurm_requeue(trainer: pl.Trainer) -> bool:
    """``scontrol requeue $SLURM_JOB_ID`` from global rank 0; whether it was asked."""
    job = os.environ.get("SLURM_JOB_ID")
    if not trainer.is_global_zero or not job or shutil.which("scontrol") is None:
        return False
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    return done.returncode == 0


class ForeachEMA(WeightAveraging):
    """EMA of the weights after every optimiser step, ``avg = decay·avg + (1 − decay)·w``.

    Lightning's ``EMAWeightAveraging`` updates with a Python loop over the parameters;
    this one passes torch's ``multi_avg_fn``, which updates all of them with ``torch._foreach``
    ops (measured 3–25× faster per update on the tiny RIVER model, benchmarks/river_speed.py).
    Same values, same checkpoint layout.
    """

    def __init__(self, decay: float):
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None  # every step, as EMAWeightAveraging's defaults


class KLScheduleCallback(pl.Callback):
    """Sets ``pl_module.kl_weight`` from a :class:`KLSchedule` before every training batch.

    Works with any module that reads ``self.kl_weight`` in its loss (the autoencoder, the
    VAE-GAN); logs ``train/kl_weight``.
    """

    def __init__(self, schedule: KLSchedule):
        self.schedule = schedule

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        pl_module.kl_weight = self.schedule.value(trainer.global_step)
        pl_module.log("train/kl_weight", pl_module.kl_weight, on_step=True, on_epoch=False)


class SampleMediaCallback(pl.Callback):
    """Sends the sample PNGs that rank 0 writes into ``samples/`` at each validation to the
    loggers that take images (Weights & Biases' ``log_image``), keyed ``samples/<kind>``."""

    def __init__(self, samples_dir: str | os.PathLike):
        self.samples_dir = Path(samples_dir)
        self._sent: set[str] = set()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sent = {p.name for p in self.samples_dir.glob("*.png")}  # a resumed run's

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        loggers = [lg for lg in trainer.loggers if hasattr(lg, "log_image")]
        for path in sorted(self.samples_dir.glob("*.png")):
            if path.name in self._sent:
                continue
            self._sent.add(path.name)
            key = "samples/" + path.stem.split("_step")[0]
            for logger in loggers:
                logger.log_image(key=key, images=[str(path)], step=trainer.global_step)


class ValidateAtEnd(pl.Callback):
    """Validate and log at a run's last step, whatever the intervals.

    Without it a run shorter than ``training.val_every_n_steps`` (or one epoch) never
    validates: no ``val/`` metrics, no best checkpoint, and with ``log_every_n_steps`` above
    ``max_steps`` not even a ``metrics.csv``. Raising Lightning's stop flag at the last
    training batch makes its loop run the validation and flush the logs there, once (a last
    step that is also a validation step validates once).
    """

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx):
        if is_last_training_batch(trainer):
            trainer.should_stop = True


def is_last_training_batch(trainer: pl.Trainer) -> bool:
    """Whether the batch that just ended is the run's last (``max_steps`` or ``max_epochs``)."""
    if trainer.max_steps is not None and trainer.max_steps > 0:
        if trainer.global_step >= trainer.max_steps:
            return True
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs > 0 and trainer.current_epoch >= max_epochs - 1:
        return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
    return False


class PatientEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, fit for short and resumed runs.

    - No check before the monitored metric exists: a run stopped by ``max_steps`` inside its
      first epoch reaches the epoch-end check before any validation, where Lightning's
      class raises. (A metric that never appears still fails: ModelCheckpoint raises once a
      validation has run without it.)
    - ``patience`` stays the configured value on resume (Lightning restores the old one
      from the checkpoint, which would make ``training.early_stopping_patience=N`` on
      ``--resume`` a no-op while config.yaml says N).
    """

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        if self.monitor not in trainer.callback_metrics:
            return
        super()._run_early_stopping_check(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience


class ResumeSchedule(pl.Callback):
    """Make a resumed run's optimisers follow its (possibly changed) config.

    Lightning restores each optimiser's param groups and each scheduler's ``base_lrs`` from
    the checkpoint, so a ``training.lr`` changed on ``--resume`` would silently not run, and
    a changed ``max_steps``/``warmup_steps``/``lr_schedule`` would take effect only from the
    second step. On resume:

    - every param group whose base rate came from ``training.lr`` (tagged by
      ``FramecastModule.make_optimizer``, or untagged with the old rate as its base) is
      rescaled by ``new / old``, and so is its scheduler's base; rates from other keys (a
      discriminator's ``disc_lr``) are left alone;
    - with ``reschedule``, each ``LambdaLR`` group's rate is recomputed from the rebuilt
      schedule at the restored position.

    It also keeps the logging step continuous: Lightning's restart adds one to its
    logging step counter in some restart stages, which lost a row of metrics.csv.
    """

    def __init__(self, old_lr: float | None, new_lr: float, reschedule: bool):
        self.old_lr = old_lr
        self.new_lr = new_lr
        self.reschedule = reschedule
        self._step_fixed = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx) -> None:
        # Once, at the first resumed batch (after Lightning's restart adjustments): the
        # logging step is the number of batches trained before this one.
        if not self._step_fixed:
            self._step_fixed = True
            loop = trainer.fit_loop.epoch_loop
            loop._batches_that_stepped = loop.batch_progress.total.completed

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        changed: set[tuple[int, int]] = set()
        if self.old_lr is not None and self.old_lr != self.new_lr:
            ratio = self.new_lr / self.old_lr
            for optimizer in trainer.optimizers:
                for j, group in enumerate(optimizer.param_groups):
                    base = group.get("initial_lr", group["lr"])
                    source = group.get(LR_SOURCE_KEY)
                    if source == LR_SOURCE or (source is None and math.isclose(base, self.old_lr)):
                        group["lr"] = group["lr"] * ratio
                        if "initial_lr" in group:
                            group["initial_lr"] = group["initial_lr"] * ratio
                        changed.add((id(optimizer), j))
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            groups = scheduler.optimizer.param_groups
            base_lrs = getattr(scheduler, "base_lrs", None)
            if base_lrs is not None:
                for j in range(len(base_lrs)):
                    if (id(scheduler.optimizer), j) in changed:
                        base_lrs[j] = groups[j].get("initial_lr", base_lrs[j] * ratio)
                if self.reschedule and isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                    for j, (base, fn) in enumerate(zip(base_lrs, scheduler.lr_lambdas)):
                        groups[j]["lr"] = base * fn(scheduler.last_epoch)
            if hasattr(scheduler, "_last_lr"):
                scheduler._last_lr = [g["lr"] for g in groups]


# Param-group key naming the config key a group's base rate came from (survives checkpoints:
# torch restores extra param-group keys).
LR_SOURCE_KEY = "framecast_lr_from"
LR_SOURCE = "training.lr"


class RestoreRNG(pl.Callback):
    """Give every process its own random stream, save each in checkpoints, restore on resume.

    Every rank is seeded with ``training.seed`` first, so that each builds the same initial
    weights. When training starts, ranks other than 0 reseed their global generators from
    ``(seed, rank)``: otherwise all ranks would draw the same flow-matching times, noise and
    frame indices at every step, and with N GPUs the noise batch would be one GPU's. Rank 0
    keeps ``training.seed``'s stream, so a single-process run is unchanged.

    Python's ``random``, NumPy's global generator, torch's CPU generator and, when present,
    the CUDA generators of every rank are gathered when a checkpoint is written and each rank
    gets its own back when the resumed run starts training, so model-side randomness
    continues exactly where the killed run left it. A rank that the checkpoint has no state
    for (a resume on more processes) is seeded from ``(seed, rank, step)``. The data order
    has its own generator (``framecast.data.dataset.ResumableSampler``).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._restored: list[dict[str, Any]] | None = None

    @property
    def state_key(self) -> str:
        return "framecast_rng"

    def state_dict(self) -> dict[str, Any]:
        # Called on every rank while a checkpoint is written (the save is collective).
        state = capture_rng()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            states: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, state)
            return {"ranks": states}
        return {"ranks": [state]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Checkpoints before per-rank states held rank 0's state alone.
        self._restored = state_dict["ranks"] if "ranks" in state_dict else [state_dict]

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        # Late, after everything that builds or restores (and may draw numbers) has run.
        rank = trainer.global_rank
        if self._restored is None:
            if rank > 0:
                seed_everything(rank_seed(self.seed, rank))
        elif rank < len(self._restored):
            restore_rng(self._restored[rank])
        else:
            seed_everything(rank_seed(self.seed, rank, trainer.global_step))
        self._restored = None


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A 32-bit seed for ``rank`` that no other rank (or step of a resume) shares."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def capture_rng() -> dict[str, Any]:
    """Every global generator's state as tensors and plain containers (weights-only safe)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
