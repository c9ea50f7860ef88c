"""Latent cache on disk: every frame of every split encoded once by a trained autoencoder.

Stage 2 trains on latents; encoding frames on every step would spend most of its time
in the frozen encoder. :func:`framecast.encode.encode_dataset` writes, beside the frames::

    DATA/latents/cache.json                   which autoencoder, latent shape, statistics
    DATA/latents/<split>/part-00000.fcshard   per video: (T, C, h, w) float32 normalised latents

Videos keep the ids they have in the frame dataset, so a latent clip and its frames
line up. A cache written by another autoencoder (other weights) is refused unless
``overwrite``; a cache of the same weights is reused. This module is plain I/O (where the
cache lives, what it says, whose weights wrote it); the encoding itself, which needs a
model, lives above ``data/`` in :mod:`framecast.encode`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from framecast.errors import DataError

CACHE_DIR = "latents"
CACHE_INFO = "cache.json"


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict (names, shapes, values): identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_cache_info(data_root: str | Path) -> dict[str, Any] | None:
    path = Path(data_root) / CACHE_DIR / CACHE_INFO
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable latent cache description ({exc})") from exc
