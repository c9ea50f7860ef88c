"""Stage 2 in Lightning: RIVER flow matching on latents, a thin wrapper around plain modules.

One training step, top to bottom: a clip of N latents (from the latent cache, or encoded
online by the frozen autoencoder) → per sample draw target k, reference k−1 and context
c < k−1 → t ~ U[0, 1], x_t on the path → velocity from the regressor → smoke-weighted
flow-matching loss → backward (Lightning clips gradients, autocasts bf16 and averages EMA
weights as configured).

The frozen autoencoder is part of the module, so river checkpoints carry it and
``generate``/``evaluate`` need nothing but the river run.
"""

from __future__ import annotations

import copy
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from framecast.checkpoint import read_checkpoint, resolve_checkpoint
from framecast.config import Config, apply_overrides, validate_config
from framecast.config.river import RiverConfig
from framecast.data.dataset import (
    frames_to_tensor,
    make_dataloader,
    resolve_data_channels,
    split_dir,
)
from framecast.data.latent_cache import model_fingerprint, read_cache_info
from framecast.data.latent_dataset import make_latent_dataloader
from framecast.data.sources import center_crop_resize, open_split
from framecast.errors import CheckpointError, ConfigError, DataError
from framecast.eval.metrics import psnr
from framecast.eval.plots import save_image_grid, to_uint8_images
from framecast.flow.distill import DistillSamplers, distillation_loss
from framecast.flow.path import CondOTPath
from framecast.flow.pipeline import RiverPipeline, load_river
from framecast.flow.sampling import SamplerConfig, rollout
from framecast.flow.solvers import SolverConfig
from framecast.losses.flow import FlowLossOutput, river_flow_loss
from framecast.losses.latent_smoke import (
    MASK_DEFINITION,
    NoSmokeFoundError,
    black_frame_latent,
    frame_smoke_cells,
    latent_smoke_distance,
    threshold_statistics,
)
from framecast.models.autoencoder.loading import LoadedAutoencoder, load_autoencoder
from framecast.models.river import VectorFieldRegressor
from framecast.training.datamodule import ClipDataModule, training_position
from framecast.training.module import FramecastModule
from framecast.training.task import ResolvedRun, Task, refuse_auto

# The smoke ratio is judged over this many recent steps, once that many have been seen.
SMOKE_RATIO_WINDOW = 50
SMOKE_RATIO_RANGE = (0.05, 0.5)
SAMPLE_CLIPS = 4  # clips shown in each validation rollout strip
VALIDATION_SAMPLER = SamplerConfig(SolverConfig("euler", 10))
# Without a latent cache, `smoke_threshold: auto` looks at this many training videos.
AUTO_THRESHOLD_VIDEOS = 32


class SmokeRatioWarning(UserWarning):
    """The share of latent pixels counted as smoke is implausible: check smoke_threshold."""


def load_stage1(config: Config) -> LoadedAutoencoder:
    """The frozen autoencoder named by ``model.autoencoder``, checked against the regressor."""
    cfg: RiverConfig = config.model
    if cfg.autoencoder is None:
        raise ConfigError(
            "model.autoencoder: name the trained stage-1 run (RUN_DIR_OR_CHECKPOINT) for kind river"
        )
    loaded = load_autoencoder(cfg.autoencoder)
    if config.data.image_size != loaded.image_size:
        # Frames are encoded at the size the autoencoder saw; training at another size
        # without a word would make every figure of the run refer to the wrong resolution.
        raise ConfigError(
            f"data.image_size={config.data.image_size}, but the autoencoder "
            f"{cfg.autoencoder} was trained on {loaded.image_size}×{loaded.image_size} frames; "
            f"set data.image_size={loaded.image_size}"
        )
    ae_cfg = loaded.config.model
    # Frames are read with data.channels and must be what the autoencoder takes (a grey
    # autoencoder cannot read RGB, and RGB encoded as luma would be another dataset).
    channels = resolve_data_channels(config)
    if channels != ae_cfg.image_channels:
        raise ConfigError(
            f"data.channels={channels}, but the autoencoder {cfg.autoencoder} takes frames of "
            f"{ae_cfg.image_channels} channel{'s' if ae_cfg.image_channels != 1 else ''} "
            f"(its model.image_channels={ae_cfg.image_channels}); "
            f"set data.channels={ae_cfg.image_channels}"
        )
    res = ae_cfg.latent_resolution(loaded.image_size)
    vfr = cfg.vector_field_regressor
    expected = (ae_cfg.latent_channels, res, res)
    if (vfr.state_size, *vfr.state_res) != expected:
        raise ConfigError(
            f"model.vector_field_regressor: state_size={vfr.state_size}, state_res={list(vfr.state_res)} "
            f"do not match the autoencoder {cfg.autoencoder} (latents {expected[0]}×{res}×{res}); "
            f"set state_size={expected[0]} and state_res=[{res}, {res}]"
        )
    return loaded


