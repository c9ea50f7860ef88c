"""Schema of ``model.kind: motion`` (the LSTM motion-correction model for tracking data).

The data of a motion run is a JSON session file or a folder of them (``data.root``), or,
with ``synthetic.enabled``, generated sessions (``strict``: how bad frames are handled); ``data.batch_size``, ``eval_batch_size``
and ``num_workers`` apply, the frame-oriented data keys do not.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from framecast.config.schema import ModelConfig, Section, Width, register_model_kind


class MotionSyntheticConfig(Section):
    """Generated sessions instead of ``data.root`` (demo, tests)."""

    enabled: bool = False
    num_sessions: PositiveInt = Field(60, description="sessions, split 70/15/15")
    length: PositiveInt = Field(200, description="frames per session (±25 %)")
    seed: int = 0


class MotionAugmentConfig(Section):
    """Training-only augmentation."""

    noise_std: float = Field(0.02, ge=0, description="Gaussian input noise, in feature stds")
    speed_prob: float = Field(0.5, ge=0, le=1, description="share of windows resampled")
    speed_range: tuple[float, float] = Field(
        (0.8, 1.25), description="speed factor range of resampled windows"
    )

    @model_validator(mode="after")
    def _check_range(self) -> MotionAugmentConfig:
        lo, hi = self.speed_range
        if not 0 < lo <= hi:
            raise ValueError(f"speed_range {list(self.speed_range)}: need 0 < low <= high")
        return self


class MotionPlateauConfig(Section):
    """ReduceLROnPlateau on ``training.monitor`` (checked at every validation)."""

    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(3, ge=0, description="validations without improvement")
    min_lr: float = Field(1e-5, ge=0)


@register_model_kind("motion")
class MotionConfig(ModelConfig):
    """LSTM over a window of raw tracking frames → the next clean frame (or the clean last)."""

    kind: Literal["motion"] = "motion"
    sequence_length: PositiveInt = Field(10, description="frames per input window")
    target: Literal["next", "denoise"] = Field(
        "next", description="next: the frame after the window; denoise: the clean last frame"
    )
    hidden_size: Width = 64
    num_layers: PositiveInt = 2
    dropout: float = Field(0.2, ge=0, lt=1)
    attention: bool = Field(False, description="attention pooling over the sequence")
    residual: bool = Field(True, description="predict a correction to the last input frame")
    deltas: bool = Field(True, description="feed frame-to-frame differences beside the frames")
    fault_inputs: bool = Field(
        False,
        description="feed per-frame hold flags (dropouts) and spike sizes (value minus the "
        "causal median of 3; outliers) beside the frames",
    )
    anchor: Literal["last", "median3"] = Field(
        "last",
        description="residual anchor: the last input frame, or the median of the last three "
        "(robust to a one-frame outlier)",
    )
    per_feature: bool = Field(
        False,
        description="one LSTM shared by the 12 features, each its own sequence plus a learned "
        "feature embedding (instead of one LSTM over all 12 at once)",
    )
    strict: bool = Field(
        False,
        description="stop at the first bad frame of a session file (a missing joint, NaN, a "
        "timestamp going back) instead of skipping and counting it (train --strict)",
    )
    synthetic: MotionSyntheticConfig = Field(default_factory=MotionSyntheticConfig)
    augment: MotionAugmentConfig = Field(default_factory=MotionAugmentConfig)
    plateau: MotionPlateauConfig = Field(default_factory=MotionPlateauConfig)
