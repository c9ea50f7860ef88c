"""ODE solvers for sampling a learned velocity field.

One entry point, :func:`solve`. The fixed-step methods (euler, midpoint, heun,
rk4) are our own: a uniform time grid computed from (t0, t1, steps) alone, no
data-dependent control flow, so they are deterministic and export cleanly.
``dopri5`` is the adaptive Dormand–Prince method from ``torchdiffeq``.

The velocity function has the signature ``velocity_fn(x, t) -> dx/dt`` with
``x`` of shape ``(B, ...)`` and ``t`` a tensor of shape ``(B,)`` holding the
same time for every sample (the model conditions on a per-sample time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from numbers import Integral

import torch
from torch import Tensor
from torchdiffeq import odeint

VelocityFn = Callable[[Tensor, Tensor], Tensor]
# A fixed-step update: (f, x, t, h) -> x at t + h, where f(x, t) takes a float t.
_Step = Callable[[Callable[[Tensor, float], Tensor], Tensor, float, float], Tensor]


def _euler(f: Callable[[Tensor, float], Tensor], x: Tensor, t: float, h: float) -> Tensor:
    return x + h * f(x, t)


def _midpoint(f: Callable[[Tensor, float], Tensor], x: Tensor, t: float, h: float) -> Tensor:
    k1 = f(x, t)
    return x + h * f(x + 0.5 * h * k1, t + 0.5 * h)


def _heun(f: Callable[[Tensor, float], Tensor], x: Tensor, t: float, h: float) -> Tensor:
    # Classic Heun: Euler predictor, trapezoid corrector.
    k1 = f(x, t)
    k2 = f(x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


def _rk4(f: Callable[[Tensor, float], Tensor], x: Tensor, t: float, h: float) -> Tensor:
    k1 = f(x, t)
    k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = f(x + h * k3, t + h)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


FIXED_STEP: dict[str, _Step] = {
    "euler": _euler,
    "midpoint": _midpoint,
    "heun": _heun,
    "rk4": _rk4,
}
ADAPTIVE = ("dopri5",)
SOLVERS: tuple[str, ...] = (*FIXED_STEP, *ADAPTIVE)
# Velocity evaluations per step of each fixed-step method.
NFE_PER_STEP: dict[str, int] = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


@dataclass(frozen=True)
class ODEResult:
    """Outcome of :func:`solve`.

    Attributes:
        x: state at ``t1``, ``(B, ...)``.
        nfe: velocity evaluations actually made (counted, also for dopri5).
        steps: fixed-step methods: integration steps taken. dopri5: intervals of
            the output time grid (its internal step count is adaptive; ``nfe`` is its cost).
            0 when ``t0 == t1``.
        times: the ``steps + 1`` grid times, ``(steps + 1,)``; only with ``return_trajectory``.
        trajectory: states at ``times``, ``(steps + 1, B, ...)``; only with ``return_trajectory``.
    """

    x: Tensor
    nfe: int
    steps: int
    times: Tensor | None = None
    trajectory: Tensor | None = None


def _check(method: str, steps: int) -> None:
    if method not in SOLVERS:
        raise ValueError(f"unknown ODE method {method!r}; allowed: {', '.join(SOLVERS)}")
    # Integral admits numpy integers from configs; bool is an int but never a step count.
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def _grid(t0: float, t1: float, steps: int) -> list[float]:
    # Each time from its index, not by accumulating h, so the grid has no drift
    # and is a pure function of (t0, t1, steps).
    return [t0 + (t1 - t0) * k / steps for k in range(steps + 1)]


def solve(
    velocity_fn: VelocityFn,
    x0: Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    steps: int = 10,
    method: str = "euler",
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    return_trajectory: bool = False,
) -> ODEResult:
    """Integrate ``dx/dt = velocity_fn(x, t)`` from ``t0`` to ``t1``.

    Args:
        velocity_fn: ``(x (B, ...), t (B,)) -> dx/dt (B, ...)``.
        x0: initial state at ``t0``, ``(B, ...)``.
        t0: start time (a RIVER warm start begins at ``s > 0``).
        t1: end time; may be below ``t0`` to integrate backwards.
        steps: fixed-step methods: number of uniform steps. dopri5: intervals of
            the output grid used for the trajectory (not its internal steps).
        method: one of :data:`SOLVERS`.
        atol: absolute tolerance, dopri5 only.
        rtol: relative tolerance, dopri5 only.
        return_trajectory: also return the states on the ``steps + 1`` grid times.

    Returns:
        ODEResult; ``x`` has the shape of ``x0``.

    Raises:
        ValueError: unknown method, or steps not an integer >= 1.
    """
    _check(method, steps)
    steps = int(steps)
    if x0.dim() < 1:
        raise ValueError("x0 must have a batch dimension, shape (B, ...)")
    t0, t1 = float(t0), float(t1)
    if t0 == t1:
        traj = x0.unsqueeze(0) if return_trajectory else None
        times = torch.tensor([t0], dtype=x0.dtype, device=x0.device) if return_trajectory else None
        return ODEResult(x=x0.clone(), nfe=0, steps=0, times=times, trajectory=traj)

    nfe = 0
    batch = x0.shape[0]

    def f(x: Tensor, t: float | Tensor) -> Tensor:
        # Count here so nfe is what was really evaluated, whatever the method does.
        nonlocal nfe
        nfe += 1
        tb = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(batch)
        return velocity_fn(x, tb)

    grid = _grid(t0, t1, steps)
    times = torch.tensor(grid, dtype=x0.dtype, device=x0.device)
    if method in ADAPTIVE:
        # torchdiffeq calls func(t, y); the t grid only fixes where outputs are
        # reported, the dense interpolant fills them in without extra steps.
        out = odeint(lambda t, x: f(x, t), x0, times, method=method, atol=atol, rtol=rtol)
        traj = out if return_trajectory else None
        return ODEResult(
            x=out[-1],
            nfe=nfe,
            steps=steps,
            times=times if return_trajectory else None,
            trajectory=traj,
        )

    step = FIXED_STEP[method]
    x = x0
    states = [x0] if return_trajectory else None
    for k in range(steps):
        x = step(f, x, grid[k], grid[k + 1] - grid[k])
        if states is not None:
            states.append(x)
    return ODEResult(
        x=x,
        nfe=nfe,
        steps=steps,
        times=times if return_trajectory else None,
        trajectory=torch.stack(states) if states is not None else None,
    )


@dataclass(frozen=True)
class SolverConfig:
    """A saved sampler setting; reloading it reproduces the same time grid and result.

    Attributes:
        method: one of :data:`SOLVERS`.
        steps: number of steps (see :func:`solve`).
        atol: absolute tolerance (dopri5).
        rtol: relative tolerance (dopri5).
    """

    method: str = "euler"
    steps: int = 10
    atol: float = 1e-5
    rtol: float = 1e-5

    def __post_init__(self) -> None:
        _check(self.method, self.steps)

    def to_dict(self) -> dict[str, str | int | float]:
        """Plain dict, safe for YAML/JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str | int | float]) -> SolverConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected, not dropped."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown solver config keys {unknown}; allowed: {sorted(allowed)}")
        return cls(**data)

    def solve(
        self,
        velocity_fn: VelocityFn,
        x0: Tensor,
        t0: float = 0.0,
        t1: float = 1.0,
        *,
        return_trajectory: bool = False,
    ) -> ODEResult:
        """:func:`solve` with this configuration."""
        return solve(
            velocity_fn,
            x0,
            t0,
            t1,
            steps=self.steps,
            method=self.method,
            atol=self.atol,
            rtol=self.rtol,
            return_trajectory=return_trajectory,
        )