@dataclass
class SmokeThresholdChoice:
    """The threshold a run's smoke mask uses, and where it came from."""

    threshold: float
    source: str  # "config" | "latent cache" | "training frames"
    derived: float | None = None  # the data's threshold before smoke_threshold_scale
    scale: float = 1.0
    statistics: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.source == "config":
            return f"training.smoke_threshold={self.threshold:.4g} (from the config)"
        stats = self.statistics or {}
        scaled = f" × smoke_threshold_scale {self.scale:g}" if self.scale != 1.0 else ""
        return (
            f"training.smoke_threshold=auto -> {self.threshold:.4g} ({self.derived:.4g}{scaled}; "
            f"from the {self.source}: the frames' smoke covers "
            f"{stats.get('frame_smoke_cell_share', float('nan')):.1%} of latent cells, IoU "
            f"{stats.get('suggested_threshold_iou', float('nan')):.2f}); written to config.yaml"
        )


def _cached_smoke_statistics(config: Config, autoencoder: torch.nn.Module) -> dict | None:
    """The smoke statistics ``framecast encode`` wrote for these weights, if current."""
    try:
        info = read_cache_info(config.data.root) if config.data.root else None
    except DataError:
        return None
    if not info or info.get("fingerprint") != model_fingerprint(autoencoder):
        return None
    smoke = info.get("smoke") or {}
    # Caches written before the mask was measured from the black frame's latent hold a
    # threshold on another scale: derive afresh instead.
    return smoke if smoke.get("mask_definition") == MASK_DEFINITION else None


@torch.no_grad()
def smoke_statistics_from_frames(
    data_root: str | Path,
    autoencoder: torch.nn.Module,
    image_size: int,
    background: torch.Tensor,
    max_videos: int = AUTO_THRESHOLD_VIDEOS,
    channels: int = 3,
) -> dict[str, Any]:
    """:func:`threshold_statistics` on up to ``max_videos`` evenly spaced training videos.

    Raises :class:`DataError` naming the folder when the frames hold no smoke.
    """
    train = Path(data_root) / "train"
    videos = open_split(train)
    picks = np.linspace(0, len(videos) - 1, min(max_videos, len(videos))).round().astype(int)
    cells, distances = [], []
    for index in sorted(set(picks.tolist())):
        frames = videos[index].read()  # (T, H, W, C) uint8
        if frames.shape[1:3] != (image_size, image_size):
            frames = center_crop_resize(frames, image_size)
        x = frames_to_tensor(frames, channels)  # (T, C, H, W): C as the autoencoder takes
        for chunk in x.split(256):
            latents = autoencoder.encode_latents(chunk).float()
            cells.append(frame_smoke_cells(chunk, tuple(latents.shape[-2:])))
            distances.append(latent_smoke_distance(latents, background))
    try:
        return threshold_statistics(torch.cat(cells), torch.cat(distances))
    except NoSmokeFoundError as exc:
        raise DataError(
            f"{train}: training.smoke_threshold=auto found {exc}; set training.smoke_threshold "
            "to a number or check the data"
        ) from None


