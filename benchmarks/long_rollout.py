"""Long rollouts (issue 24 item 2): does a lever keep the smoke's mass and structure over 20
and 50 frames? Arms of river runs, one run per training seed, evaluated on the same clips.

Each ``--arm NAME RUN_SEED0 RUN_SEED1 ... [past_horizon=P]`` is a set of river runs (one per
seed, in the order of ``--data``); ``past_horizon=P`` samples the rollout's random earlier
frame from at most P frames back (the reference-frame lever at inference). For every arm
and seed, ``framecast evaluate`` runs on the test split of that seed's ``--data`` (``--context``
→ ``--frames``, Euler ``--steps`` from warm start ``--warm-start``, K = 1, seed 0) into
``OUT/<arm>/seed<i>/``, skipped when it exists.

The table per arm:

- ``intensity_ratio`` at horizons 7, 20 and the last (predicted over true total intensity;
  1 = no fading), the mean over seeds with the seeds' range;
- SSIM minus copy-last's per horizon, paired per clip and pooled over seeds (clusters: the
  test videos, shared by seeds scored on the same videos; 95 % cluster bootstrap): the
  horizons where the mean is below copy-last and where the whole interval is;
- SSIM minus the autoencoder ceiling's (the truth encoded and decoded: the best a latent
  model can do) at the last horizon, paired the same way;
- SSIM against the first arm at the last horizon, paired the same way.

The per-horizon table gives, per arm and horizon, the model's, copy-last's and the ceiling's
intensity ratio and SSIM, with the paired intervals against copy-last and the ceiling.

Written as ``OUT/long_rollout.csv``, ``OUT/long_rollout_per_horizon.csv`` and
``OUT/long_rollout.png``.

    .venv/bin/python benchmarks/long_rollout.py --data runs/eqc/data_s0 runs/eqc/data_s1 \\
        runs/eqc/data_s2 --arm baseline runs/eqc/river_s0 runs/eqc/river_s1 runs/eqc/river_s2 \\
        --arm context_noise runs/i24/cn_s0 runs/i24/cn_s1 runs/i24/cn_s2 \\
        --out runs/i24/long20 --frames 20 [--clips-per-video 2]
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


def per_clip(folder: Path, method: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(video per clip, (N, F) values of ``method``) from per_clip.csv."""
    with open(folder / "per_clip.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["method"] == method]
    clips = sorted({int(r["clip"]) for r in rows})
    frames = max(int(r["horizon"]) for r in rows)
    values = np.full((len(clips), frames), np.nan)
    videos = np.zeros(len(clips), dtype=int)
    for r in rows:
        values[int(r["clip"]), int(r["horizon"]) - 1] = float(r[metric])
        videos[int(r["clip"])] = int(r["video_index"])
    return videos, values


def intensity(folder: Path, method: str = "river") -> np.ndarray:
    data = json.loads((folder / "metrics.json").read_text())
    return np.array(data["methods"][method]["intensity_ratio"]["per_horizon"], dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="one dataset per seed")
    parser.add_argument("--arm", nargs="+", action="append", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--context", type=int, default=3)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warm-start", type=float, default=0.1)
    parser.add_argument("--max-clips", type=int)
    parser.add_argument("--clips-per-video", type=int, help="default: the run's")
    args = parser.parse_args()
    from framecast.eval.evaluate import evaluate

    out = Path(args.out)
    print(
        f"machine: {platform.processor() or platform.machine()}, {len(args.data)} seed(s), "
        f"{args.context} -> {args.frames} frames, Euler {args.steps} from s = {args.warm_start}"
    )
    arms: dict[str, list[Path]] = {}
    for name, *rest in args.arm:
        options = dict(w.split("=", 1) for w in rest if "=" in w)
        runs = [w for w in rest if "=" not in w]
        if len(runs) != len(args.data):
            parser.error(f"arm {name}: {len(runs)} runs for {len(args.data)} datasets")
        past = int(options["past_horizon"]) if "past_horizon" in options else None
        sampler = SamplerConfig(
            SolverConfig("euler", args.steps), warm_start=args.warm_start, past_horizon=past
        )
        arms[name] = []
        for seed, (run, data) in enumerate(zip(runs, args.data, strict=True)):
            folder = out / name / f"seed{seed}"
            if not (folder / "per_clip.csv").is_file():
                print(f"{name}, seed {seed}: evaluate {run}", flush=True)
                evaluate(
                    run,
                    data,
                    split="test",
                    out=folder,
                    context=args.context,
                    frames=args.frames,
                    sampler=sampler,
                    samples=1,
                    seed=0,
                    max_clips=args.max_clips,
                    clips_per_video=args.clips_per_video,
                    progress=False,
                )
            arms[name].append(folder)

    def pooled(name: str, method: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        # Clusters: the test videos, shared by every seed scored on them (video_clusters).
        videos, values = zip(*(per_clip(f, method, metric) for f in arms[name]), strict=True)
        return video_clusters(args.data, videos), np.concatenate(values)

    first = next(iter(arms))
    ids0, ssim0 = pooled(first, "river", "ssim")
    rows, horizon_rows = [], []
    last = args.frames
    for name, folders in arms.items():
        ids, ssim = pooled(name, "river", "ssim")
        ids_c, ssim_copy = pooled(name, "copy_last", "ssim")
        ids_a, ssim_ceiling = pooled(name, "autoencoder", "ssim")
        assert (ids == ids0).all() and (ids_c == ids).all() and (ids_a == ids).all(), (
            "arms must share clips"
        )
        vs_copy = paired_bootstrap(ssim - ssim_copy, ids, n_boot=2000, seed=0)
        vs_ceiling = paired_bootstrap(ssim - ssim_ceiling, ids, n_boot=2000, seed=0)
        vs_first = paired_bootstrap(ssim - ssim0, ids, n_boot=2000, seed=0)
        ratios = np.stack([intensity(f) for f in folders])  # (seeds, F)
        ratios_copy = np.stack([intensity(f, "copy_last") for f in folders])
        ratios_ceiling = np.stack([intensity(f, "autoencoder") for f in folders])
        behind = [h + 1 for h, m in enumerate(vs_copy.mean) if m < 0]
        surely_behind = [h + 1 for h, hi in enumerate(vs_copy.high) if hi < 0]
        row = {
            "arm": name,
            "seeds": len(folders),
            "clips": len(ids),
            **{
                f"intensity_h{h}": float(ratios[:, h - 1].mean())
                for h in sorted({7, 20, last})
                if h <= last
            },
            "intensity_last_min": float(ratios[:, -1].min()),
            "intensity_last_max": float(ratios[:, -1].max()),
            "ssim_last": float(np.nanmean(ssim[:, -1])),
            "ssim_vs_copy_last_last": vs_copy.mean[-1],
            "ssim_vs_copy_last_last_low": vs_copy.low[-1],
            "ssim_vs_copy_last_last_high": vs_copy.high[-1],
            "ssim_behind_copy_last_at": " ".join(map(str, behind)) or "never",
            "ssim_surely_behind_copy_last_at": " ".join(map(str, surely_behind)) or "never",
            "ssim_vs_autoencoder_last": vs_ceiling.mean[-1],
            "ssim_vs_autoencoder_last_low": vs_ceiling.low[-1],
            "ssim_vs_autoencoder_last_high": vs_ceiling.high[-1],
            "ssim_vs_first_last": vs_first.mean[-1],
            "ssim_vs_first_last_low": vs_first.low[-1],
            "ssim_vs_first_last_high": vs_first.high[-1],
        }
        rows.append(row)
        for h in range(last):
            horizon_rows.append(
                {
                    "arm": name,
                    "horizon": h + 1,
                    "intensity_ratio": float(ratios[:, h].mean()),
                    "intensity_ratio_copy_last": float(ratios_copy[:, h].mean()),
                    "intensity_ratio_autoencoder": float(ratios_ceiling[:, h].mean()),
                    "ssim": float(np.nanmean(ssim[:, h])),
                    "ssim_copy_last": float(np.nanmean(ssim_copy[:, h])),
                    "ssim_autoencoder": float(np.nanmean(ssim_ceiling[:, h])),
                    "ssim_vs_copy_last": vs_copy.mean[h],
                    "low": vs_copy.low[h],
                    "high": vs_copy.high[h],
                    "ssim_vs_autoencoder": vs_ceiling.mean[h],
                    "ssim_vs_autoencoder_low": vs_ceiling.low[h],
                    "ssim_vs_autoencoder_high": vs_ceiling.high[h],
                }
            )
    for r in rows:
        intensities = ", ".join(
            f"h{k[len('intensity_h') :]} {v:.3f}"
            for k, v in r.items()
            if k.startswith("intensity_h")
        )
        print(
            f"{r['arm']}: intensity {intensities} (seeds {r['intensity_last_min']:.3f}-"
            f"{r['intensity_last_max']:.3f} at {last}); SSIM at {last} {r['ssim_last']:.3f}, vs "
            f"copy-last {r['ssim_vs_copy_last_last']:+.4f} [{r['ssim_vs_copy_last_last_low']:+.4f}, "
            f"{r['ssim_vs_copy_last_last_high']:+.4f}], behind copy-last at "
            f"{r['ssim_behind_copy_last_at']} (interval below 0 at "
            f"{r['ssim_surely_behind_copy_last_at']}); vs the autoencoder ceiling "
            f"{r['ssim_vs_autoencoder_last']:+.4f} [{r['ssim_vs_autoencoder_last_low']:+.4f}, "
            f"{r['ssim_vs_autoencoder_last_high']:+.4f}]; vs {first} at {last}: "
            f"{r['ssim_vs_first_last']:+.4f} [{r['ssim_vs_first_last_low']:+.4f}, "
            f"{r['ssim_vs_first_last_high']:+.4f}]"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("long_rollout.csv", rows), ("long_rollout_per_horizon.csv", horizon_rows)):
        with open(out / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    _plot(horizon_rows, out / "long_rollout.png")
    print(f"wrote {out / 'long_rollout.csv'}, long_rollout_per_horizon.csv and long_rollout.png")


def _plot(horizon_rows: list[dict], path: Path) -> None:
    """Mass, SSIM beside copy-last and the autoencoder ceiling, and SSIM against copy-last."""
    from framecast.eval.plots import pyplot, save_figure

    plt = pyplot()
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    names = list(dict.fromkeys(r["arm"] for r in horizon_rows))
    for arm in names:
        at = [r for r in horizon_rows if r["arm"] == arm]
        h = [r["horizon"] for r in at]
        left.plot(h, [r["intensity_ratio"] for r in at], marker=".", label=arm)
        middle.plot(h, [r["ssim"] for r in at], marker=".", label=arm)
        right.plot(h, [r["ssim_vs_copy_last"] for r in at], marker=".", label=arm)
        right.fill_between(h, [r["low"] for r in at], [r["high"] for r in at], alpha=0.15)
    # Copy-last and the autoencoder are the same for every arm (same clips): drawn once.
    at = [r for r in horizon_rows if r["arm"] == names[0]]
    h = [r["horizon"] for r in at]
    for key, label, style in (("copy_last", "copy-last", ":"), ("autoencoder", "AE ceiling", "--")):
        left.plot(h, [r[f"intensity_ratio_{key}"] for r in at], "k" + style, label=label)
        middle.plot(h, [r[f"ssim_{key}"] for r in at], "k" + style, label=label)
    left.axhspan(0.95, 1.05, color="grey", alpha=0.15, label="target 1 ± 0.05")
    left.set(xlabel="horizon", ylabel="intensity ratio (pred / true)", title="mass")
    middle.set(xlabel="horizon", ylabel="SSIM", title="structure")
    right.axhline(0, color="black", linewidth=0.8)
    right.set(xlabel="horizon", ylabel="SSIM − copy-last (95 % CI)", title="against copy-last")
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
