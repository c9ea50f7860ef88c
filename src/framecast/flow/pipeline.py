"""The stage-2 pipeline: frozen autoencoder + vector field + path, loaded from a river run.

Model, sampler and pipeline are separate (as in diffusers): :class:`RiverPipeline` owns
the two networks and the path; how to sample is a :class:`SamplerConfig` passed per call.
A river checkpoint is self-contained: it carries the autoencoder it was trained with
(weights under ``autoencoder.``, its config in the framecast entry), so generating and
evaluating never depend on the stage-1 run still being where it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from framecast.checkpoint import load_model_weights, read_checkpoint, resolve_checkpoint
from framecast.config import Config, validate_config
from framecast.errors import CheckpointError
from framecast.flow.path import CondOTPath
from framecast.flow.sampling import RolloutResult, SamplerConfig, rollout
from framecast.models.autoencoder import Autoencoder
from framecast.models.river import VectorFieldRegressor


@dataclass
class Prediction:
    """Predicted future frames.

    Attributes:
        frames: (B, K, F, 3, H, W) in [-1, 1], K samples of F frames per video.
        latents: (B, K, F, C, h, w) normalised latents they were decoded from.
        nfe_per_frame: velocity evaluations per predicted frame.
    """

    frames: Tensor
    latents: Tensor
    nfe_per_frame: float


class RiverPipeline(torch.nn.Module):
    """Encode observed frames, roll the flow model forward in latent space, decode.

    Args:
        autoencoder: frozen stage-1 model (normalised latents in and out).
        vector_field: the trained RIVER regressor.
        sigma: the path's minimum noise level (``model.sigma``).
        image_size: frame size the autoencoder expects.
    """

    def __init__(
        self,
        autoencoder: Autoencoder,
        vector_field: VectorFieldRegressor,
        sigma: float,
        image_size: int,
    ):
        super().__init__()
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.vector_field = vector_field.eval().requires_grad_(False)
        self.path = CondOTPath(sigma)
        self.image_size = image_size
        self.config: Config | None = None
        self.checkpoint: Path | None = None

    @property
    def trained_horizon(self) -> int:
        """Largest context-to-reference distance seen in training: num_observations - 2,
        or ``training.context_horizon`` where that is smaller."""
        if self.config is None:
            raise ValueError("pipeline has no training config")
        return self.config.training.trained_horizon

    @property
    def device(self) -> torch.device:
        return next(self.vector_field.parameters()).device

    @torch.no_grad()
    def encode(self, frames: Tensor, batch_size: int = 256) -> Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> normalised latents (B, T, C, h, w)."""
        flat = rearrange(frames, "b t c h w -> (b t) c h w")
        latents = torch.cat(
            [self.autoencoder.encode_latents(chunk) for chunk in flat.split(batch_size)]
        )
        return rearrange(latents, "(b t) c h w -> b t c h w", b=frames.shape[0])

    @torch.no_grad()
    def decode(self, latents: Tensor, batch_size: int = 256) -> Tensor:
        """Normalised latents (..., C, h, w) -> frames (..., 3, H, W) in [-1, 1]."""
        lead = latents.shape[:-3]
        flat = latents.reshape(-1, *latents.shape[-3:])
        frames = torch.cat(
            [self.autoencoder.decode_latents(chunk) for chunk in flat.split(batch_size)]
        )
        return frames.reshape(*lead, *frames.shape[1:])

    @torch.no_grad()
    def rollout_latents(
        self,
        context_latents: Tensor,
        num_frames: int,
        sampler: SamplerConfig = SamplerConfig(),
        samples: int = 1,
        generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> RolloutResult:
        """:func:`rollout` with this pipeline's vector field and path.

        A sampler without ``past_horizon`` draws contexts only as far back as training did
        (:attr:`trained_horizon`): the distance embedding never saw larger tau.
        """
        if self.config is not None:
            sampler = sampler.within(self.trained_horizon)
        return rollout(
            self.vector_field,
            context_latents,
            num_frames,
            self.path,
            sampler,
            samples=samples,
            generator=generator,
            progress=progress,
        )

    @torch.no_grad()
    def predict(
        self,
        context_frames: Tensor,
        num_frames: int,
        sampler: SamplerConfig = SamplerConfig(),
        samples: int = 1,
        generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Prediction:
        """Frames (B, T0, 3, H, W) in [-1, 1] -> :class:`Prediction` of ``num_frames`` frames."""
        size = context_frames.shape[-1]
        if context_frames.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"context frames are {tuple(context_frames.shape[-2:])}; this model expects "
                f"{self.image_size}x{self.image_size} (got {size})"
            )
        latents = self.encode(context_frames.to(self.device))
        result = self.rollout_latents(latents, num_frames, sampler, samples, generator, progress)
        return Prediction(self.decode(result.latents), result.latents, result.nfe_per_frame)


def load_river(
    path: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu"
) -> RiverPipeline:
    """A river run directory or checkpoint -> :class:`RiverPipeline` in eval mode.

    The architecture comes from the checkpoint; a checkpoint of another model kind is
    refused with a :class:`CheckpointError` naming the file.
    """
    ckpt_path = resolve_checkpoint(path, which)
    ckpt = read_checkpoint(ckpt_path, expected_kind="river")
    meta = ckpt["framecast"]
    config = validate_config(meta["config"], str(ckpt_path))
    if "autoencoder_config" not in meta:
        raise CheckpointError(
            f"checkpoint {ckpt_path}: no autoencoder_config in its framecast entry"
        )
    ae_config = validate_config(meta["autoencoder_config"], f"{ckpt_path} (autoencoder)")
    image_size = int(meta["image_size"])
    autoencoder = Autoencoder.from_config(ae_config.model, image_size)
    vector_field = VectorFieldRegressor.from_config(
        config.model.vector_field_regressor, use_compile=config.model.compile
    )
    load_model_weights(autoencoder, ckpt, ckpt_path, prefix="autoencoder.")
    load_model_weights(vector_field, ckpt, ckpt_path)
    pipeline = RiverPipeline(autoencoder, vector_field, config.model.sigma, image_size)
    pipeline.config = config
    pipeline.checkpoint = ckpt_path
    return pipeline.to(device)
