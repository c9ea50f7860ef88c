"""Typed config schema: one pydantic model per section and per model kind.

Every section forbids unknown keys, so a typo fails before any work starts. Model
kinds register their own schema with :func:`register_model_kind`; the ``model``
section is validated against the schema its ``kind`` names.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from framecast.hardware import TRAINING_PRECISIONS

# Marks a training field that only one model kind's objective reads; the loader refuses it,
# set away from its default, in a config of another kind (refuse_keys_of_other_kinds).
RIVER_ONLY = {"only_for_kind": "river"}


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


MAX_IMAGE_SIZE = 4096
"""Largest data.image_size: beyond it one frame batch alone outgrows any machine's memory."""
MAX_BATCH_SIZE = 65536
"""Largest data.batch_size: a larger one is a typo (it silently became one batch of all)."""
MAX_WIDTH = 4096
"""Largest channel width of a model (base_channels, inner_dim, hid_*): a wider one is a typo
that would try to allocate hundreds of GB."""
Width = Annotated[int, Field(gt=0, le=MAX_WIDTH)]
"""A model's channel width or feature dimension: a positive integer <= :data:`MAX_WIDTH`."""


class DataConfig(Section):
    """Where the dataset lives and how clips are drawn from it."""

    root: str | None = Field(None, description="dataset folder with train/ val/ test/")
    image_size: PositiveInt = Field(
        64, le=MAX_IMAGE_SIZE, description=f"square frame size the models see (<= {MAX_IMAGE_SIZE})"
    )
    channels: Literal[1, 3, "auto"] = Field(
        3,
        description="1 (greyscale: frames are read as luma), 3 (RGB) or 'auto' (the dataset's "
        "dataset.json 'channels', else 1 for framecast's simulated smoke, else 3; resolved when "
        "a run starts and written to its config.yaml)",
    )
    frame_stride: PositiveInt = Field(1, description="take every n-th frame of a video")
    batch_size: PositiveInt = Field(16, le=MAX_BATCH_SIZE, description="clips (or frames) per step")
    eval_batch_size: PositiveInt | None = Field(
        None, le=MAX_BATCH_SIZE, description="defaults to batch_size"
    )
    num_workers: int = Field(2, ge=0)
    clips_per_video: PositiveInt = Field(
        4, description="training clips drawn per video per epoch (random starts)"
    )
    eval_clips_per_video: PositiveInt = Field(
        1, description="evaluation clips per video (fixed, evenly spaced starts)"
    )

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> Any:
        # One clear message instead of pydantic's three (one per member of the Literal).
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or value not in (1, 3):
            raise ValueError(
                f"expected 1 (greyscale), 3 (RGB) or 'auto' (from the dataset), got {value!r}"
            )
        return int(value)


