"""Which arithmetic a device runs fast, and the precision a run takes when it says ``auto``.

bf16 is a property of the hardware, not of a config: Intel Xeons with AMX and CPUs with
AVX512-BF16 (AMD Zen 4 and later, Cooper Lake) multiply bf16 2–5× faster than fp32, while
an AVX2-only CPU emulates it about 40–100× *slower* (a user's AVX2 EPYC: 512³ matmul 0.9
vs 61 GFLOP/s). On NVIDIA GPUs bf16 arrives with Ampere (sm80); a V100 (sm70) has none, but
fp16 tensor cores that run about 8× its fp32 rate (125 vs 15.7 TFLOP/s).

Decision, for ``training.precision: auto`` and ``--precision auto``:

- CUDA, compute capability ≥ 8.0: bf16 (``bf16-mixed`` / ``bf16``).
- CUDA below 8.0 with tensor cores (≥ 7.0, V100/T4): ``16-mixed`` for training where the
  model kind supports a loss scaler (one optimiser stepped by Lightning), else ``32``;
  sampling stays fp32 (a velocity evaluation has no loss to scale, and fp16's range is
  not worth the risk for a few calls per frame). Older GPUs: fp32.
- CPU: read the flags torch exposes (ATen's vector capability, AMX tiles, AVX512-BF16).
  AVX512 with AMX or AVX512-BF16: bf16. AVX2 or plain AVX512 without either: fp32. Where
  the flags are unclear (a torch that does not report them, a non-x86 CPU, or flags that
  contradict each other, e.g. ``ATEN_CPU_CAPABILITY``/``ONEDNN_MAX_CPU_ISA`` limiting a
  bf16 CPU) a probe of 10-80 ms times a bf16 and an fp32 matmul; bf16 is taken unless it
  is more than 2× slower (emulation is 40-100× slower, bf16 units 1-5× faster).

Everything reads the hardware through :func:`read_cpu_flags`, :func:`read_gpu_info` and
:func:`probe_matmul`, so tests monkeypatch each branch.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: config validation stays torch-free
    import torch

TRAINING_PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
SAMPLING_PRECISIONS = ("auto", "fp32", "bf16")
# oneDNN's (formerly DNNL's) cap on the instruction sets it uses; a cap hides AMX/AVX512-BF16.
ISA_LIMIT_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# Tensor cores with fp16 (Volta) and with bf16 (Ampere) by CUDA compute capability.
FP16_TENSOR_CORES = (7, 0)
BF16_TENSOR_CORES = (8, 0)
# The probe calls bf16 native when its matmul rate is at least this share of fp32's.
NATIVE_MIN_SPEEDUP = 0.5


@dataclass(frozen=True)
class CpuFlags:
    """What torch reports about this CPU.

    capability: ATen's vector instruction level (``torch.backends.cpu.get_cpu_capability()``:
        ``DEFAULT``, ``AVX2``, ``AVX512`` on x86; other names elsewhere).
    amx, avx512_bf16: the CPU's bf16 units; None where this torch cannot tell.
    isa_limit: ``ONEDNN_MAX_CPU_ISA=...`` (or ``DNNL_MAX_CPU_ISA=...``) when set.
    """

    capability: str
    amx: bool | None
    avx512_bf16: bool | None
    isa_limit: str | None = None

    def describe(self) -> str:
        units = [name for name, on in (("AMX", self.amx), ("AVX512-BF16", self.avx512_bf16)) if on]
        text = f"CPU with {self.capability}"
        text += f" and {' and '.join(units)}" if units else ", no AMX or AVX512-BF16"
        if self.isa_limit:
            text += f" ({self.isa_limit})"
        return text


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device: its name and compute capability (major, minor)."""

    name: str
    capability: tuple[int, int]

    def describe(self) -> str:
        major, minor = self.capability
        return f"{self.name} (sm{major}{minor})"


@dataclass(frozen=True)
class MatmulProbe:
    """Measured matmul rates of one device, GFLOP/s."""

    fp32_gflops: float
    bf16_gflops: float

    @property
    def bf16_speedup(self) -> float:
        """bf16 rate / fp32 rate (> 1: bf16 is faster)."""
        return self.bf16_gflops / self.fp32_gflops

    def describe(self) -> str:
        if self.bf16_speedup >= 1:
            relation = f"{self.bf16_speedup:.1f}× faster"
        else:
            relation = f"{1 / self.bf16_speedup:.0f}× slower"
        return (
            f"measured bf16 matmul {self.bf16_gflops:.3g} GFLOP/s vs fp32 "
            f"{self.fp32_gflops:.3g}: bf16 {relation}"
        )


