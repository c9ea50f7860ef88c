"""The WuBu-GAAD VAE-GAN assembled: encoder over the context frames, generator, discriminator.

Encoder (prediction, not reconstruction: it sees the context frames only)::

    context (B, Tc, C, H, W)
      ├─ shallow CNN → RoIAlign over the GAAD boxes → (B, Tc, N, C·oh·ow) → Linear
      │     → WuBu-S per region → (B, Tc, N, s_out) → flattened per frame
      └─ [motion branch] Farneback flow between consecutive frames (B, Tc−1, 2, H, W)
            → per-region magnitude/angle statistics over the motion boxes → Linear
            → WuBu-M per region → flattened per frame pair; frame 0 gets zeros
    per-frame vectors (B, Tc, D) → GRU over time (every frame reaches the final state)
      → WuBu-T → mu, logvar (B, latent_dim)

Generator: z (+ with ``gen_use_gaad_film``, the context frames' content per GAAD box, read
by RoIAlign-pooling FiLM) → future frames. Discriminator: future frames (+ with
``disc_use_gaad_film_condition``, FiLM from the judged clip's own content per box) → logit.

The users' script fed the target frames to the encoder as well (which turns prediction into
reconstruction) and its temporal stage kept only the last frame; here a test checks that
the first context frame changes mu and that the future frames are never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from framecast.losses.autoencoder import kl_divergence as element_mean_kl
from framecast.models.vaegan.discriminator import VideoDiscriminator
from framecast.models.vaegan.gaad import gaad_boxes, roi_align
from framecast.models.vaegan.generator import VideoGenerator
from framecast.models.vaegan.motion import farneback_flow, flow_region_stats, stats_dim
from framecast.models.vaegan.wubu import WuBuStack


@dataclass
class VAEGANOutput:
    """One forward pass: the generated future and the posterior it came from."""

    frames: Tensor  # (B, F, C, H, W) in [-1, 1]
    mu: Tensor  # (B, latent_dim)
    logvar: Tensor  # (B, latent_dim)
    z: Tensor  # (B, latent_dim), the latent the generator decoded


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, σ²) ‖ N(0, I)), summed over latent dims, averaged over the batch.

    mu, logvar: (B, latent_dim). The autoencoder's :func:`framecast.losses.kl_divergence` is
    a per-element mean; here λ_KL weighs the whole latent, as in the users' script.
    """
    return element_mean_kl(mu, logvar) * mu.shape[1]


