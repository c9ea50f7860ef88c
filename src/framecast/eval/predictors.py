"""Trained runs as the evaluation and generation loops see them, whatever their kind.

:func:`load_predictor` reads the kind stored in a checkpoint and returns the matching
:class:`Predictor` (river: a latent flow rollout with a sampler; vaegan: one forward pass;
simvp: :mod:`framecast.eval.simvp_predictor`). :func:`load_baseline_runs` loads the runs of
``evaluate --baseline`` and checks that they can be scored on the evaluated run's clips.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from framecast.checkpoint import read_checkpoint, resolve_checkpoint
from framecast.config import Config
from framecast.errors import CheckpointError, ConfigError
from framecast.flow.pipeline import RiverPipeline, load_river
from framecast.flow.sampling import SamplerConfig, announce_precision
from framecast.flow.solvers import SolverConfig
from framecast.models.vaegan.loading import VAEGANRun, load_vaegan

DEFAULT_SAMPLER = SamplerConfig(solver=SolverConfig(method="euler", steps=10))
SUPPORTED_KINDS = ("river", "vaegan", "simvp")
"""Model kinds :func:`load_predictor` (and so ``evaluate`` and ``generate``) accept."""

ProgressFn = Callable[[int], None]
"""Called once per predicted frame (for a progress bar)."""


class Predictor:
    """A trained run as the evaluation and generation loops see it, whatever its kind.

    Attributes:
        kind: the run's model kind; also the name of the method row of its predictions.
        baselines_reported: baseline methods measured beside it, in report order.
        checkpoint: the checkpoint file the model came from.
        config: the run's config.
        image_size: frame size H = W the model expects.
    """

    kind: str
    baselines_reported: tuple[str, ...] = ("copy_last",)
    checkpoint: Path
    config: Config
    image_size: int
    latents: Tensor | None = None
    """Latents (B, K, F, C, h, w) of the last :meth:`predict`, for kinds that have them
    (river): the evaluation's latent blow-up check reads them."""

    @property
    def methods(self) -> tuple[str, ...]:
        """Every reported method: the model, then its baselines."""
        return (self.kind, *self.baselines_reported)

    def frame_counts(self, context: int | None, frames: int | None) -> tuple[int, int]:
        """(context, frames) to use; None means the run's training values."""
        training = self.config.training
        return (
            training.condition_frames if context is None else context,
            training.frames_to_generate if frames is None else frames,
        )

    def start(self) -> None:
        """Called once the inputs are checked, before the first prediction and its progress
        bar (a river run says here which sampling precision ``auto`` became)."""

    def predict(
        self,
        context: Tensor,
        frames: int,
        samples: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
    ) -> tuple[Tensor, float | None]:
        """Context (B, T0, 3, H, W) in [-1, 1] -> (futures (B, K, F, 3, H, W) in [-1, 1],
        network evaluations per predicted frame, or None where that means nothing)."""
        raise NotImplementedError

    def baselines(self, context: Tensor, truth: Tensor) -> dict[str, Tensor]:
        """Each of :attr:`baselines_reported` -> its guess of ``truth`` (B, F, 3, H, W)."""
        return {"copy_last": context[:, -1:].expand_as(truth)}

    def sampler_settings(self) -> dict[str, Any] | None:
        """The sampler as recorded in metrics.json; None for kinds that use none."""
        return None

    def describe(self, samples: int) -> str:
        """How the predictions were made, for metrics.json and the printed header."""
        raise NotImplementedError


class RiverPredictor(Predictor):
    """A river run: encode the context, roll the flow model forward with ``sampler``, decode."""

    kind = "river"
    baselines_reported = ("copy_last", "autoencoder")

    def __init__(self, pipeline: RiverPipeline, sampler: SamplerConfig, precision_choice=None):
        assert pipeline.config is not None and pipeline.checkpoint is not None  # load_river
        self.pipeline = pipeline
        self.sampler = sampler
        self._unannounced = precision_choice  # said by start()
        self.checkpoint = pipeline.checkpoint
        self.config = pipeline.config
        self.image_size = pipeline.image_size

    def predict(
        self,
        context: Tensor,
        frames: int,
        samples: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
    ) -> tuple[Tensor, float | None]:
        self.start()
        prediction = self.pipeline.predict(
            context, frames, self.sampler, samples=samples, generator=generator, progress=progress
        )
        self.latents = prediction.latents
        return prediction.frames, prediction.nfe_per_frame

    def start(self) -> None:
        if self._unannounced is not None:
            announce_precision(self._unannounced)
            self._unannounced = None

    def baselines(self, context: Tensor, truth: Tensor) -> dict[str, Tensor]:
        recon = self.pipeline.decode(self.pipeline.encode(truth))
        return {**super().baselines(context, truth), "autoencoder": recon}

    def sampler_settings(self) -> dict[str, Any]:
        return self.sampler.to_dict()

    def describe(self, samples: int) -> str:
        return "latent flow rollout, decoded by the run's autoencoder"


