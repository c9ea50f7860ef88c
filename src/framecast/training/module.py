"""The thin base LightningModule every model kind builds on.

It holds what all kinds share and nothing model-specific: the config, the optimiser
and learning-rate schedule, the framecast entry in checkpoints, and the non-finite loss
guard. Models, losses and metrics stay plain modules in ``framecast.models``,
``framecast.losses`` and ``framecast.eval``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch

from framecast.checkpoint import META_KEY, checkpoint_meta
from framecast.config import Config
from framecast.errors import CheckpointError, TrainingError
from framecast.training.callbacks import LR_SOURCE, LR_SOURCE_KEY


def lr_lambda(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then the schedule."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown lr_schedule {schedule!r}")


class FramecastModule(pl.LightningModule):
    """Base of the per-kind modules. Subclasses set ``kind`` and build ``self.model``."""

    kind: ClassVar[str]

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    # -- optimisation -------------------------------------------------------------
    def make_optimizer(self, params, lr: float | None = None) -> torch.optim.Optimizer:
        t = self.config.training
        # fused: one kernel per step instead of several per tensor (benchmarks/river_speed.py).
        # Not under 16-mixed: there the GradScaler unscales inside a fused step, after the
        # clipping, which would then clip scaled gradients.
        optimizer = torch.optim.AdamW(
            params,
            lr=lr or t.lr,
            betas=t.betas,
            weight_decay=t.weight_decay,
            fused=self.fused_optimizer,
        )
        # Which key set the rate: a training.lr changed on --resume rescales these groups only.
        for group in optimizer.param_groups:
            group[LR_SOURCE_KEY] = LR_SOURCE if lr is None else "other"
        return optimizer

    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        t = self.config.training
        total = t.max_steps if t.max_steps > 0 else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_lambda(step, t.warmup_steps, total, t.lr_schedule)
        )
        return {"scheduler": scheduler, "interval": "step"}

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.parameters())
        return {"optimizer": optimizer, "lr_scheduler": self.make_scheduler(optimizer)}

    @property
    def fused_optimizer(self) -> bool:
        """Whether ``make_optimizer`` builds a fused AdamW: wherever no loss scaler runs."""
        return self.config.training.precision != "16-mixed"

    def clip_grad_norm(self, optimizer, max_norm: float | None) -> None:
        """Clip the gradients of ``optimizer``'s parameters to global norm ``max_norm``
        (None: no clipping); kinds that step their optimisers by hand call it, and the
        Trainer's ``gradient_clip_val`` reaches it through ``configure_gradient_clipping``.

        Without a loss scaler (fp32, bf16-mixed) the gradients are the true ones, so torch
        clips them directly: Lightning's own path refuses every fused optimiser under mixed
        precision, bf16 included, although only fp16's scaler makes that unsafe.
        """
        if max_norm is None or max_norm <= 0:
            return
        if not self.fused_optimizer:  # 16-mixed: Lightning unscales, then clips
            self.clip_gradients(
                optimizer, gradient_clip_val=max_norm, gradient_clip_algorithm="norm"
            )
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        if gradient_clip_algorithm not in (None, "norm"):
            raise TrainingError(f"gradient clipping by {gradient_clip_algorithm!r}: only 'norm'")
        self.clip_grad_norm(optimizer, gradient_clip_val)

    # -- safety -------------------------------------------------------------------
    def check_finite(
        self, loss: torch.Tensor, parts: dict[str, torch.Tensor] | None = None
    ) -> None:
        """Stop the run with a clear message on a NaN/inf loss; checkpoints already written stay."""
        if torch.isfinite(loss).all():
            return
        bad = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in (parts or {}).items())
        raise TrainingError(
            f"non-finite loss {float(loss.detach()):.4g} at step {self.global_step}"
            + (f" ({bad})" if bad else "")
            + f"; {self._checkpoint_note()} (lower training.lr or enable training.grad_clip)"
        )

    def _checkpoint_note(self) -> str:
        """What a stopped run keeps: checkpoints are only ever written with finite weights
        and a finite monitored metric (``GuardedModelCheckpoint``), so whatever exists is good."""
        try:
            last = Path(self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        except RuntimeError:  # not attached to a trainer (unit tests of the module)
            return "no checkpoint was written by this call"
        if last.is_file():
            step = _checkpoint_step(last)
            at = f" (step {step})" if step is not None else ""
            return f"the last good checkpoint {last}{at} is intact; --resume continues from it"
        return "no good checkpoint was written yet; --resume restarts the run from step 0"

    # -- samples --------------------------------------------------------------------
    def sample_path(self, name: str) -> Path | None:
        """``RUN/samples/<name>_stepNNNNNNN.png``, or None where no sample is written: on
        ranks other than 0 and during the sanity check."""
        if not self.trainer.is_global_zero or self.trainer.sanity_checking:
            return None
        root = Path(self.trainer.default_root_dir)
        return root / "samples" / f"{name}_step{self.global_step:07d}.png"

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint_extra(self) -> dict[str, Any]:
        """Kind-specific facts to store beside the config (override when needed)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[META_KEY] = {
            **checkpoint_meta(self.kind, self.config.to_dict()),
            **self.checkpoint_extra(),
        }

    def log_dict_prefixed(
        self, prefix: str, values: dict[str, torch.Tensor | float], **kwargs
    ) -> None:
        # Validation metrics are averaged over the ranks of a DDP run (a no-op on one process).
        kwargs.setdefault("sync_dist", prefix == "val")
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, **kwargs)


def _checkpoint_step(path: Path) -> int | None:
    from framecast.checkpoint import load_checkpoint_file

    try:
        return int(load_checkpoint_file(path, mmap=True).get("global_step", 0))
    except CheckpointError:
        return None