class WuBuGAADEncoder(nn.Module):
    """Context frames (B, Tc, C, H, W) → (mu, logvar), each (B, latent_dim)."""

    def __init__(self, cfg, image_size: int, context_frames: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.context_frames = context_frames
        self.use_motion = cfg.use_wubu_motion_branch
        if self.use_motion and context_frames < 2:
            raise ValueError(
                "use_wubu_motion_branch needs at least 2 context frames for optical flow; "
                f"training.condition_frames is {context_frames}"
            )
        boxes = gaad_boxes(
            cfg.gaad_decomposition_type,
            image_size,
            image_size,
            cfg.gaad_num_regions,
            cfg.gaad_min_size_px,
        )
        self.register_buffer("boxes", boxes, persistent=False)
        ch = cfg.encoder_shallow_cnn_channels
        # Shallow on purpose: RoIAlign should pool nearly local features of each region.
        self.shallow_cnn = nn.Sequential(
            nn.Conv2d(cfg.image_channels, ch, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.GELU(),
        )
        self.roi_output = tuple(cfg.encoder_roi_align_output)
        oh, ow = self.roi_output
        self.region_to_tangent = nn.Linear(ch * oh * ow, cfg.encoder_initial_tangent_dim)
        self.wubu_s = _stack(cfg.wubu_s, cfg.encoder_initial_tangent_dim, cfg)
        frame_dim = cfg.gaad_num_regions * cfg.wubu_s.output_dim

        if self.use_motion:
            motion_boxes = gaad_boxes(
                cfg.gaad_motion_decomposition_type,
                image_size,
                image_size,
                cfg.gaad_motion_num_regions,
                cfg.gaad_min_size_px,
            )
            self.register_buffer("motion_boxes", motion_boxes, persistent=False)
            self.flow_components = tuple(cfg.flow_stats_components)
            hidden = cfg.wubu_m.hyperbolic_dims[0] if cfg.wubu_m.hyperbolic_dims else 32
            self.flow_to_tangent = nn.Linear(stats_dim(self.flow_components), hidden)
            self.wubu_m = _stack(cfg.wubu_m, hidden, cfg)
            frame_dim += cfg.gaad_motion_num_regions * cfg.wubu_m.output_dim

        self.frame_norm = nn.LayerNorm(frame_dim)
        self.temporal = nn.GRU(frame_dim, cfg.temporal_hidden_dim, batch_first=True)
        self.wubu_t = _stack(cfg.wubu_t, cfg.temporal_hidden_dim, cfg)
        self.to_mu = nn.Linear(cfg.wubu_t.output_dim, cfg.latent_dim)
        self.to_logvar = nn.Linear(cfg.wubu_t.output_dim, cfg.latent_dim)

    def appearance(self, context: Tensor) -> Tensor:
        """(B, Tc, C, H, W) → per-frame appearance vectors (B, Tc, N·s_out)."""
        b, t = context.shape[:2]
        features = self.shallow_cnn(context.flatten(0, 1))
        regions = roi_align(features, self.boxes, self.roi_output)  # (B·Tc, N, ch, oh, ow)
        tangent = self.region_to_tangent(regions.flatten(2))
        return self.wubu_s(tangent).reshape(b, t, -1)

    def motion(self, context: Tensor) -> Tensor:
        """(B, Tc, C, H, W) → per-frame motion vectors (B, Tc, Nm·m_out); frame 0 is zeros."""
        flow = farneback_flow(context)  # (B, Tc−1, 2, H, W), no gradient (OpenCV)
        stats = flow_region_stats(flow, self.motion_boxes, self.flow_components)
        per_pair = self.wubu_m(self.flow_to_tangent(stats.to(context.dtype)))
        per_pair = per_pair.flatten(2)  # (B, Tc−1, Nm·m_out)
        first = torch.zeros_like(per_pair[:, :1])
        return torch.cat([first, per_pair], dim=1)

    def forward(self, context: Tensor) -> tuple[Tensor, Tensor]:
        if context.ndim != 5 or context.shape[1] != self.context_frames:
            raise ValueError(
                f"expected context frames (B, {self.context_frames}, C, H, W), "
                f"got {tuple(context.shape)}"
            )
        per_frame = self.appearance(context)
        if self.use_motion:
            per_frame = torch.cat([per_frame, self.motion(context)], dim=-1)
        sequence, _ = self.temporal(self.frame_norm(per_frame))
        summary = self.wubu_t(sequence[:, -1])  # the GRU's last state has read every frame
        return self.to_mu(summary), self.to_logvar(summary).clamp(-30.0, 20.0)


def _stack(stack_cfg, input_dim: int, cfg) -> WuBuStack:
    return WuBuStack(
        input_dim=input_dim,
        level_dims=list(stack_cfg.hyperbolic_dims),
        initial_curvatures=list(stack_cfg.initial_curvatures),
        output_dim=stack_cfg.output_dim,
        num_boundary_points=cfg.wubu_boundary_points,
        dropout=cfg.wubu_dropout,
        use_rotation=stack_cfg.use_rotation,
    )


class WuBuGAADVAEGAN(nn.Module):
    """Encoder + generator (the "generator" side) and the discriminator, in one module so a
    checkpoint holds all three. The training loop steps them with two optimisers:
    :meth:`generator_parameters` and ``self.discriminator.parameters()``."""

    def __init__(self, cfg, image_size: int, context_frames: int, future_frames: int) -> None:
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.context_frames = context_frames
        self.future_frames = future_frames
        self.encoder = WuBuGAADEncoder(cfg, image_size, context_frames)
        self.generator = VideoGenerator(
            latent_dim=cfg.latent_dim,
            num_frames=future_frames,
            image_size=image_size,
            channels=cfg.image_channels,
            base_channels=cfg.gen_base_channels,
            num_regions=cfg.gaad_num_regions,
            use_gaad_film=cfg.gen_use_gaad_film,
            temporal_kernel_size=cfg.gen_temporal_kernel_size,
            context_frames=context_frames,
            film_roi_output=tuple(cfg.gaad_film_roi_align_output),
            output_activation=cfg.gen_output_activation,
        )
        self.discriminator = VideoDiscriminator(
            channels=cfg.image_channels,
            num_frames=future_frames,
            image_size=image_size,
            base_channels=cfg.disc_base_disc_channels,
            max_channels=cfg.disc_max_disc_channels,
            temporal_kernel_size=cfg.disc_temporal_kernel_size,
            apply_spectral_norm=cfg.disc_apply_spectral_norm,
            use_gaad_film=cfg.disc_use_gaad_film_condition,
            num_regions=cfg.gaad_num_regions,
            condition_dim=cfg.disc_gaad_condition_dim_disc,
            film_roi_output=tuple(cfg.gaad_film_roi_align_output),
        )

    @property
    def boxes(self) -> Tensor:
        """(N, 4) GAAD boxes of the appearance branch; both GAAD-FiLMs pool over them too."""
        return self.encoder.boxes

    def generator_parameters(self):
        """Encoder and generator parameters: everything the generator optimiser steps."""
        yield from self.encoder.parameters()
        yield from self.generator.parameters()

    def generate(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """(B, latent_dim) → future frames (B, F, C, H, W) in [-1, 1].

        ``context`` (B, Tc, C, H, W): the frames whose GAAD-region contents the generator's
        FiLM reads; needed with ``gen_use_gaad_film``, ignored without it.
        """
        return self.generator(z, self.boxes, context)

    def discriminate(self, clip: Tensor) -> Tensor:
        """(B, F, C, H, W) → logits (B,)."""
        return self.discriminator(clip, self.boxes)

    def forward(self, context: Tensor, sample_posterior: bool = True) -> VAEGANOutput:
        """Context (B, Tc, C, H, W) → generated future; ``sample_posterior`` False uses mu."""
        mu, logvar = self.encoder(context)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample_posterior else mu
        return VAEGANOutput(self.generate(z, context), mu, logvar, z)
