"""The files of an evaluation: metrics.json, the per-horizon, per-clip, paired and
calibration CSVs, and the per-horizon, calibration and sample plots, each written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from torch import Tensor

from framecast.eval import metrics as M
from framecast.eval.plots import (
    plot_spread_skill,
    pyplot,
    save_figure,
    save_image_grid,
    to_uint8_images,
)
from framecast.eval.result import HIGHER_IS_BETTER, EvaluationResult, fmt_number
from framecast.utils import atomic_write_text


def write_results(
    result: EvaluationResult, shown: list[tuple[Tensor, Tensor, Tensor]]
) -> dict[str, Path]:
    """Write metrics.json, per_horizon.csv, per_horizon.png, per_clip.csv,
    paired_per_horizon.csv and samples.png into result.out, and with a calibration (K > 1)
    calibration.csv, calibration_per_horizon.csv, calibration_per_clip.csv and
    calibration.png."""
    out = result.out
    files = {
        "metrics": out / "metrics.json",
        "csv": out / "per_horizon.csv",
        "plot": out / "per_horizon.png",
    }
    atomic_write_text(
        files["metrics"], json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
    )
    atomic_write_text(files["csv"], _csv_text(result))
    _plot(result, files["plot"])
    if result.per_clip:
        files["per_clip"] = out / "per_clip.csv"
        atomic_write_text(files["per_clip"], _per_clip_text(result))
    if result.paired:
        files["paired"] = out / "paired_per_horizon.csv"
        atomic_write_text(files["paired"], _paired_text(result))
    if result.calibration:
        files["calibration_csv"] = out / "calibration.csv"
        files["calibration_per_horizon_csv"] = out / "calibration_per_horizon.csv"
        files["calibration_plot"] = out / "calibration.png"
        bins, reference = result.calibration["bins"], result.calibration["reference_mae"]
        atomic_write_text(files["calibration_csv"], _table_text(bins))
        per_horizon = result.calibration["per_horizon"]
        calibrated = (result.calibration.get("calibrated") or {}).get("per_horizon", {})
        rows = [
            {
                "horizon": h + 1,
                **{key: values[h] for key, values in per_horizon.items()},
                **{f"{method}_mae": values[h] for method, values in reference.items()},
                **{f"calibrated_{key}": values[h] for key, values in calibrated.items()},
            }
            for h in range(result.frames)
        ]
        atomic_write_text(files["calibration_per_horizon_csv"], _table_text(rows))
        if result.calibration_per_clip:
            files["calibration_per_clip_csv"] = out / "calibration_per_clip.csv"
            atomic_write_text(files["calibration_per_clip_csv"], _calibration_per_clip_text(result))
        o = result.calibration["overall"]
        plot_spread_skill(
            bins,
            per_horizon,
            reference,
            files["calibration_plot"],
            title=(
                f"{result.split}: {result.num_clips} clips × {result.samples} samples; "
                f"spread/skill {fmt_number(o['spread_skill'])}, Pearson {fmt_number(o['pearson'])}, "
                f"Spearman {fmt_number(o['spearman'])}"
            ),
            model=result.kind,
        )
    if shown:
        files["samples"] = out / "samples.png"
        rows, labels = [], []
        for i, (ctx, truth, pred) in enumerate(shown):
            rows += [to_uint8_images(ctx), to_uint8_images(truth), to_uint8_images(pred)]
            labels += [f"{i} context", f"{i} truth", f"{i} {result.kind}"]
        save_image_grid(rows, files["samples"], labels=labels)
    return files


def _csv_text(result: EvaluationResult) -> str:
    """One row per method × horizon; a column per metric (empty where not measured)."""
    names = result.metric_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # NFE per frame: the model's velocity evaluations (empty for a kind without a sampler),
    # 0 for the baselines, which evaluate no model (a baseline run: its own, or empty).
    writer.writerow(["method", "horizon", *names, "nfe_per_frame"])
    for method, by_metric in result.metrics.items():
        if method in result.baseline_runs:  # a trained run: its own sampler's NFE, if any
            run_nfe = result.baseline_runs[method]["nfe_per_frame"]
            nfe = "" if run_nfe is None else repr(float(run_nfe))
        elif method != result.kind:
            nfe = "0"
        else:
            nfe = "" if result.nfe_per_frame is None else repr(float(result.nfe_per_frame))
        for h in range(result.frames):
            cells = [repr(float(by_metric[n][h])) if n in by_metric else "" for n in names]
            writer.writerow([method, h + 1, *cells, nfe])
    return buffer.getvalue()


def _calibration_per_clip_text(result: EvaluationResult) -> str:
    """One row per clip × horizon: the ensemble's CRPS, mean squared spread and error of the
    mean (raw, and ``_calibrated`` with a spread scale), and each baseline's MAE."""
    values = result.calibration_per_clip
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["clip", "video_index", "horizon", *values])
    for i, clip in enumerate(result.clips):
        for h in range(result.frames):
            writer.writerow(
                [clip["clip"], clip["video_index"], h + 1]
                + [repr(float(v[i, h])) for v in values.values()]
            )
    return buffer.getvalue()


