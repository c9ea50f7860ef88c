"""ONNX export of a motion run: one file + JSON, dynamic axes, parity with torch, errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from framecast.cli import main
from framecast.data.motion import FEATURE_NAMES
from framecast.errors import CheckpointError, ExportError
from framecast.export import export_onnx
from framecast.export.onnx import load_motion_model

onnxruntime = pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
_RUNS: dict[str, Path] = {}


@pytest.fixture
def motion_run(shrink, tmp_path_factory) -> Path:
    """configs/motion_lstm.yaml shrunk to 2 steps on the tiny session file (trained once)."""
    if "run" not in _RUNS:
        from framecast.training.engine import train

        runs = tmp_path_factory.mktemp("onnx_motion_runs")
        config = shrink(REPO / "configs" / "motion_lstm.yaml", runs, max_steps=2)
        _RUNS["run"] = train(config, runs_dir=runs, run_name="motion", progress=False).run_dir
    return _RUNS["run"]


def _session(path: Path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_one_file_and_json_with_parity(motion_run, tmp_path):
    out = tmp_path / "motion_correction.onnx"
    result = export_onnx(motion_run, out)
    assert out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "motion_correction.json",
        "motion_correction.onnx",
    ]
    assert result.checked and result.windows_checked > 0
    assert result.max_diff <= 1e-4
    assert any(k.startswith("synthetic") for k in result.max_abs_diff)
    assert any("b1 " in k for k in result.max_abs_diff)
    assert "max abs diff" in result.format()

    meta = json.loads((tmp_path / "motion_correction.json").read_text())
    model, cfg, _ = load_motion_model(motion_run)
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["sequence_length"] == cfg.sequence_length
    assert meta["target"] == cfg.target
    assert meta["input"]["name"] == "input" and meta["output"]["name"] == "output"
    assert meta["input"]["shape"] == ["batch_size", "sequence_length", 12]
    assert meta["opset"] == 12  # the users' guide: opset_version=12
    np.testing.assert_allclose(meta["normalisation"]["mean"], model.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(meta["normalisation"]["std"], model.std.numpy(), rtol=1e-6)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("length", [5, 10, 13])
def test_dynamic_batch_and_sequence_axes(motion_run, tmp_path, batch, length):
    out = tmp_path / "m.onnx"
    export_onnx(motion_run, out, check=False)
    session = _session(out)
    [inp], [outp] = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name) == ("input", "output")
    model, _, _ = load_motion_model(motion_run)
    rng = np.random.default_rng(batch * 100 + length)
    x = (model.mean.numpy() + model.std.numpy() * rng.normal(size=(batch, length, 12))).astype(
        np.float32
    )
    (got,) = session.run(["output"], {"input": x})
    assert got.shape == (batch, 12) and got.dtype == np.float32
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4


def test_tolerance_breach_raises_and_writes_nothing(motion_run, tmp_path, monkeypatch):
    import framecast.export.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "_max_abs_diff", lambda session, model, windows: 3e-4)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="above the tolerance"):
        export_onnx(motion_run, out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_non_motion_run_is_refused(tiny_autoencoder_run, tmp_path):
    with pytest.raises(CheckpointError, match="expected a 'motion' model"):
        export_onnx(tiny_autoencoder_run, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_bad_output_name_and_tolerance(motion_run, tmp_path):
    with pytest.raises(ExportError, match=r"\.onnx"):
        export_onnx(motion_run, tmp_path / "m.bin")
    with pytest.raises(ExportError, match="tolerance"):
        export_onnx(motion_run, tmp_path / "m.onnx", tolerance=-1.0)


def test_cli_round_trip(motion_run, tmp_path, capsys):
    out = tmp_path / "cli" / "motion_correction.onnx"
    code = main(["export", "onnx", "--run", str(motion_run), "--out", str(out), "--which", "last"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and str(out) in printed
    assert out.is_file() and out.with_suffix(".json").is_file()
    x = np.zeros((1, 10, 12), np.float32)
    assert _session(out).run(None, {"input": x})[0].shape == (1, 12)
    # framecast's earlier names stay available for pages written against them
    legacy = tmp_path / "legacy.onnx"
    argv = ["export", "onnx", "--run", str(motion_run), "--out", str(legacy), "--no-check"]
    assert main([*argv, "--input-name", "window", "--output-name", "prediction"]) == 0
    (inp,), (outp,) = _session(legacy).get_inputs(), _session(legacy).get_outputs()
    assert (inp.name, outp.name) == ("window", "prediction")
    assert json.loads(legacy.with_suffix(".json").read_text())["input"]["name"] == "window"


def test_cli_non_motion_run_exits_2(tiny_autoencoder_run, tmp_path, capsys):
    code = main(
        ["export", "onnx", "--run", str(tiny_autoencoder_run), "--out", str(tmp_path / "m.onnx")]
    )
    assert code == 2
    assert "motion" in capsys.readouterr().err


def test_users_guide_test_onnx_call(motion_run, tmp_path):
    """The users' test_onnx.py: their guide exports with input_names=['input'],
    output_names=['output'], dynamic axes batch_size/sequence_length, and runs this call."""
    out = tmp_path / "motion_correction.onnx"
    export_onnx(motion_run, out)
    session = _session(out)
    [inp], [outp] = session.get_inputs(), session.get_outputs()
    assert inp.shape == ["batch_size", "sequence_length", 12]
    assert outp.name == "output" and outp.shape == ["batch_size", 12]
    # their exact call, with the float32 cast: np.random.randn gives float64
    outputs = session.run(None, {"input": np.random.randn(1, 10, 12).astype(np.float32)})
    assert len(outputs) == 1 and outputs[0].shape == (1, 12) and outputs[0].dtype == np.float32
    assert np.isfinite(outputs[0]).all()
    # without the cast onnxruntime refuses float64 with this message (documented in the
    # README and export/onnx.py: one ONNX input has one type, and the browser sends float32)
    with pytest.raises(Exception, match=r"Unexpected input data type.*tensor\(double\)"):
        session.run(None, {"input": np.random.randn(1, 10, 12)})


@pytest.mark.parametrize("opset", [11, 12, 17])
def test_opset_is_selectable_and_runs(motion_run, tmp_path, opset):
    import onnx

    out = tmp_path / f"m{opset}.onnx"
    result = export_onnx(motion_run, out, opset=opset)
    assert result.max_diff <= 1e-4
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    (got,) = _session(out).run(None, {"input": np.zeros((2, 10, 12), np.float32)})
    assert got.shape == (2, 12)


def test_opset_below_11_is_refused_clearly(motion_run, tmp_path):
    with pytest.raises(ExportError, match="cannot write this LSTM graph below opset 11"):
        export_onnx(motion_run, tmp_path / "m.onnx", opset=10)
    with pytest.raises(ExportError, match="two different non-empty names"):
        export_onnx(motion_run, tmp_path / "m.onnx", input_name="x", output_name="x")
    assert not list(tmp_path.iterdir())