class TrainingConfig(Section):
    """Optimisation, schedule and the clip/frame bookkeeping shared by model kinds."""

    max_steps: int = Field(10_000, ge=-1, description="-1: no step limit (use max_epochs)")
    max_epochs: int | None = Field(None, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = Field(
        (0.9, 0.999), description="Adam's (beta1, beta2), each in [0, 1)"
    )
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    grad_clip: float | None = Field(
        1.0, gt=0, allow_inf_nan=False, description="global gradient-norm clip; null = off"
    )
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "auto",
        description="'auto' (bf16-mixed where the device computes bf16 natively: AMX or "
        "AVX512-BF16 CPUs, sm80+ GPUs; 16-mixed on older tensor-core GPUs where the kind "
        "allows; else 32; resolved when a run starts and written to its config.yaml), or "
        "32, bf16-mixed, 16-mixed",
    )
    ema_decay: float | None = Field(None, gt=0, lt=1, description="EMA of weights; null = off")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="in numpy's range [0, 2**32 - 1]")
    val_every_n_steps: PositiveInt | None = Field(
        None, description="validate every n steps; null = once per epoch"
    )
    limit_val_batches: int | float = Field(1.0, ge=0)
    log_every_n_steps: PositiveInt = 10
    sample_every_n_steps: PositiveInt | None = Field(
        None, description="sample grids; null = each validation"
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="validations without improvement"
    )
    monitor: str = Field(
        "val/loss",
        description="metric for the best checkpoint and early stopping (river's default: "
        "val/flow_matching_mse_unweighted, which does not depend on smoke_weight)",
    )
    monitor_mode: Literal["min", "max"] = "min"
    # Clip bookkeeping (the seed configs keep these under training:).
    num_observations: PositiveInt = Field(10, description="frames per training clip")
    condition_frames: PositiveInt = 1
    frames_to_generate: PositiveInt = 9
    # Smoke-mask weighting of the flow-matching loss (stage 2): a latent cell is smoke when
    # ||z - z_black|| > smoke_threshold (z_black: the latent of an all-black frame; see
    # framecast.losses.latent_smoke). `auto` derives the threshold from the data at the start
    # of a run and writes the number it used into the run's config.yaml.
    smoke_weight: float = Field(
        5.0, ge=0, description="loss weight of smoke latent pixels", json_schema_extra=RIVER_ONLY
    )
    background_weight: float = Field(
        1.0, ge=0, description="loss weight of the other pixels", json_schema_extra=RIVER_ONLY
    )
    smoke_threshold: float | Literal["auto"] = Field(
        "auto",
        description="'auto' (from the data) or a number >= 0: distance of the target latent "
        "from the all-black frame's latent above which a latent pixel is smoke",
        json_schema_extra=RIVER_ONLY,
    )
    smoke_threshold_scale: float = Field(
        1.0,
        gt=0,
        description="multiplies the derived threshold when smoke_threshold is auto "
        "(< 1: more cells count as smoke, > 1: fewer)",
        json_schema_extra=RIVER_ONLY,
    )
    # River: noise augmentation of the conditioning (issue 24 item 2). A rollout conditions
    # on its own imperfect frames, training only on true ones; with this on, each training
    # clip's reference and context latents get N(0, (u * context_noise)^2) noise, u ~ U[0, 1]
    # per clip, so the regressor learns to trust them less. Validation stays clean.
    context_noise: float = Field(
        0.0,
        ge=0,
        le=5,
        description="river: std ceiling of the Gaussian noise on the reference and context "
        "latents in training (per clip u * context_noise, u ~ U[0, 1]); 0 = off",
        json_schema_extra=RIVER_ONLY,
    )
    # River: training on the model's own rollouts (pushforward; issue 24 item 2).
    pushforward: float = Field(
        0.0,
        ge=0,
        le=1,
        description="river: probability per training clip that the reference frame is the "
        "model's own prediction of it (no gradient) instead of the true latent; 0 = off",
        json_schema_extra=RIVER_ONLY,
    )
    pushforward_steps: PositiveInt = Field(
        2,
        description="river: Euler steps of that prediction (from warm start 0.1)",
        json_schema_extra=RIVER_ONLY,
    )
    # River: the reference-frame distribution (issue 24 item 2). RIVER draws the random
    # earlier frame uniformly from every frame before the reference; a rollout then mostly
    # conditions on frames far back. This limits it to the last few, in training and
    # validation, and sampling follows (the pipeline's default past_horizon).
    context_horizon: PositiveInt | None = Field(
        None,
        description="river: draw the random earlier frame from at most this many frames "
        "before the reference (tau <= context_horizon) in training, validation and, by "
        "default, sampling; null = from all earlier frames (RIVER)",
        json_schema_extra=RIVER_ONLY,
    )
    # Warm start (sweep phases): model weights only, from another run of the same kind.
    init_from: str | None = Field(
        None, description="run directory or checkpoint whose model weights start this run"
    )
    init_which: Literal["best", "last"] = Field(
        "best", description="checkpoint of an init_from run directory"
    )

    @property
    def trained_horizon(self) -> int:
        """Largest context-to-reference distance tau that river training draws."""
        horizon = max(1, self.num_observations - 2)
        return horizon if self.context_horizon is None else min(horizon, self.context_horizon)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # YAML reads `precision: 32` as an int
        if value not in TRAINING_PRECISIONS:
            # One message with every allowed value (Lightning's aliases such as 'bf16' or
            # 'fp32' are not accepted: config.yaml records one spelling).
            raise ValueError(f"expected one of {', '.join(TRAINING_PRECISIONS)}, got {value!r}")
        return value

    @field_validator("smoke_threshold", mode="before")
    @classmethod
    def _smoke_threshold(cls, value: Any) -> Any:
        # One clear message instead of pydantic's two (one per member of the union).
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected 'auto' or a number >= 0, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected 'auto' or a number >= 0, got {value!r}") from None
        if not number >= 0 or number == float("inf"):  # also rejects NaN
            raise ValueError(f"expected 'auto' or a finite number >= 0, got {value!r}")
        return number

    @field_validator("betas")
    @classmethod
    def _check_betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in value):  # also refuses NaN
            raise ValueError(f"expected two numbers in [0, 1) (Adam's betas), got {list(value)}")
        return value

    @model_validator(mode="after")
    def _check_frames(self) -> TrainingConfig:
        if self.condition_frames >= self.num_observations:
            raise ValueError(
                f"condition_frames ({self.condition_frames}) must be smaller than "
                f"num_observations ({self.num_observations})"
            )
        if self.smoke_threshold != "auto" and self.smoke_threshold_scale != 1.0:
            raise ValueError(
                f"smoke_threshold_scale={self.smoke_threshold_scale} scales the derived "
                f"threshold of smoke_threshold: auto; with smoke_threshold="
                f"{self.smoke_threshold} set the number you want instead"
            )
        return self


