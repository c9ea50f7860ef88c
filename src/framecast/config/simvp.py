"""Schema of ``model.kind: simvp`` (SimVP+gSTA, the deterministic learned baseline).

The model predicts ``training.frames_to_generate`` frames (T_out) at once from the
``training.condition_frames`` frames before them (T_in), and longer horizons by rolling
out (``framecast.models.simvp``). Defaults are a small model; OpenSTL's Moving-MNIST
SimVP+gSTA is hid_channels 64, hid_translator 512, num_encoder_layers 4,
num_translator_blocks 8.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from framecast.config.schema import ModelConfig, Width, register_model_kind


@register_model_kind("simvp")
class SimVPConfig(ModelConfig):
    """SimVP+gSTA: frames (B, T_in, C, H, W) in [-1, 1] -> (B, T_out, C, H, W) in [-1, 1]."""

    kind: Literal["simvp"] = "simvp"

    image_channels: PositiveInt = Field(
        3, description="channels of the frames; follows data.channels when left out"
    )
    hid_channels: Width = Field(16, description="spatial encoder/decoder width C_s (SimVP's hid_S)")
    hid_translator: Width = Field(
        256, description="translator width C_t of the gSTA blocks (SimVP's hid_T)"
    )
    num_encoder_layers: PositiveInt = Field(
        4,
        description="encoder conv blocks N_S (and as many decoder blocks); every second one "
        "halves the resolution: 64x64 -> 16x16 at 4",
    )
    num_translator_blocks: PositiveInt = Field(4, description="gSTA blocks N_T")
    kernel_size: PositiveInt = Field(3, description="encoder/decoder conv kernel (odd)")
    attention_kernel_size: PositiveInt = Field(
        21,
        description="large kernel K of the gSTA attention, decomposed into a (2d-1)^2 "
        "depthwise conv and a K/d depthwise conv of dilation d (odd, >= 3)",
    )
    attention_dilation: PositiveInt = Field(
        3, description="dilation d of the gSTA attention's dilated depthwise conv"
    )
    mlp_ratio: float = Field(8.0, gt=0, description="gSTA feed-forward width / C_t")
    drop_path: float = Field(
        0.0, ge=0, lt=1, description="stochastic depth of the last gSTA block (0 at the first)"
    )
    norm_groups: PositiveInt = Field(
        2, description="GroupNorm groups of the encoder/decoder blocks; divides hid_channels"
    )
    output_activation: Literal["tanh", "clamp"] = Field(
        "clamp",
        description="clamp to [-1, 1] (linear inside the range, as SimVP's readout; exact "
        "black backgrounds) or tanh",
    )

    @property
    def downsampling_factor(self) -> int:
        """H / h: the encoder halves the resolution num_encoder_layers // 2 times."""
        return 2 ** (self.num_encoder_layers // 2)

    @model_validator(mode="after")
    def _check(self) -> SimVPConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd ('same' padding)")
        if self.attention_kernel_size % 2 == 0 or self.attention_kernel_size < 3:
            raise ValueError(
                f"attention_kernel_size={self.attention_kernel_size} must be odd and >= 3"
            )
        if self.attention_dilation > self.attention_kernel_size // 2:
            raise ValueError(
                f"attention_dilation={self.attention_dilation} must be at most "
                f"attention_kernel_size // 2 = {self.attention_kernel_size // 2}"
            )
        if self.hid_channels % self.norm_groups:
            raise ValueError(
                f"norm_groups={self.norm_groups} does not divide hid_channels={self.hid_channels}"
            )
        return self
