"""RIVER vector field regressor and its config schema."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from framecast.config.river import RiverConfig, VectorFieldRegressorConfig
from framecast.models.river import VectorFieldRegressor

TINY = {"state_size": 4, "state_res": [4, 4], "inner_dim": 32, "depth": 1, "mid_depth": 1}


def make(**overrides) -> VectorFieldRegressor:
    torch.manual_seed(0)
    return VectorFieldRegressor.from_config(VectorFieldRegressorConfig(**{**TINY, **overrides}))


def inputs(model: VectorFieldRegressor, batch: int = 2, dtype=torch.float32):
    c, (h, w) = model.state_size, model.state_res
    g = torch.Generator().manual_seed(1)
    x_t, z_ref, z_ctx = (torch.randn(batch, c, h, w, generator=g, dtype=dtype) for _ in range(3))
    tau = torch.arange(1, batch + 1)
    t = torch.linspace(0.1, 0.9, batch, dtype=dtype)
    return x_t, z_ref, z_ctx, tau, t


def perturb_head(model: VectorFieldRegressor) -> None:
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.1)
        model.head.bias.normal_(0.0, 0.1)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"state_size": 3, "state_res": [2, 5], "num_heads": 2, "depth": 2, "mid_depth": 0},
        {"inner_dim": 24, "num_heads": 3, "dropout": 0.1},
    ],
)
def test_output_shape_and_dtype(overrides):
    model = make(**overrides)
    args = inputs(model, batch=3)
    out = model(*args)
    assert out.shape == args[0].shape
    assert out.dtype == torch.float32
    model64 = model.double()
    assert model64(*inputs(model64, dtype=torch.float64)).dtype == torch.float64


def test_zero_head_gives_zero_velocity_at_init():
    model = make()
    assert torch.equal(model(*inputs(model)), torch.zeros(2, 4, 4, 4))


def test_gradients_reach_all_parameters():
    model = make(depth=2, mid_depth=1)
    perturb_head(model)
    model(*inputs(model)).pow(2).sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing


def test_tau_and_t_change_the_output():
    model = make().eval()
    perturb_head(model)
    x_t, z_ref, z_ctx, tau, t = inputs(model)
    base = model(x_t, z_ref, z_ctx, tau, t)
    assert not torch.allclose(base, model(x_t, z_ref, z_ctx, tau + 3, t))
    assert not torch.allclose(base, model(x_t, z_ref, z_ctx, tau, t + 0.05))
    # Each sample depends on its own conditioning only.
    other = model(x_t, z_ref, z_ctx, torch.tensor([tau[0].item(), 7]), t)
    assert torch.allclose(base[0], other[0], atol=1e-6)


def test_wrong_grid_rejected():
    model = make()
    x = torch.zeros(1, 4, 3, 4)
    with pytest.raises(ValueError, match="state_res"):
        model(x, x, x, torch.ones(1), torch.zeros(1))


def test_num_heads_must_divide_inner_dim():
    with pytest.raises(ValidationError, match="must divide inner_dim"):
        VectorFieldRegressorConfig(inner_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="must divide inner_dim"):
        VectorFieldRegressor(inner_dim=30, num_heads=4)


def test_config_defaults_and_unknown_keys():
    cfg = RiverConfig.model_validate(
        {
            "kind": "river",
            "sigma": 1.0e-7,
            "vector_field_regressor": {
                "state_size": 8,
                "state_res": [8, 8],
                "inner_dim": 256,
                "depth": 2,
                "mid_depth": 1,
            },
        }
    )
    assert cfg.vector_field_regressor.num_heads == 4 and cfg.autoencoder is None
    with pytest.raises(ValidationError) as err:
        RiverConfig.model_validate({"kind": "river", "vector_field_regressor": {"inner_dims": 8}})
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError) as err:
        RiverConfig.model_validate({"kind": "river", "sigmaa": 0.1})
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        RiverConfig(sigma=1.0)


def test_loader_round_trip_and_messages():
    from framecast.config import validate_config
    from framecast.errors import ConfigError

    raw = {"model": {"kind": "river", "autoencoder": "runs/ae", "vector_field_regressor": TINY}}
    cfg = validate_config(raw)
    assert isinstance(cfg.model, RiverConfig)
    assert validate_config(cfg.to_dict()).model == cfg.model
    with pytest.raises(ConfigError, match="model.vector_field_regressor.inner_dimm"):
        validate_config({"model": {"kind": "river", "vector_field_regressor": {"inner_dimm": 3}}})
