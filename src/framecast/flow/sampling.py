"""Autoregressive RIVER sampling in latent space: one ODE solve per future frame.

For each new frame, the ODE of the learned velocity field is integrated from t = s to 1,
starting from the warm start ``y_s = (1 - (1 - σ) s) ε + s z_prev`` (s = 0: pure noise).

How many solver steps a frame takes (``SamplerConfig.steps_over`` / ``nfe_budget``):

- ``span`` (the default): ``solver.steps`` steps over [s, 1]; a warm start makes the steps
  shorter, not fewer, so it costs the same NFE as s = 0.
- ``unit`` (RIVER's sampler): ``solver.steps`` counts steps over [0, 1], so [s, 1] takes
  ``int((1 - s) · steps)`` of them (at least 1): warm start s = 0.5 halves the NFE.
- ``nfe_budget`` N: as many steps over [s, 1] as N velocity evaluations per frame allow
  (N // evaluations per step of the method; fixed-step methods only).
The reference is always the newest latent; at every velocity evaluation a context latent
is drawn uniformly from the frames before the reference, as in RIVER's sampler. Each
predicted latent is appended and becomes the next reference.

Everything is batched: videos and the K stochastic samples per video are one batch.

Precision (``SamplerConfig.precision``): ``fp32`` runs the regressor in float32; ``bf16``
runs each velocity evaluation under bfloat16 autocast (matmuls in bf16, weights cast per
call), while the ODE state, the solver's updates and the predicted latents stay float32:
only the velocity is rounded, so the error does not compound through the state. ``auto``
is ``bf16`` where the device computes bf16 natively and ``fp32`` elsewhere
(:mod:`framecast.hardware`); :meth:`SamplerConfig.for_device` replaces it with what runs,
so a saved sampler records the arithmetic it used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor

from framecast.flow.path import CondOTPath
from framecast.flow.solvers import NFE_PER_STEP, ODEResult, SolverConfig
from framecast.hardware import SAMPLING_PRECISIONS

STEPS_OVER = ("span", "unit")
PRECISIONS = SAMPLING_PRECISIONS  # auto, fp32, bf16

# (x_t, z_ref, z_ctx, tau (B,), t (B,)) -> velocity, all latents (B, C, h, w)
VectorField = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class SamplerConfig:
    """How future latents are sampled; saved and reloaded it gives identical steps.

    Attributes:
        solver: ODE method and steps (what ``steps`` counts: ``steps_over``).
        warm_start: s in [0, 1): start the integration at t = s from the previous latent.
        past_horizon: draw the context only from the last ``past_horizon`` frames before
            the reference (None: from all of them).
        steps_over: ``"span"``: ``solver.steps`` steps over [s, 1] (same NFE whatever s);
            ``"unit"``: RIVER's sampler, ``solver.steps`` counted over [0, 1], so
            ``int((1 - s) · steps)`` steps (at least 1) over [s, 1].
        nfe_budget: velocity evaluations per frame; when set, the steps over [s, 1] are
            ``nfe_budget // evaluations per step`` (fixed-step methods; overrides
            ``solver.steps`` and ``steps_over``).
        precision: ``"fp32"`` or ``"bf16"``: the regressor's arithmetic (bf16 autocast
            around each velocity evaluation; the ODE state stays float32); ``"auto"``:
            whichever the device computes fast, fixed by :meth:`for_device`. The default
            stays ``"fp32"`` so that a sampler saved without the key means what it meant.
    """

    solver: SolverConfig = SolverConfig()
    warm_start: float = 0.0
    past_horizon: int | None = None
    steps_over: Literal["span", "unit"] = "span"
    nfe_budget: int | None = None
    precision: Literal["auto", "fp32", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not 0.0 <= self.warm_start < 1.0:
            raise ValueError(f"warm_start must be in [0, 1), got {self.warm_start}")
        if self.past_horizon is not None and self.past_horizon < 1:
            raise ValueError(f"past_horizon must be >= 1 or None, got {self.past_horizon}")
        if self.steps_over not in STEPS_OVER:
            raise ValueError(
                f"steps_over must be one of {', '.join(STEPS_OVER)}, got {self.steps_over!r}"
            )
        if self.nfe_budget is not None:
            per_step = NFE_PER_STEP.get(self.solver.method)
            if per_step is None:
                raise ValueError(
                    f"nfe_budget needs a fixed-step method ({', '.join(NFE_PER_STEP)}); "
                    f"{self.solver.method} chooses its own steps (set its tolerance instead)"
                )
            if isinstance(self.nfe_budget, bool) or not isinstance(self.nfe_budget, int):
                raise ValueError(f"nfe_budget must be an integer, got {self.nfe_budget!r}")
            if self.nfe_budget < per_step:
                raise ValueError(
                    f"nfe_budget {self.nfe_budget} is below one {self.solver.method} step "
                    f"({per_step} evaluations)"
                )

    @property
    def steps_per_frame(self) -> int:
        """Solver steps each frame takes over [warm_start, 1] (dopri5: its output grid)."""
        if self.nfe_budget is not None:
            return self.nfe_budget // NFE_PER_STEP[self.solver.method]
        if self.steps_over == "unit":
            # RIVER: int((1 - s) * steps); the epsilon keeps (1 - 0.9) * 10 = 0.999... at 1.
            return max(1, math.floor((1.0 - self.warm_start) * self.solver.steps + 1e-9))
        return self.solver.steps

    def within(self, trained_horizon: int) -> SamplerConfig:
        """This sampler, drawing contexts no further back than ``trained_horizon`` (the
        distance embedding never saw a larger tau) unless ``past_horizon`` says otherwise."""
        if self.past_horizon is not None:
            return self
        return replace(self, past_horizon=trained_horizon)

    @property
    def frame_solver(self) -> SolverConfig:
        """The solver configuration one frame's solve over [warm_start, 1] uses."""
        return replace(self.solver, steps=self.steps_per_frame)

    def describe(self) -> str:
        """One line for outputs: method, steps taken over [s, 1] and what they mean."""
        steps = self.steps_per_frame
        if self.nfe_budget is not None:
            meaning = f"NFE budget {self.nfe_budget} per frame"
        elif self.steps_over == "unit":
            meaning = f"{self.solver.steps} steps counted over [0, 1] (RIVER)"
        else:
            meaning = f"{self.solver.steps} steps over [s, 1]"
        precision = {"bf16": ", bf16 velocity", "auto": ", precision auto"}.get(self.precision, "")
        return (
            f"{self.solver.method}, {steps} step(s) per frame over [{self.warm_start:g}, 1] "
            f"({meaning}), warm start {self.warm_start:g}{precision}"
        )

    def resolve_precision(self, device: torch.device | str) -> tuple[SamplerConfig, Any]:
        """This sampler with ``auto`` precision replaced by what ``device`` computes fast,
        and the :class:`framecast.hardware.PrecisionChoice` (for :func:`announce_precision`)."""
        from framecast.hardware import resolve_sampling_precision

        choice = resolve_sampling_precision(self.precision, device)
        return replace(self, precision=choice.value), choice

    def for_device(self, device: torch.device | str) -> SamplerConfig:
        """:meth:`resolve_precision`, saying the choice at once (:func:`announce_precision`)."""
        sampler, choice = self.resolve_precision(device)
        announce_precision(choice)
        return sampler

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "solver": self.solver.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplerConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown sampler config keys {unknown}; allowed: {sorted(allowed)}")
        data = dict(data)
        if "solver" in data:
            data["solver"] = SolverConfig.from_dict(data["solver"])
        return cls(**data)


