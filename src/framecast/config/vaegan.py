"""Schema of ``model.kind: vaegan`` (the WuBu-GAAD hybrid VAE-GAN for video prediction).

Key names follow the users' research script where they exist (``gaad_num_regions``,
``wubu_s``, ``disc_apply_spectral_norm``, ``lambda_recon``, ``global_max_grad_norm`` ...).
Frame bookkeeping is shared with the other kinds: the encoder sees
``training.condition_frames`` context frames (the script's ``num_input_frames``) and the
generator produces the next ``training.frames_to_generate`` frames (``num_predict_frames``).
``training.lr`` is the generator/encoder learning rate (``learning_rate_gen``);
``training.grad_clip`` does not apply (this kind steps two optimisers by hand and clips
with ``global_max_grad_norm``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from framecast.config.autoencoder import KLScheduleConfig
from framecast.config.schema import ModelConfig, Section, Width, register_model_kind

GaadKind = Literal["subdivide", "spiral", "hybrid"]
FlowStat = Literal["mag_mean", "angle_mean", "mag_std", "angle_std"]


class WuBuStackConfig(Section):
    """One WuBu stack: nested Poincaré-ball levels, each of its own dimension and curvature."""

    hyperbolic_dims: list[PositiveInt] = Field(
        default_factory=lambda: [64, 32], description="dimension of each level"
    )
    initial_curvatures: list[PositiveFloat] = Field(
        default_factory=lambda: [1.0, 0.8], description="starting curvature of each level"
    )
    use_rotation: bool = Field(True, description="identity-initialised rotation between levels")
    output_dim: PositiveInt = Field(32, description="tangent vector the stack hands on")

    @model_validator(mode="after")
    def _check_lengths(self) -> WuBuStackConfig:
        if len(self.hyperbolic_dims) != len(self.initial_curvatures):
            raise ValueError(
                f"hyperbolic_dims has {len(self.hyperbolic_dims)} levels but "
                f"initial_curvatures has {len(self.initial_curvatures)}; give one per level"
            )
        return self


class QControllerSection(Section):
    """Tabular Q-learning that scales learning rates and momentum (and optionally λ_KL)."""

    enabled: bool = Field(False, description="off unless enabled")
    every_n_steps: PositiveInt = Field(10, description="steps between decisions")
    epsilon: float = Field(0.5, ge=0, le=1, description="starting exploration rate")
    epsilon_min: float = Field(0.05, ge=0, le=1)
    epsilon_decay: float = Field(0.995, gt=0, le=1, description="per decision")
    learning_rate: float = Field(0.1, gt=0, le=1, description="Q-learning α")
    discount: float = Field(0.9, ge=0, le=1, description="Q-learning γ")
    control_kl: bool = Field(False, description="also let a controller set λ_KL")
    min_lr: PositiveFloat = Field(
        1e-7, description="lower bound of both learning rates (the discriminator's can starve)"
    )
    max_lr: PositiveFloat = Field(1e-2, description="upper bound of both learning rates")
    seed: int = 0

    @model_validator(mode="after")
    def _check_bounds(self) -> QControllerSection:
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr {self.min_lr} must be below max_lr {self.max_lr}")
        return self


@register_model_kind("vaegan")
class VAEGANConfig(ModelConfig):
    """Context frames → GAAD regions → WuBu-S (+ optical flow → WuBu-M) → temporal mixing
    (+ WuBu-T) → mu, logvar → 3-D generator → future frames, judged by a 3-D discriminator."""

    kind: Literal["vaegan"] = "vaegan"
    image_channels: PositiveInt = 3
    latent_dim: Width = Field(256, description="VAE latent dimension")

    # GAAD (appearance regions).
    gaad_num_regions: PositiveInt = 12
    gaad_decomposition_type: GaadKind = "hybrid"
    gaad_min_size_px: PositiveFloat = 4.0

    # Encoder.
    encoder_shallow_cnn_channels: Width = Field(
        32, description="channels of the shallow CNN whose map RoIAlign pools per region"
    )
    encoder_roi_align_output: tuple[PositiveInt, PositiveInt] = (4, 4)
    encoder_initial_tangent_dim: Width = Field(128, description="input tangent dim of WuBu-S")
    temporal_hidden_dim: Width = Field(
        128, description="GRU width of the temporal stage that mixes the context frames"
    )
    wubu_s: WuBuStackConfig = Field(default_factory=WuBuStackConfig)
    wubu_t: WuBuStackConfig = Field(
        default_factory=lambda: WuBuStackConfig(
            hyperbolic_dims=[128], initial_curvatures=[0.5], output_dim=128
        )
    )
    wubu_dropout: float = Field(0.1, ge=0, lt=1)
    wubu_boundary_points: PositiveInt = 4

    # Motion branch (optical flow between consecutive context frames).
    use_wubu_motion_branch: bool = False
    gaad_motion_num_regions: PositiveInt = 8
    gaad_motion_decomposition_type: GaadKind = "hybrid"
    flow_stats_components: list[FlowStat] = Field(
        default_factory=lambda: ["mag_mean", "angle_mean"]
    )
    wubu_m: WuBuStackConfig = Field(
        default_factory=lambda: WuBuStackConfig(
            hyperbolic_dims=[32], initial_curvatures=[0.7], output_dim=32
        )
    )

    # Generator.
    gen_base_channels: Width = 64
    gen_temporal_kernel_size: PositiveInt = 3
    gen_use_gaad_film: bool = Field(
        True,
        description="GAAD-FiLM in the generator, from the context frames' content per GAAD box",
    )
    gen_output_activation: Literal["tanh", "clamp"] = Field(
        "tanh",
        description="the generator's last layer: tanh (the guide's), or clamp to [-1, 1], "
        "which reaches black exactly (tanh stays a few grey levels above; see the autoencoder)",
    )

    # Discriminator (real clips are the true future frames).
    # The guide (users' document 004): DISC_APPLY_SPECTRAL_NORM "Keep `true`."
    disc_apply_spectral_norm: bool = True
    disc_base_disc_channels: Width = 64
    disc_max_disc_channels: Width = 512
    disc_temporal_kernel_size: PositiveInt = 3
    disc_use_gaad_film_condition: bool = Field(
        False, description="GAAD-FiLM in the discriminator, from the judged clip's content per box"
    )
    disc_gaad_condition_dim_disc: PositiveInt = 64
    gaad_film_roi_align_output: tuple[PositiveInt, PositiveInt] = Field(
        (2, 2), description="RoIAlign bins (oh, ow) per GAAD box and frame that GAAD-FiLM reads"
    )
    gan_loss: Literal["non_saturating", "hinge"] = Field(
        "non_saturating", description="non_saturating = BCE with logits (the script's loss)"
    )

    # Losses and optimisation.
    lambda_recon: NonNegativeFloat = 10.0
    lambda_kl: NonNegativeFloat = Field(
        1e-4,
        description="KL weight (constant schedule); the guide's phase-1 start 'Start very low: "
        "0.0001', raised 10x per phase (kl_schedule, or configs/sweeps/wubu_kl_annealing.yaml)",
    )
    lambda_gan: NonNegativeFloat = 1.0
    kl_schedule: KLScheduleConfig = Field(
        default_factory=KLScheduleConfig,
        description="steps mode gives phased KL annealing (e.g. 1e-4 → 1e-3 → 1e-2 → 0.1)",
    )
    learning_rate_disc: PositiveFloat = 1e-4
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="adam: betas (adam_beta1, 0.999); sgd: the script's momentum SGD"
    )
    adam_beta1: float = Field(0.5, ge=0, lt=1)
    sgd_momentum: float = Field(0.9, ge=0, lt=1)
    global_max_grad_norm: PositiveFloat | None = Field(
        5.0, description="global gradient-norm clip of each optimiser; null = off"
    )
    q_controller: QControllerSection = Field(default_factory=QControllerSection)

    @model_validator(mode="after")
    def _check(self) -> VAEGANConfig:
        if self.q_controller.enabled and self.q_controller.control_kl:
            if self.kl_schedule.mode != "constant":
                raise ValueError(
                    "q_controller.control_kl and kl_schedule.mode "
                    f"{self.kl_schedule.mode!r} both set λ_KL; choose one "
                    "(kl_schedule.mode: constant with the controller)"
                )
        if not self.flow_stats_components:
            raise ValueError("flow_stats_components must name at least one statistic")
        return self
