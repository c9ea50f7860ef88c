"""Schema of ``model.kind: autoencoder`` (stage 1: frames -> latents -> frames).

The same schema covers the plain autoencoder, the VAE (``variational: true``) and the
VQ-VAE (``quantizer: vq``), optional segmentation/classification heads on the decoder
features, a KL-weight schedule and an optional PatchGAN discriminator.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from framecast.config.schema import ModelConfig, Section, Width, register_model_kind
from framecast.errors import ConfigError


class KLScheduleConfig(Section):
    """How the KL weight moves during training.

    - ``constant``: ``model.kl_weight`` throughout.
    - ``linear``: from ``start`` to ``model.kl_weight`` over ``warmup_steps``, then constant.
    - ``steps``: piecewise constant; ``phases`` lists ``[step, value]`` pairs, the first at
      step 0, steps strictly increasing (e.g. ``[[0, 1e-4], [5000, 1e-3], [10000, 1e-2]]``).
      ``model.kl_weight`` is not used in this mode.
    """

    mode: Literal["constant", "linear", "steps"] = "constant"
    start: NonNegativeFloat = Field(0.0, description="linear: weight at step 0")
    warmup_steps: int = Field(0, ge=0, description="linear: steps to reach model.kl_weight")
    phases: list[tuple[int, NonNegativeFloat]] = Field(
        default_factory=list, description="steps: [step, value] pairs, first at step 0"
    )

    @model_validator(mode="after")
    def _check_mode(self) -> KLScheduleConfig:
        if self.mode == "steps":
            if not self.phases:
                raise ValueError("mode 'steps' needs a non-empty 'phases' list of [step, value]")
            steps = [step for step, _ in self.phases]
            if steps[0] != 0:
                raise ValueError(f"the first phase must start at step 0, got {steps[0]}")
            if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
                raise ValueError(f"phase steps must be strictly increasing, got {steps}")
        elif self.phases:
            raise ValueError(f"'phases' is only used by mode 'steps', not {self.mode!r}")
        if self.mode == "linear" and self.warmup_steps == 0:
            raise ValueError("mode 'linear' needs warmup_steps >= 1")
        return self


class DiscriminatorConfig(Section):
    """Optional PatchGAN discriminator trained against the decoder (taming-transformers style)."""

    enabled: bool = False
    disc_channels: Width = Field(64, description="channels of the first discriminator conv")
    disc_layers: PositiveInt = Field(3, description="stride-2 convs; each halves the patch grid")
    spectral_norm: bool = Field(
        False, description="spectral norm on every conv and no BatchNorm; else BatchNorm"
    )
    loss: Literal["hinge", "non_saturating"] = "hinge"
    disc_start: int = Field(
        5000, ge=0, description="step from which the discriminator trains and the GAN loss counts"
    )
    disc_weight: NonNegativeFloat = Field(
        0.5, description="factor on the adaptive generator weight"
    )
    disc_lr: float = Field(2e-4, gt=0, description="discriminator learning rate")


class AutoencoderAugmentConfig(Section):
    """Training-only frame augmentation (:class:`framecast.data.augment.FrameAugment`).

    Every transform is off by default. Input and target are the transformed frame, except
    ``input_noise_std``, which noises the encoder's input only. Black stays black.
    """

    hflip: float = Field(0.0, ge=0, le=1, description="probability of a left-right mirror")
    rotate_degrees: float = Field(
        0.0, ge=0, le=180, description="largest rotation (uniform in +-this), black corners"
    )
    intensity_scale: tuple[float, float] = Field(
        (1.0, 1.0), description="(low, high): smoke intensity factor, log-uniform, clipped at white"
    )
    blur_prob: float = Field(0.0, ge=0, le=1, description="probability of a Gaussian blur")
    blur_sigma: tuple[float, float] = Field(
        (0.5, 1.5), description="(low, high): blur standard deviation in pixels"
    )
    input_noise_std: float = Field(
        0.0, ge=0, description="Gaussian noise on the encoder input only (denoising)"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> AutoencoderAugmentConfig:
        for name in ("intensity_scale", "blur_sigma"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} {[low, high]}: need 0 < low <= high")
        return self


@register_model_kind("autoencoder")
class AutoencoderConfig(ModelConfig):
    """Stage-1 autoencoder: (B, C, H, W) frames in [-1, 1] <-> (B, latent_channels, h, w)."""

    kind: Literal["autoencoder"] = "autoencoder"

    # Architecture.
    image_channels: PositiveInt = Field(3, description="channels of the frames (RGB: 3)")
    latent_channels: Width = Field(8, description="channels of the latent grid")
    base_channels: Width = Field(64, description="channels at full resolution")
    channel_multipliers: list[PositiveInt] | None = Field(
        None,
        description="per resolution level, downsampling_steps + 1 entries; "
        "null = min(2**i, 4), i.e. (1, 2, 4, 4) for 3 steps",
    )
    downsampling_steps: PositiveInt = Field(3, description="halvings: 64x64 -> 8x8 at 3")
    num_res_blocks: PositiveInt = Field(2, description="residual blocks per level")
    norm_groups: PositiveInt = Field(
        32, description="GroupNorm groups; divides every level's width"
    )
    attention: bool = Field(True, description="single-head self-attention at the lowest resolution")
    output_activation: Literal["tanh", "clamp"] = Field(
        "tanh",
        description="tanh, or clamp to [-1, 1]: exact black backgrounds (SSIM near black "
        "needs them; tanh stays a few grey levels above)",
    )

    # Latent regularisation.
    variational: bool = Field(False, description="mu/logvar with reparameterisation (VAE)")
    quantizer: Literal["none", "vq"] = "none"
    codebook_size: PositiveInt = Field(512, description="vq: number of codes")
    commitment_weight: NonNegativeFloat = Field(0.25, description="vq: weight of ||z - sg(q)||^2")
    ema_decay: float = Field(0.99, gt=0, lt=1, description="vq: EMA decay of the codebook")
    dead_code_threshold: NonNegativeFloat = Field(
        1.0,
        description="vq: restart a code from the batch when its EMA usage count falls below; 0 = off",
    )

    # Heads on the decoder features (exist only when their loss weight is > 0).
    seg_classes: int = Field(2, ge=2, description="segmentation classes (smoke mask: 2)")
    num_classes: int | None = Field(None, ge=2, description="classification classes")

    # Loss weights.
    mse_weight: NonNegativeFloat = 1.0
    seg_weight: NonNegativeFloat = 0.0
    cls_weight: NonNegativeFloat = 0.0
    kl_weight: NonNegativeFloat = Field(0.0, description="variational only; see kl_schedule")
    perceptual_weight: NonNegativeFloat = 0.0
    smoke_brightness: float = Field(
        0.1,
        ge=0,
        le=1,
        description="segmentation target: smoke where the channel-mean brightness on [0, 1] "
        "is above this (eval.metrics.bright_smoke_mask)",
    )

    kl_schedule: KLScheduleConfig = Field(default_factory=KLScheduleConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    augment: AutoencoderAugmentConfig = Field(default_factory=AutoencoderAugmentConfig)

    @property
    def resolved_channel_multipliers(self) -> tuple[int, ...]:
        """``channel_multipliers`` or the derived default, one entry per resolution level."""
        if self.channel_multipliers is not None:
            return tuple(self.channel_multipliers)
        return tuple(min(2**i, 4) for i in range(self.downsampling_steps + 1))

    @property
    def has_seg_head(self) -> bool:
        return self.seg_weight > 0

    @property
    def has_cls_head(self) -> bool:
        return self.cls_weight > 0

    def latent_resolution(self, image_size: int) -> int:
        """Side of the latent grid for square frames of ``image_size``; ConfigError if not divisible."""
        factor = 2**self.downsampling_steps
        if image_size <= 0 or image_size % factor:
            raise ConfigError(
                f"key 'data.image_size' has value {image_size}: must be a positive multiple of "
                f"{factor} (2**model.downsampling_steps with model.downsampling_steps="
                f"{self.downsampling_steps})"
            )
        return image_size // factor

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        """Configs and checkpoints written before the rename still load: ``smoke_threshold``
        here was a frame brightness, while river's ``training.smoke_threshold`` is a latent
        distance, so the brightness took a name of its own."""
        if not isinstance(data, dict) or "smoke_threshold" not in data:
            return data
        if "smoke_brightness" in data:
            raise ValueError(
                "model.smoke_threshold is the old name of model.smoke_brightness; give only "
                "smoke_brightness"
            )
        if data["smoke_threshold"] != 0.1:  # every older config.yaml holds the default: quiet
            warnings.warn(
                "model.smoke_threshold of an autoencoder is now model.smoke_brightness (a "
                "frame brightness on [0, 1]); read as smoke_brightness",
                FutureWarning,
                stacklevel=2,
            )
        data = dict(data)
        data["smoke_brightness"] = data.pop("smoke_threshold")
        return data

    @model_validator(mode="after")
    def _check(self) -> AutoencoderConfig:
        mults = self.resolved_channel_multipliers
        if len(mults) != self.downsampling_steps + 1:
            raise ValueError(
                f"channel_multipliers {list(mults)} has {len(mults)} entries; "
                f"downsampling_steps={self.downsampling_steps} needs {self.downsampling_steps + 1}"
            )
        for width in {self.base_channels * m for m in mults}:
            if width % self.norm_groups:
                raise ValueError(
                    f"norm_groups={self.norm_groups} does not divide level width {width} "
                    f"(base_channels={self.base_channels} x channel_multipliers {list(mults)})"
                )
        if not self.variational:
            if self.kl_weight > 0:
                raise ValueError("kl_weight > 0 needs variational: true")
            if self.kl_schedule.mode != "constant":
                raise ValueError(
                    f"kl_schedule.mode {self.kl_schedule.mode!r} needs variational: true"
                )
        if self.cls_weight > 0 and self.num_classes is None:
            raise ValueError("cls_weight > 0 needs num_classes (>= 2)")
        return self
