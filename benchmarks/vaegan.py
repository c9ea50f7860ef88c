"""WuBu-GAAD VAE-GAN training speed: one full step (discriminator step + generator step with
the module's own loss methods, on synthetic clips) in fp32 vs bf16 autocast, with and
without the optical-flow motion branch, and where the time of a step goes (encoder with
and without Farneback flow, generator, discriminator). One run, so the ratios compare.

    .venv/bin/python benchmarks/vaegan.py [--size small|shipped] [--batch-size 16] [--quick]

``small`` is the shape of the CPU reference runs (generator/discriminator widths 16,
latent 64); ``shipped`` is configs/wubu_vaegan.yaml as it is (64 px, 24M parameters).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow import hardware_precisions, median_time  # noqa: E402

from framecast.config import load_config  # noqa: E402
from framecast.models.vaegan.motion import farneback_flow  # noqa: E402
from framecast.training.vaegan import VAEGANModule  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "wubu_vaegan.yaml"
SMALL = [
    "model.gen_base_channels=16",
    "model.disc_base_disc_channels=16",
    "model.disc_max_disc_channels=64",
    "model.latent_dim=64",
]


class _StepHarness:
    """The module's training step outside a Trainer: its own ``discriminator_loss`` and
    ``generator_loss``, plain optimisers, no logging, no clipping."""

    def __init__(self, module: VAEGANModule, precision: str):
        self.module = module
        opts, _ = module.configure_optimizers()
        self.opt_g, self.opt_d = opts
        self.bf16 = precision == "bf16"

    def step(self, clip: torch.Tensor) -> None:
        m = self.module
        context, real = clip[:, : m.context_frames], clip[:, m.context_frames :]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = m.model(context)
            d_loss, _ = m.discriminator_loss(out, real)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            g_loss, _ = m.generator_loss(out, real)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["small", "shipped"], default="small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--bf16-rows",
        action="store_true",
        help="time bf16 even where the hardware emulates it (40-100× slower than fp32)",
    )
    args = parser.parse_args()
    warmup, repeats = (1, 3) if args.quick else (2, 7)
    overrides = (SMALL if args.size == "small" else []) + [f"data.batch_size={args.batch_size}"]
    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, "
        f"threads {torch.get_num_threads()}; size {args.size}, batch {args.batch_size}; "
        f"median of {repeats} steps"
    )
    precisions = hardware_precisions(args.bf16_rows)
    torch.manual_seed(0)
    results = {}
    for motion in (True, False):
        config = load_config(CONFIG, [*overrides, f"model.use_wubu_motion_branch={motion}"])
        t = config.training
        size = config.data.image_size
        frames = t.condition_frames + t.frames_to_generate
        clip = torch.rand(args.batch_size, frames, 3, size, size) * 2 - 1
        module = VAEGANModule(config)
        params = sum(p.numel() for p in module.model.parameters()) / 1e6
        for precision in precisions:
            harness = _StepHarness(module, precision)
            med, lo, hi = median_time(functools.partial(harness.step, clip), warmup, repeats)
            results[(motion, precision)] = med
            print(
                f"motion branch {'on ' if motion else 'off'} {precision}: {1 / med:6.2f} steps/s "
                f"({med * 1000:7.1f} ms; min {lo * 1000:.1f}, max {hi * 1000:.1f}), "
                f"{params:.2f}M parameters"
            )
    base = results[(True, "fp32")]
    print("ratios vs motion on, fp32:")
    for (motion, precision), value in results.items():
        print(f"  motion {'on ' if motion else 'off'} {precision}: ×{base / value:.2f}")

    # Where a forward goes (fp32, no grad): flow alone, encoder, generator, discriminator.
    config = load_config(CONFIG, overrides)
    module = VAEGANModule(config).eval()
    t = config.training
    size = config.data.image_size
    clip = torch.rand(args.batch_size, t.condition_frames + t.frames_to_generate, 3, size, size)
    clip = clip * 2 - 1
    context, real = clip[:, : t.condition_frames], clip[:, t.condition_frames :]
    with torch.no_grad():
        mu, _ = module.model.encoder(context)
        parts = {
            "Farneback flow": lambda: farneback_flow(context),
            "encoder (with flow)": lambda: module.model.encoder(context),
            "generator": lambda: module.model.generate(mu, context),
            "discriminator": lambda: module.model.discriminate(real),
        }
        print(f"forward only, fp32, batch {args.batch_size}:")
        for name, fn in parts.items():
            med, _, _ = median_time(fn, warmup, repeats)
            print(f"  {name:22s} {med * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
