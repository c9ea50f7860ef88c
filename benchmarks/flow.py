"""Stage-2 (RIVER) speed: training steps with the latent cache vs online encoding, bf16 vs
fp32; sampling milliseconds per frame and NFE per frame for every solver. One run, so the
ratios are comparable.

Training (steps/s): one optimiser step of ``river_flow_loss`` (the exact code the
LightningModule runs) + backward + AdamW on a batch of ``--batch-size`` clips of
``num_observations`` latents. "cache" starts from latents in memory (what the memory-mapped
latent cache gives); "online" starts from 64×64 frames and first encodes every frame of
the clip with the frozen autoencoder in fp32 (what training does without a cache). Data
loading is not included (see benchmarks/data_loading.py).

Sampling: an autoregressive rollout of ``--frames`` frames after one observed frame, for a
batch of 1 and of ``--sample-batch`` videos; ms per predicted frame (per video and batch)
and NFE per frame. With ``--run RUN`` the trained regressor of a river run is used (its
field decides dopri5's NFE); without, the configs' architecture with random weights (the
zero-initialised head is re-drawn so the field is not trivially zero).

Against the official RIVER (``--against-river DIR``, a checkout of Araachie/river): first
the side-by-side tables of benchmarks/river_speed.py (training step, EMA update, sampling
call; tiny and paper sizes; the machine's measured matmul rate and each row's share of it).
Without DIR the run says so and times framecast alone.

    .venv/bin/python benchmarks/flow.py [--run runs/river] [--quick] [--against-river DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from framecast.config import load_config
from framecast.flow.path import CondOTPath
from framecast.flow.sampling import SamplerConfig, rollout
from framecast.flow.solvers import SolverConfig
from framecast.losses.flow import river_flow_loss
from framecast.models.autoencoder import Autoencoder
from framecast.models.river import VectorFieldRegressor

SOLVER_SETTINGS = [
    SolverConfig("euler", 10),
    SolverConfig("midpoint", 5),
    SolverConfig("heun", 5),
    SolverConfig("rk4", 3),
    SolverConfig("dopri5", 1, atol=1e-3, rtol=1e-3),
    SolverConfig("euler", 100),
]


def median_time(fn: Callable[[], None], warmup: int, repeats: int) -> tuple[float, float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def hardware_precisions(bf16_rows: bool, device: str = "cpu") -> tuple[str, ...]:
    """Print the hardware class; the precisions worth timing here: fp32, and bf16 where the
    hardware computes it natively (or ``bf16_rows`` asks for it)."""
    from framecast.hardware import bf16_support

    support = bf16_support(device)
    timed = support.native or bf16_rows
    print(
        f"hardware class: {support.hardware}; bf16 {'native' if support.native else 'not native'}"
        f": {support.reason}" + ("" if timed else "; bf16 left out (--bf16-rows times it anyway)")
    )
    return ("fp32", "bf16") if timed else ("fp32",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--river-config", default="configs/smoke_dataset.yaml")
    parser.add_argument("--ae-config", default="configs/ae_smoke.yaml")
    parser.add_argument("--run", help="a trained river run for the sampling table")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--sample-batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs")
    parser.add_argument(
        "--bf16-rows",
        action="store_true",
        help="time bf16 even where the hardware emulates it (40-100× slower than fp32)",
    )
    parser.add_argument(
        "--against-river",
        metavar="DIR",
        help="a checkout of Araachie/river: time its regressor next to ours first "
        "(benchmarks/river_speed.py)",
    )
    args = parser.parse_args()

    if args.against_river:
        import river_speed  # the script's folder is on sys.path

        river_speed.main(
            [
                "--against-river",
                args.against_river,
                "--sizes",
                "tiny" if args.quick else "tiny,paper",
            ]
            + (["--repeats", "2", "--warmup", "1"] if args.quick else [])
        )
        print()
    else:
        print("no RIVER checkout given (--against-river DIR): timing framecast alone")

    torch.manual_seed(0)
    river_cfg = load_config(args.river_config)
    ae_cfg = load_config(args.ae_config)
    t = river_cfg.training
    batch = args.batch_size or (4 if args.quick else river_cfg.data.batch_size)
    repeats = 2 if args.quick else args.repeats
    frames_out = 2 if args.quick else args.frames
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}"
    )
    precisions = hardware_precisions(args.bf16_rows)

    size = ae_cfg.data.image_size
    autoencoder = Autoencoder.from_config(ae_cfg.model, size).eval().requires_grad_(False)
    vfr_cfg = river_cfg.model.vector_field_regressor
    model = VectorFieldRegressor.from_config(vfr_cfg)
    path = CondOTPath(river_cfg.model.sigma)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = t.num_observations
    frames = torch.rand(batch, n, 3, size, size) * 2 - 1
    latents = torch.randn(batch, n, vfr_cfg.state_size, *vfr_cfg.state_res)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"\ntraining: batch {batch} clips of {n} latents {vfr_cfg.state_size}x"
        f"{vfr_cfg.state_res[0]}x{vfr_cfg.state_res[1]}, regressor {params / 1e6:.2f}M "
        f"parameters; {repeats} repeats of 1 step"
    )

    def step(source: str, bf16: bool) -> None:
        if source == "online":
            with torch.no_grad():
                z = autoencoder.encode_latents(frames.flatten(0, 1)).unflatten(0, (batch, n))
        else:
            z = latents
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = river_flow_loss(model, path, z, t.condition_frames, t.smoke_threshold)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    rows = []
    for source in ("cache", "online"):
        for bf16 in (p == "bf16" for p in precisions):
            med, lo, hi = median_time(lambda s=source, b=bf16: step(s, b), 1, repeats)
            rows.append((source, "bf16" if bf16 else "fp32", med, lo, hi))
    base = rows[0][2]
    print(
        f"{'data':8} {'precision':9} {'steps/s':>8} {'min s':>7} {'max s':>7} {'× cache fp32':>13}"
    )
    for source, precision, med, lo, hi in rows:
        print(f"{source:8} {precision:9} {1 / med:8.2f} {lo:7.3f} {hi:7.3f} {base / med:13.2f}")

    if args.run:
        from framecast.flow.pipeline import load_river

        pipeline = load_river(args.run)
        model, path = pipeline.vector_field, pipeline.path
        print(f"\nsampling with the trained regressor of {pipeline.checkpoint}")
    else:
        with torch.no_grad():  # a non-trivial random field instead of the zero-initialised head
            for p in model.parameters():
                if p.abs().sum() == 0:
                    p.normal_(0, 0.02)
        print("\nsampling with random weights (pass --run for a trained field)")
    model.eval()
    print(
        f"rollout of {frames_out} frames after 1 observed frame, warm start 0; ms per predicted "
        "frame (median of repeats)"
    )
    print(
        f"{'solver':10} {'steps':>5} {'NFE/frame':>9} {'ms/frame B=1':>13} {'ms/frame/video B=' + str(args.sample_batch):>22}"
    )
    settings = SOLVER_SETTINGS[:2] + SOLVER_SETTINGS[4:5] if args.quick else SOLVER_SETTINGS
    for solver in settings:
        sampler = SamplerConfig(solver)
        results = {}
        for b in (1, args.sample_batch):
            context = torch.randn(b, 1, vfr_cfg.state_size, *vfr_cfg.state_res)
            nfe = []

            def run(context=context, nfe=nfe, sampler=sampler):
                out = rollout(
                    model,
                    context,
                    frames_out,
                    path,
                    sampler,
                    generator=torch.Generator().manual_seed(0),
                )
                nfe.append(out.nfe_per_frame)

            med, _, _ = median_time(run, 1, repeats)
            results[b] = (1000 * med / frames_out, nfe[-1])
        per_video = results[args.sample_batch][0] / args.sample_batch
        print(
            f"{solver.method:10} {solver.steps:5d} {results[1][1]:9.1f} {results[1][0]:13.2f} "
            f"{per_video:22.2f}"
        )


if __name__ == "__main__":
    main()
