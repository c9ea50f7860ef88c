"""RIVER stage speed next to the official RIVER regressor, interleaved in one process.

What it times, at each size of ``--sizes`` (tiny: depth 2, mid 1, width 256; paper: depth
4, mid 5, width 768; both 8 heads, state 4×8×8, batch ``--batch-size`` clips of 10 latents):

- **training step**: the same step around every regressor (RIVER's frame draw, t ~ U[0, 1],
  x_t and u on the path, the model call, MSE, backward, AdamW) for the official RIVER
  regressor (fp32 as RIVER trains, and under bf16 autocast) and for ours, with one lever
  added per row: bf16 autocast, AdamW ``fused=True``, ``torch.compile`` (``--compile``);
- **EMA update** of the weights: a loop over parameters (what Lightning's
  ``EMAWeightAveraging`` does with its ``avg_fn``) against ``torch._foreach_lerp_``
  (``multi_avg_fn``);
- **sampling call**: one eval-mode velocity evaluation (no grad) in fp32, under bf16
  autocast, with bf16 weights, and compiled.

Rows follow the hardware (framecast.hardware, the rule of ``precision: auto``): where bf16 is
not native (an AVX2 CPU, a V100) the bf16 rows are left out unless ``--bf16-rows`` asks for
them, since there they time an emulation 40-100× slower than fp32; the run prints the
hardware class it found. The row marked ``<- what training runs`` is what ``framecast
train`` does on this machine with ``precision: auto``.

All rows of a size run in turn within each round (``--repeats`` rounds), so load on the
machine hits them alike; the tables give medians and the ratio to the official RIVER in
fp32. In the same rounds a large matmul measures the machine's bf16 and fp32 rates, and
each step's FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
attention: what MFU counts), so every row also prints the fraction of the measured matmul
rate of its own precision it reaches. On CUDA the same rows print MFU against the GPU's dense bf16 peak (H100 and
H200 989 TFLOP/s, A100 312; ``--peak-tflops`` for others).

The official RIVER code is never shipped with framecast: ``--against-river DIR`` names a
checkout of https://github.com/Araachie/river (commit 9ecde33 measured), whose
``model/vector_field_regressor.py`` is imported from there. Without it, ours is timed alone.

    .venv/bin/python benchmarks/river_speed.py --against-river ../river [--sizes tiny,paper]
        [--compile] [--device cuda --batch-size 256] [--repeats 7]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import get_ema_avg_fn, get_ema_multi_avg_fn
from torch.utils.flop_counter import FlopCounterMode

from framecast.flow.path import CondOTPath
from framecast.hardware import bf16_support
from framecast.losses.flow import sample_river_indices
from framecast.models import river as river_module
from framecast.models.river import VectorFieldRegressor

SIZES = {
    "tiny": {"depth": 2, "mid_depth": 1, "inner_dim": 256},
    "paper": {"depth": 4, "mid_depth": 5, "inner_dim": 768},
}
STATE_SIZE, STATE_RES, NUM_FRAMES, HEADS = 4, (8, 8), 10, 8
# Dense bf16 peaks (TFLOP/s, no sparsity) by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
EMA_DECAY = 0.999


def load_official_regressor(directory: str) -> type[nn.Module]:
    """The ``VectorFieldRegressor`` class of a RIVER checkout at ``directory``.

    ``model/__init__.py`` of RIVER imports the whole model (VQGAN, tqdm, torchdiffeq); a bare
    package object for ``model`` lets ``model.vector_field_regressor`` load with only what it
    needs (einops, and PyYAML through ``lutils``).
    """
    root = Path(directory).resolve()
    source = root / "model" / "vector_field_regressor.py"
    if not source.is_file():
        raise SystemExit(
            f"--against-river {directory}: no {source.relative_to(root)} there; expected a "
            "checkout of https://github.com/Araachie/river"
        )
    sys.path.insert(0, str(root))
    package = types.ModuleType("model")
    package.__path__ = [str(root / "model")]
    sys.modules.setdefault("model", package)
    try:
        module = importlib.import_module("model.vector_field_regressor")
    except ImportError as exc:
        raise SystemExit(
            f"--against-river {directory}: importing RIVER's regressor: {exc}"
        ) from None
    return module.VectorFieldRegressor


@dataclass
class Row:
    """One timed setting: ``run`` does one step; times are seconds per step."""

    name: str
    run: Callable[[], None]
    flops: float
    bf16: bool
    baseline: bool = False
    times: list[float] = field(default_factory=list)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, calls: int = 1) -> float:
    """Seconds per call of ``fn``, over ``calls`` back-to-back calls (a GPU queues them)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def matmul_rate_rows(device: torch.device, n: int, bf16: bool = True) -> list[Row]:
    """Rows that time one n×n×n matmul in fp32 and (``bf16``) bf16 (2n³ FLOPs each)."""
    rows = []
    dtypes = ((torch.bfloat16, "bf16"),) if bf16 else ()
    for dtype, label in (*dtypes, (torch.float32, "fp32")):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        rows.append(
            Row(f"matmul {n}³ {label}", lambda a=a, b=b: a @ b, 2.0 * n**3, label == "bf16")
        )
    return rows


