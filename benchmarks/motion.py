"""Motion-correction LSTM latency: torch eager vs onnxruntime, in one run.

Latency per call at batch 1 and sequence 10 (what the web page does every frame): p50 and
p99 over ``--calls`` calls after a warm-up. Throughput at batch ``--batch`` (windows/s,
median of repeats). Both on the same exported model and the same inputs.

Without ``--run`` a short run of configs/motion_lstm.yaml on synthetic sessions is trained
first (latency does not depend on how well it is trained).

    .venv/bin/python benchmarks/motion.py [--run runs/motion] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def latencies(fn: Callable[[], object], calls: int, warmup: int = 20) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out * 1000.0  # ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained motion run (default: train a short one)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs")
    args = parser.parse_args()
    calls, repeats = (50, 3) if args.quick else (args.calls, args.repeats)

    import onnxruntime as ort

    from framecast.config import apply_overrides, validate_config
    from framecast.config.loader import read_yaml
    from framecast.export.onnx import INPUT_NAME, export_onnx, load_motion_model
    from framecast.training.engine import train

    tmp = Path(tempfile.mkdtemp(prefix="motion-bench-"))
    run = args.run
    if run is None:
        path = Path(__file__).resolve().parents[1] / "configs" / "motion_lstm.yaml"
        raw = apply_overrides(
            read_yaml(path),
            [
                "training.max_steps=20",
                "training.val_every_n_steps=20",
                "logging.tensorboard=false",
                "logging.progress_bar=false",
            ],
        )
        run = train(
            validate_config(raw, str(path)), runs_dir=tmp, run_name="motion", progress=False
        ).run_dir
    exported = export_onnx(run, tmp / "motion.onnx")
    model, cfg, _ = load_motion_model(run)
    session = ort.InferenceSession(str(exported.onnx_path), providers=["CPUExecutionProvider"])
    t = cfg.sequence_length

    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} "
        f"(threads {torch.get_num_threads()}), onnxruntime {ort.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"model: {exported.checkpoint}; ONNX parity max abs diff {exported.max_diff:.2e}")
    window = np.random.default_rng(0).normal(size=(1, t, 12)).astype(np.float32)
    window_t = torch.from_numpy(window)

    def eager():
        with torch.inference_mode():
            model(window_t)

    def onnx():
        session.run(None, {INPUT_NAME: window})

    print(f"\nlatency per call, batch 1, sequence {t}, {calls} calls (ms)")
    print(f"{'runtime':12} {'p50':>8} {'p99':>8} {'mean':>8}")
    rows = {}
    for name, fn in (("torch eager", eager), ("onnxruntime", onnx)):
        ms = latencies(fn, calls)
        rows[name] = ms
        print(
            f"{name:12} {np.percentile(ms, 50):8.3f} {np.percentile(ms, 99):8.3f} {ms.mean():8.3f}"
        )
    ratio = np.percentile(rows["torch eager"], 50) / np.percentile(rows["onnxruntime"], 50)
    print(f"p50 ratio torch / onnxruntime: {ratio:.2f}")

    batch = np.random.default_rng(1).normal(size=(args.batch, t, 12)).astype(np.float32)
    batch_t = torch.from_numpy(batch)

    def eager_batch():
        with torch.inference_mode():
            model(batch_t)

    def onnx_batch():
        session.run(None, {INPUT_NAME: batch})

    print(f"\nthroughput at batch {args.batch} (windows/s, median of {repeats})")
    for name, fn in (("torch eager", eager_batch), ("onnxruntime", onnx_batch)):
        ms = latencies(fn, repeats, warmup=3)
        print(f"{name:12} {args.batch / (statistics.median(ms) / 1000):10.0f}")


if __name__ == "__main__":
    main()
