"""Stage-1 autoencoder speed: training steps and latent encoding per precision, layout, compile.

Measured in one run, so that the ratios between variants are comparable:

- training throughput (samples/s): one optimiser step = forward + ``autoencoder_loss`` +
  backward + AdamW step on a batch of random frames in [-1, 1]; variants fp32, bf16
  autocast, channels_last (model and input; fp32 and bf16) and ``torch.compile`` (fp32 and
  bf16);
- encoding throughput (frames/s): ``encode_latents`` in eval mode under ``torch.no_grad``
  on batches of 256, what ``framecast encode`` does (fp32), and the same under bf16 autocast.

The model is built from the config's model section (default configs/ae_smoke.yaml; ``--config
demo``: the autoencoder ``framecast demo`` trains, at its batch size) at its
``data.image_size``; the loss uses the config's weights (a perceptual loss or a
discriminator, if configured, is not included). Each variant starts from the same seed,
runs ``--warmup`` steps, then ``--repeats`` timed repeats of ``--steps`` steps; the table
gives the median, min and max throughput over the repeats and the ratio of the median to
the fp32 median of the same run. Compiled variants run in a child process whose first,
compiling step is bounded by ``--compile-timeout``; that step's wall time is reported as
"compile s" and is not part of the throughput. On 2 CPU cores a cold compile of this model
takes about 80 s per variant, over the default limit of 60 s; inductor's on-disk cache
brings later runs down to about 5 s (pass ``--compile-timeout 120`` for a first run that
measures compile). Timings are printed, never asserted; other jobs on the machine skew them.

bf16 variants run only where the hardware computes bf16 natively (framecast.hardware: AMX or
AVX512-BF16 CPUs, sm80+ GPUs) or with ``--bf16-rows``: on an AVX2 CPU they would time an
emulation 40-100× slower than fp32. ``--profile`` prints where one training step in the
precision ``precision: auto`` takes here spends its time (convolutions forward and backward,
normalisation, activations, optimiser).

    .venv/bin/python benchmarks/autoencoder.py [--device cuda] [--csv autoencoder.csv]
    .venv/bin/python benchmarks/autoencoder.py --quick   # tiny settings: checks that it runs
    .venv/bin/python benchmarks/autoencoder.py --config demo --profile --compile-timeout 0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from framecast.config import Config, load_config
from framecast.hardware import bf16_support
from framecast.losses.autoencoder import autoencoder_loss
from framecast.models.autoencoder import Autoencoder

# A child process prefixes its JSON result lines with this, so that anything else a
# library prints on stdout is not mistaken for a result.
CHILD_PREFIX = "autoencoder-benchmark: "

# Defaults of the full run (about 1.5 minutes on 2 otherwise idle CPU cores with inductor's
# cache warm, about 3.5 with it cold and both compiles timed out) and of --quick (seconds on
# an idle CPU; compile is skipped since a cold one takes minutes).
FULL = {"batch_size": 32, "encode_batch_size": 256, "steps": 2, "repeats": 5, "compile_timeout": 60}
QUICK = {"batch_size": 2, "encode_batch_size": 8, "steps": 1, "repeats": 2, "compile_timeout": 0}


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool
    channels_last: bool = False
    compiled: bool = False


TRAIN_VARIANTS = (
    Variant("fp32", bf16=False),
    Variant("bf16", bf16=True),
    Variant("channels_last fp32", bf16=False, channels_last=True),
    Variant("channels_last bf16", bf16=True, channels_last=True),
    Variant("compile fp32", bf16=False, compiled=True),
    Variant("compile bf16", bf16=True, compiled=True),
)
ENCODE_VARIANTS = (Variant("fp32", bf16=False), Variant("bf16", bf16=True))


@dataclass
class Result:
    section: str
    unit: str
    variant: str
    rates: list[float] = field(default_factory=list)
    compile_s: float | None = None
    note: str = ""


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall time covers the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], None], device: torch.device, count: int) -> float:
    """Wall seconds of ``count`` calls of ``step``."""
    sync(device)
    start = time.perf_counter()
    for _ in range(count):
        step()
    sync(device)
    return time.perf_counter() - start


def measure(
    step: Callable[[], None], device: torch.device, args: argparse.Namespace, batch: int
) -> list[float]:
    """Items/s of each timed repeat, after the warm-up steps."""
    timed(step, device, args.warmup)
    return [args.steps * batch / timed(step, device, args.steps) for _ in range(args.repeats)]


def random_frames(config: Config, batch: int, device: torch.device) -> torch.Tensor:
    size = config.data.image_size
    return torch.rand(batch, config.model.image_channels, size, size, device=device) * 2 - 1


def train_step(
    config: Config, variant: Variant, device: torch.device, batch: int
) -> Callable[[], None]:
    """A fresh model, optimiser and batch, and the closure doing one optimiser step."""
    torch.manual_seed(0)
    cfg = config.model
    model = Autoencoder.from_config(cfg, config.data.image_size).to(device).train()
    frames = random_frames(config, batch, device)
    labels = torch.randint(cfg.num_classes, (batch,), device=device) if cfg.has_cls_head else None
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        frames = frames.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.training.lr, weight_decay=config.training.weight_decay
    )
    forward = torch.compile(model) if variant.compiled else model

    def step() -> None:
        # Forward and loss under autocast, backward outside it, as Lightning's bf16-mixed does.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16):
            loss, _ = autoencoder_loss(
                forward(frames),
                frames,
                cls_target=labels,
                mse_weight=cfg.mse_weight,
                seg_weight=cfg.seg_weight,
                cls_weight=cfg.cls_weight,
                kl_weight=cfg.kl_weight,
                smoke_brightness=cfg.smoke_brightness,
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def encode_step(
    config: Config, variant: Variant, device: torch.device, batch: int
) -> Callable[[], None]:
    """A fresh model in eval mode and the closure encoding one batch."""
    torch.manual_seed(0)
    model = Autoencoder.from_config(config.model, config.data.image_size).to(device).eval()
    frames = random_frames(config, batch, device)

    def step() -> None:
        with (
            torch.no_grad(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant.bf16),
        ):
            model.encode_latents(frames)

    return step


def load_benchmark_config(name: str) -> Config:
    """A YAML config, or ``demo``: the autoencoder ``framecast demo`` trains (full size)."""
    if name != "demo":
        return load_config(name)
    from framecast.config import validate_config
    from framecast.demo import SIZES, demo_autoencoder_config

    return validate_config(demo_autoencoder_config(Path("unused"), SIZES["full"]), "demo")


# Operator groups of --profile; the first group whose key an operator's name contains wins.
PROFILE_GROUPS = {
    "convolution backward": ("convolution_backward",),
    "convolution forward": ("convolution",),
    "group norm (fwd + bwd)": ("group_norm",),
    "SiLU (fwd + bwd)": ("silu",),
    "attention": ("scaled_dot_product", "bmm", "_softmax"),
    "optimiser": ("adamw", "_foreach"),
    "copies (layout, dtype)": ("aten::copy_", "aten::_to_copy", "contiguous"),
}


def profile_step(config: Config, device: torch.device, batch: int, bf16: bool) -> None:
    """Self time of one training step (after two warm-up steps), grouped by kind of operator
    (:data:`PROFILE_GROUPS`), then the top operators."""
    from torch.profiler import ProfilerActivity, profile

    step = train_step(config, Variant("profile", bf16=bf16), device, batch)
    for _ in range(2):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync(device)
    on_device = device.type == "cuda"
    self_time: dict[str, float] = {}
    for event in prof.key_averages():
        t = event.self_device_time_total if on_device else event.self_cpu_time_total
        if t:
            self_time[event.key] = self_time.get(event.key, 0.0) + t
    total = sum(self_time.values())
    shares = dict.fromkeys([*PROFILE_GROUPS, "everything else"], 0.0)
    for key, t in self_time.items():
        group = next((g for g, keys in PROFILE_GROUPS.items() if any(k in key for k in keys)), None)
        shares[group or "everything else"] += t
    precision = "bf16 autocast" if bf16 else "fp32"
    print(f"\nprofile of one training step, batch {batch}, {precision} (operator self time)")
    for label, t in shares.items():
        print(f"  {label:28} {t / total:6.1%}")
    print("  top operators:")
    for key, t in sorted(self_time.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    {key[:56]:56} {t / total:6.1%}")
    print(f"  {total / 1e6:.3f} s of operator self time in the step")


def child_main(args: argparse.Namespace, config: Config, device: torch.device) -> None:
    """Run one compiled variant; print the compile time as soon as known, then the rates."""
    variant = next(v for v in TRAIN_VARIANTS if v.name == args.child)

    def emit(report: dict[str, object]) -> None:
        print(CHILD_PREFIX + json.dumps(report), flush=True)

    try:
        step = train_step(config, variant, device, args.batch_size)
        emit({"compile_s": timed(step, device, 1)})  # the first call compiles
        emit({"rates": measure(step, device, args, args.batch_size)})
    except Exception as exc:  # a failed compile is a result to report, not a crash
        emit({"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"})


def run_compiled(variant: Variant, args: argparse.Namespace) -> Result:
    """Measure a compiled variant in a child process, killed if compiling exceeds the limit."""
    result = Result("train", "samples/s", variant.name)
    if args.compile_timeout <= 0:
        result.note = "skipped (--compile-timeout 0)"
        return result
    # A compile cannot be interrupted in-process; a child in its own session can be killed
    # together with inductor's compile workers.
    command = [sys.executable, os.path.abspath(__file__), "--child", variant.name]
    for option in ("config", "device", "batch_size", "steps", "repeats", "warmup", "threads"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], args.compile_timeout)
    if not ready:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        result.note = (
            f"unavailable: compile did not finish within {args.compile_timeout:g} s "
            "(raise --compile-timeout; inductor's on-disk cache speeds up later runs)"
        )
        return result
    output, _ = child.communicate()
    report: dict = {}
    for line in output.splitlines():
        if line.startswith(CHILD_PREFIX):
            report.update(json.loads(line.removeprefix(CHILD_PREFIX)))
    result.compile_s = report.get("compile_s")
    result.rates = report.get("rates", [])
    if "error" in report:
        result.note = f"unavailable: {report['error']}"
    elif not result.rates:
        result.note = f"unavailable: child process exited with code {child.returncode}"
    return result


def print_row(result: Result, baseline: float | None) -> None:
    if not result.rates:
        print(f"  {result.variant:<20} {result.note}", flush=True)
        return
    median = statistics.median(result.rates)
    ratio = f"{median / baseline:6.2f}x" if baseline else ""
    compile_s = f"{result.compile_s:9.1f}" if result.compile_s is not None else ""
    print(
        f"  {result.variant:<20} {median:9.1f} {min(result.rates):9.1f} "
        f"{max(result.rates):9.1f} {ratio:>8} {compile_s}",
        flush=True,
    )


def print_header(title: str) -> None:
    print(f"\n{title}")
    print(f"  {'variant':<20} {'median':>9} {'min':>9} {'max':>9} {'vs fp32':>8} {'compile s':>9}")


def write_csv(path: str, results: list[Result], baselines: dict[str, float]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "section",
                "variant",
                "unit",
                "median",
                "min",
                "max",
                "ratio_vs_fp32",
                "compile_s",
                "note",
            ]
        )
        for r in results:
            median = statistics.median(r.rates) if r.rates else None
            writer.writerow(
                [
                    r.section,
                    r.variant,
                    r.unit,
                    f"{median:.2f}" if median is not None else "",
                    f"{min(r.rates):.2f}" if r.rates else "",
                    f"{max(r.rates):.2f}" if r.rates else "",
                    f"{median / baselines[r.section]:.3f}" if median is not None else "",
                    f"{r.compile_s:.2f}" if r.compile_s is not None else "",
                    r.note,
                ]
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ae_smoke.yaml")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--batch-size", type=int, help=f"training batch (default {FULL['batch_size']})"
    )
    parser.add_argument(
        "--encode-batch-size",
        type=int,
        help=f"encoding batch (default {FULL['encode_batch_size']})",
    )
    parser.add_argument(
        "--steps", type=int, help=f"steps per timed repeat (default {FULL['steps']})"
    )
    parser.add_argument("--repeats", type=int, help=f"timed repeats (default {FULL['repeats']})")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the repeats")
    parser.add_argument(
        "--compile-timeout",
        type=float,
        help=f"seconds allowed for each compile; 0 skips compiled variants (default {FULL['compile_timeout']})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: torch's choice); on a CPU shared with other "
        "jobs fewer threads than cores avoids threads waiting on each other",
    )
    parser.add_argument(
        "--bf16-rows",
        action="store_true",
        help="time the bf16 variants even where the hardware emulates bf16 (40-100× slower)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print where one training step spends its time"
    )
    parser.add_argument("--quick", action="store_true", help=f"tiny settings {QUICK}")
    parser.add_argument("--csv", help="also write the rows to this CSV file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one compiled variant
    args = parser.parse_args()
    defaults = dict(QUICK if args.quick else FULL)
    if args.config == "demo" and not args.quick:
        from framecast.demo import SIZES

        defaults["batch_size"] = SIZES["full"]["ae_batch"]
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads is None:
        args.threads = torch.get_num_threads()
    return args


def main() -> None:
    args = parse_args()
    config = load_benchmark_config(args.config)
    if config.model.kind != "autoencoder":
        sys.exit(f"{args.config}: model.kind is {config.model.kind!r}, not 'autoencoder'")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.child:
        child_main(args, config, device)
        return

    model = Autoencoder.from_config(config.model, config.data.image_size)
    print(
        f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} (other jobs skew "
        "the figures)"
        + (f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
    )
    support = bf16_support(device)
    bf16_rows = support.native or args.bf16_rows
    print(
        f"hardware class: {support.hardware}; bf16 {'native' if support.native else 'not native'}"
        f": {support.reason}"
        + ("" if bf16_rows else "; bf16 variants left out (--bf16-rows times them anyway)")
    )
    size = config.data.image_size
    print(
        f"model: {args.config}, {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{size}x{size}x{config.model.image_channels} frames; device {device}; "
        f"{args.warmup} warm-up step(s), then {args.repeats} repeats x {args.steps} step(s)"
    )

    results: list[Result] = []
    baselines: dict[str, float] = {}

    def record(result: Result) -> None:
        if result.variant == "fp32" and result.rates:
            baselines[result.section] = statistics.median(result.rates)
        results.append(result)
        print_row(result, baselines.get(result.section))

    print_header(f"training (samples/s, batch {args.batch_size})")
    for variant in TRAIN_VARIANTS:
        if variant.bf16 and not bf16_rows:
            continue
        if variant.compiled:
            record(run_compiled(variant, args))
        else:
            step = train_step(config, variant, device, args.batch_size)
            rates = measure(step, device, args, args.batch_size)
            record(Result("train", "samples/s", variant.name, rates))

    print_header(f"encoding (frames/s, batch {args.encode_batch_size})")
    for variant in ENCODE_VARIANTS:
        if variant.bf16 and not bf16_rows:
            continue
        step = encode_step(config, variant, device, args.encode_batch_size)
        rates = measure(step, device, args, args.encode_batch_size)
        record(Result("encode", "frames/s", variant.name, rates))

    if args.profile:
        profile_step(config, device, args.batch_size, support.native)

    if args.csv:
        write_csv(args.csv, results, baselines)
        print(f"\nwrote {args.csv}")


if __name__ == "__main__":
    main()
