"""ODE solvers: analytic integrals, convergence order, NFE, validation, config round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from framecast.flow import SOLVERS, SolverConfig, solve
from framecast.flow.solvers import NFE_PER_STEP

FIXED = tuple(NFE_PER_STEP)
F64 = torch.float64


def cubic_rate(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = 3t², whose integral from a to b is b³ - a³."""
    return (3 * t**2).reshape(-1, *([1] * (x.dim() - 1))).expand_as(x)


def decay(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -x


# Error integrating 3t² over [0, 1] with n steps, derived per method:
# rk4 on a time-only rate is Simpson's rule, exact for cubics, so t² is exact;
# midpoint rule error h²/4, trapezoid (heun) h²/2, Riemann sums (euler) 3/(2n) ∓ 1/(2n²)
# (left sum forwards, right sum backwards).
CUBIC_CASES = {
    "rk4": (10, 1e-14),
    "midpoint": (10, 0.25 * 0.1**2 + 1e-12),
    "heun": (10, 0.5 * 0.1**2 + 1e-12),
    "euler": (1000, 1.5e-3 + 0.5e-6 + 1e-12),
    "dopri5": (10, 1e-10),  # 5th order: exact for t² up to rounding
}


@pytest.mark.parametrize("method", SOLVERS)
def test_integrates_3t2_to_one(method: str) -> None:
    steps, tol = CUBIC_CASES[method]
    x0 = torch.full((2, 3), 5.0, dtype=F64)
    r = solve(cubic_rate, x0, 0.0, 1.0, steps=steps, method=method)
    err = (r.x - 6.0).abs().max().item()
    assert err <= tol, f"{method}: error {err}"


@pytest.mark.parametrize(
    ("method", "expected"),
    [("midpoint", -0.25 * 0.1**2), ("heun", 0.5 * 0.1**2), ("euler", -(0.15 - 0.005))],
)
def test_quadrature_error_matches_theory(method: str, expected: float) -> None:
    # Wrong coefficients change these signed errors, not just their size.
    r = solve(cubic_rate, torch.zeros(1, 1, dtype=F64), steps=10, method=method)
    assert r.x.item() - 1.0 == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("method", SOLVERS)
def test_warm_start_interval(method: str) -> None:
    steps, tol = CUBIC_CASES[method]
    r = solve(cubic_rate, torch.zeros(2, 1, dtype=F64), 0.5, 1.0, steps=steps, method=method)
    # Errors scale with the interval's h², so the [0, 1] tolerance still bounds them.
    assert (r.x - (1 - 0.125)).abs().max().item() <= tol


def growth(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = t x, exact x(1) = x(0) e^{1/2}; time-dependent, so the time nodes matter too."""
    return t.reshape(-1, *([1] * (x.dim() - 1))) * x


# Linear problems with known solutions at t = 1 from x(0) = 1.
ODES = {"decay": (decay, math.exp(-1.0)), "growth": (growth, math.exp(0.5))}


@pytest.mark.parametrize("ode", sorted(ODES))
@pytest.mark.parametrize(
    ("method", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)]
)
def test_convergence_order(method: str, order: int, ode: str) -> None:
    fn, exact = ODES[ode]
    x0 = torch.ones(1, 1, dtype=F64)
    errs = [abs(solve(fn, x0, steps=n, method=method).x.item() - exact) for n in (8, 16, 32)]
    for coarse, fine in zip(errs, errs[1:]):
        observed = math.log2(coarse / fine)
        assert abs(observed - order) < 0.2, f"{method}: observed order {observed}, errors {errs}"


def test_dopri5_respects_tolerance() -> None:
    x0 = torch.ones(1, 1, dtype=F64)
    loose = solve(decay, x0, method="dopri5", atol=1e-4, rtol=1e-4)
    tight = solve(decay, x0, method="dopri5", atol=1e-10, rtol=1e-10)
    assert abs(tight.x.item() - math.exp(-1)) < 1e-9
    assert abs(loose.x.item() - math.exp(-1)) < 1e-3
    assert tight.nfe > loose.nfe


@pytest.mark.parametrize("method", SOLVERS)
def test_nfe_counts_real_calls(method: str) -> None:
    calls = 0

    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        assert torch.all(t == t[0])
        return decay(x, t)

    r = solve(counted, torch.ones(2, 1), steps=5, method=method)
    assert r.nfe == calls > 0
    if method in NFE_PER_STEP:
        assert r.nfe == 5 * NFE_PER_STEP[method]


@pytest.mark.parametrize("method", SOLVERS)
def test_batch_shape_and_trajectory(method: str) -> None:
    x0 = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    r = solve(decay, x0, steps=4, method=method, return_trajectory=True)
    assert r.x.shape == x0.shape
    assert r.trajectory is not None and r.trajectory.shape == (5, *x0.shape)
    assert r.times is not None and torch.allclose(r.times, torch.linspace(0, 1, 5))
    assert torch.equal(r.trajectory[0], x0) and torch.equal(r.trajectory[-1], r.x)
    # Samples are independent: each follows exp(-t) from its own start.
    torch.testing.assert_close(r.x, x0 * math.exp(-1), atol=0.1, rtol=0.5)


@pytest.mark.parametrize("method", SOLVERS)
def test_backward_integration(method: str) -> None:
    # From t = 1 back to 0 undoes the forward integral; same error bounds as forward.
    steps, tol = CUBIC_CASES[method]
    r = solve(cubic_rate, torch.zeros(1, 1, dtype=F64), 1.0, 0.0, steps=steps, method=method)
    assert abs(r.x.item() + 1.0) <= tol


def test_numpy_integer_steps_accepted() -> None:
    r = solve(decay, torch.ones(1, 1), steps=np.int64(3), method="heun")
    assert r.steps == 3 and type(r.steps) is int and r.nfe == 6


@pytest.mark.parametrize("method", SOLVERS)
def test_zero_interval_returns_x0(method: str) -> None:
    x0 = torch.randn(2, 3)
    r = solve(decay, x0, 0.3, 0.3, method=method)
    assert torch.equal(r.x, x0) and r.nfe == 0 and r.steps == 0


def test_unknown_method_names_allowed() -> None:
    with pytest.raises(ValueError, match=r"'rk45'.*euler, midpoint, heun, rk4, dopri5"):
        solve(decay, torch.ones(1, 1), method="rk45")


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_bad_steps(steps: object) -> None:
    with pytest.raises(ValueError, match="steps"):
        solve(decay, torch.ones(1, 1), steps=steps)  # type: ignore[arg-type]


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="unknown ODE method"):
        SolverConfig(method="nope")
    with pytest.raises(ValueError, match="unknown solver config keys"):
        SolverConfig.from_dict({"method": "euler", "stepz": 3})


@pytest.mark.parametrize("method", SOLVERS)
def test_config_round_trip_identical(method: str) -> None:
    cfg = SolverConfig(method=method, steps=7, atol=1e-6, rtol=1e-6)
    reloaded = SolverConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert reloaded == cfg
    x0 = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    a = cfg.solve(decay, x0, 0.2, 1.0, return_trajectory=True)
    b = reloaded.solve(decay, x0, 0.2, 1.0, return_trajectory=True)
    assert torch.equal(a.times, b.times) and torch.equal(a.trajectory, b.trajectory)
    assert a.nfe == b.nfe and a.steps == b.steps
