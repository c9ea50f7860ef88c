"""Lightning checkpoint IO and checkpointing policy (see ``framecast.checkpoint``).

- :class:`AtomicCheckpointIO`: atomic writes, weights-only loads.
- :class:`GuardedModelCheckpoint`: a diverged model never replaces a good checkpoint.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from framecast.checkpoint import load_checkpoint_file, nonfinite_tensors
from framecast.utils import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes to a temporary file and renames it into place.

    A run killed mid-save keeps its previous ``last.ckpt`` intact (the temporary
    ``.last.ckpt.*.tmp`` it leaves is removed by the next ``--resume``).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location or "cpu")


def unsaveable_reason(trainer: pl.Trainer, monitor: str | None) -> str | None:
    """Why the trainer's current state must not become a checkpoint, or None.

    Non-finite weights, or a non-finite value of the monitored metric: such a model
    diverged, and saving it would replace the last good ``last.ckpt``/``best.ckpt`` that
    the NaN guard promises to keep.
    """
    bad = nonfinite_tensors(trainer.lightning_module.state_dict())
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        return f"its weights are not finite ({bad[0]}{more})"
    value = trainer.callback_metrics.get(monitor) if monitor else None
    if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
        return f"{monitor} = {float(value)}"
    return None


class GuardedModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that refuses to save a diverged model.

    With a non-finite monitored metric or non-finite weights neither ``best`` nor ``last``
    is written (Lightning would save such a model as ``last`` and, with no earlier best, as
    ``best``, ranking NaN as +inf); the previous files stay, and a note on stderr says so.
    """

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates) -> None:
        if not self._refused(trainer):
            super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates) -> None:
        if not self._refused(trainer):
            super()._save_last_checkpoint(trainer, monitor_candidates)

    def _refused(self, trainer: pl.Trainer) -> bool:
        reason = unsaveable_reason(trainer, self.monitor)
        if reason is None:
            return False
        if trainer.is_global_zero and getattr(self, "_noted_step", None) != trainer.global_step:
            self._noted_step = trainer.global_step
            print(
                f"framecast: step {trainer.global_step}: not saving a checkpoint, {reason}; "
                "the previous checkpoints are kept",
                file=sys.stderr,
            )
        return True
