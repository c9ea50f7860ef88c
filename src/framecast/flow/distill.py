"""Few-step sampling by distillation: a student that reaches in 1–2 Euler steps the latent
the teacher's 10-step sampler reaches from the same noise.

Why this method. The rollout's per-frame map is deterministic given its random inputs: noise
ε, the warm start ``x_s = (1 - (1 - σ) s) ε + s z_ref`` and the context draws. Direct
distillation of that map (Luhman & Luhman 2021, "Knowledge distillation in iterative
generative models"; the distillation step of rectified flow, Liu et al. 2022) regresses the
student's few-step output on the teacher's multi-step output for the *same* ε, so the
student keeps the noise-to-sample coupling and with it the spread of K samples; regressing
on the data instead would collapse to the mean. It needs no new objective or network: the
student is the teacher's architecture, starts from its weights and is sampled by the same
rollout (:func:`framecast.flow.sampling.rollout`) with ``student_steps`` Euler steps, so a
distilled run is a river checkpoint like any other. Consistency, shortcut and mean-flow
training reach one step without a teacher but change the training objective (and mean
flows need a Jacobian-vector product); reflow needs a new coupling dataset and a second
full training. Distillation costs the teacher's NFE per training example, which is cheap
at 8×8 latents.

Per example: a window of clip latents (B, N, C, h, w); the first ``k`` of them are the
available frames (k drawn per batch in [1, N - 1]), the newest the reference. The teacher
solves from ``x_s`` with :func:`~framecast.flow.sampling.solve_next` (no gradient); the
student starts from the same ``x_s`` and takes ``student_steps`` Euler steps, drawing its
own context frames like the rollout does. Loss: the latent MSE of the two endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from framecast.flow.path import CondOTPath
from framecast.flow.sampling import (
    SamplerConfig,
    VectorField,
    draw_context,
    solve_next,
    warm_start_state,
)
from framecast.flow.solvers import SolverConfig, solve


@dataclass(frozen=True)
class DistillSamplers:
    """The teacher's sampler (what is imitated) and the student's (how it is sampled)."""

    teacher: SamplerConfig
    student: SamplerConfig

    @classmethod
    def from_config(cls, distill, past_horizon: int | None) -> DistillSamplers:
        """From a ``model.distill`` section (:class:`framecast.config.river.DistillConfig`);
        ``past_horizon``: how far back contexts are drawn (the teacher's training horizon)."""
        teacher = SamplerConfig(
            SolverConfig(distill.teacher_solver, distill.teacher_steps),
            warm_start=distill.warm_start,
            past_horizon=past_horizon,
            precision=distill.teacher_precision,
        )
        student = SamplerConfig(
            SolverConfig("euler", distill.student_steps),
            warm_start=distill.warm_start,
            past_horizon=past_horizon,
        )
        return cls(teacher, student)


@dataclass
class DistillLossOutput:
    """Attributes: loss (scalar, differentiable); available: frames seen per example (k);
    student and target: the endpoints (B, C, h, w), detached; teacher_nfe: its evaluations."""

    loss: Tensor
    available: int
    student: Tensor
    target: Tensor
    teacher_nfe: int


def student_endpoint(
    student: VectorField,
    frames: Tensor,
    start: Tensor,
    sampler: SamplerConfig,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The student's next latent (B, C, h, w): ``sampler``'s Euler steps from ``start`` at
    t = s, differentiable, a context drawn from ``frames`` (B, T, C, h, w) at every step.
    Runs in the caller's precision (training autocasts as configured)."""
    total, available = frames.shape[:2]
    rows = torch.arange(total, device=frames.device)
    reference = frames[:, -1]

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        index, tau = draw_context(available, total, sampler.past_horizon, generator, x.device)
        return student(x, reference, frames[rows, index], tau, t).to(x.dtype)

    steps = sampler.steps_per_frame
    return solve(velocity, start, t0=sampler.warm_start, t1=1.0, steps=steps, method="euler").x


def distillation_loss(
    student: VectorField,
    teacher: VectorField,
    path: CondOTPath,
    latents: Tensor,
    samplers: DistillSamplers,
    generator: torch.Generator | None = None,
    available: int | None = None,
) -> DistillLossOutput:
    """Latent MSE between the student's few-step and the teacher's many-step next latent
    from the same noise, on clip latents (B, N, C, h, w), N >= 2.

    ``available``: how many of the clip's first frames are seen (k in [1, N - 1]); drawn
    uniformly per call when None, as in training. ``samplers.teacher.precision`` must be
    resolved (``fp32`` or ``bf16``).
    """
    if latents.dim() != 5 or latents.shape[1] < 2:
        raise ValueError(f"expected clip latents (B, N >= 2, C, h, w), got {tuple(latents.shape)}")
    if available is None:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        available = int(
            torch.randint(1, latents.shape[1], (1,), generator=generator, device=gen_device)
        )
    elif not 1 <= available < latents.shape[1]:
        raise ValueError(
            f"available={available} frames must lie in [1, {latents.shape[1] - 1}] for clips "
            f"of {latents.shape[1]} latents (one is left to predict)"
        )
    frames = latents[:, :available].float()
    # Both start from the same x_s: the student learns the teacher's map from this noise.
    start = warm_start_state(frames, path, samplers.teacher, generator)
    with torch.no_grad():
        teacher_result = solve_next(teacher, frames, start, samplers.teacher, generator)
    target = teacher_result.x.float()
    predicted = student_endpoint(student, frames, start, samplers.student, generator).float()
    loss = (predicted - target).square().mean()
    return DistillLossOutput(loss, available, predicted.detach(), target, teacher_result.nfe)