class LoggingConfig(Section):
    """Loggers beside the always-on CSV."""

    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "framecast"
    wandb_offline: bool = False
    progress_bar: bool = True


class ModelConfig(Section):
    """Base of every model kind's schema; subclasses set ``kind`` as a Literal."""

    kind: str

    registry: ClassVar[dict[str, type[ModelConfig]]] = {}


def register_model_kind(kind: str):
    """Class decorator: make ``cls`` the schema of ``model.kind: <kind>``."""

    def decorate(cls: type[ModelConfig]) -> type[ModelConfig]:
        ModelConfig.registry[kind] = cls
        return cls

    return decorate


SINGLE_FRAME_KINDS = ("autoencoder",)
"""Kinds that train on single frames: ``data.frame_stride`` means nothing to them."""
DEFAULT_MONITOR = {"river": "val/flow_matching_mse_unweighted"}
"""``training.monitor`` when a config of that kind does not set it (others: val/loss)."""


class Config(Section):
    """A whole run's config: model, data, training, logging."""

    model: ModelConfig
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _dispatch_model_kind(cls, value: Any) -> Any:
        if isinstance(value, ModelConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping with a 'kind' key, got {type(value).__name__}")
        kind = value.get("kind")
        known = sorted(ModelConfig.registry)
        if kind is None:
            raise ValueError(
                f"missing 'kind'; allowed kinds: {', '.join(known) or '(none registered)'}"
            )
        if kind not in ModelConfig.registry:
            raise ValueError(f"unknown model kind {kind!r}; allowed kinds: {', '.join(known)}")
        return ModelConfig.registry[kind].model_validate(value)

    @model_validator(mode="after")
    def _frame_stride_needs_clips(self) -> Config:
        if self.model.kind in SINGLE_FRAME_KINDS and self.data.frame_stride != 1:
            raise ValueError(
                f"data.frame_stride={self.data.frame_stride} has no effect: kind "
                f"{self.model.kind} trains on single frames, not clips; leave it at 1"
            )
        return self

    @model_validator(mode="after")
    def _default_monitor(self) -> Config:
        # A stage-2 run's val/loss grows with training.smoke_weight, so it cannot choose
        # between checkpoints (or runs) of different weights; the unweighted flow-matching
        # MSE can. Only the default changes: an explicit monitor is kept.
        kind_default = DEFAULT_MONITOR.get(self.model.kind)
        if getattr(self.model, "distill", None) is not None:  # a few-step student (river)
            kind_default = "val/distill_mse"
        if kind_default is not None and "monitor" not in self.training.model_fields_set:
            self.training.monitor = kind_default
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON/checkpoint safe), model section included in full."""
        out = self.model_dump(mode="json", exclude={"model"})
        out = {"model": self.model.model_dump(mode="json"), **out}
        return out
