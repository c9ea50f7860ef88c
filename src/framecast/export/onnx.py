"""Export a motion run to ONNX and check it in onnxruntime against torch.

One ``.onnx`` file with the names, axes and opset of the users' export guide: input
``input`` (batch_size, sequence_length, 12) float32 in the users' units, output ``output``
(batch_size, 12) in the same units; batch and sequence axes are dynamic, so their
``session.run(None, {'input': x})`` works unchanged. The names are selectable
(``input_name``/``output_name``; framecast's earlier ``window``/``prediction`` for pages
written against those). The default opset is the guide's, 12; 11 is the lowest at which
torch's exporter writes this graph (the LSTM and the per-feature reshapes fail at 10 and
below); onnxruntime (Python) and onnxruntime-web 1.30 (WASM, the page in ``web/``) run
opsets 11–18.

The input is float32: onnxruntime refuses a float64 array (``np.random.randn(...)``
without ``.astype(np.float32)``) with ``INVALID_ARGUMENT: Unexpected input data type``,
and one ONNX input has one type, so a float64 graph would refuse the browser's
``Float32Array`` instead. Cast in Python.

Normalisation is part of the graph (the model's ``mean``/``std`` buffers); it is also
written to ``<out stem>.json`` beside the model with the feature names, the training
``sequence_length`` and ``target``, for the web page and ``web/motion-corrector.js``.

Parity: onnxruntime and torch run on random windows (several batch sizes and sequence
lengths, batch 1 and sequence lengths other than the trained one included) and on real
windows of synthetic sessions; the largest absolute difference is reported, and an
:class:`ExportError` is raised when it is above ``tolerance``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framecast.checkpoint import model_state_dict, read_checkpoint, resolve_checkpoint
from framecast.errors import ExportError
from framecast.utils import atomic_path, atomic_write_text

# The users' export guide's names (input_names=['input'], output_names=['output']) and
# dynamic axis names; framecast's earlier names are LEGACY_NAMES.
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_AXIS = "batch_size"
SEQUENCE_AXIS = "sequence_length"
LEGACY_NAMES = ("window", "prediction")
# The users' export guide (document 003) exports at opset_version=12. The lowest opset
# torch's exporter writes this graph at is 11; onnxruntime-web 1.30 runs 11-18 (measured in
# tests/web and by the opset loop in tests/export/test_onnx.py).
DEFAULT_OPSET = 12
MIN_OPSET = 11
# (batch, sequence length) of the random parity windows; 0 stands for the trained length.
RANDOM_SHAPES = ((1, 0), (7, 0), (1, 5), (7, 5), (3, 13), (16, 1), (2, 32))


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how closely onnxruntime matches torch."""

    onnx_path: Path
    json_path: Path
    checkpoint: Path
    opset: int
    input_name: str
    output_name: str
    sequence_length: int
    target: str
    tolerance: float
    checked: bool
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    windows_checked: int = 0

    @property
    def max_diff(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)

    def format(self) -> str:
        size_kb = self.onnx_path.stat().st_size / 1024 if self.onnx_path.exists() else 0.0
        lines = [
            f"exported {self.checkpoint} -> {self.onnx_path} ({size_kb:.1f} KiB, opset {self.opset})",
            f"  input '{self.input_name}' ({BATCH_AXIS}, {SEQUENCE_AXIS}, 12) float32, output "
            f"'{self.output_name}' ({BATCH_AXIS}, 12); trained sequence_length "
            f"{self.sequence_length}, target {self.target}",
            f"  normalisation and feature names: {self.json_path}",
        ]
        if self.checked:
            parts = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
            lines.append(
                f"  parity onnxruntime vs torch on {self.windows_checked} windows: max abs diff "
                f"{self.max_diff:.2e} (tolerance {self.tolerance:.0e}; {parts})"
            )
        else:
            lines.append("  parity not checked (--no-check)")
        return "\n".join(lines)


def load_motion_model(run: str | os.PathLike, which: str = "best"):
    """The motion model of a run (or checkpoint file) in eval mode, its config and file."""
    from framecast.config import validate_config
    from framecast.models.motion_lstm import MotionLSTM

    path = resolve_checkpoint(run, which)
    ckpt = read_checkpoint(path, expected_kind="motion")
    config = validate_config(ckpt["framecast"]["config"], str(path))
    model = MotionLSTM.from_config(config.model)
    model.load_state_dict(model_state_dict(ckpt))
    return model.eval(), config.model, path


def _session(onnx_path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def _max_abs_diff(session, model, windows: np.ndarray) -> float:
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    (got,) = session.run([out.name], {inp.name: windows})
    with torch.no_grad():
        want = model(torch.from_numpy(windows)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"onnxruntime output shape {got.shape}; torch gives {want.shape}")
    return float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())


