"""Schema of ``model.kind: river`` (stage 2: RIVER flow matching in latent space).

The vector field regressor predicts the velocity ``v(x_t | z_ref, z_ctx, tau, t)`` on the
stage-1 latent grid; ``autoencoder`` names the trained stage-1 run that makes the latents.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from framecast.config.schema import ModelConfig, Section, Width, register_model_kind


class VectorFieldRegressorConfig(Section):
    """U-ViT over latent pixels: one token per pixel of the (state_size, *state_res) grid."""

    state_size: PositiveInt = Field(8, description="latent channels (the autoencoder's)")
    state_res: tuple[PositiveInt, PositiveInt] = Field(
        (8, 8), description="latent grid [height, width]"
    )
    inner_dim: Width = Field(256, description="token width of the transformer")
    depth: PositiveInt = Field(
        2, description="input blocks; as many output blocks, joined by skips"
    )
    mid_depth: NonNegativeInt = Field(1, description="middle blocks between input and output")
    num_heads: PositiveInt = Field(4, description="attention heads; must divide inner_dim")
    dropout: float = Field(0.0, ge=0, lt=1, description="attention and MLP dropout")

    @model_validator(mode="after")
    def _check_heads(self) -> VectorFieldRegressorConfig:
        if self.inner_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide inner_dim={self.inner_dim}")
        return self


class DistillConfig(Section):
    """Few-step distillation of a trained river run into a student of the same architecture
    (``framecast distill``; :mod:`framecast.flow.distill`).

    The student starts from the teacher's weights and learns to reach, in ``student_steps``
    Euler steps from the warm start, the latent the teacher's sampler reaches from the same
    noise (``teacher_solver``, ``teacher_steps``, ``warm_start``). Sample the student with
    ``--solver euler --steps STUDENT_STEPS --warm-start WARM_START``.
    """

    teacher: str = Field(description="RUN_DIR_OR_CHECKPOINT of the trained river run to distil")
    teacher_which: Literal["best", "last"] = Field(
        "best", description="checkpoint of a teacher run directory"
    )
    student_steps: int = Field(
        1, ge=1, le=8, description="Euler steps (NFE) of the student per frame over [s, 1]"
    )
    warm_start: float = Field(
        0.1, ge=0, lt=1, description="s: both start from the warm start at t = s"
    )
    teacher_solver: Literal["euler", "midpoint", "heun", "rk4"] = "euler"
    teacher_steps: PositiveInt = Field(10, description="teacher solver steps over [s, 1]")
    teacher_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the teacher's velocity arithmetic, as the sampler's --precision"
    )


@register_model_kind("river")
class RiverConfig(ModelConfig):
    """Stage-2 RIVER model: flow matching from noise to the next frame's latent."""

    kind: Literal["river"] = "river"
    sigma: float = Field(
        1e-7, ge=0, lt=1, description="width of the probability path at t = 1 (sigma_min)"
    )
    vector_field_regressor: VectorFieldRegressorConfig = Field(
        default_factory=VectorFieldRegressorConfig
    )
    autoencoder: str | None = Field(
        None, description="RUN_DIR_OR_CHECKPOINT of the trained stage-1 autoencoder"
    )
    compile: bool = Field(
        False,
        description="run the regressor through torch.compile (training and sampling); "
        "where compiling fails it warns once and runs eagerly",
    )
    distill: DistillConfig | None = Field(
        None, description="train a few-step student of a trained river run instead"
    )