def step_flops(step: Callable[[], None]) -> float:
    """FLOPs of one call of ``step`` as FlopCounterMode counts them (matmuls, attention)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    latents: torch.Tensor,
    path: CondOTPath,
    bf16: bool,
    use_compile: bool = False,
) -> Callable[[], None]:
    """One training step on (B, N, C, h, w) ``latents``, the same around every regressor."""
    batch, num_frames = latents.shape[:2]
    rows = torch.arange(batch, device=latents.device)
    device_type = latents.device.type

    def step() -> None:
        if isinstance(model, VectorFieldRegressor):
            model.use_compile = use_compile
        target, reference, context = (
            i.to(latents.device) for i in sample_river_indices(num_frames, 1, batch)
        )
        z_target = latents[rows, target]
        sample = path.sample(
            z_target, torch.rand(batch, device=latents.device), torch.randn_like(z_target)
        )
        tau = (reference - context).float()  # RIVER takes log(tau) of it directly
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            velocity = model(
                sample.x_t, latents[rows, reference], latents[rows, context], tau, sample.t
            )
        loss = F.mse_loss(velocity.float(), sample.u)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def make_sampling_call(
    model: nn.Module, latents: torch.Tensor, bf16: str, use_compile: bool = False
) -> Callable[[], None]:
    """One eval-mode velocity evaluation; ``bf16``: "" (fp32), "autocast" or "weights"."""
    batch = latents.shape[0]
    x, ref, ctx = latents[:, 2], latents[:, 1], latents[:, 0]
    tau, t = torch.ones(batch, device=latents.device), torch.full((batch,), 0.5, device=x.device)
    if bf16 == "weights":
        x, ref, ctx = (v.to(torch.bfloat16) for v in (x, ref, ctx))

    @torch.no_grad()
    def call() -> None:
        if isinstance(model, VectorFieldRegressor):
            model.use_compile = use_compile
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16 == "autocast"):
            model(x, ref, ctx, tau, t).float()

    return call


def make_ema_update(model: nn.Module, fused: bool) -> tuple[Callable[[], None], list[torch.Tensor]]:
    """One EMA update of a copy of ``model``'s parameters: per parameter or with _foreach.

    Returns the update and the averaged copies it updates.
    """
    params = list(model.parameters())
    averaged = [p.detach().clone() for p in params]
    avg_fn, multi_avg_fn = get_ema_avg_fn(EMA_DECAY), get_ema_multi_avg_fn(EMA_DECAY)
    steps = torch.zeros((), dtype=torch.long)

    @torch.no_grad()
    def update() -> None:
        current = [p.detach() for p in params]
        if fused:
            multi_avg_fn(averaged, current, steps)
        else:
            for avg, p in zip(averaged, current):
                avg.copy_(avg_fn(avg, p, steps))

    return update, averaged


def report_agreement(model: VectorFieldRegressor, latents: torch.Tensor, compiled: bool) -> None:
    """How far bf16 autocast and (``compiled``) torch.compile move the regressor's output
    and, for compile, its gradients, from eager fp32 on the same inputs: differences as a
    fraction of the eager output's (or gradient's) RMS, mean and worst element."""
    model = copy.deepcopy(model)
    batch = latents.shape[0]
    x, ref, ctx = latents[:, 2], latents[:, 1], latents[:, 0]
    tau, t = torch.ones(batch, device=x.device), torch.full((batch,), 0.3, device=x.device)

    def velocity_and_grads(use_compile: bool, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.use_compile = use_compile
        model.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x, ref, ctx, tau, t).float()
        out.square().mean().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return out.detach(), grads

    def differ(a: torch.Tensor, b: torch.Tensor) -> str:
        scale = b.square().mean().sqrt().clamp_min(1e-12)
        diff = (a - b).abs() / scale
        return f"mean {diff.mean():.1e}, worst {diff.max():.1e} of the RMS"

    eager_out, eager_grads = velocity_and_grads(False, False)
    bf16_out, _ = velocity_and_grads(False, True)
    print(f"agreement with eager fp32: bf16 autocast output {differ(bf16_out, eager_out)}")
    if compiled:
        out, grads = velocity_and_grads(True, False)
        print(
            f"agreement with eager fp32: compiled fp32 output {differ(out, eager_out)}; "
            f"gradients {differ(grads, eager_grads)}"
        )


def with_flash(step: Callable[[], None]) -> None:
    """Run ``step`` with the regressor's CPU bf16 training attention on PyTorch's default
    SDPA kernel (flash) instead of the math path it takes there."""
    no_choice = lambda *_: contextlib.nullcontext()  # noqa: E731
    original, river_module.sdpa_kernel = river_module.sdpa_kernel, no_choice
    try:
        step()
    finally:
        river_module.sdpa_kernel = original


def with_math(step: Callable[[], None]) -> None:
    """Run ``step`` with SDPA's math path for attention (fp32 training takes flash)."""
    with river_module.sdpa_kernel(river_module.SDPBackend.MATH):
        step()


