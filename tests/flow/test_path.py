"""CondOTPath: endpoints, velocity as the time derivative, warm start, broadcasting."""

from __future__ import annotations

import pytest
import torch

from framecast.flow import DEFAULT_SIGMA, CondOTPath

SHAPE = (3, 2, 4, 4)


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    z = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    return noise, z


def test_default_sigma_matches_config_default() -> None:
    assert CondOTPath().sigma == DEFAULT_SIGMA == 1e-7


@pytest.mark.parametrize("sigma", [-0.1, 1.0])
def test_sigma_out_of_range_rejected(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma"):
        CondOTPath(sigma)


@pytest.mark.parametrize("sigma", [1e-7, 0.1])
def test_endpoints(sigma: float) -> None:
    path = CondOTPath(sigma)
    noise, z = _pair()
    # t = 0 is pure noise, bit for bit.
    assert torch.equal(path.interpolate(noise, z, 0.0), noise)
    # t = 1 is the data up to the minimum noise σ ε.
    torch.testing.assert_close(path.interpolate(noise, z, 1.0), z + sigma * noise)


@pytest.mark.parametrize("sigma", [1e-7, 0.1])
def test_velocity_is_time_derivative(sigma: float) -> None:
    path = CondOTPath(sigma)
    noise, z = _pair(1)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    h = 1e-6
    # x_t is affine in t, so a central difference is exact up to rounding.
    fd = (path.interpolate(noise, z, t + h) - path.interpolate(noise, z, t - h)) / (2 * h)
    torch.testing.assert_close(fd, path.velocity_target(noise, z), atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(path.velocity_target(noise, z), z - (1 - sigma) * noise)


def test_sample_uses_per_sample_time() -> None:
    path = CondOTPath(0.1)
    noise, z = _pair(2)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    s = path.sample(z, t, noise)
    assert s.x_t.shape == SHAPE and s.u.shape == SHAPE and s.t.shape == (3,)
    for i, ti in enumerate(t.tolist()):
        expected = (1 - 0.9 * ti) * noise[i] + ti * z[i]
        torch.testing.assert_close(s.x_t[i], expected)


def test_sample_scalar_time_and_drawn_noise() -> None:
    path = CondOTPath()
    z = torch.randn(SHAPE)
    s = path.sample(z, 0.25)
    assert torch.equal(s.t, torch.full((3,), 0.25))
    assert s.x_t.shape == z.shape and s.x_t.dtype == z.dtype


def test_bad_time_shape_rejected() -> None:
    noise, z = _pair()
    with pytest.raises(ValueError, match="shape"):
        CondOTPath().interpolate(noise, z, torch.zeros(2, dtype=torch.float64))


def test_warm_start_endpoints() -> None:
    sigma = 1e-3
    path = CondOTPath(sigma)
    noise, z_prev = _pair(3)
    assert torch.equal(path.warm_start(noise, z_prev, 0.0), noise)
    torch.testing.assert_close(path.warm_start(noise, z_prev, 1.0), z_prev + sigma * noise)
    mid = path.warm_start(noise, z_prev, 0.5)
    torch.testing.assert_close(mid, (1 - 0.5 * (1 - sigma)) * noise + 0.5 * z_prev)
