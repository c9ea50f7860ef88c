"""Loading a trained SimVP run for evaluation and generation, without Lightning.

The checkpoint is self-describing (``checkpoint["framecast"]`` holds kind ``simvp``, the
config and ``image_size``), so the architecture is rebuilt from it and the weights the
Lightning module stored under ``model.`` are loaded strictly. Only ``weights_only``
loading is used (:mod:`framecast.checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from framecast.checkpoint import load_model_weights, read_checkpoint, resolve_checkpoint
from framecast.config import Config, validate_config
from framecast.errors import CheckpointError, ConfigError
from framecast.models.simvp import SimVP


@dataclass
class SimVPRun:
    """A trained SimVP in eval mode and what it was trained with.

    Attributes:
        model: the predictor (gradients off).
        config: the run's validated config.
        image_size: frame size H = W the model was built for.
        checkpoint: the file the weights came from.
    """

    model: SimVP
    config: Config
    image_size: int
    checkpoint: Path

    @property
    def context_frames(self) -> int:
        """Context frames one forward pass reads, T_in (``training.condition_frames``)."""
        return self.model.input_frames

    @property
    def chunk_frames(self) -> int:
        """Frames one forward pass predicts, T_out (``training.frames_to_generate``)."""
        return self.model.output_frames

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(
        self, context: Tensor, frames: int, progress: Callable[[int], None] | None = None
    ) -> Tensor:
        """Context (B, T, C, H, W) in [-1, 1], T >= :attr:`context_frames` (the newest are
        used) -> the next ``frames`` frames (B, frames, C, H, W) in [-1, 1], rolled out in
        chunks of :attr:`chunk_frames` (:meth:`SimVP.rollout`), in fp32."""
        return self.model.rollout(context.to(self.device).float(), frames, progress=progress)


def load_simvp(
    run: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"
) -> SimVPRun:
    """A SimVP run directory or checkpoint -> :class:`SimVPRun` in eval mode.

    Raises :class:`CheckpointError` naming the file for a missing or unsafe checkpoint, a
    checkpoint of another model kind, a stored config that does not build, or weights
    that do not fit the stored architecture.
    """
    ckpt_path = resolve_checkpoint(run, which)
    ckpt = read_checkpoint(ckpt_path, expected_kind="simvp")
    meta = ckpt["framecast"]
    config = validate_config(meta["config"], str(ckpt_path))
    if "image_size" not in meta:
        raise CheckpointError(f"checkpoint {ckpt_path}: no image_size in its framecast entry")
    image_size = int(meta["image_size"])
    t = config.training
    try:
        model = SimVP.from_config(
            config.model, image_size, t.condition_frames, t.frames_to_generate
        )
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {ckpt_path}: stored model config: {exc}") from exc
    load_model_weights(model, ckpt, ckpt_path)
    model = model.eval().requires_grad_(False).to(device)
    return SimVPRun(model=model, config=config, image_size=image_size, checkpoint=ckpt_path)