@dataclass(frozen=True)
class Bf16Support:
    """Whether ``device`` computes bf16 natively, and why we think so.

    hardware: the device in words (its class: ``CPU with AVX2, no AMX or AVX512-BF16``,
        ``NVIDIA H200 (sm90)``); reason: the evidence; probe: the measurement where one
        was taken (flags unclear), else None.
    """

    device_type: str
    native: bool
    hardware: str
    reason: str
    probe: MatmulProbe | None = None
    gpu: GpuInfo | None = None


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses: ``value`` (e.g. ``32``, ``bf16-mixed``; ``fp32``/``bf16``
    for sampling), what was asked for, why, and a warning when an explicit choice is slow
    on this hardware."""

    requested: str
    value: str
    reason: str
    warning: str | None = None

    def describe(self) -> str:
        """One line for the run's output."""
        if self.requested == "auto":
            return f"precision auto -> {self.value}: {self.reason}"
        return f"precision {self.value} (as configured): {self.reason}"


# -- reading the hardware (monkeypatched in tests) -------------------------------------
def read_cpu_flags() -> CpuFlags:
    """This CPU's flags as torch reports them (see :class:`CpuFlags`)."""
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())

    def flag(name: str) -> bool | None:
        probe = getattr(torch.cpu, name, None)  # private helpers; absent in older torch
        if probe is None:
            return None
        try:
            return bool(probe())
        except Exception:  # noqa: BLE001 - an unusable probe is an unknown flag
            return None

    limit = next((f"{v}={os.environ[v]}" for v in ISA_LIMIT_VARIABLES if os.environ.get(v)), None)
    return CpuFlags(
        capability=capability,
        amx=flag("_is_amx_tile_supported"),
        avx512_bf16=flag("_is_avx512_bf16_supported"),
        isa_limit=limit,
    )


def read_gpu_info(index: int) -> GpuInfo:
    """Name and compute capability of CUDA device ``index``."""
    import torch

    return GpuInfo(
        name=torch.cuda.get_device_name(index),
        capability=tuple(torch.cuda.get_device_capability(index)),
    )


