"""Loading a trained VAE-GAN run for evaluation and generation, without Lightning.

The checkpoint is self-describing (``checkpoint["framecast"]`` holds kind ``vaegan``, the
config and ``image_size``), so the architecture is rebuilt from it and the weights the
Lightning module stored under ``model.`` are loaded strictly. Only ``weights_only``
loading is used (:mod:`framecast.checkpoint`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from framecast.checkpoint import load_model_weights, read_checkpoint, resolve_checkpoint
from framecast.config import Config, validate_config
from framecast.errors import CheckpointError
from framecast.models.vaegan.model import WuBuGAADVAEGAN


@dataclass
class VAEGANRun:
    """A trained VAE-GAN in eval mode and what it was trained with.

    Attributes:
        model: encoder, generator and discriminator (gradients off).
        config: the run's validated config.
        image_size: frame size H = W the model was built for.
        checkpoint: the file the weights came from.
    """

    model: WuBuGAADVAEGAN
    config: Config
    image_size: int
    checkpoint: Path

    @property
    def context_frames(self) -> int:
        """Context frames the encoder takes (``training.condition_frames``)."""
        return self.model.context_frames

    @property
    def future_frames(self) -> int:
        """Frames the generator produces (``training.frames_to_generate``)."""
        return self.model.future_frames

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(
        self, context: Tensor, samples: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """Context (B, Tc, C, H, W) in [-1, 1] -> futures (B, K, F, C, H, W) in [-1, 1].

        With ``samples`` K = 1 the generator decodes the posterior mean mu (deterministic);
        with K > 1 it decodes K posterior draws z = mu + sigma * eps per clip. eps comes
        from ``generator`` (a CPU generator, so a seed gives the same draws on any device);
        the model's own forward draws with ``randn_like`` and cannot be seeded per call.
        """
        context = context.to(self.device)
        if samples == 1:
            return self.model(context, sample_posterior=False).frames[:, None]
        mu, logvar = self.model.encoder(context)  # (B, latent_dim) each
        eps = torch.randn((*mu.shape[:1], samples, mu.shape[1]), generator=generator)
        z = mu[:, None] + eps.to(mu) * (0.5 * logvar[:, None]).exp()  # (B, K, latent_dim)
        # Each draw is decoded with its own clip's context (read by the generator's FiLM).
        frames = self.model.generate(
            z.flatten(0, 1), context.repeat_interleave(samples, dim=0)
        )  # (B·K, F, C, H, W)
        return frames.reshape(mu.shape[0], samples, *frames.shape[1:])


def load_vaegan(
    run: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"
) -> VAEGANRun:
    """A VAE-GAN run directory or checkpoint -> :class:`VAEGANRun` in eval mode.

    Raises :class:`CheckpointError` naming the file for a missing or unsafe checkpoint, a
    checkpoint of another model kind, or weights that do not fit the stored architecture.
    """
    ckpt_path = resolve_checkpoint(run, which)
    ckpt = read_checkpoint(ckpt_path, expected_kind="vaegan")
    meta = ckpt["framecast"]
    config = validate_config(meta["config"], str(ckpt_path))
    if "image_size" not in meta:
        raise CheckpointError(f"checkpoint {ckpt_path}: no image_size in its framecast entry")
    image_size = int(meta["image_size"])
    training = config.training
    try:
        model = WuBuGAADVAEGAN(
            config.model, image_size, training.condition_frames, training.frames_to_generate
        )
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {ckpt_path}: stored model config: {exc}") from exc
    load_model_weights(model, ckpt, ckpt_path)
    model = model.eval().requires_grad_(False).to(device)
    return VAEGANRun(model=model, config=config, image_size=image_size, checkpoint=ckpt_path)
