"""A trained SimVP run as ``framecast evaluate`` and ``generate`` see it.

Kept out of :mod:`framecast.eval.evaluate` (which this module imports for
:class:`Predictor`): ``load_predictor`` should import it inside its ``simvp`` branch, so
the two modules never import each other at load time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from framecast.errors import ConfigError
from framecast.eval.predictors import Predictor, ProgressFn
from framecast.models.simvp_loading import SimVPRun


class SimVPPredictor(Predictor):
    """A SimVP run: the newest T_in context frames predict T_out frames in one pass, and
    longer horizons roll out chunk by chunk. Deterministic: with K > 1 samples the one
    prediction is repeated K times (zero spread)."""

    kind = "simvp"
    baselines_reported = ("copy_last",)

    def __init__(self, run: SimVPRun):
        self.run = run
        self.checkpoint = run.checkpoint
        self.config = run.config
        self.image_size = run.image_size

    def frame_counts(self, context: int | None, frames: int | None) -> tuple[int, int]:
        asked = super().frame_counts(context, frames)
        if asked[0] < self.run.context_frames:
            raise ConfigError(
                f"the simvp run {self.checkpoint} reads {self.run.context_frames} context "
                f"frames (training.condition_frames); got context {asked[0]}: give --context "
                f"{self.run.context_frames} or more (only the newest "
                f"{self.run.context_frames} are read)"
            )
        if asked[1] < 1:
            raise ConfigError(f"--frames must be at least 1, got {asked[1]}")
        return asked

    def predict(
        self,
        context: Tensor,
        frames: int,
        samples: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
    ) -> tuple[Tensor, float | None]:
        """Context (B, T0, C, H, W) in [-1, 1] -> (futures (B, K, F, C, H, W) in [-1, 1],
        None: a forward pass per chunk, no sampler, so no evaluations per frame to count)."""
        futures = self.run.predict(context, frames, progress=progress)[:, None]
        if samples > 1:
            futures = futures.repeat(1, samples, 1, 1, 1, 1)
        return futures, None

    def describe(self, samples: int) -> str:
        t_in, t_out = self.run.context_frames, self.run.chunk_frames
        text = (
            f"deterministic: the newest {t_in} frames predict {t_out} frames per forward "
            "pass, rolled out autoregressively beyond that"
        )
        if samples > 1:
            text += f"; the one prediction repeated for each of the {samples} samples"
        return text
