"""Convolutional encoder and decoder trunk (taming-transformers / LDM layout).

Level ``i`` works at resolution ``H / 2**i`` with ``base_channels * channel_multipliers[i]``
channels; there are ``len(channel_multipliers) - 1`` halvings. The lowest resolution has a
middle block (ResBlock, optional self-attention, ResBlock) on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from framecast.models.autoencoder.blocks import Downsample, ResBlock, SelfAttention, Upsample


def _middle(channels: int, norm_groups: int, attention: bool) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock(channels, channels, norm_groups)]
    if attention:
        layers.append(SelfAttention(channels, norm_groups))
    layers.append(ResBlock(channels, channels, norm_groups))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H / 2**steps, W / 2**steps).

    ``out_channels`` is ``latent_channels`` for a plain/VQ autoencoder and
    ``2 * latent_channels`` (mu, logvar) for a VAE; the caller decides.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int,
        channel_multipliers: Sequence[int],
        num_res_blocks: int,
        norm_groups: int,
        attention: bool,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        stages: list[nn.Module] = []
        channels = widths[0]
        for level, width in enumerate(widths):
            layers: list[nn.Module] = []
            for _ in range(num_res_blocks):
                layers.append(ResBlock(channels, width, norm_groups))
                channels = width
            if level < len(widths) - 1:
                layers.append(Downsample(channels))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.middle = _middle(channels, norm_groups, attention)
        self.norm_out = nn.GroupNorm(norm_groups, channels)
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.middle(self.stages(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, latent_channels, h, w) -> shared features (B, out_features, h * 2**steps, w * 2**steps).

    The features are normalised and activated; heads (RGB, segmentation, classification)
    read them. ``out_features`` is ``base_channels * channel_multipliers[0]``.
    """

    def __init__(
        self,
        latent_channels: int,
        base_channels: int,
        channel_multipliers: Sequence[int],
        num_res_blocks: int,
        norm_groups: int,
        attention: bool,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_multipliers]
        channels = widths[-1]
        self.conv_in = nn.Conv2d(latent_channels, channels, 3, padding=1)
        self.middle = _middle(channels, norm_groups, attention)
        stages: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            layers: list[nn.Module] = []
            for _ in range(num_res_blocks):
                layers.append(ResBlock(channels, widths[level], norm_groups))
                channels = widths[level]
            if level > 0:
                layers.append(Upsample(channels))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.norm_out = nn.GroupNorm(norm_groups, channels)
        self.out_features = channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.middle(self.conv_in(z)))
        return F.silu(self.norm_out(h))
