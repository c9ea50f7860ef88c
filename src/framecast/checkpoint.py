"""Reading framecast checkpoints safely, without Lightning.

Every framecast checkpoint carries ``checkpoint["framecast"] = {"kind", "config",
"version", ...}`` beside Lightning's own entries, so that a resumed or evaluated run
rebuilds its architecture from the checkpoint (nanoGPT's rule) and a checkpoint of
another model kind is refused with a clear message. Loading never unpickles arbitrary
objects: ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from framecast import __version__
from framecast.errors import CheckpointError

META_KEY = "framecast"


def checkpoint_meta(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The framecast entry stored in every checkpoint."""
    return {"kind": kind, "config": config, "version": __version__}


def load_checkpoint_file(
    path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint dict safely; raise :class:`CheckpointError` naming the file if it is bad.

    ``mmap``: map the tensors instead of reading them (cheap when only the metadata is needed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        # torch's own message advises weights_only=False, i.e. running whatever code the file
        # carries; framecast never does that, so say what is wrong instead.
        raise CheckpointError(
            f"checkpoint {path} holds Python objects other than tensors and plain containers "
            f"({_unsafe_global(exc)}); framecast only loads checkpoints weights-only. Re-save it "
            "from trusted code with the objects converted to tensors, numbers or strings"
        ) from exc
    except Exception as exc:  # torch raises several types for corrupt or truncated files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc


def _unsafe_global(exc: Exception) -> str:
    """The object torch refused, from its weights-only error (``GLOBAL x.y was not an
    allowed global``), without the rest of its advice."""
    match = re.search(r"(GLOBAL|global) ([\w.]+)", str(exc))
    return f"refused: {match.group(2)}" if match else "refused by the weights-only loader"


def read_checkpoint(
    path: str | os.PathLike, expected_kind: str | None = None, mmap: bool = False
) -> dict[str, Any]:
    """Load a framecast checkpoint and check its model kind.

    Returns the whole checkpoint dict; ``ckpt["framecast"]`` has kind, config and version.
    """
    ckpt = load_checkpoint_file(path, mmap=mmap)
    meta = ckpt.get(META_KEY)
    if not isinstance(meta, dict) or "kind" not in meta or "config" not in meta:
        raise CheckpointError(
            f"checkpoint {path} was not written by framecast (no '{META_KEY}' entry)"
        )
    if expected_kind is not None and meta["kind"] != expected_kind:
        raise CheckpointError(
            f"checkpoint {path} holds a {meta['kind']!r} model; expected a {expected_kind!r} model"
        )
    return ckpt


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """A run directory or a checkpoint file → the checkpoint file (``best`` or ``last``)."""
    path = Path(path)
    if path.is_dir():
        for name in (f"{which}.ckpt", "last.ckpt" if which == "best" else "best.ckpt"):
            candidate = path / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"run directory {path} has no checkpoints/{which}.ckpt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint or run directory {path} does not exist")
    return path


def load_model_weights(
    model: torch.nn.Module, ckpt: dict[str, Any], path: str | os.PathLike, prefix: str = "model."
) -> None:
    """Load the ``prefix`` weights of ``ckpt`` (read from ``path``) strictly into ``model``;
    :class:`CheckpointError` naming the file when they do not fit its architecture."""
    state = model_state_dict(ckpt, prefix)
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(
            f"checkpoint {path}: the model's weights are not finite (NaN or inf in "
            f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the run diverged before "
            "this checkpoint was written: use an earlier checkpoint or retrain with a lower lr"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the stored architecture ({first})"
        ) from exc


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding a NaN or an infinity."""
    bad = []
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                bad.append(name)
        elif isinstance(value, float) and not math.isfinite(value):
            bad.append(name)
    return bad


def model_state_dict(ckpt: dict[str, Any], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The plain model's weights from a Lightning checkpoint (the module stores it as ``model``)."""
    state = ckpt.get("state_dict", {})
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise CheckpointError(f"checkpoint has no weights under '{prefix}'")
    return out
