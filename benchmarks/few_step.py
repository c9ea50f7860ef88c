"""Few-step sampling (issue 24 item 1): where a river run stands at 1, 2 and 4 NFE per frame,
and what a distilled student (``framecast distill``) gives at 1 and 2.

For each ``--pair TEACHER STUDENT DATA`` (one training seed each), ``framecast evaluate``'s
:func:`~framecast.eval.evaluate.evaluate` runs on the same test clips (3 → 7 frames, K
samples per clip, the same seed) for every arm:

- the teacher with Euler 10 from warm start 0.1 (10 NFE: the reference),
- the teacher with Euler 1, 2, 4 and midpoint 1, 2 steps (1–4 NFE) from warm start 0.1,
  and Euler 1 from warm starts 0, 0.3 and 0.5 (the warm-start sweep at 1 NFE),
- the student with Euler 1 and 2 from its warm start (1 and 2 NFE).

Each evaluation is written under ``OUT/seed<i>/<arm>/`` (metrics.json, per_clip.csv, plots)
and skipped when it exists, so an interrupted run continues; pairs that share a teacher and
data (several students of one reference run) score the teacher's arms once. The table: per
arm, the mean over seeds of PSNR, SSIM and ST-LPIPS; ST-LPIPS relative to the 10-NFE teacher
with a 95 % paired cluster-bootstrap interval over the clips of all seeds (clusters: the test
videos, shared by pairs scored on the same videos; the interval is that of the mean
paired difference divided by the 10-NFE mean); the rms spread of the K samples relative to
the 10-NFE spread; seconds per predicted frame (this machine); the distinct runs behind a row.
Written as ``OUT/few_step.csv`` and ``OUT/few_step.png``.

    .venv/bin/python benchmarks/few_step.py --pair runs/eqc/river_s0 runs/i24/student_s0 \\
        runs/eqc/data_s0 [--pair ...] --out runs/i24/few_step [--samples 4] [--max-clips N]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framecast.eval.stats import paired_bootstrap, video_clusters
from framecast.flow.sampling import SamplerConfig
from framecast.flow.solvers import SolverConfig


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # "teacher" | "student"
    method: str
    steps: int
    warm_start: float = 0.1

    @property
    def sampler(self) -> SamplerConfig:
        return SamplerConfig(SolverConfig(self.method, self.steps), warm_start=self.warm_start)


REFERENCE = Arm("teacher euler 10", "teacher", "euler", 10)
ARMS = (
    REFERENCE,
    Arm("teacher euler 1", "teacher", "euler", 1),
    Arm("teacher euler 2", "teacher", "euler", 2),
    Arm("teacher euler 4", "teacher", "euler", 4),
    Arm("teacher midpoint 1", "teacher", "midpoint", 1),
    Arm("teacher midpoint 2", "teacher", "midpoint", 2),
    Arm("teacher euler 1 s=0", "teacher", "euler", 1, 0.0),
    Arm("teacher euler 1 s=0.3", "teacher", "euler", 1, 0.3),
    Arm("teacher euler 1 s=0.5", "teacher", "euler", 1, 0.5),
    Arm("student euler 1", "student", "euler", 1),
    Arm("student euler 2", "student", "euler", 2),
)
METRICS = ("psnr", "ssim", "stlpips")


def evaluate_arm(arm: Arm, run: str, data: str, out: Path, args) -> Path:
    """Run (or reuse) one evaluation; returns its folder."""
    from framecast.eval.evaluate import evaluate

    if (out / "metrics.json").is_file() and (out / "per_clip.csv").is_file():
        return out
    evaluate(
        run,
        data,
        split="test",
        out=out,
        context=3,
        frames=7,
        sampler=arm.sampler,
        samples=args.samples,
        seed=0,
        max_clips=args.max_clips,
        progress=False,
    )
    return out


def per_clip_means(folder: Path, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(video index per clip, the model's metric per clip averaged over horizons)."""
    values: dict[int, list[float]] = {}
    videos: dict[int, int] = {}
    with open(folder / "per_clip.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["method"] != "river":
                continue
            clip = int(row["clip"])
            values.setdefault(clip, []).append(float(row[metric]))
            videos[clip] = int(row["video_index"])
    clips = sorted(values)
    return np.array([videos[c] for c in clips]), np.array([np.mean(values[c]) for c in clips])


def summary(folder: Path) -> dict[str, float]:
    data = json.loads((folder / "metrics.json").read_text())
    river = data["methods"]["river"]
    out = {m: river[m]["mean"] for m in METRICS}
    out["nfe"] = data["nfe_per_frame"]
    out["seconds_per_frame"] = data["seconds_per_frame"]
    calibration = data.get("calibration") or {}
    out["spread"] = (calibration.get("overall") or {}).get("spread", float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pair", nargs=3, action="append", required=True, metavar=("TEACHER", "STUDENT", "DATA")
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=4, help="K samples per clip (spread)")
    parser.add_argument("--max-clips", type=int, help="first N test clips only")
    parser.add_argument(
        "--arms", help="comma-separated arm names (default: all; the 10-NFE reference always runs)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    arms = ARMS
    if args.arms:
        wanted = {a.strip() for a in args.arms.split(",")}
        arms = tuple(a for a in ARMS if a.name in wanted or a == REFERENCE)
    print(
        f"machine: {platform.processor() or platform.machine()}, {len(args.pair)} seed(s), "
        f"K = {args.samples}"
    )
    folders: dict[str, list[Path]] = {a.name: [] for a in arms}
    # Pairs that share a teacher (several students distilled from one reference run) score
    # the teacher's arms once: the same run, clips and sampling seed give the same numbers.
    done: dict[tuple[str, str, str], Path] = {}
    for seed, (teacher, student, data) in enumerate(args.pair):
        for arm in arms:
            run = teacher if arm.model == "teacher" else student
            key = (str(Path(run).resolve()), str(Path(data).resolve()), arm.name)
            if key in done:
                print(f"seed {seed}: {arm.name} ({run}): scored with seed {done[key].parent.name}")
                folders[arm.name].append(done[key])
                continue
            folder = out / f"seed{seed}" / arm.name.replace(" ", "_").replace(",", "")
            print(f"seed {seed}: {arm.name} ({run})", flush=True)
            done[key] = evaluate_arm(arm, run, data, folder, args)
            folders[arm.name].append(done[key])
    datasets = [data for _, _, data in args.pair]

    def pooled(name: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        # Clusters: the test videos, shared by every run scored on them (video_clusters).
        videos, values = zip(*(per_clip_means(f, metric) for f in folders[name]), strict=True)
        return video_clusters(datasets, videos), np.concatenate(values)

    ref_ids, ref_lpips = pooled(REFERENCE.name, "stlpips")
    ref_spread = np.mean([summary(f)["spread"] for f in folders[REFERENCE.name]])
    rows = []
    for arm in arms:
        per_seed = [summary(f) for f in folders[arm.name]]
        ids, lpips = pooled(arm.name, "stlpips")
        assert (ids == ref_ids).all(), "arms must be scored on the same clips"
        interval = paired_bootstrap(lpips - ref_lpips, ids, n_boot=2000, seed=0)
        scale = float(np.mean(ref_lpips))
        rows.append(
            {
                "arm": arm.name,
                "nfe": per_seed[0]["nfe"],
                **{m: float(np.mean([s[m] for s in per_seed])) for m in METRICS},
                "stlpips_vs_10nfe": interval.overall_mean / scale,
                "low": interval.overall_low / scale,
                "high": interval.overall_high / scale,
                "spread_vs_10nfe": float(np.mean([s["spread"] for s in per_seed]) / ref_spread),
                "seconds_per_frame": float(np.mean([s["seconds_per_frame"] for s in per_seed])),
                "seeds": len(set(folders[arm.name])),  # distinct runs scored
                "clips": len(ref_ids),
            }
        )
    header = (
        f"{'arm':26} {'NFE':>4} {'PSNR':>6} {'SSIM':>6} {'ST-LPIPS':>8}  "
        f"{'ST-LPIPS vs 10 NFE [95 %]':>27} {'spread':>7} {'s/frame':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['arm']:26} {r['nfe']:>4g} {r['psnr']:6.2f} {r['ssim']:6.3f} "
            f"{r['stlpips']:8.4f}  {r['stlpips_vs_10nfe']:+7.1%} [{r['low']:+6.1%}, "
            f"{r['high']:+6.1%}] {r['spread_vs_10nfe']:7.2f} {r['seconds_per_frame']:8.4f}"
        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "few_step.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, out / "few_step.png")
    print(f"wrote {out / 'few_step.csv'} and {out / 'few_step.png'}")


def _plot(rows: list[dict], path: Path) -> None:
    from framecast.eval.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, marker in (("teacher", "o"), ("student", "s")):
        picked = [r for r in rows if r["arm"].startswith(model)]
        ax.errorbar(
            [r["nfe"] for r in picked],
            [100 * r["stlpips_vs_10nfe"] for r in picked],
            yerr=[
                [100 * (r["stlpips_vs_10nfe"] - r["low"]) for r in picked],
                [100 * (r["high"] - r["stlpips_vs_10nfe"]) for r in picked],
            ],
            fmt=marker,
            label=model,
            capsize=3,
        )
    ax.axhline(5, color="grey", linestyle="--", linewidth=0.8, label="+5 % target")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("NFE per frame")
    ax.set_ylabel("ST-LPIPS vs teacher at 10 NFE (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
