"""Stage-1 autoencoder: AE, VAE or VQ-VAE with RGB, segmentation and classification heads.

The flow stage works on the *pre-quantisation* latents (as RIVER does), normalised per
channel by the ``latent_shift``/``latent_scale`` buffers so that they are roughly
N(0, 1); :meth:`Autoencoder.fit_latent_normalization` sets them from encoded data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from framecast.models.autoencoder.encoder_decoder import Decoder, Encoder
from framecast.models.autoencoder.quantizer import VectorQuantizer

if TYPE_CHECKING:
    from framecast.config.autoencoder import AutoencoderConfig

# exp(logvar) overflows or the KL explodes outside this range early in training;
# taming-transformers / LDM use the same bounds.
LOGVAR_MIN = -30.0
LOGVAR_MAX = 20.0
# A channel that never varies (dead latent channel) must not be divided by zero.
MIN_LATENT_SCALE = 1e-5
OUTPUT_ACTIVATIONS = ("tanh", "clamp")
# Share of the gradient a clamped output pixel keeps beyond [-1, 1] (see bounded_frames).
CLAMP_GRADIENT_LEAK = 0.01


def bounded_frames(raw: torch.Tensor, output_activation: str, training: bool) -> torch.Tensor:
    """A readout (any shape) -> frames in [-1, 1]; shared by every model that outputs frames.

    ``tanh`` only approaches -1: a black background comes out a few grey levels above
    black (measured: +0.005 on [0, 1]), and SSIM's luminance term halves where a black
    truth meets a 0.01 offset. ``clamp`` reaches -1 exactly; in training (``training`` and
    gradients on) its gradient leaks through the clipped range (straight-through, scaled by
    ``CLAMP_GRADIENT_LEAK``) so a pixel pushed past -1 while it should be smoke can come
    back, while the forward value stays exactly the clipped one.
    """
    if output_activation == "tanh":
        return torch.tanh(raw)
    clipped = raw.clamp(-1.0, 1.0)
    if not (training and torch.is_grad_enabled()):
        return clipped
    outside = (raw.detach() < -1.0) | (raw.detach() > 1.0)
    leak = torch.where(outside, raw - raw.detach(), torch.zeros_like(raw))  # value 0
    return clipped + CLAMP_GRADIENT_LEAK * leak


@dataclass
class AutoencoderOutput:
    """What :meth:`Autoencoder.forward` returns for the training losses.

    rgb: (B, image_channels, H, W) in [-1, 1].
    seg_logits: (B, seg_classes, H, W) raw logits, or None without a segmentation head.
    cls_logits: (B, num_classes) raw logits, or None without a classification head.
    mu, logvar: (B, latent_channels, h, w) posterior parameters, or None unless variational.
    vq_loss: scalar commitment loss (weighted), or None without a quantiser.
    vq_stats: detached scalars perplexity, usage, restarted; empty without a quantiser.
    latents_prequant: (B, latent_channels, h, w) the (sampled, for a VAE) latent before
        quantisation, unnormalised.
    """

    rgb: torch.Tensor
    seg_logits: torch.Tensor | None
    cls_logits: torch.Tensor | None
    mu: torch.Tensor | None
    logvar: torch.Tensor | None
    vq_loss: torch.Tensor | None
    vq_stats: dict[str, torch.Tensor]
    latents_prequant: torch.Tensor


class Autoencoder(nn.Module):
    """Encoder -> [reparameterise] -> [vector-quantise] -> decoder -> heads.

    Frames are (B, image_channels, H, W) in [-1, 1]; latents (B, latent_channels, h, w)
    with h = H / 2**downsampling_steps.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        *,
        image_channels: int,
        latent_channels: int,
        variational: bool = False,
        quantizer: VectorQuantizer | None = None,
        seg_classes: int | None = None,
        num_classes: int | None = None,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
            )
        self.output_activation = output_activation
        self.encoder = encoder
        self.decoder = decoder
        self.variational = variational
        self.quantizer = quantizer
        self.image_channels = image_channels  # frames in and out: 1 (greyscale) or 3 (RGB)
        self.latent_channels = latent_channels
        features = decoder.out_features
        self.rgb_head = nn.Conv2d(features, image_channels, 3, padding=1)
        self.seg_head = nn.Conv2d(features, seg_classes, 1) if seg_classes else None
        self.cls_head = nn.Linear(features, num_classes) if num_classes else None
        self.register_buffer("latent_shift", torch.zeros(latent_channels))
        self.register_buffer("latent_scale", torch.ones(latent_channels))

    @classmethod
    def from_config(cls, cfg: AutoencoderConfig, image_size: int) -> Autoencoder:
        """Build from the model config; ``image_size`` is checked against the downsampling."""
        cfg.latent_resolution(image_size)
        mults = cfg.resolved_channel_multipliers
        encoder = Encoder(
            in_channels=cfg.image_channels,
            out_channels=cfg.latent_channels * (2 if cfg.variational else 1),
            base_channels=cfg.base_channels,
            channel_multipliers=mults,
            num_res_blocks=cfg.num_res_blocks,
            norm_groups=cfg.norm_groups,
            attention=cfg.attention,
        )
        decoder = Decoder(
            latent_channels=cfg.latent_channels,
            base_channels=cfg.base_channels,
            channel_multipliers=mults,
            num_res_blocks=cfg.num_res_blocks,
            norm_groups=cfg.norm_groups,
            attention=cfg.attention,
        )
        quantizer = None
        if cfg.quantizer == "vq":
            quantizer = VectorQuantizer(
                codebook_size=cfg.codebook_size,
                codebook_dim=cfg.latent_channels,
                commitment_weight=cfg.commitment_weight,
                ema_decay=cfg.ema_decay,
                dead_code_threshold=cfg.dead_code_threshold,
            )
        return cls(
            encoder,
            decoder,
            image_channels=cfg.image_channels,
            latent_channels=cfg.latent_channels,
            variational=cfg.variational,
            quantizer=quantizer,
            seg_classes=cfg.seg_classes if cfg.has_seg_head else None,
            num_classes=cfg.num_classes if cfg.has_cls_head else None,
            output_activation=cfg.output_activation,
        )

    @property
    def last_layer_weight(self) -> nn.Parameter:
        """Weight of the RGB head's conv, where the adaptive GAN weight is measured."""
        return self.rgb_head.weight

    def _posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, H, W) -> mu (B, C_lat, h, w) and clamped logvar (or None if not variational)."""
        if x.ndim != 4 or x.shape[1] != self.image_channels:
            # Named here: the first conv's own message says nothing about greyscale vs RGB.
            raise ValueError(
                f"the autoencoder takes (B, {self.image_channels}, H, W) frames "
                f"(image_channels={self.image_channels}), got {tuple(x.shape)}"
            )
        h = self.encoder(x)
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def encode_prequant(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised pre-quantisation latents (mu for a VAE): (B, C, H, W) -> (B, C_lat, h, w)."""
        return self._posterior(x)[0]

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pre-quantisation latents for the flow stage: (B, C, H, W) -> (B, C_lat, h, w)."""
        return self.normalize_latents(self.encode_prequant(x))

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C_lat, h, w) raw -> normalised with the stored per-channel shift and scale."""
        return (z - self.latent_shift[:, None, None]) / self.latent_scale[:, None, None]

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize_latents`."""
        return z * self.latent_scale[:, None, None] + self.latent_shift[:, None, None]

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C_lat, h, w) -> frames (B, image_channels, H, W) in [-1, 1].

        Denormalises, quantises (without touching the codebook) if VQ, decodes to RGB.
        """
        z = self.denormalize_latents(z)
        if self.quantizer is not None:
            z = self.quantizer(z, update=False).quantized
        return self.to_frames(self.rgb_head(self.decoder(z)))

    def to_frames(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's output (B, C, H, W) -> frames in [-1, 1] (:func:`bounded_frames`)."""
        return bounded_frames(raw, self.output_activation, self.training)

    @torch.no_grad()
    def fit_latent_normalization(self, latents: torch.Tensor) -> None:
        """Set ``latent_shift``/``latent_scale`` to the per-channel mean/std of raw latents.

        ``latents``: (N, C_lat, h, w) from :meth:`encode_prequant` (not already normalised).
        """
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected raw latents (N, {self.latent_channels}, h, w), got {tuple(latents.shape)}"
            )
        latents = latents.float()
        self.set_latent_normalization(latents.mean(dim=(0, 2, 3)), latents.std(dim=(0, 2, 3)))

    @torch.no_grad()
    def set_latent_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store a per-channel ``mean`` and ``std`` (C_lat,) as the latent shift and scale."""
        self.latent_shift.copy_(mean.float())
        self.latent_scale.copy_(std.float().clamp_min(MIN_LATENT_SCALE))

    def forward(self, x: torch.Tensor, sample_posterior: bool | None = None) -> AutoencoderOutput:
        """Full pass for training: frames (B, C, H, W) in [-1, 1] -> :class:`AutoencoderOutput`.

        ``sample_posterior`` (VAE only) defaults to ``self.training``; otherwise mu is decoded.
        """
        mu, logvar = self._posterior(x)
        if sample_posterior is None:
            sample_posterior = self.training
        z = mu
        if logvar is not None and sample_posterior:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        vq_loss = None
        vq_stats: dict[str, torch.Tensor] = {}
        z_dec = z
        if self.quantizer is not None:
            quantized = self.quantizer(z)
            z_dec, vq_loss, vq_stats = quantized.quantized, quantized.loss, quantized.stats()
        features = self.decoder(z_dec)
        return AutoencoderOutput(
            rgb=self.to_frames(self.rgb_head(features)),
            seg_logits=self.seg_head(features) if self.seg_head is not None else None,
            cls_logits=(
                self.cls_head(features.mean(dim=(2, 3))) if self.cls_head is not None else None
            ),
            mu=mu if self.variational else None,
            logvar=logvar,
            vq_loss=vq_loss,
            vq_stats=vq_stats,
            latents_prequant=z,
        )


class ChannelMoments:
    """Running per-channel sums of latents (B, C, h, w), for their mean and std.

    Accumulated in float64 so that thousands of batches lose no precision; used for the
    stored latent normalisation and for the latent cache's statistics.
    """

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None
        self.count = 0

    def update(self, z: torch.Tensor) -> None:
        total = z.sum(dim=(0, 2, 3)).double()
        squares = z.pow(2).sum(dim=(0, 2, 3)).double()
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += z.shape[0] * z.shape[2] * z.shape[3]

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (population) std, (C,) each, float64."""
        mean = self.total / self.count
        return mean, (self.squares / self.count - mean.pow(2)).clamp_min(0).sqrt()