def profile_step(size: str, device: torch.device, batch_size: int, bf16: bool) -> None:
    """Where one training step as training runs it (``bf16`` autocast where the hardware
    computes it natively, else fp32; fused AdamW) spends its time: torch.profiler's self
    time grouped into matmuls, attention, dtype copies (autocast's casts), the optimiser
    and the rest, then the top operators."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    latents = torch.randn(batch_size, NUM_FRAMES, STATE_SIZE, *STATE_RES, device=device)
    model = VectorFieldRegressor(STATE_SIZE, STATE_RES, num_heads=HEADS, **SIZES[size]).to(device)
    nn.init.normal_(model.head.weight, std=0.02)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step = make_train_step(model, optimizer, latents, CondOTPath(1e-7), bf16)
    for _ in range(2):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    events = [e for e in prof.key_averages() if e.self_device_time_total or e.self_cpu_time_total]
    on_device = device.type == "cuda"
    self_time = {
        e.key: (e.self_device_time_total if on_device else e.self_cpu_time_total) for e in events
    }
    total = sum(self_time.values())
    groups = {
        "matmul (mm, addmm, bmm)": ("aten::mm", "aten::addmm", "aten::bmm"),
        "attention kernels": ("scaled_dot_product", "_softmax", "flash"),
        "dtype copies (autocast casts)": ("aten::copy_", "aten::_to_copy"),
        "optimiser": ("adamw",),
    }
    precision = "bf16" if bf16 else "fp32"
    print(f"\nprofile of one training step, {size}, batch {batch_size} ({precision} + fused AdamW)")
    counted = 0.0
    for label, keys in groups.items():
        share = sum(t for k, t in self_time.items() if any(key in k for key in keys))
        counted += share
        print(f"  {label:32} {share / total:6.1%}")
    print(f"  {'everything else':32} {(total - counted) / total:6.1%}")
    for key, t in sorted(self_time.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {key[:60]:60} {t / total:6.1%}")


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def build_rows(args, size: str, official: type[nn.Module] | None, device: torch.device):
    """(training rows, EMA rows, sampling rows) of one size.

    ``args.native_bf16``: bf16 is what ``precision: auto`` takes here; ``args.bf16_rows``:
    time bf16 rows at all (native, or asked for).
    """
    dims = SIZES[size]
    torch.manual_seed(0)
    path = CondOTPath(1e-7)
    latents = torch.randn(args.batch_size, NUM_FRAMES, STATE_SIZE, *STATE_RES, device=device)
    ours = VectorFieldRegressor(STATE_SIZE, STATE_RES, num_heads=HEADS, **dims).to(device)
    nn.init.normal_(ours.head.weight, std=0.02)  # a non-zero field: gradients everywhere
    ours_params = sum(p.numel() for p in ours.parameters())
    print(f"\n== {size}: depth {dims['depth']}, mid {dims['mid_depth']}, width {dims['inner_dim']}")
    print(f"framecast regressor {ours_params / 1e6:.2f}M parameters", end="")
    train, ema, sampling = [], [], []

    def train_row(name, model, bf16, fused=False, use_compile=False, baseline=False, wrap=None):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)
        step = make_train_step(model, optimizer, latents, path, bf16, use_compile)
        flops = step_flops(make_train_step(model, optimizer, latents, path, False))
        run = step if wrap is None else lambda: wrap(step)
        train.append(Row(name, run, flops, bf16, baseline))

    bf16_rows, native = args.bf16_rows, args.native_bf16
    runs = "bf16" if native else "fp32"  # what precision: auto trains in here
    if official is not None:
        river = official(
            depth=dims["depth"],
            mid_depth=dims["mid_depth"],
            state_size=STATE_SIZE,
            state_res=STATE_RES,
            inner_dim=dims["inner_dim"],
        ).to(device)
        river_params = sum(p.numel() for p in river.parameters())
        print(
            f", official RIVER {river_params / 1e6:.2f}M "
            f"({100 * (ours_params / river_params - 1):+.1f} %)"
        )
        train_row("RIVER fp32", river, False, baseline=True)
        if bf16_rows:
            train_row("RIVER bf16 autocast", river, True)
    else:
        print()
    mark = "  <- what training runs"
    train_row("framecast fp32", ours, False, baseline=official is None)
    train_row("framecast fp32 + fused AdamW" + ("" if native else mark), ours, False, fused=True)
    if bf16_rows:
        train_row("framecast bf16", ours, True)
        train_row("framecast bf16 + fused AdamW" + (mark if native else ""), ours, True, fused=True)
    if device.type == "cpu":  # the other attention path (bf16: flash, fp32: math)
        other, wrap = ("flash", with_flash) if native else ("math", with_math)
        train_row(f"  same, {other} attention in training", ours, native, fused=True, wrap=wrap)
    if args.compile:
        train_row(f"framecast {runs} + fused AdamW + compile", ours, native, True, True)

    ema.append(Row("EMA per parameter (avg_fn)", make_ema_update(ours, False)[0], 0, False, True))
    ema.append(Row("EMA torch._foreach (multi_avg_fn)", make_ema_update(ours, True)[0], 0, False))

    if args.agreement:
        report_agreement(ours, latents, args.compile)
    ours_eval = copy.deepcopy(ours).eval()
    ours_bf16 = copy.deepcopy(ours).eval().to(torch.bfloat16) if args.bf16_rows else None
    sample_flops = step_flops(make_sampling_call(ours_eval, latents, ""))
    if official is not None:
        river_eval = copy.deepcopy(river).eval()  # RIVER's eval path: PyTorch's fused encoder
        # FlopCounterMode does not see inside that fused kernel: count the same arithmetic on
        # the unfused (training-mode) path.
        river_flops = step_flops(make_sampling_call(copy.deepcopy(river).train(), latents, ""))
        sampling.append(
            Row(
                "RIVER fp32",
                make_sampling_call(river_eval, latents, ""),
                river_flops,
                False,
                True,
            )
        )
    sampling.append(
        Row(
            "framecast fp32",
            make_sampling_call(ours_eval, latents, ""),
            sample_flops,
            False,
            official is None,
        )
    )
    if bf16_rows:
        sampling.append(
            Row(
                "framecast bf16 autocast",
                make_sampling_call(ours_eval, latents, "autocast"),
                sample_flops,
                True,
            )
        )
        sampling.append(
            Row(
                "framecast bf16 weights",
                make_sampling_call(ours_bf16, latents, "weights"),
                sample_flops,
                True,
            )
        )
    if args.compile:
        sampling.append(
            Row(
                f"framecast {runs}{' autocast' if native else ''} + compile",
                make_sampling_call(
                    ours_eval, latents, "autocast" if native else "", use_compile=True
                ),
                sample_flops,
                native,
            )
        )
    return train, ema, sampling


def report(title: str, rows: list[Row], rates: dict[str, float], peak: float | None) -> None:
    base = next((r for r in rows if r.baseline), rows[0])
    base_median = statistics.median(base.times)
    print(f"\n{title} (median of {len(base.times)} interleaved rounds; × = speed / {base.name})")
    header = f"{'setting':42} {'median s':>9} {'min s':>8} {'max s':>8} {'×':>6}"
    if any(r.flops for r in rows):
        header += f" {'GFLOP':>7} {'GFLOP/s':>8} {'of mm rate':>10}"
        if peak:
            header += f" {'MFU':>6}"
    print(header)
    for row in rows:
        median = statistics.median(row.times)
        line = (
            f"{row.name:42} {median:9.4f} {min(row.times):8.4f} {max(row.times):8.4f} "
            f"{base_median / median:6.2f}"
        )
        if row.flops:
            achieved = row.flops / median / 1e9
            rate = rates["bf16" if row.bf16 else "fp32"]  # the matmul rate of its precision
            line += f" {row.flops / 1e9:7.2f} {achieved:8.1f} {achieved / rate:10.1%}"
            if peak:
                line += f" {achieved / (peak * 1e3):6.1%}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against-river", metavar="DIR", help="a checkout of Araachie/river")
    parser.add_argument("--sizes", default="tiny,paper", help="comma-separated: tiny, paper")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of every row")
    parser.add_argument(
        "--calls", type=int, default=1, help="calls per timing (GPU: several, queued)"
    )
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--matmul-size", type=int, default=None, help="default 2048 CPU, 8192 GPU")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak for MFU (GPU)")
    parser.add_argument("--sections", default="train,ema,sample", help="which tables")
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="print how far bf16 autocast and compile (with --compile) move outputs and "
        "gradients from eager fp32",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print where one training step as training runs it (bf16 where native, "
        "else fp32; fused AdamW) spends its time",
    )
    parser.add_argument(
        "--bf16-rows",
        action="store_true",
        help="time the bf16 rows even where the hardware emulates bf16 (40-100× slower)",
    )
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; allowed: {', '.join(SIZES)}")
    sections = set(args.sections.split(","))
    official = load_official_regressor(args.against_river) if args.against_river else None
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"machine: {where}; torch {torch.__version__}; load average {os.getloadavg()[0]:.2f} "
        "(a shared machine: read the ratios, not the absolute times)"
    )
    support = bf16_support(device)
    args.native_bf16 = support.native
    args.bf16_rows = args.bf16_rows or support.native
    capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else None
    print(
        f"hardware class: {support.hardware}"
        + (f" (ATen capability {capability})" if capability else "")
        + f"; bf16 {'native' if support.native else 'not native'}: {support.reason}"
    )
    if not args.bf16_rows:
        print("bf16 rows left out (emulated here); --bf16-rows times them anyway")
    if official is None:
        print("no RIVER checkout given (--against-river DIR): timing framecast alone")
    else:
        print(f"official RIVER regressor from {args.against_river}")
    peak = peak_tflops(device, args.peak_tflops)
    if device.type == "cuda":
        print(
            f"bf16 peak {peak or 'unknown (pass --peak-tflops)'} TFLOP/s; SDPA flash "
            f"{torch.backends.cuda.flash_sdp_enabled()}, memory-efficient "
            f"{torch.backends.cuda.mem_efficient_sdp_enabled()}"
        )

    matmul_n = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    for size in sizes:
        train, ema, sampling = build_rows(args, size, official, device)
        matmul = matmul_rate_rows(device, matmul_n, bf16=args.bf16_rows)
        groups = [matmul]
        groups += [train] if "train" in sections else []
        groups += [ema] if "ema" in sections else []
        groups += [sampling] if "sample" in sections else []
        start = time.perf_counter()
        for group in groups:
            for row in group:
                for _ in range(args.warmup):
                    row.run()
        print(f"warm-up (incl. any compiling) {time.perf_counter() - start:.1f} s")
        for _ in range(args.repeats):
            for group in groups:
                for row in group:
                    row.times.append(timed(row.run, device, args.calls))
        rates = {
            ("bf16" if r.bf16 else "fp32"): r.flops / statistics.median(r.times) / 1e9
            for r in matmul
        }
        print(
            f"measured matmul rate ({matmul_n}³): "
            + ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in rates.items())
            + (f"; bf16 peak {peak * 1e3:.0f} GFLOP/s" if peak else "")
        )
        if "train" in sections:
            report(f"training step, {size}, batch {args.batch_size}", train, rates, peak)
        if "ema" in sections:
            report(f"EMA update, {size}", ema, rates, peak)
        if "sample" in sections:
            report(
                f"one sampling call, {size}, batch {args.batch_size}, eval", sampling, rates, peak
            )
        if args.profile:
            profile_step(size, device, args.batch_size, args.native_bf16)


if __name__ == "__main__":
    main()