def _per_clip_text(result: EvaluationResult) -> str:
    """One row per clip × method × horizon: the clip's video, and each metric (the mean
    over the K samples for sampled methods; ``samples`` says how many)."""
    names = [n for n in result.metric_names if n != "intensity_ratio"]  # a ratio of sums
    sampled = {result.kind, *result.baseline_runs}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["clip", "video_index", "video_id", "start", "method", "samples", "horizon"] + names
    )
    for method, by_metric in result.per_clip.items():
        k = result.samples if method in sampled else 1
        for i, clip in enumerate(result.clips):
            for h in range(result.frames):
                cells = [repr(float(by_metric[n][i, h])) if n in by_metric else "" for n in names]
                writer.writerow(
                    [
                        clip["clip"],
                        clip["video_index"],
                        clip["video_id"],
                        clip["start"],
                        method,
                        k,
                        h + 1,
                    ]
                    + cells
                )
    return buffer.getvalue()


def _paired_text(result: EvaluationResult) -> str:
    """One row per pair × metric × horizon (and ``all``: over horizons): the mean paired
    difference and its interval."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "method",
            "baseline",
            "metric",
            "horizon",
            "mean",
            "low",
            "high",
            "clips",
            "videos",
            "level",
        ]
    )
    number = lambda v: repr(float(v)) if math.isfinite(v) else ""  # noqa: E731
    for method, against in result.paired.items():
        for baseline, by_metric in against.items():
            for name, iv in by_metric.items():
                rows = [(h + 1, iv.mean[h], iv.low[h], iv.high[h]) for h in range(len(iv.mean))]
                rows.append(("all", iv.overall_mean, iv.overall_low, iv.overall_high))
                for horizon, mean, low, high in rows:
                    writer.writerow(
                        [
                            method,
                            baseline,
                            name,
                            horizon,
                            number(mean),
                            number(low),
                            number(high),
                            iv.clips,
                            iv.clusters,
                            iv.level,
                        ]
                    )
    return buffer.getvalue()


def _table_text(rows: list[dict[str, Any]]) -> str:
    """CSV of dict rows sharing their keys; floats written exactly (repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if rows:
        writer.writerow(list(rows[0]))
    for row in rows:
        writer.writerow([repr(float(v)) if isinstance(v, float) else v for v in row.values()])
    return buffer.getvalue()


def _plot(result: EvaluationResult, path: Path) -> None:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    names = result.metric_names
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    horizons = list(range(1, result.frames + 1))
    for ax, name in zip(axes.flat, names):
        for method, by_metric in result.metrics.items():
            if name in by_metric:
                ax.plot(horizons, by_metric[name], marker=".", label=method)
        if name in M.ON_TARGET:
            arrow = f"(best at {M.ON_TARGET[name]:g})"
            ax.axhline(M.ON_TARGET[name], color="black", linewidth=0.8, linestyle=":")
        else:
            arrow = "↑" if HIGHER_IS_BETTER.get(name, True) else "↓"
        crossing = result.below_copy_last.get(name, {}).get("from", "never")
        if crossing != "never":  # where the model stays behind copy_last
            ax.axvline(crossing, color="grey", linewidth=0.8, linestyle="--")
            arrow += f"; < copy_last from h={crossing}"
        ax.set_title(f"{name} {arrow}", fontsize=9)
        ax.set_xlabel("horizon (frames ahead)", fontsize=8)
        # Every horizon labelled up to 10; beyond, integer ticks matplotlib spaces out.
        if len(horizons) <= 10:
            ax.set_xticks(horizons)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    cost = "" if result.nfe_per_frame is None else f", {result.nfe_per_frame:g} NFE per frame"
    blown = sum(sum(entry["per_horizon"]) for entry in result.blowups.values())
    warning = f"; BLOW-UP in {blown} frames" if blown else ""
    fig.suptitle(
        f"{result.split}: {result.num_clips} clips, {result.samples} sample(s){cost}{warning}"
    )
    fig.tight_layout()
    save_figure(fig, path)
