"""Lightning checkpoint IO: atomic writes, weights-only loads (see ``framecast.checkpoint``)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from framecast.checkpoint import load_checkpoint_file
from framecast.utils import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes to a temporary file and renames it into place.

    A run killed mid-save keeps its previous ``last.ckpt`` intact.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location or "cpu")
