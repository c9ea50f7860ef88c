"""KL-weight schedule for the VAE: a pure function of the global step (no Lightning)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from framecast.config.autoencoder import AutoencoderConfig, KLScheduleConfig

KLMode = Literal["constant", "linear", "steps"]


@dataclass(frozen=True)
class KLSchedule:
    """KL weight as a function of the step.

    - ``constant``: ``target`` at every step.
    - ``linear``: ``start`` at step 0, rising linearly to ``target`` at ``warmup_steps``,
      then ``target``.
    - ``steps``: piecewise constant over ``phases`` ((step, value), first at step 0,
      steps strictly increasing); ``target`` is not used.
    """

    mode: KLMode = "constant"
    target: float = 0.0
    start: float = 0.0
    warmup_steps: int = 0
    phases: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        if self.mode == "linear" and self.warmup_steps < 1:
            raise ValueError(f"linear KL schedule needs warmup_steps >= 1, got {self.warmup_steps}")
        if self.mode == "steps":
            steps = [step for step, _ in self.phases]
            if not steps or steps[0] != 0:
                raise ValueError(
                    f"stepped KL schedule needs phases starting at step 0, got {steps}"
                )
            if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
                raise ValueError(f"phase steps must be strictly increasing, got {steps}")

    @classmethod
    def from_config(cls, cfg: AutoencoderConfig) -> KLSchedule:
        """From ``model.kl_schedule`` with ``model.kl_weight`` as the target."""
        return cls.from_section(cfg.kl_schedule, cfg.kl_weight)

    @classmethod
    def from_section(cls, sched: KLScheduleConfig, target: float) -> KLSchedule:
        """From a ``kl_schedule`` config section and the constant/target weight."""
        return cls(
            mode=sched.mode,
            target=target,
            start=sched.start,
            warmup_steps=sched.warmup_steps,
            phases=tuple(sched.phases),
        )

    def value(self, step: int) -> float:
        """KL weight at global step ``step`` (>= 0)."""
        if self.mode == "constant":
            return self.target
        if self.mode == "linear":
            fraction = min(max(step, 0) / self.warmup_steps, 1.0)
            return self.start + (self.target - self.start) * fraction
        index = bisect.bisect_right([s for s, _ in self.phases], step) - 1
        return self.phases[max(index, 0)][1]