class VAEGANPredictor(Predictor):
    """A VAE-GAN run: one forward pass predicts the F frames it was trained for; the
    encoder takes exactly the context frames it was trained with."""

    kind = "vaegan"

    def __init__(self, run: VAEGANRun):
        self.run = run
        self.checkpoint = run.checkpoint
        self.config = run.config
        self.image_size = run.image_size

    def frame_counts(self, context: int | None, frames: int | None) -> tuple[int, int]:
        trained = (self.run.context_frames, self.run.future_frames)
        asked = super().frame_counts(context, frames)
        if asked != trained:
            raise ConfigError(
                f"the vaegan run {self.checkpoint} predicts exactly {trained[1]} frames from "
                f"exactly {trained[0]} context frames (training.condition_frames and "
                f"frames_to_generate); got context {asked[0]} and frames {asked[1]}: leave "
                "--context and --frames out or give the trained values"
            )
        return trained

    def predict(
        self,
        context: Tensor,
        frames: int,
        samples: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
    ) -> tuple[Tensor, float | None]:
        futures = self.run.predict(context, samples=samples, generator=generator)
        if progress is not None:  # every frame comes out of the one forward pass at once
            for frame in range(frames):
                progress(frame)
        return futures, None

    def describe(self, samples: int) -> str:
        if samples == 1:
            return "one forward pass from the posterior mean mu"
        return f"one forward pass per posterior draw z = mu + sigma * eps, {samples} draws"


def checkpoint_kind(run: str | os.PathLike, which: str = "best") -> str:
    """The model kind stored in the checkpoint of ``run`` (a run directory or checkpoint)."""
    # Memory-mapped: only the metadata is read here; the loader reads the tensors.
    return read_checkpoint(resolve_checkpoint(run, which), mmap=True)["framecast"]["kind"]


def load_predictor(
    run: str | os.PathLike,
    which: str = "best",
    device: str | torch.device = "cpu",
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> Predictor:
    """The :class:`Predictor` of a river, vaegan or simvp run (``sampler``: river only).

    Raises :class:`CheckpointError` for a missing checkpoint or one of another kind.
    """
    kind = checkpoint_kind(run, which)
    if kind == "river":
        # precision auto becomes what this device computes fast, recorded in metrics.json;
        # said when the first rollout starts (a run refused before that prints its error alone)
        sampler, choice = sampler.resolve_precision(device)
        return RiverPredictor(load_river(run, which=which, device=device), sampler, choice)
    if kind == "vaegan":
        return VAEGANPredictor(load_vaegan(run, which=which, device=device))
    if kind == "simvp":
        # Imported here: simvp_predictor imports this module for Predictor.
        from framecast.eval.simvp_predictor import SimVPPredictor
        from framecast.models.simvp_loading import load_simvp

        return SimVPPredictor(load_simvp(run, which=which, device=device))
    raise CheckpointError(
        f"checkpoint {resolve_checkpoint(run, which)} holds a {kind!r} model; "
        f"expected one of {', '.join(repr(k) for k in SUPPORTED_KINDS)}"
    )


METHODS = (RiverPredictor.kind, *RiverPredictor.baselines_reported)
"""Methods of a river run in the order they are reported: the model, then the baselines."""


def load_baseline_runs(
    runs: Sequence[str | os.PathLike],
    predictor: Predictor,
    context: int,
    frames: int,
    which: str = "best",
    device: str | torch.device = "cpu",
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> dict[str, Predictor]:
    """Method name -> :class:`Predictor` of each run of ``--baseline``, in order.

    A baseline run is scored on the evaluated run's clips, so it must predict ``frames``
    frames from ``context`` at the same frame size and channels; :class:`ConfigError`
    (or :class:`CheckpointError`) names the ``--baseline`` run otherwise. Its method row
    is named after its kind (``simvp``), or ``kind:run-directory`` where that name is
    already taken (a second river run beside the evaluated one).
    """
    out: dict[str, Predictor] = {}
    taken = set(predictor.methods)
    for run in runs:
        where = f"--baseline {run}"
        try:
            extra = load_predictor(run, which=which, device=device, sampler=sampler)
            counts = extra.frame_counts(context, frames)
        except CheckpointError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if counts != (context, frames):
            raise ConfigError(
                f"{where}: the run predicts {counts[1]} frames from {counts[0]}; the evaluated "
                f"run {context} from {context} context frames; expected a run that takes "
                f"--context {context} --frames {frames}"
            )
        if extra.image_size != predictor.image_size:
            raise ConfigError(
                f"{where}: the run sees {extra.image_size}×{extra.image_size} frames, the "
                f"evaluated run {predictor.image_size}×{predictor.image_size}; baselines are "
                "scored on the same clips, so expected a run trained with data.image_size="
                f"{predictor.image_size}"
            )
        channels = (extra.config.data.channels, predictor.config.data.channels)
        if channels[0] != channels[1]:
            raise ConfigError(
                f"{where}: the run reads {channels[0]}-channel frames, the evaluated run "
                f"{channels[1]}-channel ones (data.channels); expected data.channels="
                f"{channels[1]}"
            )
        name = extra.kind
        if name in taken:
            name = f"{extra.kind}:{run_dir(extra.checkpoint).name}"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}#{n}", n + 1
        taken.add(name)
        out[name] = extra
    return out


def run_dir(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to (``RUN/checkpoints/best.ckpt``)."""
    checkpoint = Path(checkpoint)
    return (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )
