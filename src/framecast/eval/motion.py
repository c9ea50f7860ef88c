"""Evaluation of motion models: MSE and MAE per feature group against simple baselines.

Errors are reported in the users' units (degrees) and in normalised units (divided by the
training split's per-feature std). Baselines: copy the last input frame, and the mean of
the last three input frames (moving average).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from framecast.data.motion import FEATURE_GROUPS
from framecast.utils import atomic_write_text

MOVING_AVERAGE_WINDOW = 3


def motion_errors(
    pred: torch.Tensor, target: torch.Tensor, std: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Mean errors of (N, 12) predictions: ``mse``, ``mae``, ``mse_norm``, ``mae_norm`` and
    the same per feature group (``mse_head``, ``mae_norm_left_arm``, ...)."""
    diff = (pred - target).double()
    norm = diff / std.double()
    out: dict[str, torch.Tensor] = {
        "mse": diff.pow(2).mean(),
        "mae": diff.abs().mean(),
        "mse_norm": norm.pow(2).mean(),
        "mae_norm": norm.abs().mean(),
    }
    for name, sl in FEATURE_GROUPS.items():
        out[f"mse_{name}"] = diff[:, sl].pow(2).mean()
        out[f"mae_{name}"] = diff[:, sl].abs().mean()
        out[f"mse_norm_{name}"] = norm[:, sl].pow(2).mean()
        out[f"mae_norm_{name}"] = norm[:, sl].abs().mean()
    return out


def baseline_predictions(inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N, T, 12) raw windows → baseline predictions (N, 12)."""
    return {
        "copy_last": inputs[:, -1],
        "moving_average": inputs[:, -MOVING_AVERAGE_WINDOW:].mean(dim=1),
    }


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Raw predictions (N, 12) of ``model`` (eval mode) on raw windows (N, T, 12)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = [
        model(inputs[i : i + batch_size].to(device)).cpu()
        for i in range(0, len(inputs), batch_size)
    ]
    model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, inputs.shape[-1])


def evaluate_motion(
    model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, std: torch.Tensor
) -> dict[str, dict[str, float]]:
    """``{"model": {...}, "copy_last": {...}, "moving_average": {...}}`` on these windows."""
    predictions = {"model": predict(model, inputs), **baseline_predictions(inputs)}
    return {
        name: {k: float(v) for k, v in motion_errors(pred, targets, std).items()}
        for name, pred in predictions.items()
    }


def write_motion_metrics(
    results: dict[str, dict[str, dict[str, float]]],
    out_dir: str | os.PathLike,
    extra: dict | None = None,
) -> tuple[Path, Path]:
    """``results[split][predictor][metric]`` → ``motion_metrics.json`` and ``.csv`` (one row
    per split and predictor), written atomically."""
    out_dir = Path(out_dir)
    json_path, csv_path = out_dir / "motion_metrics.json", out_dir / "motion_metrics.csv"
    atomic_write_text(json_path, json.dumps({**(extra or {}), "splits": results}, indent=2))
    metrics = sorted({m for split in results.values() for p in split.values() for m in p})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["split", "predictor", *metrics])
    for split, predictors in results.items():
        for name, values in predictors.items():
            writer.writerow([split, name, *(f"{values.get(m, float('nan')):.6g}" for m in metrics)])
    atomic_write_text(csv_path, buffer.getvalue())
    return json_path, csv_path


def plot_motion_tracks(
    raw: np.ndarray,
    clean: np.ndarray,
    predicted: np.ndarray,
    offset: int,
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """One panel per joint (its x feature): raw track, clean track, and the model's
    predictions, which start at frame ``offset``."""
    from framecast.eval.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(FEATURE_GROUPS), figsize=(4 * len(FEATURE_GROUPS), 3))
    t = np.arange(len(raw))
    for ax, (name, sl) in zip(axes, FEATURE_GROUPS.items()):
        k = sl.start
        ax.plot(t, raw[:, k], lw=0.8, color="0.6", label="raw")
        ax.plot(t, clean[:, k], lw=1.0, color="k", label="clean")
        ax.plot(t[offset : offset + len(predicted)], predicted[:, k], lw=1.0, label="model")
        ax.set_title(f"{name} x", fontsize=9)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