def resolve_smoke_threshold(
    config: Config, autoencoder: torch.nn.Module, image_size: int, background: torch.Tensor
) -> SmokeThresholdChoice:
    """The run's smoke threshold: the config's number, or ``auto`` taken from the latent
    cache's statistics (same weights, same mask definition) or else from training frames."""
    t = config.training
    if t.smoke_threshold != "auto":
        return SmokeThresholdChoice(float(t.smoke_threshold), "config")
    frame_channels = getattr(autoencoder, "image_channels", 3)
    stats = _cached_smoke_statistics(config, autoencoder)
    source = "latent cache"
    if stats is None:
        if not config.data.root:
            raise ConfigError(
                "training.smoke_threshold=auto needs data.root (the data to derive it from)"
            )
        stats = smoke_statistics_from_frames(
            config.data.root, autoencoder, image_size, background, channels=frame_channels
        )
        source = "training frames"
    derived = float(stats["suggested_smoke_threshold"])
    return SmokeThresholdChoice(
        derived * t.smoke_threshold_scale, source, derived, t.smoke_threshold_scale, stats
    )


def _background_latent(stage1: LoadedAutoencoder) -> torch.Tensor:
    """The latent of an all-black frame: what the smoke mask measures distances from."""
    encode = stage1.model.eval().encode_latents
    return black_frame_latent(encode, stage1.config.model.image_channels, stage1.image_size)


def resolve_river_config(config: Config) -> ResolvedRun:
    """River's effective config, settled before the module is built (``Task.resolve_config``).

    :func:`load_stage1` checks the stage-1 run against the config (resolving
    ``data.channels: auto``); ``training.smoke_threshold: auto`` then becomes the number
    derived from the latent cache or the training frames (``smoke_threshold_scale``
    folded in, the scale set to 1), written into ``config`` in place, so config.yaml and
    the checkpoints record the number this run used and a resumed run derives nothing.
    The module gets the choice (its provenance) and the loaded stage 1 (not loaded twice).
    """
    teacher = adopt_teacher(config) if config.model.distill is not None else None
    stage1 = load_stage1(config)
    choice = resolve_smoke_threshold(
        config, stage1.model, stage1.image_size, _background_latent(stage1)
    )
    if config.training.smoke_threshold == "auto":
        config.training.smoke_threshold_scale = 1.0
        config.training.smoke_threshold = choice.threshold
        rank_zero_info(choice.describe())
    kwargs: dict[str, Any] = {"smoke_threshold_choice": choice, "stage1": stage1}
    if teacher is not None:
        kwargs["teacher"] = teacher
    return ResolvedRun(config, kwargs)


# What a student takes from its teacher's config: the architecture, path and stage 1 (its
# weights start from the teacher's), and the windows and smoke mask it was trained on.
_FROM_TEACHER = (
    ("model", "sigma"),
    ("model", "vector_field_regressor"),
    ("model", "autoencoder"),
    ("data", "image_size"),
    ("data", "channels"),
    ("training", "num_observations"),
    ("training", "condition_frames"),
    ("training", "frames_to_generate"),
    ("training", "smoke_threshold"),
)


DISTILL_TRAINING = (
    "training.lr=2e-4",
    "training.warmup_steps=50",
    "training.lr_schedule=cosine",
    "training.max_steps=1000",
    "training.val_every_n_steps=250",
    "training.ema_decay=0.995",
    "training.monitor=val/distill_mse",
)
"""Training settings ``framecast distill`` starts from (the teacher's config supplies the
rest; the command's overrides win): a short, gentle run from the teacher's weights."""