def announce_precision(choice) -> None:
    """Say a sampling precision choice: one line on stderr for ``auto`` (once per process),
    one warning for an explicit ``bf16`` on hardware that emulates it."""
    from framecast.hardware import announce

    if choice.warning:
        warnings.warn(choice.warning, stacklevel=3)
    elif choice.requested == "auto":
        announce(f"sampling {choice.describe()}")


@dataclass
class RolloutResult:
    """Predicted latents and their cost.

    Attributes:
        latents: (B, K, F, C, h, w) the F predicted latents of each of K samples per video.
        nfe_per_frame: velocity evaluations per predicted frame (mean over frames).
        nfe_total: all velocity evaluations of the rollout (each is one batched call).
    """

    latents: Tensor
    nfe_per_frame: float
    nfe_total: int


def draw_context(
    num_available: int,
    batch: int,
    past_horizon: int | None,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Context indices and their distance to the reference, the newest of ``num_available``.

    The context is uniform on the frames before the reference (the last ``past_horizon`` of
    them when given). With a single frame there is nothing before it: like RIVER, which then
    duplicates the observation, the context is that frame at distance 1.
    Returns (context index (B,), tau (B,)), int64.
    """
    reference = num_available - 1
    if reference == 0:
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        return zeros, zeros + 1
    low = 0 if past_horizon is None else max(0, reference - past_horizon)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    context = torch.randint(low, reference, (batch,), generator=generator, device=gen_device)
    context = context.to(device)
    return context, reference - context


@torch.no_grad()
def rollout(
    vector_field: VectorField,
    context: Tensor,
    num_frames: int,
    path: CondOTPath,
    sampler: SamplerConfig = SamplerConfig(),
    samples: int = 1,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> RolloutResult:
    """Predict ``num_frames`` latents after the observed ``context`` latents.

    Args:
        vector_field: the trained regressor, called on batches of B·K.
        context: (B, T0, C, h, w) latents of the observed frames, T0 >= 1.
        num_frames: F, the number of future frames.
        path: the probability path the model was trained on (its σ).
        sampler: solver, steps, warm start.
        samples: K stochastic futures per video.
        generator: seeds noise and context draws (CPU generator, or on the latents' device).
        progress: called with the index of each finished frame.

    Returns:
        RolloutResult with latents (B, K, F, C, h, w).
    """
    if context.dim() != 5:
        raise ValueError(f"context must be (B, T0, C, h, w), got shape {tuple(context.shape)}")
    if context.shape[1] < 1:
        raise ValueError("context needs at least one observed frame")
    if num_frames < 1 or samples < 1:
        raise ValueError(f"num_frames and samples must be >= 1, got {num_frames}, {samples}")
    batch, _, *latent_shape = context.shape
    total = batch * samples
    device = context.device
    # (B·K, T, C, h, w): every sample of a video starts from the same observed latents.
    frames = context.repeat_interleave(samples, dim=0)
    rows = torch.arange(total, device=device)
    if sampler.precision == "auto":
        sampler = sampler.for_device(device)
    nfe_total = 0
    for index in range(num_frames):
        result = sample_next(vector_field, frames, path, sampler, generator, rows)
        nfe_total += result.nfe
        frames = torch.cat([frames, result.x[:, None].to(frames.dtype)], dim=1)
        if progress is not None:
            progress(index)
    predicted = frames[:, context.shape[1] :].reshape(batch, samples, num_frames, *latent_shape)
    return RolloutResult(predicted, nfe_total / num_frames, nfe_total)


def sample_next(
    vector_field: VectorField,
    frames: Tensor,
    path: CondOTPath,
    sampler: SamplerConfig,
    generator: torch.Generator | None = None,
    rows: Tensor | None = None,
) -> ODEResult:
    """One frame of a rollout: the next latent after ``frames`` (B, T, C, h, w), newest last:
    :func:`warm_start_state`, then :func:`solve_next` from it. The result's ``x`` is the
    next latent (B, C, h, w); ``nfe`` its cost."""
    start = warm_start_state(frames, path, sampler, generator)
    return solve_next(vector_field, frames, start, sampler, generator, rows)


def warm_start_state(
    frames: Tensor,
    path: CondOTPath,
    sampler: SamplerConfig,
    generator: torch.Generator | None = None,
) -> Tensor:
    """x_s (B, C, h, w): fresh noise warm-started from the newest of ``frames`` at t = s."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(frames.shape[0], *frames.shape[2:], generator=generator, device=gen_device)
    noise = noise.to(device=frames.device, dtype=frames.dtype)
    return path.warm_start(noise, frames[:, -1], sampler.warm_start)


def solve_next(
    vector_field: VectorField,
    frames: Tensor,
    start: Tensor,
    sampler: SamplerConfig,
    generator: torch.Generator | None = None,
    rows: Tensor | None = None,
) -> ODEResult:
    """Solve the ODE over [warm_start, 1] from ``start`` (B, C, h, w), the reference the
    newest of ``frames`` (B, T, C, h, w) and a context drawn at every velocity evaluation.

    ``sampler.precision`` must be resolved (not ``auto``): ``bf16`` autocasts each velocity
    evaluation; ``fp32`` runs it in float32 even inside an autocast region (a distillation
    teacher under bf16 training).
    """
    if sampler.precision == "auto":
        raise ValueError("solve_next needs a resolved precision; call sampler.for_device")
    total, available = frames.shape[:2]
    device = frames.device
    rows = torch.arange(total, device=device) if rows is None else rows
    reference = frames[:, -1]
    low_precision = sampler.precision == "bf16"

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        ctx_index, tau = draw_context(available, total, sampler.past_horizon, generator, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=low_precision):
            v = vector_field(x, reference, frames[rows, ctx_index], tau, t)
        # The solver's state stays in the context's dtype (fp32): only v is rounded.
        return v.to(x.dtype)

    return sampler.frame_solver.solve(velocity, start, t0=sampler.warm_start, t1=1.0)