def _synchronize(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_matmul(device: torch.device | str = "cpu") -> MatmulProbe:
    """Measure the fp32 and the bf16 matmul rate of ``device``.

    On a CPU: 256³ matmuls on one thread (a second thread would wait on a core another job
    holds, and a loaded machine would then look equally slow in both dtypes), each timing
    at least 2 ms, the best of rounds that alternate the dtypes so that load hits both
    alike; it stops after two rounds once one dtype is 3× the other (emulated bf16 is
    40-100× slower, native 2-5× faster), else after five. About 10 ms where bf16 is
    native, 60-80 ms where it is emulated. On a GPU: 4096³, best of 3. Cached per device
    for the life of the process.
    """
    import torch

    return _probe_matmul_cached(str(torch.device(device)))


@functools.cache
def _probe_matmul_cached(device_name: str) -> MatmulProbe:
    import torch

    device = torch.device(device_name)
    on_gpu = device.type == "cuda"
    size, min_seconds = (4096, 0.0) if on_gpu else (256, 0.002)
    generator = torch.Generator().manual_seed(0)  # the run's own random streams stay untouched
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    operands = {dtype: (a.to(dtype), b.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    flops = 2.0 * size**3

    def rate(dtype) -> float:
        x, y = operands[dtype]
        calls, start = 0, time.perf_counter()
        _synchronize(device)
        while True:
            torch.mm(x, y)
            calls += 1
            _synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return calls * flops / max(elapsed, 1e-9) / 1e9

    threads = torch.get_num_threads()
    if not on_gpu:
        torch.set_num_threads(1)
    try:
        for dtype in operands:  # warm-up: the first call picks kernels and allocates
            torch.mm(*operands[dtype])
        best = dict.fromkeys(operands, 0.0)
        for round_ in range(3 if on_gpu else 5):
            for dtype in operands:
                best[dtype] = max(best[dtype], rate(dtype))
            ratio = best[torch.bfloat16] / best[torch.float32]
            if round_ >= 1 and not 1 / 3 < ratio < 3:
                break
    finally:
        torch.set_num_threads(threads)
    return MatmulProbe(fp32_gflops=best[torch.float32], bf16_gflops=best[torch.bfloat16])


# -- the decision ------------------------------------------------------------------------
def bf16_support(device: torch.device | str = "cpu") -> Bf16Support:
    """Whether ``device`` computes bf16 natively (see the module's docstring for the rule)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return _gpu_bf16_support(read_gpu_info(device.index or 0))
    if device.type != "cpu":
        return Bf16Support(device.type, False, device.type, f"no bf16 rule for {device.type}")
    return _cpu_bf16_support(read_cpu_flags(), device)


def _gpu_bf16_support(gpu: GpuInfo) -> Bf16Support:
    native = gpu.capability >= BF16_TENSOR_CORES
    if native:
        reason = f"{gpu.describe()} has bf16 tensor cores (sm80 and later)"
    else:
        reason = (
            f"{gpu.describe()} has no bf16 (it arrived with sm80; "
            "torch.cuda.is_bf16_supported(including_emulation=False) is False)"
        )
    return Bf16Support("cuda", native, gpu.describe(), reason, gpu=gpu)


def _cpu_bf16_support(flags: CpuFlags, device: torch.device) -> Bf16Support:
    hardware = flags.describe()
    units = bool(flags.amx) or bool(flags.avx512_bf16)
    unclear = None
    if flags.isa_limit:
        unclear = f"{flags.isa_limit} may hide the bf16 units"
    elif flags.amx is None or flags.avx512_bf16 is None:
        unclear = "this torch does not report AMX or AVX512-BF16"
    elif flags.capability not in ("DEFAULT", "AVX2", "AVX512"):
        unclear = f"no flag rule for a {flags.capability} CPU"
    elif units and flags.capability != "AVX512":
        unclear = f"bf16 units but ATen's capability is {flags.capability}"
    if unclear is None:
        if units:
            unit = "AMX" if flags.amx else "AVX512-BF16"
            return Bf16Support("cpu", True, hardware, f"{unit} computes bf16 natively")
        return Bf16Support(
            "cpu", False, hardware, "bf16 would be emulated, 40-100× slower than fp32"
        )
    probe = probe_matmul(device)
    # Emulated bf16 is 40-100× slower than fp32, bf16 units 1-5× faster; a small matmul on
    # a loaded machine can halve either rate, so the line sits between the two classes.
    native = probe.bf16_speedup >= NATIVE_MIN_SPEEDUP
    return Bf16Support("cpu", native, hardware, f"{unclear}; {probe.describe()}", probe=probe)


def resolve_training_precision(
    requested: str, device: torch.device | str = "cpu", fp16_supported: bool = True
) -> PrecisionChoice:
    """The Lightning precision a training run uses on ``device``.

    ``requested`` is ``training.precision``. ``auto`` becomes ``bf16-mixed`` where the
    device computes bf16 natively, ``16-mixed`` on a CUDA GPU with fp16 tensor cores but no
    bf16 when ``fp16_supported`` (the model kind runs under a loss scaler), else ``32``.
    An explicit ``bf16-mixed`` on hardware without native bf16 runs as asked, with a
    warning that gives the measured slowdown.
    """
    if requested not in TRAINING_PRECISIONS:
        raise ValueError(
            f"training precision must be one of {', '.join(TRAINING_PRECISIONS)}, got {requested!r}"
        )
    support = bf16_support(device)
    if requested == "auto":
        if support.native:
            return PrecisionChoice(requested, "bf16-mixed", f"{support.hardware}: {support.reason}")
        gpu = support.gpu
        if gpu is not None and gpu.capability >= FP16_TENSOR_CORES:
            if fp16_supported:
                return PrecisionChoice(
                    requested,
                    "16-mixed",
                    f"{support.reason}; its fp16 tensor cores run about 8× fp32, with loss "
                    "scaling against fp16's narrow range",
                )
            return PrecisionChoice(
                requested,
                "32",
                f"{support.reason}, and this model kind steps its optimisers by hand, "
                "which 16-mixed's loss scaler does not support",
            )
        return PrecisionChoice(requested, "32", f"{support.hardware}: {support.reason}")
    warning = None
    if requested == "bf16-mixed" and not support.native:
        warning = _slow_bf16_warning("training.precision: bf16-mixed", support, device)
    return PrecisionChoice(requested, requested, f"{support.hardware}", warning)


def resolve_sampling_precision(
    requested: str, device: torch.device | str = "cpu"
) -> PrecisionChoice:
    """The arithmetic of a velocity evaluation (``fp32`` or ``bf16``) on ``device``.

    ``auto`` is ``bf16`` where the device computes it natively, else ``fp32``; an explicit
    ``bf16`` on other hardware runs with a warning that gives the measured slowdown.
    """
    if requested not in SAMPLING_PRECISIONS:
        raise ValueError(
            f"sampling precision must be one of {', '.join(SAMPLING_PRECISIONS)}, got {requested!r}"
        )
    support = bf16_support(device)
    if requested == "auto":
        value = "bf16" if support.native else "fp32"
        return PrecisionChoice(requested, value, f"{support.hardware}: {support.reason}")
    warning = None
    if requested == "bf16" and not support.native:
        warning = _slow_bf16_warning("--precision bf16", support, device)
    return PrecisionChoice(requested, requested, f"{support.hardware}", warning)


def _slow_bf16_warning(what: str, support: Bf16Support, device) -> str:
    probe = support.probe or probe_matmul(device)
    return (
        f"{what} on {support.hardware}, which has no native bf16 ({support.reason}); "
        f"{probe.describe()}. It runs as asked; 'auto' picks the fast precision"
    )


@functools.cache
def announce(message: str) -> None:
    """Print ``message`` on stderr once per process (the same choice is not repeated for
    every predictor a script builds)."""
    print(f"framecast: {message}", file=sys.stderr, flush=True)