def distill_config(
    teacher: str | Path, overrides: list[str] | tuple[str, ...] = (), which: str = "best"
) -> Config:
    """The config of ``framecast distill --teacher RUN``: the teacher's own config (from its
    checkpoint), ``model.distill.teacher`` set, :data:`DISTILL_TRAINING`, then ``overrides``."""
    path = resolve_checkpoint(teacher, which)
    raw = read_checkpoint(path, expected_kind="river", mmap=True)["framecast"]["config"]
    raw = copy.deepcopy(raw)
    raw["model"]["distill"] = {"teacher": str(teacher), "teacher_which": which}
    raw["training"]["init_from"] = None  # the teacher's weights (adopt_teacher)
    raw = apply_overrides(raw, [*DISTILL_TRAINING, *overrides])
    return validate_config(raw, f"distill --teacher {teacher}")


def adopt_teacher(config: Config) -> RiverPipeline:
    """A distillation run's config takes from the teacher's checkpoint what the student
    must share with it (:data:`_FROM_TEACHER`, as on resume the architecture comes from the
    checkpoint), ``data.root`` where unset and ``training.init_from`` (the teacher's weights)
    where unset; in place. Returns the loaded teacher. Idempotent (a resumed run)."""
    distill = config.model.distill
    try:
        teacher = load_river(distill.teacher, which=distill.teacher_which)
    except CheckpointError as exc:
        raise ConfigError(f"model.distill.teacher: {exc}") from None
    assert teacher.config is not None  # load_river sets it
    if teacher.config.model.distill is not None:
        rank_zero_info(f"distilling {distill.teacher}, itself a distilled run")
    for section, key in _FROM_TEACHER:
        value = getattr(getattr(teacher.config, section), key)
        setattr(getattr(config, section), key, value)
    config.training.smoke_threshold_scale = 1.0
    if config.data.root is None:
        config.data.root = teacher.config.data.root
    if config.training.init_from is None:
        config.training.init_from = str(teacher.checkpoint)
    return teacher


