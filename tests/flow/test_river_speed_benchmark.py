"""benchmarks/river_speed.py: loading RIVER from a user's checkout, and the measured levers
compute the same thing as what they replace."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from framecast.models.river import VectorFieldRegressor

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "river_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("river_speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture
def clean_imports(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [n for n in sys.modules if n == "model" or n.startswith("model.")]:
        del sys.modules[name]


def test_official_regressor_loads_without_running_rivers_model_package(
    bench, tmp_path, clean_imports
):
    (tmp_path / "model").mkdir()
    # RIVER's model/__init__.py pulls in the VQGAN, tqdm and torchdiffeq: it must not run.
    (tmp_path / "model" / "__init__.py").write_text("raise ImportError('whole model imported')")
    (tmp_path / "model" / "vector_field_regressor.py").write_text(
        "class VectorFieldRegressor:\n    checkout = 'fake'\n"
    )
    cls = bench.load_official_regressor(str(tmp_path))
    assert cls.__name__ == "VectorFieldRegressor" and cls.checkout == "fake"


def test_a_folder_that_is_no_river_checkout_is_named(bench, tmp_path):
    with pytest.raises(SystemExit, match=f"--against-river {tmp_path}: no model/vector_field"):
        bench.load_official_regressor(str(tmp_path))


def test_foreach_ema_equals_the_per_parameter_update(bench):
    torch.manual_seed(0)
    model = VectorFieldRegressor(4, (4, 4), inner_dim=32, depth=1, mid_depth=0)
    per_param, per_param_average = bench.make_ema_update(model, False)
    fused, fused_average = bench.make_ema_update(model, True)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        per_param()
        fused()
    # The average lags the weights (decay 0.999), so both really updated the same copies.
    assert not torch.allclose(per_param_average[0], next(model.parameters()))
    for left, right in zip(per_param_average, fused_average):
        torch.testing.assert_close(left, right, rtol=1e-6, atol=1e-7)


def test_step_flops_counts_the_matmuls(bench):
    model = VectorFieldRegressor(4, (4, 4), inner_dim=32, depth=1, mid_depth=0, num_heads=4)
    x = torch.randn(2, 4, 4, 4)
    flops = bench.step_flops(lambda: model(x, x, x, torch.ones(2), torch.rand(2)))
    # Lower bound: every block's four D×D-equivalent linears (qkv 3, proj 1) and the MLP
    # (8) on 2 × 17 tokens, 2 FLOPs per multiply-add.
    assert flops >= 2 * 2 * 17 * 12 * 32 * 32 * 2


@pytest.mark.parametrize("native", [False, True], ids=["avx2-fp32", "bf16-native"])
def test_rows_follow_the_hardware(bench, monkeypatch, native):
    """No bf16 row where bf16 is emulated (unless asked); the row marked as what training
    runs is in the precision ``precision: auto`` takes there."""
    monkeypatch.setitem(bench.SIZES, "micro", {"depth": 1, "mid_depth": 0, "inner_dim": 16})
    args = type("Args", (), {})()
    args.batch_size, args.compile, args.agreement = 1, False, False
    args.native_bf16 = args.bf16_rows = native
    train, _, sampling = bench.build_rows(args, "micro", None, torch.device("cpu"))
    names = [row.name for row in train + sampling]
    assert any("bf16" in name for name in names) == native
    runs = [row for row in train if "what training runs" in row.name]
    assert len(runs) == 1 and runs[0].bf16 == native
    args.bf16_rows = True  # --bf16-rows: asked for on emulating hardware too
    train, _, _ = bench.build_rows(args, "micro", None, torch.device("cpu"))
    assert any(row.bf16 for row in train)
