"""PNG figures people would rather look at than CSV: loss curves, image grids."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from framecast.utils import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_metric_curves(
    rows: Sequence[dict[str, float]], path: str | os.PathLike, title: str = "", max_panels: int = 16
) -> Path:
    """One panel per metric (train and val of the same name share a panel), step on x.

    ``rows``: metrics CSV rows, each with a ``step`` key.
    """
    plt = pyplot()
    groups: dict[str, list[str]] = {}
    for row in rows:
        for key in row:
            if key in ("step", "epoch") or key.startswith("lr-"):
                continue
            base = key.split("/", 1)[-1]
            if key not in groups.setdefault(base, []):
                groups[base].append(key)
    names = list(groups)[:max_panels]
    cols = min(4, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for key in groups[name]:
            pts = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="." if len(pts) < 30 else None, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def save_image_grid(
    rows: Sequence[np.ndarray],
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    scale: int = 2,
) -> Path:
    """Save rows of images as one PNG. Each row: (N, H, W, 3) uint8; rows may differ in N."""
    import imageio.v3 as iio

    if not rows:
        raise ValueError("save_image_grid needs at least one row")
    height, width = rows[0].shape[1:3]
    columns = max(len(r) for r in rows)
    pad = 2
    canvas = np.zeros(
        (len(rows) * (height + pad) + pad, columns * (width + pad) + pad, 3), dtype=np.uint8
    )
    canvas[:] = 40  # dark grey separators: smoke frames are black-backed
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = pad + i * (height + pad), pad + j * (width + pad)
            canvas[y : y + height, x : x + width] = image
    if scale > 1:
        canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    if labels:
        canvas = _label_rows(canvas, labels, height + pad, scale)
    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, canvas, extension=".png")
    return path


def _label_rows(
    canvas: np.ndarray, labels: Sequence[str], row_height: int, scale: int
) -> np.ndarray:
    from PIL import Image, ImageDraw

    margin = 8 * max(len(label) for label in labels) + 8
    image = Image.new("RGB", (canvas.shape[1] + margin, canvas.shape[0]), (255, 255, 255))
    image.paste(Image.fromarray(canvas), (margin, 0))
    draw = ImageDraw.Draw(image)
    for i, label in enumerate(labels):
        draw.text((4, i * row_height * scale + row_height * scale // 2 - 5), label, fill=(0, 0, 0))
    return np.asarray(image)


def to_uint8_images(frames) -> np.ndarray:
    """Tensor/array (N, C, H, W) in [-1, 1] → (N, H, W, 3) uint8 (grey masks broadcast to RGB)."""
    array = (
        frames.detach().float().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    )
    array = np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    array = array.transpose(0, 2, 3, 1)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    plt = pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def plot_spread_skill(
    bins: Sequence[dict[str, float]],
    per_horizon: dict[str, Sequence[float]],
    reference_mae: dict[str, Sequence[float]],
    path: str | os.PathLike,
    title: str = "",
    model: str = "model",
) -> Path:
    """The calibration figure of an ensemble forecast, three panels.

    1. RMSE of the ensemble mean against the (finite-K corrected) rms spread per spread
       bin, log-log, with y = x (calibrated); marker area grows with the bin's share of
       elements; the bin of (near-)zero spread, which a log axis cannot show, is named in
       the legend.
    2. Per horizon: corrected rms spread and RMSE of the ensemble mean.
    3. Per horizon: the ensemble's CRPS beside each baseline's MAE (a deterministic
       guess's CRPS).

    ``bins``: rows of ``SpreadSkill.bins()``; ``per_horizon``: name -> per-horizon list
    (``spread_corrected``, ``rmse``, ``crps``); ``reference_mae``: baseline -> list.
    """
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    total = sum(row["elements"] for row in bins) or 1
    shown = [r for r in bins if r["rms_spread_corrected"] > 0 and r["rmse"] > 0]
    hidden = [r for r in bins if r not in shown]
    if shown:
        x = [r["rms_spread_corrected"] for r in shown]
        y = [r["rmse"] for r in shown]
        sizes = [10 + 300 * r["elements"] / total for r in shown]
        ax.plot(x, y, color="tab:blue", linewidth=0.8)
        ax.scatter(x, y, s=sizes, color="tab:blue", label=f"{model}: spread bins")
        low, high = min(x + y), max(x + y)
        ax.plot([low, high], [low, high], color="black", linestyle=":", label="y = x (calibrated)")
        ax.set_xscale("log")
        ax.set_yscale("log")
    for r in hidden:
        ax.plot(
            [],
            [],
            " ",
            label=f"spread < {r['high']:.0e}: {100 * r['elements'] / total:.0f}% of elements, "
            f"RMSE {r['rmse']:.3g}",
        )
    ax.set_xlabel("rms spread × sqrt((K+1)/K)  ([0, 1] units)", fontsize=8)
    ax.set_ylabel("RMSE of the ensemble mean", fontsize=8)
    ax.set_title("spread–skill per spread bin", fontsize=9)

    horizons = list(range(1, len(per_horizon["rmse"]) + 1))
    axes[1].plot(horizons, per_horizon["spread_corrected"], marker=".", label="spread (corrected)")
    axes[1].plot(horizons, per_horizon["rmse"], marker=".", label="RMSE of the mean")
    axes[1].set_title("spread and skill per horizon", fontsize=9)
    axes[2].plot(horizons, per_horizon["crps"], marker=".", label=f"{model} CRPS")
    for method, values in reference_mae.items():
        axes[2].plot(horizons, values, marker=".", linestyle="--", label=f"{method} MAE")
    axes[2].set_title("CRPS ↓ (a deterministic guess: its MAE)", fontsize=9)
    for panel in axes[1:]:
        panel.set_xlabel("horizon (frames ahead)", fontsize=8)
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    for panel in axes:
        panel.legend(fontsize=7)
        panel.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
