"""``framecast demo``: the whole pipeline on freshly simulated smoke.

1. simulate a small smoke dataset (PhiFlow);
2. train the stage-1 autoencoder briefly (64×64×3 → 8×8×8 latents);
3. reconstruct held-out clips and measure them;
4. encode every frame once (the latent cache), which also suggests the smoke threshold;
5. train the RIVER flow model briefly on the cached latents;
6. generate a held-out video's future (GIF + PNG strip) and evaluate the test split per
   horizon against the copy-last-frame and autoencoder baselines;
7. distil the RIVER run into a one-step student (``framecast distill``) and evaluate it on
   the same clips: time per frame and quality beside the 10-NFE model;
8. write ``report.md`` with the figures and pictures.

Every step prints progress; the last line says where the results are.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.utils import atomic_write_text

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The harder smoke of the reference runs (several inflows, wind, pulsing sources, obstacles),
# in greyscale: smoke has no colour, and a 1-channel model cannot tint it.
DEMO_PRESET = "varied"
DEMO_CHANNELS = 1

# Demo sizes: "full" fits in 10 minutes on 2 cores of any x86 CPU in fp32 (docs/results.md,
# "The demo on every CPU"); "quick" is for tests. The autoencoder trains on batches of 8
# frames: its step is compute-bound (convolutions, 87 % of an fp32 step; benchmarks/
# autoencoder.py --config demo --profile), and 400 steps of 8 frames kept the river ahead of
# copy-last by the same margins as 400 steps of 32, at a quarter of the arithmetic.
SIZES = {
    "full": {
        "videos": 24,
        "frames": 24,
        "size": 64,
        "ae_steps": 400,
        "ae_batch": 8,
        "batch": 32,
        "base_channels": 32,
        "river_steps": 800,
        "river_dim": 128,
        "observations": 10,
        "context": 3,
        "future": 7,
        "solver_steps": 10,
        "distill_steps": 100,
    },
    "quick": {
        "videos": 4,
        "frames": 6,
        "size": 32,
        "ae_steps": 2,
        "ae_batch": 4,
        "batch": 4,
        "base_channels": 8,
        "river_steps": 2,
        "river_dim": 32,
        "observations": 5,
        "context": 3,
        "future": 2,
        "solver_steps": 2,
        "distill_steps": 2,
    },
}


def demo_autoencoder_config(data_root: Path, sizes: dict) -> dict:
    """The shipped ``configs/ae_smoke.yaml`` shrunk to demo length."""
    return {
        "model": {
            "kind": "autoencoder",
            "image_channels": DEMO_CHANNELS,
            "latent_channels": 8,
            "base_channels": sizes["base_channels"],
            "channel_multipliers": [1, 2, 4, 4],
            "downsampling_steps": 3,
            "num_res_blocks": 1,
            "norm_groups": 8,
            "attention": True,
            "output_activation": "clamp",
        },
        "data": {
            "root": str(data_root),
            "image_size": sizes["size"],
            "channels": DEMO_CHANNELS,
            "batch_size": sizes["ae_batch"],
            "num_workers": 0,
            "clips_per_video": 20,
            "eval_clips_per_video": 4,
        },
        "training": {
            "max_steps": sizes["ae_steps"],
            "lr": 1e-3,
            "warmup_steps": min(50, sizes["ae_steps"]),
            "lr_schedule": "cosine",
            "val_every_n_steps": max(1, sizes["ae_steps"] // 2),
            "log_every_n_steps": 1 if sizes["ae_steps"] < 20 else 10,
        },
        "logging": {"tensorboard": False},
    }


def demo_river_config(data_root: Path, autoencoder: Path, sizes: dict) -> dict:
    """The shipped ``configs/smoke_dataset.yaml`` shrunk to demo length."""
    latent = sizes["size"] // 8
    steps = sizes["river_steps"]
    overrides = [
        f"model.autoencoder={autoencoder}",
        f"model.vector_field_regressor.state_res=[{latent}, {latent}]",
        f"model.vector_field_regressor.inner_dim={sizes['river_dim']}",
        f"data.root={data_root}",
        f"data.image_size={sizes['size']}",
        f"data.channels={DEMO_CHANNELS}",
        f"data.batch_size={sizes['batch']}",
        "data.clips_per_video=8",
        "data.eval_clips_per_video=2",
        f"training.num_observations={sizes['observations']}",
        f"training.frames_to_generate={sizes['future']}",
        f"training.max_steps={steps}",
        "training.lr=1e-3",
        f"training.warmup_steps={min(50, steps)}",
        "training.ema_decay=0.99",
        f"training.val_every_n_steps={max(1, steps // 2)}",
        f"training.log_every_n_steps={1 if steps < 20 else 10}",
        "logging.tensorboard=false",
    ]
    return apply_overrides(read_yaml(CONFIGS / "smoke_dataset.yaml"), overrides)


def demo_student_config(river_run: Path, sizes: dict):
    """``framecast distill``'s config for the demo's river run, shrunk to demo length: its
    teacher samples as the demo does (Euler ``solver_steps`` from warm start 0.1)."""
    from framecast.training.river import distill_config

    steps = sizes["distill_steps"]
    return distill_config(
        river_run,
        [
            f"training.max_steps={steps}",
            f"training.val_every_n_steps={steps}",
            f"training.warmup_steps={min(10, steps)}",
            f"training.log_every_n_steps={1 if steps < 20 else 10}",
            f"model.distill.teacher_steps={sizes['solver_steps']}",
            "logging.tensorboard=false",
        ],
    )


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def demo_sampler(sizes: dict):
    """Euler from warm start 0.1, ``solver_steps`` velocity evaluations per frame, in the
    precision this machine computes fast (``auto``: bf16 only where it is native)."""
    from framecast.flow.sampling import SamplerConfig
    from framecast.flow.solvers import SolverConfig

    return SamplerConfig(
        SolverConfig("euler", sizes["solver_steps"]), warm_start=0.1, precision="auto"
    )


class StageClock:
    """Wall time of each demo stage, for the printout and the report."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._mark = self.started

    def lap(self, stage: str) -> float:
        now = time.perf_counter()
        self.seconds[stage] = now - self._mark
        self._mark = now
        return self.seconds[stage]

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started