class RiverModule(FramecastModule):
    kind = "river"

    def __init__(
        self,
        config: Config,
        smoke_threshold_choice: SmokeThresholdChoice | None = None,
        stage1: LoadedAutoencoder | None = None,
    ):
        """Build from a config :func:`resolve_river_config` has resolved (it also gives
        ``smoke_threshold_choice``, the threshold's provenance, and the loaded ``stage1``;
        without them the threshold counts as the config's and stage 1 is loaded here)."""
        super().__init__(config)
        resolver = "framecast.training.river.resolve_river_config"
        refuse_auto(config, "training.smoke_threshold", resolver)
        refuse_auto(config, "data.channels", resolver)
        cfg: RiverConfig = config.model
        if stage1 is None:
            stage1 = load_stage1(config)
        self.autoencoder = stage1.model.eval().requires_grad_(False)
        self.autoencoder_config = stage1.config.to_dict()
        self.image_size = stage1.image_size
        self.model = VectorFieldRegressor.from_config(
            cfg.vector_field_regressor, use_compile=cfg.compile
        )
        self.path = CondOTPath(cfg.sigma)
        # The smoke mask is measured from the black background's latent (losses.latent_smoke);
        # not persistent: it follows from the frozen autoencoder.
        self.register_buffer("background_latent", _background_latent(stage1), persistent=False)
        self.smoke_threshold_choice = smoke_threshold_choice or SmokeThresholdChoice(
            float(config.training.smoke_threshold), "config"
        )
        self.validation_sampler = VALIDATION_SAMPLER  # the validation rollout's sampler
        self._recent_smoke_ratio: deque[float] = deque(maxlen=SMOKE_RATIO_WINDOW)
        self._smoke_ratio_warned = False
        self._sample_batch: torch.Tensor | None = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.autoencoder.eval()  # frozen: its normalisation layers never switch to training
        return self

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.model.parameters())
        return {"optimizer": optimizer, "lr_scheduler": self.make_scheduler(optimizer)}

    # -- data -----------------------------------------------------------------------
    @torch.no_grad()
    def clip_latents(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, N, C, h, w) normalised latents: cached, or encoded online from frames."""
        if "latents" in batch:
            return batch["latents"]
        frames = batch["frames"]  # (B, N, 3, H, W)
        # fp32 like the cache, whatever the training precision.
        with torch.autocast(frames.device.type, enabled=False):
            latents = self.autoencoder.encode_latents(frames.flatten(0, 1).float())
        return latents.unflatten(0, frames.shape[:2])

    # -- the RIVER objective ------------------------------------------------------------
    def flow_loss(
        self, latents: torch.Tensor, generator: torch.Generator | None = None
    ) -> FlowLossOutput:
        """Smoke-weighted flow-matching loss on (B, N, C, h, w) clip latents."""
        t = self.config.training
        return river_flow_loss(
            self.model,
            self.path,
            latents,
            t.condition_frames,
            smoke_threshold=float(t.smoke_threshold),
            smoke_weight=t.smoke_weight,
            background_weight=t.background_weight,
            generator=generator,
            background_latent=self.background_latent,
            # Training only: validation measures the clean task, comparable across runs.
            context_noise=t.context_noise if self.training else 0.0,
            pushforward=t.pushforward if self.training else 0.0,
            pushforward_steps=t.pushforward_steps,
            context_horizon=t.context_horizon,
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        out = self.flow_loss(self.clip_latents(batch))
        self.check_finite(out.loss, {"flow_matching_mse_unweighted": out.mse})
        self.log("train/loss", out.loss.detach(), prog_bar=True)
        for name, value in out.logged().items():
            if not torch.isnan(value):  # a batch without smoke (or background) has no such MSE
                self.log(name, value)
        self._check_smoke_ratio(float(out.smoke_ratio))
        return out.loss

    def _check_smoke_ratio(self, ratio: float) -> None:
        self._recent_smoke_ratio.append(ratio)
        if self._smoke_ratio_warned or len(self._recent_smoke_ratio) < SMOKE_RATIO_WINDOW:
            return
        mean = sum(self._recent_smoke_ratio) / len(self._recent_smoke_ratio)
        low, high = SMOKE_RATIO_RANGE
        if not low <= mean <= high:
            self._smoke_ratio_warned = True
            threshold = self.config.training.smoke_threshold
            side = "below" if mean < low else "above"
            hint = (
                "; smoke_threshold: auto derives it from the data"
                if self.smoke_threshold_choice.source == "config"
                else "; the data's own smoke covers "
                f"{(self.smoke_threshold_choice.statistics or {}).get('frame_smoke_cell_share', 0):.1%}"
                " of latent cells: is the background black?"
            )
            warnings.warn(
                f"smoke ratio stayed {side} {low if mean < low else high} over the last "
                f"{SMOKE_RATIO_WINDOW} steps (mean {mean:.3f}): training.smoke_threshold={threshold} "
                "is probably wrong for these latents; smoke weighting "
                f"{'hardly applies' if mean < low else 'covers most pixels'}{hint}",
                SmokeRatioWarning,
                stacklevel=2,
            )

    # -- validation -------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._sample_batch = None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        latents = self.clip_latents(batch)
        # The same draws at every validation, so the curve shows the model, not the noise.
        generator = torch.Generator().manual_seed(self.config.training.seed + batch_idx)
        out = self.flow_loss(latents, generator)
        # val/loss and val/flow_matching_mse are the weighted loss (they grow with
        # smoke_weight); compare weightings on the unweighted and per-region MSEs.
        self.log_dict_prefixed(
            "val",
            {
                "loss": out.loss,
                "flow_matching_mse": out.loss,
                "flow_matching_mse_unweighted": out.mse,
                "smoke_ratio": out.smoke_ratio,
            },
            on_epoch=True,
            batch_size=latents.shape[0],
        )
        # Region MSEs averaged over pixels, not batches: each batch weighs by its pixel count.
        background_pixels = out.pixels - out.smoke_pixels
        if out.smoke_pixels:
            self.log_dict_prefixed(
                "val", {"smoke_mse": out.smoke_mse}, on_epoch=True, batch_size=out.smoke_pixels
            )
        if background_pixels:
            self.log_dict_prefixed(
                "val",
                {"background_mse": out.background_mse},
                on_epoch=True,
                batch_size=background_pixels,
            )
        if batch_idx == 0:
            self._validation_rollout(latents[:SAMPLE_CLIPS])

    @torch.no_grad()
    def _validation_rollout(self, latents: torch.Tensor) -> None:
        """Predict the clip's frames after ``condition_frames`` with a cheap sampler; log the
        PSNR against the autoencoder's decoding of the true latents, keep frames for a strip."""
        t = self.config.training
        observed = t.condition_frames
        future = min(t.frames_to_generate, latents.shape[1] - observed)
        if future < 1:
            return
        generator = torch.Generator().manual_seed(t.seed)
        sampler = self.validation_sampler.within(t.trained_horizon)
        with torch.autocast(latents.device.type, enabled=False):
            result = rollout(
                self.model,
                latents[:, :observed].float(),
                future,
                self.path,
                sampler,
                generator=generator,
            )
            truth = self._decode(latents[:, observed : observed + future].float())
            predicted = self._decode(result.latents[:, 0])
            score = psnr(predicted.flatten(0, 1), truth.flatten(0, 1)).mean()
        self.log(
            "val/rollout_psnr", score, on_epoch=True, batch_size=latents.shape[0], sync_dist=True
        )
        self._sample_batch = torch.stack([truth, predicted])  # (2, B, F, 3, H, W)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, F, C, h, w) -> (B, F, 3, H, W)."""
        return self.autoencoder.decode_latents(latents.flatten(0, 1)).unflatten(
            0, latents.shape[:2]
        )

    def on_validation_epoch_end(self) -> None:
        path = self.sample_path("rollout")
        if self._sample_batch is None or path is None:
            return
        truth, predicted = self._sample_batch
        rows, labels = [], []
        for clip in range(truth.shape[0]):
            rows += [to_uint8_images(truth[clip]), to_uint8_images(predicted[clip])]
            labels += [f"clip {clip} truth (AE)", f"clip {clip} predicted"]
        save_image_grid(rows, path, labels=labels)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "autoencoder_config": self.autoencoder_config,
            "autoencoder_fingerprint": model_fingerprint(self.autoencoder),
            "smoke_threshold": {
                "threshold": self.smoke_threshold_choice.threshold,
                "source": self.smoke_threshold_choice.source,
                "derived": self.smoke_threshold_choice.derived,
                "scale": self.smoke_threshold_choice.scale,
                "mask_definition": MASK_DEFINITION,
            },
        }