def check_parity(
    onnx_path: Path, model, sequence_length: int, target: str, seed: int = 0
) -> tuple[dict[str, float], int]:
    """Largest |onnxruntime − torch| per case; random windows are drawn in the model's units
    (mean ± 3 std), real ones from synthetic sessions."""
    from framecast.data.motion import stack_windows, synthetic_sessions

    session = _session(onnx_path)
    rng = np.random.default_rng(seed)
    mean = model.mean.numpy()
    std = model.std.numpy()
    diffs: dict[str, float] = {}
    count = 0
    for batch, length in RANDOM_SHAPES:
        length = length or sequence_length
        windows = mean + std * rng.normal(0.0, 1.5, size=(batch, length, mean.size))
        diffs[f"random b{batch} T{length}"] = _max_abs_diff(session, model, windows)
        count += batch
    sessions = synthetic_sessions(4, length=max(40, 4 * sequence_length), seed=seed + 1)
    real, _ = stack_windows(sessions, sequence_length, target)
    diffs[f"synthetic b{len(real)} T{sequence_length}"] = _max_abs_diff(session, model, real)
    diffs[f"synthetic b1 T{sequence_length}"] = _max_abs_diff(session, model, real[:1])
    count += len(real) + 1
    return diffs, count


def export_onnx(
    run: str | os.PathLike,
    out: str | os.PathLike,
    which: str = "best",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    tolerance: float = 1e-4,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
) -> ExportResult:
    """Export a motion run's model to ``out`` (ONNX) and ``<out stem>.json``; check parity.

    Raises :class:`~framecast.errors.CheckpointError` for a run of another model kind and
    :class:`~framecast.errors.ExportError` for an opset below 11 or one the exporter cannot
    write, bad names, or when onnxruntime differs from torch by more than ``tolerance``.
    """
    from framecast.data.motion import FEATURE_NAMES

    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"output {out}: expected a file name ending in .onnx")
    if not tolerance >= 0:
        raise ExportError(f"tolerance {tolerance}: expected a number >= 0")
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset}: torch's exporter cannot write this LSTM graph below opset "
            f"{MIN_OPSET}; use --opset {MIN_OPSET} or higher (onnxruntime-web runs 11-18)"
        )
    if not input_name or not output_name or input_name == output_name:
        raise ExportError(
            f"input name {input_name!r}, output name {output_name!r}: expected two different "
            "non-empty names"
        )
    model, cfg, checkpoint = load_motion_model(run, which)
    json_path = out.with_suffix(".json")
    example = model.mean.expand(2, cfg.sequence_length, -1).contiguous()

    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            # The TorchScript exporter warns about LSTMs and batch sizes; batch and
            # sequence axes are checked below at several sizes.
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    input_names=[input_name],
                    output_names=[output_name],
                    dynamic_axes={
                        input_name: {0: BATCH_AXIS, 1: SEQUENCE_AXIS},
                        output_name: {0: BATCH_AXIS},
                    },
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
            except (torch.onnx.errors.OnnxExporterError, RuntimeError, ValueError) as exc:
                raise ExportError(
                    f"ONNX export of {checkpoint} at opset {opset} failed: {exc}"
                ) from None
        import onnx

        onnx.checker.check_model(str(tmp))
        result = ExportResult(
            onnx_path=out,
            json_path=json_path,
            checkpoint=checkpoint,
            opset=opset,
            input_name=input_name,
            output_name=output_name,
            sequence_length=cfg.sequence_length,
            target=cfg.target,
            tolerance=tolerance,
            checked=check,
        )
        if check:
            result.max_abs_diff, result.windows_checked = check_parity(
                tmp, model, cfg.sequence_length, cfg.target
            )
            if not result.max_diff <= tolerance:  # NaN fails too
                worst = max(result.max_abs_diff, key=result.max_abs_diff.get)
                raise ExportError(
                    f"ONNX export of {checkpoint}: onnxruntime differs from torch by "
                    f"{result.max_diff:.3e} ({worst}), above the tolerance {tolerance:.0e}; "
                    f"{out} was not written"
                )

    meta: dict[str, Any] = {
        "format": "framecast-motion-onnx",
        "model": out.name,
        "input": {
            "name": input_name,
            "shape": [BATCH_AXIS, SEQUENCE_AXIS, len(FEATURE_NAMES)],
        },
        "output": {"name": output_name, "shape": [BATCH_AXIS, len(FEATURE_NAMES)]},
        "dtype": "float32",
        "feature_names": list(FEATURE_NAMES),
        "sequence_length": cfg.sequence_length,
        "target": cfg.target,
        "normalisation": {
            "mean": model.mean.tolist(),
            "std": model.std.tolist(),
            "in_graph": True,
        },
        "opset": opset,
        "checkpoint": str(checkpoint),
        "parity_max_abs_diff": result.max_diff if check else None,
    }
    atomic_write_text(json_path, json.dumps(meta, indent=2) + "\n")
    return result