def run_demo(out_dir: str | os.PathLike = "runs/demo", quick: bool = False) -> Path:
    """Run the demo into ``out_dir``; returns the path of ``report.md``."""
    from framecast.data.smoke import simulate_smoke_dataset
    from framecast.encode import encode_dataset
    from framecast.eval.evaluate import evaluate
    from framecast.eval.generate import generate
    from framecast.eval.reconstruct import reconstruct
    from framecast.hardware import bf16_support
    from framecast.models.autoencoder.loading import load_autoencoder
    from framecast.training.engine import train

    sizes = SIZES["quick" if quick else "full"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock()
    machine = bf16_support("cpu")
    _say(
        f"machine: {machine.hardware}, {torch_threads()} threads; bf16 "
        f"{'native' if machine.native else 'not native: everything runs in fp32'}"
    )

    _say(
        f"1/7 simulating {sizes['videos']} {DEMO_PRESET} smoke videos of {sizes['frames']} frames at {sizes['size']}×{sizes['size']}"
    )
    data = out / "data"
    smoke = simulate_smoke_dataset(
        data,
        videos=sizes["videos"],
        frames=sizes["frames"],
        size=sizes["size"],
        seed=0,
        preset=DEMO_PRESET,
        overwrite=True,
    )
    _say(smoke.format())
    clock.lap("simulate smoke")

    _say(f"2/7 training the autoencoder for {sizes['ae_steps']} steps")
    config = validate_config(demo_autoencoder_config(data, sizes), "demo autoencoder config")
    ae = train(config, runs_dir=out, run_name="autoencoder", resume=False, overwrite=True)
    _say(ae.format())
    _say(f"autoencoder trained in {clock.lap('train autoencoder'):.0f} s")

    _say("3/7 reconstructing held-out test clips")
    recon = reconstruct(
        ae.run_dir, data, split="test", num_clips=4, frames_per_clip=min(8, sizes["frames"])
    )
    _say(recon.format())
    clock.lap("reconstruct")

    _say("4/7 encoding every frame once (latent cache)")
    stage1 = load_autoencoder(ae.run_dir)
    cache = encode_dataset(stage1.model, data, stage1.image_size, str(ae.run_dir), overwrite=True)
    _say(cache.format())
    clock.lap("encode (latent cache)")

    _say(f"5/7 training the RIVER flow model for {sizes['river_steps']} steps")
    river_config = validate_config(demo_river_config(data, ae.run_dir, sizes), "demo river config")
    river = train(river_config, runs_dir=out, run_name="river", resume=False, overwrite=True)
    _say(river.format())
    _say(f"RIVER trained in {clock.lap('train RIVER'):.0f} s")

    sampler = demo_sampler(sizes)
    # Three observed frames: one frame alone shows where the smoke is but not how it moves,
    # and a model that sees only one cannot know the plume's speed.
    context = sizes["context"]
    _say(f"6/7 predicting {sizes['future']} frames from {context} and evaluating the test split")
    gif = generate(
        river.run_dir,
        data / "test",
        out / "prediction.gif",
        context=context,
        frames=sizes["future"],
        sampler=sampler,
    )
    _say(gif.format())
    scores = evaluate(
        river.run_dir, data, split="test", context=context, frames=sizes["future"], sampler=sampler
    )
    _say(scores.format())
    clock.lap("generate and evaluate")

    steps = sizes["distill_steps"]
    _say(f"7/7 distilling RIVER into a one-step student ({steps} steps) and evaluating it")
    student = train(
        demo_student_config(river.run_dir, sizes),
        runs_dir=out,
        run_name="student",
        resume=False,
        overwrite=True,
    )
    _say(student.format())
    one_step = replace(sampler, solver=replace(sampler.solver, steps=1))
    fast = evaluate(
        student.run_dir,
        data,
        split="test",
        context=context,
        frames=sizes["future"],
        sampler=one_step,
    )
    _say(fast.format())
    clock.lap("distil and evaluate the student")

    report = out / "report.md"
    atomic_write_text(
        report,
        _report(out, smoke, ae, recon, cache, river, gif, scores, fast, sizes, clock, machine),
    )
    _say(f"finished in {clock.total:.0f} s; results: {report}")
    return report


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def river_config_threshold(run_dir: Path) -> str:
    """The smoke threshold a river run used, as its config.yaml records it."""
    return str(read_yaml(Path(run_dir) / "config.yaml")["training"]["smoke_threshold"])


def _report(out, smoke, ae, recon, cache, river, gif, scores, fast, sizes, clock, machine) -> str:
    def rel(path) -> str:
        return os.path.relpath(path, out)

    recon_rows = "\n".join(f"| {k} | {v:.5g} |" for k, v in recon.metrics.items())
    names = list(next(iter(scores.means.values())))
    header = "| method | " + " | ".join(names) + " |"
    rule = "| --- " * (len(names) + 1) + "|"
    score_rows = "\n".join(
        f"| {method} | " + " | ".join(f"{values.get(n, float('nan')):.4g}" for n in names) + " |"
        for method, values in scores.means.items()
    )
    solver = scores.sampler["solver"]
    ae_precision = read_yaml(Path(ae.run_dir) / "config.yaml")["training"]["precision"]
    river_precision = read_yaml(Path(river.run_dir) / "config.yaml")["training"]["precision"]
    few_step_rows = "\n".join(
        f"| {label} | {r.nfe_per_frame:g} | {1000 * r.seconds_per_frame:.1f} | "
        + " | ".join(f"{r.means['river'][m]:.4g}" for m in ("psnr", "ssim", "stlpips"))
        + " |"
        for label, r in (("river", scores), ("one-step student", fast))
    )
    timing_rows = "\n".join(
        f"| {stage} | {seconds:.0f} |" for stage, seconds in clock.seconds.items()
    )
    return f"""# framecast demo

Simulated smoke: {smoke.format().splitlines()[0]}

## Stage 1: autoencoder ({sizes["size"]}×{sizes["size"]}×{DEMO_CHANNELS} → {sizes["size"] // 8}×{sizes["size"] // 8}×8 latents)

Trained {ae.global_step} steps; run directory `{ae.run_dir}`.

Test-split reconstruction ({recon.frames} frames):

| metric | value |
| --- | --- |
{recon_rows}

![reconstructions]({rel(recon.grid)})

![loss curves]({rel(ae.run_dir / "loss_curves.png")})

## Stage 2: RIVER flow matching in latent space

Latent cache: `{cache.path}`; training.smoke_threshold: auto took
{river_config_threshold(river.run_dir)} from it (the frames' smoke matched to latent cells).
Trained {river.global_step} steps; run directory `{river.run_dir}`.

Prediction of a held-out video ({gif.context} context frame(s), {sizes["future"]} predicted;
{gif.nfe_per_frame:g} NFE per frame):

![prediction]({rel(gif.out)})

![strip]({rel(gif.strip)})

Test split, {scores.num_clips} clips, {scores.context_frames} context + {scores.frames} predicted
frames; sampler {solver["method"]} {solver["steps"]} steps from warm start
{scores.sampler["warm_start"]} ({scores.nfe_per_frame:g} NFE per frame). Means over horizons
(`copy_last` repeats the last context frame; `autoencoder` is the round trip of the true
frames, the ceiling):

{header}
{rule}
{score_rows}

![per-horizon metrics]({rel(scores.files["plot"])})

![loss curves]({rel(river.run_dir / "loss_curves.png")})

## Few-step sampling: `framecast distill`

The river run distilled for {sizes["distill_steps"]} steps into a student that takes one
Euler step per frame from the same warm start (checkpoint `{fast.checkpoint}`), on the same
test clips; time per predicted frame includes encoding and decoding:

| model | NFE per frame | ms per frame | PSNR | SSIM | ST-LPIPS |
| --- | --- | --- | --- | --- | --- |
{few_step_rows}

## Time

Machine: {machine.hardware} ({"native bf16" if machine.native else "no native bf16"}),
{torch_threads()} threads. Training precision: autoencoder {ae_precision}, RIVER
{river_precision}; sampling {scores.sampler["precision"]} (all `auto`: bf16 only where the
hardware computes it natively).

| stage | seconds |
| --- | --- |
{timing_rows}
| **total** | **{clock.total:.0f}** |
"""