class RiverDistillModule(RiverModule):
    """A few-step student of a trained river run (``model.distill``; :mod:`framecast.flow.distill`).

    Same network, checkpoint layout and kind as a river run, so ``generate`` and
    ``evaluate`` take it like any other (sampled with the student's Euler steps from the
    warm start). One training step: clip latents -> the teacher's next latent from a fresh
    x_s (no gradient) -> the student's few-step latent from the same x_s -> latent MSE.
    The teacher is held outside the module's state: checkpoints carry the student only.
    """

    def __init__(
        self,
        config: Config,
        smoke_threshold_choice: SmokeThresholdChoice | None = None,
        stage1: LoadedAutoencoder | None = None,
        teacher: RiverPipeline | None = None,
    ):
        super().__init__(config, smoke_threshold_choice, stage1)
        distill = config.model.distill
        if teacher is None:
            teacher = load_river(distill.teacher, which=distill.teacher_which)
        # A list keeps the teacher out of state_dict, the optimiser and EMA.
        self._teacher = [teacher.vector_field.eval().requires_grad_(False)]
        self.teacher_checkpoint = str(teacher.checkpoint)
        # Contexts as far back as the teacher's pipeline samples them.
        horizon = teacher.trained_horizon
        self.samplers = DistillSamplers.from_config(distill, past_horizon=horizon)
        self.validation_sampler = self.samplers.student

    @property
    def teacher(self) -> torch.nn.Module:
        return self._teacher[0]

    def _ready_teacher(self) -> torch.nn.Module:
        """The teacher on this module's device, its ``auto`` precision turned into what the
        device computes fast; done at the first loss (validation's sanity check or training)."""
        if self.samplers.teacher.precision == "auto":
            self._teacher[0] = self.teacher.to(self.device)
            self.samplers = DistillSamplers(
                self.samplers.teacher.for_device(self.device), self.samplers.student
            )
        return self.teacher

    def distill_loss(
        self,
        latents: torch.Tensor,
        generator: torch.Generator | None = None,
        available: int | None = None,
    ):
        teacher = self._ready_teacher()
        return distillation_loss(
            self.model, teacher, self.path, latents, self.samplers, generator, available
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        out = self.distill_loss(self.clip_latents(batch))
        self.check_finite(out.loss, {"distill_mse": out.loss})
        self.log("train/loss", out.loss.detach(), prog_bar=True)
        self.log("train/distill_mse", out.loss.detach())
        return out.loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        latents = self.clip_latents(batch)
        generator = torch.Generator().manual_seed(self.config.training.seed + batch_idx)
        # Every number of seen frames k that training draws (uniform on [1, N - 1]), not one
        # draw per batch: with a single validation batch one k decided the whole figure, and
        # the figure differed 10x between seeds of the same student.
        loss = torch.stack(
            [
                self.distill_loss(latents, generator, available).loss
                for available in range(1, latents.shape[1])
            ]
        ).mean()
        self.log_dict_prefixed(
            "val",
            {"loss": loss, "distill_mse": loss},
            on_epoch=True,
            batch_size=latents.shape[0],
        )
        if batch_idx == 0:
            self._validation_rollout(latents[:SAMPLE_CLIPS])

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            **super().checkpoint_extra(),
            "distilled_from": self.teacher_checkpoint,
            "sampler": self.samplers.student.to_dict(),
        }


