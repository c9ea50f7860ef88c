"""Calibrated ensembles (issue 24 item 3): spread–skill and CRPS of a river run's K samples,
raw and with a post-hoc spread scale fitted on val, across training seeds.

For each ``--run RUN DATA`` (one training seed each), on the same clips and seed:

1. ``framecast calibrate`` on the **val** split (K samples, ``--context`` → ``--frames``) for
   each warm start of ``--warm-starts``: per-horizon factors written to
   ``OUT/seed<i>/ws<s>/spread_scale.json`` (``--fit-data`` names another dataset whose
   val split every run is fitted on: a larger or independent val set);
2. ``framecast evaluate`` on the **test** split with those factors (``--spread-scale``): the
   raw ensemble and the inflated one are scored on the same samples.

So the scale is fitted on val and every figure in the table is test. The warm start is the
sampler's lever on the noise (the rollout starts at t = s between noise and the previous
frame; s = 0 starts from pure noise). Evaluations are skipped when their metrics.json
exists, so an interrupted run continues.

The table, pooled over the clips of all seeds (clusters: the test videos, shared by seeds
scored on the same videos): per arm the spread–skill ratio per horizon with a 95 %
percentile cluster-bootstrap interval (ratio of pooled sums: sqrt((K + 1) / K) ·
sqrt(sum spread² / sum error²)), the CRPS, and the CRPS difference against the first arm
(raw, first warm start) with its paired cluster-bootstrap interval
(:func:`framecast.eval.stats.paired_bootstrap`). Written as ``OUT/calibration.csv``,
``OUT/calibration_per_horizon.csv`` and ``OUT/calibration.png``.

    .venv/bin/python benchmarks/calibration.py --run runs/eqc/river_s0 runs/eqc/data_s0 \\
        [--run ...] --out runs/i24/calibration [--samples 8] [--frames 7] \\
        [--warm-starts 0.1,0] [--steps 10] [--max-clips N] [--fit-data VAL_DATA]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from pathlib import Path

import numpy as np

from framecast.eval.stats import paired_bootstrap, video_clusters
from framecast.flow.sampling import SamplerConfig
from framecast.flow.solvers import SolverConfig


def read_per_clip(folder: Path) -> dict[str, np.ndarray]:
    """name -> (N, F) from calibration_per_clip.csv, plus "video" (N,)."""
    with open(folder / "calibration_per_clip.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    clips = sorted({int(r["clip"]) for r in rows})
    frames = max(int(r["horizon"]) for r in rows)
    names = [n for n in rows[0] if n not in ("clip", "video_index", "horizon")]
    out = {n: np.full((len(clips), frames), np.nan) for n in names}
    video = np.zeros(len(clips), dtype=int)
    for r in rows:
        i, h = int(r["clip"]), int(r["horizon"]) - 1
        video[i] = int(r["video_index"])
        for n in names:
            out[n][i, h] = float(r[n])
    out["video"] = video
    return out


def ratio(spread_sq: np.ndarray, error_sq: np.ndarray, k: int) -> np.ndarray:
    """Per horizon, from (N, F) per-clip means: the finite-K corrected spread–skill."""
    return np.sqrt((k + 1) / k) * np.sqrt(spread_sq.sum(0) / error_sq.sum(0))


def ratio_interval(
    spread_sq: np.ndarray, error_sq: np.ndarray, clusters: np.ndarray, k: int, n_boot: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """95 % percentile cluster bootstrap of :func:`ratio` per horizon."""
    ids, labels = np.unique(clusters, return_inverse=True)
    g = len(ids)
    s = np.zeros((g, spread_sq.shape[1]))
    e = np.zeros_like(s)
    np.add.at(s, labels, spread_sq)
    np.add.at(e, labels, error_sq)
    rng = np.random.default_rng(0)
    draws = np.stack([ratio(s[pick], e[pick], k) for pick in rng.integers(0, g, (n_boot, g))])
    return np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=2, action="append", required=True, metavar=("RUN", "DATA"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--context", type=int, default=3)
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="Euler steps per frame")
    parser.add_argument("--warm-starts", default="0.1,0", help="comma-separated warm starts")
    parser.add_argument("--max-clips", type=int)
    parser.add_argument(
        "--fit-data",
        help="fit every run's factors on this dataset's val split instead of its own DATA's "
        "(a larger or independent val set); a run given twice is fitted once",
    )
    args = parser.parse_args()

    from framecast.eval.calibration import SpreadScale, calibrate
    from framecast.eval.evaluate import evaluate

    out = Path(args.out)
    warm_starts = [float(w) for w in args.warm_starts.split(",")]
    print(
        f"machine: {platform.processor() or platform.machine()}, {len(args.run)} seed(s), "
        f"K = {args.samples}, {args.context} -> {args.frames} frames, Euler {args.steps}"
    )
    folders: dict[float, list[Path]] = {w: [] for w in warm_starts}
    fitted: dict[tuple[str, str, float], Path] = {}  # (run, fit data, warm start) -> factors
    for seed, (run, data) in enumerate(args.run):
        fit_data = args.fit_data or data
        for w in warm_starts:
            sampler = SamplerConfig(SolverConfig("euler", args.steps), warm_start=w)
            folder = out / f"seed{seed}" / f"ws{w:g}"
            scale_file = folder / "spread_scale.json"
            common = dict(
                context=args.context,
                frames=args.frames,
                sampler=sampler,
                samples=args.samples,
                seed=0,
                max_clips=args.max_clips,
                progress=False,
            )
            key = (str(Path(run).resolve()), str(Path(fit_data).resolve()), w)
            if not scale_file.is_file() and key in fitted:
                scale_file.parent.mkdir(parents=True, exist_ok=True)
                scale_file.write_text(fitted[key].read_text())
            if not scale_file.is_file():
                print(f"seed {seed}, warm start {w:g}: calibrate on val of {fit_data}", flush=True)
                calibrate(run, fit_data, split="val", out=scale_file, **common)
            fitted.setdefault(key, scale_file)
            if not (folder / "test" / "metrics.json").is_file():
                print(f"seed {seed}, warm start {w:g}: evaluate on test", flush=True)
                evaluate(
                    run,
                    data,
                    split="test",
                    out=folder / "test",
                    spread_scale=SpreadScale.load(scale_file),
                    **common,
                )
            folders[w].append(folder)

    def pooled(w: float) -> dict[str, np.ndarray]:
        parts = [read_per_clip(f / "test") for f in folders[w]]
        merged = {n: np.concatenate([p[n] for p in parts]) for n in parts[0] if n != "video"}
        # Clusters: the test videos, shared by every seed scored on them (video_clusters).
        merged["cluster"] = video_clusters([d for _, d in args.run], [p["video"] for p in parts])
        return merged

    k = args.samples
    first = pooled(warm_starts[0])
    rows, horizon_rows = [], []
    for w in warm_starts:
        values = pooled(w)
        assert (values["cluster"] == first["cluster"]).all(), "arms must share clips"
        factors = np.mean(
            [json.loads((f / "spread_scale.json").read_text())["factors"] for f in folders[w]],
            axis=0,
        )
        for calibrated in (False, True):
            suffix = "_calibrated" if calibrated else ""
            name = f"warm start {w:g}" + (", scaled (fit on val)" if calibrated else ", raw")
            r = ratio(values["spread_sq" + suffix], values["error_sq"], k)
            low, high = ratio_interval(
                values["spread_sq" + suffix], values["error_sq"], values["cluster"], k
            )
            diff = paired_bootstrap(
                values["crps" + suffix] - first["crps"], values["cluster"], n_boot=2000, seed=0
            )
            rows.append(
                {
                    "arm": name,
                    "spread_skill_min": float(r.min()),
                    "spread_skill_max": float(r.max()),
                    "spread_skill_low": float(low.min()),
                    "spread_skill_high": float(high.max()),
                    "crps": float(np.nanmean(values["crps" + suffix])),
                    "crps_vs_first": diff.overall_mean,
                    "crps_vs_first_low": diff.overall_low,
                    "crps_vs_first_high": diff.overall_high,
                    "copy_last_mae": float(np.nanmean(values["copy_last_mae"])),
                    "factor_min": float(factors.min()) if calibrated else 1.0,
                    "factor_max": float(factors.max()) if calibrated else 1.0,
                    "seeds": len(folders[w]),
                    "clips": len(values["cluster"]),
                }
            )
            for h in range(len(r)):
                horizon_rows.append(
                    {
                        "arm": name,
                        "horizon": h + 1,
                        "spread_skill": float(r[h]),
                        "low": float(low[h]),
                        "high": float(high[h]),
                        "crps": float(np.nanmean(values["crps" + suffix][:, h])),
                        "factor": float(factors[h]) if calibrated else 1.0,
                    }
                )
    print(
        f"{'arm':38} {'spread/skill (range over horizons) [95 %]':>42} {'CRPS':>7} "
        f"{'CRPS vs first [95 %]':>28}"
    )
    for r in rows:
        print(
            f"{r['arm']:38} {r['spread_skill_min']:.2f}-{r['spread_skill_max']:.2f} "
            f"[{r['spread_skill_low']:.2f}, {r['spread_skill_high']:.2f}]{'':18} "
            f"{r['crps']:.4f} {r['crps_vs_first']:+.5f} [{r['crps_vs_first_low']:+.5f}, "
            f"{r['crps_vs_first_high']:+.5f}]"
        )
    print(f"copy-last MAE (the CRPS of a deterministic guess): {rows[0]['copy_last_mae']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("calibration.csv", rows), ("calibration_per_horizon.csv", horizon_rows)):
        with open(out / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    _plot(horizon_rows, out / "calibration.png")
    print(f"wrote {out / 'calibration.csv'}, calibration_per_horizon.csv and calibration.png")


def _plot(horizon_rows: list[dict], path: Path) -> None:
    from framecast.eval.plots import pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for arm in dict.fromkeys(r["arm"] for r in horizon_rows):
        at = [r for r in horizon_rows if r["arm"] == arm]
        h = [r["horizon"] for r in at]
        left.plot(h, [r["spread_skill"] for r in at], marker="o", label=arm)
        left.fill_between(h, [r["low"] for r in at], [r["high"] for r in at], alpha=0.15)
        right.plot(h, [r["crps"] for r in at], marker="o", label=arm)
    left.axhspan(0.9, 1.1, color="grey", alpha=0.15, label="target 0.9-1.1")
    left.set(xlabel="horizon", ylabel="spread / skill (test)", title="calibration")
    right.set(xlabel="horizon", ylabel="CRPS ([0, 1] units, test)", title="CRPS")
    left.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
