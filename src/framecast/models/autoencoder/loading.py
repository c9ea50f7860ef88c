"""Rebuild a trained autoencoder from its checkpoint (architecture from the checkpoint)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from framecast.checkpoint import load_model_weights, read_checkpoint, resolve_checkpoint
from framecast.config import Config, validate_config
from framecast.models.autoencoder.autoencoder import Autoencoder


@dataclass
class LoadedAutoencoder:
    """A frozen autoencoder in eval mode, with the run config it was trained with."""

    model: Autoencoder
    config: Config
    image_size: int
    checkpoint: Path


def load_autoencoder(
    path: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"
) -> LoadedAutoencoder:
    """A run directory or checkpoint → :class:`LoadedAutoencoder`.

    Refuses checkpoints of other model kinds, and weights that do not fit the stored
    architecture, with a :class:`CheckpointError` that names the file.
    """
    ckpt_path = resolve_checkpoint(path, which)
    ckpt = read_checkpoint(ckpt_path, expected_kind="autoencoder")
    meta = ckpt["framecast"]
    config = validate_config(meta["config"], str(ckpt_path))
    image_size = int(meta.get("image_size", config.data.image_size))
    model = Autoencoder.from_config(config.model, image_size)
    load_model_weights(model, ckpt, ckpt_path)
    model.eval().requires_grad_(False).to(device)
    return LoadedAutoencoder(model, config, image_size, ckpt_path)