def build_river_module(config: Config, **kwargs: Any) -> RiverModule:
    """A river run's module: the flow-matching model, or a student with ``model.distill``."""
    if config.model.distill is not None:
        return RiverDistillModule(config, **kwargs)
    kwargs.pop("teacher", None)
    return RiverModule(config, **kwargs)


class RiverDataModule(ClipDataModule):
    """Latent clips from the cache when it was written by this run's autoencoder; otherwise
    frame clips that the module encodes online (slower; a warning says how to cache)."""

    def __init__(self, config: Config):
        super().__init__(config)
        stage1 = load_stage1(config)
        self.image_size = stage1.image_size
        self.use_cache = self._cache_matches(stage1)

    def _cache_matches(self, stage1: LoadedAutoencoder) -> bool:
        root = self.config.data.root
        info = read_cache_info(root)
        hint = f"run `framecast encode --autoencoder {self.config.model.autoencoder} --data {root}`"
        if info is None:
            warnings.warn(
                f"{root}: no latent cache; encoding frames online with the frozen autoencoder "
                f"at every step (slower). To cache: {hint}",
                stacklevel=2,
            )
            return False
        if info.get("fingerprint") != model_fingerprint(stage1.model):
            warnings.warn(
                f"{root}/latents was written by another autoencoder ({info.get('autoencoder')}); "
                f"encoding online instead. To re-cache: {hint} --overwrite",
                stacklevel=2,
            )
            return False
        return True

    def _loader(self, split: str, train: bool):
        data, training = self.config.data, self.config.training
        # Where a resumed single-process run stopped: the data order carries on from there.
        position = training_position(self.trainer) if train else None
        if self.use_cache:
            return make_latent_dataloader(
                data.root, split, data, training, train=train, position=position
            )
        return make_dataloader(
            split_dir(data.root, split), data, training, train=train, position=position
        )


TASK = Task(
    build_module=build_river_module,
    build_datamodule=RiverDataModule,
    resolve_config=resolve_river_config,
)
