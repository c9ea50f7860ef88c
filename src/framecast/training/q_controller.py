"""Tabular Q-learning controllers that steer an adversarial run's optimisers (and λ_KL).

Why: a GAN's two players drift out of balance (the discriminator wins, the generator's
reconstruction stalls, losses start to oscillate). A fixed learning-rate schedule cannot
react; these controllers nudge each optimiser's learning rate and momentum, and optionally
the VAE's KL weight, every few steps from what the recent losses did. Off unless a run adds
:class:`QControllerCallback`.

Design (our own take on the "HAKMEM Q-controller" of the WuBu GAAD VAE-GAN scripts):

State (discrete, a few dozen values, so a plain table works):
  - ``trend`` of the controller's primary loss over the last ``trend_window`` decisions:
    the least-squares slope divided by the mean magnitude, binned by ``flat_tolerance``
    and ``fast_change`` into 0 falling fast, 1 falling, 2 flat, 3 rising, 4 rising fast;
  - ``band`` of the other player's loss: 0 below, 1 inside, 2 above its healthy band;
  - ``osc``: 1 when the primary loss oscillates (see below), else 0.

Roles:
  - ``"gen"``: primary loss ``recon`` (reconstruction), other player's loss ``d_total``
    (discriminator total) against ``d_loss_band``. ``g_total`` is read too, only as a
    non-finite guard: it is the loss that is back-propagated.
  - ``"disc"``: primary loss ``d_total``, other player's loss ``g_adv`` (the generator's
    adversarial loss) against ``g_adv_band``.
  - the λ_KL controller (:class:`KLQController`): state ``(recon trend, kl trend, osc)``.

Actions: one factor from ``lr_scale_options`` and one from ``momentum_scale_options``
(``kl_scale_options`` for λ_KL), applied multiplicatively and clamped to the bounds. Each
hyperparameter has its own row of Q-values per state, all updated with the shared reward
(independent learners: 5 + 5 values per state instead of 5 × 5, so it learns from the few
hundred decisions a run makes).

Reward (for the transition into the current decision; every controller):
  - any non-finite loss it reads: ``-nonfinite_penalty`` (and nothing else);
  - oscillation: ``-oscillation_penalty × fraction`` when, among the successive
    differences of the primary loss larger than ``flat_tolerance`` (relative), at least
    ``oscillation_min_fraction`` of the neighbouring pairs change sign.
  - ``"gen"``: ``improvement_weight × tanh(-Δ/fast_change)`` where Δ is the relative change
    of ``recon`` against the mean of its previous values in the window (falling is good),
    and ``±band_weight`` for ``d_total`` inside / outside ``d_loss_band``;
  - ``"disc"``: ``±band_weight`` for ``d_total`` inside / outside ``d_loss_band``, and
    ``-band_weight`` when ``g_adv`` leaves ``g_adv_band`` (below: the generator fools the
    discriminator too easily, a collapse; above: the generator's loss explodes);
  - λ_KL: ``improvement_weight × tanh(-Δrecon/fast_change)`` plus ``band_weight`` when the
    KL term is falling or flat, else ``-band_weight × tanh(Δkl/fast_change)``.

Update: the standard rule ``Q(s,a) ← Q(s,a) + α (r + γ max_a' Q(s',a') − Q(s,a))`` per
hyperparameter; ε-greedy choice with ties broken by the controller's seeded RNG; ε is
multiplied by ``epsilon_decay`` after each decision, down to ``epsilon_min``.

The plain classes hold only Python numbers; their ``state_dict`` is JSON-able and loads
with ``torch.load(weights_only=True)`` (Lightning stores it under ``"callbacks"``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from framecast.errors import ConfigError, TrainingError

Role = Literal["gen", "disc"]

#: Names the controllers read, and the metric keys they default to.
DEFAULT_METRIC_KEYS: dict[str, str] = {
    "recon": "train/loss_recon",
    "g_adv": "train/loss_g_adv",
    "g_total": "train/loss_g_total",
    "d_total": "train/loss_d_total",
    "kl": "train/loss_kl",
}


@dataclass
class QControllerConfig:
    """Hyperparameters of the controllers (one config for the gen, disc and λ_KL ones).

    ``d_loss_band`` is the guide's healthy ``D_tot`` (users' document 004: "ideally in the
    0.3 - 0.65 range") for the non-saturating discriminator loss of
    ``framecast.losses.adversarial``, which halves the real + fake sum: 0.69 (ln 2) when the
    discriminator cannot tell real from fake, 0 when it wins outright. A ``d_total`` that
    sits at ``guessing_level`` ± ``guessing_tolerance`` for ``trend_window`` decisions is the
    guide's "Discriminator Loss Stays at ~0.69 (Guessing)" and costs ``guessing_penalty``
    on top of being out of band. With the hinge loss (1.0 when guessing) the VAE-GAN scales
    both by 1 / ln 2 (:meth:`for_hinge`).
    ``g_adv_band``: the non-saturating generator loss is 0.69 at balance, ~0.1 when the
    generator fools the discriminator easily, ~3 when it is crushed (hinge is similar above
    0 and goes negative when the generator wins).
    """

    learning_rate: float = 0.1  # α
    discount: float = 0.9  # γ
    epsilon: float = 0.5
    epsilon_min: float = 0.05
    epsilon_decay: float = 0.995  # per decision
    lr_scale_options: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)
    momentum_scale_options: tuple[float, ...] = (0.95, 0.98, 1.0, 1.01, 1.02)
    kl_scale_options: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.25)
    min_lr: float = 1e-7
    max_lr: float = 1e-2
    min_momentum: float = 0.5
    max_momentum: float = 0.999
    kl_min: float = 1e-6
    kl_max: float = 1.0
    trend_window: int = 5  # decisions
    flat_tolerance: float = 0.01  # relative change per decision counted as flat
    fast_change: float = 0.05  # relative change per decision counted as fast
    d_loss_band: tuple[float, float] = (0.3, 0.65)
    guessing_level: float = math.log(2.0)
    guessing_tolerance: float = 0.03
    guessing_penalty: float = 0.5
    g_adv_band: tuple[float, float] = (0.1, 3.0)
    improvement_weight: float = 1.0
    band_weight: float = 0.5
    oscillation_penalty: float = 0.5
    oscillation_min_fraction: float = 0.66
    nonfinite_penalty: float = 5.0
    seed: int = 0

    def for_hinge(self) -> QControllerConfig:
        """The same controller for the hinge loss, whose guessing level is 1.0, not ln 2."""
        scale = 1.0 / math.log(2.0)
        return replace(
            self,
            d_loss_band=(self.d_loss_band[0] * scale, self.d_loss_band[1] * scale),
            guessing_level=self.guessing_level * scale,
            guessing_tolerance=self.guessing_tolerance * scale,
        )

    def __post_init__(self) -> None:
        for name in ("lr_scale_options", "momentum_scale_options", "kl_scale_options"):
            options = tuple(float(v) for v in getattr(self, name))
            if not options or any(not (v > 0 and math.isfinite(v)) for v in options):
                raise ConfigError(f"QControllerConfig.{name} must be positive numbers: {options}")
            setattr(self, name, options)
        self.d_loss_band = _ordered_pair("d_loss_band", self.d_loss_band)
        self.g_adv_band = _ordered_pair("g_adv_band", self.g_adv_band)
        for low, high in (
            ("min_lr", "max_lr"),
            ("min_momentum", "max_momentum"),
            ("kl_min", "kl_max"),
            ("epsilon_min", "epsilon"),
        ):
            if not 0 <= getattr(self, low) <= getattr(self, high):
                raise ConfigError(
                    f"QControllerConfig needs 0 <= {low} <= {high}, got "
                    f"{getattr(self, low)} and {getattr(self, high)}"
                )
        if self.epsilon > 1 or not 0 < self.epsilon_decay <= 1:
            raise ConfigError("QControllerConfig needs epsilon <= 1 and 0 < epsilon_decay <= 1")
        if not 0 < self.learning_rate <= 1 or not 0 <= self.discount < 1:
            raise ConfigError("QControllerConfig needs 0 < learning_rate <= 1, 0 <= discount < 1")
        if self.trend_window < 2:
            raise ConfigError(f"QControllerConfig.trend_window must be >= 2: {self.trend_window}")
        if not 0 <= self.flat_tolerance < self.fast_change:
            raise ConfigError("QControllerConfig needs 0 <= flat_tolerance < fast_change")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> QControllerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown QControllerConfig keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _ordered_pair(name: str, pair: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in pair)
    if not low < high:
        raise ConfigError(f"QControllerConfig.{name} must be (low, high) with low < high: {pair}")
    return low, high


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QAction:
    """Factors for one optimiser's learning rate and momentum (β1 for Adam)."""

    lr_scale: float
    momentum_scale: float


@dataclass(frozen=True)
class KLAction:
    """Factor for the KL weight."""

    kl_scale: float


@dataclass(frozen=True)
class AppliedAction:
    """What :func:`apply_to_optimizer` set, read from the first param group."""

    lr: float
    momentum: float | None  # None: the optimiser has no momentum to scale


def scale_within(value: float, factor: float, low: float, high: float) -> float:
    """``value × factor`` kept inside ``[low, high]``, but never moved against ``factor``:
    a value already outside the bounds (put there by a schedule, say) is not dragged to
    them, only kept from going further out."""
    scaled = value * factor
    if factor > 1:
        return min(scaled, max(value, high))
    if factor < 1:
        return max(scaled, min(value, low))
    return value


def apply_to_optimizer(
    optimizer: torch.optim.Optimizer,
    action: QAction,
    config: QControllerConfig,
    scheduler: Any | None = None,
) -> AppliedAction:
    """Scale every param group's lr and momentum by ``action``, inside the config's bounds.

    A scheduler with ``base_lrs`` (``LambdaLR`` and the other torch schedulers) recomputes
    ``lr`` from them at its next step and would undo the change, so its ``base_lrs`` are
    scaled too; the bounds then apply to the base (the schedule's peak) and the group's
    current lr moves by the same factor. Momentum: ``"momentum"`` (SGD, RMSprop; left alone
    when 0, i.e. off) or ``betas[0]`` (Adam, AdamW).
    """
    base_lrs = getattr(scheduler, "base_lrs", None)
    for index, group in enumerate(optimizer.param_groups):
        if base_lrs is not None:
            old_base = base_lrs[index]
            new_base = scale_within(old_base, action.lr_scale, config.min_lr, config.max_lr)
            base_lrs[index] = new_base
            group["lr"] = group["lr"] * (new_base / old_base) if old_base > 0 else group["lr"]
        else:
            group["lr"] = scale_within(group["lr"], action.lr_scale, config.min_lr, config.max_lr)
        if "betas" in group:
            beta1, beta2 = group["betas"]
            beta1 = scale_within(
                float(beta1), action.momentum_scale, config.min_momentum, config.max_momentum
            )
            group["betas"] = (beta1, beta2)
        elif group.get("momentum", 0):
            group["momentum"] = scale_within(
                float(group["momentum"]),
                action.momentum_scale,
                config.min_momentum,
                config.max_momentum,
            )
    first = optimizer.param_groups[0]
    if "betas" in first:
        momentum: float | None = float(first["betas"][0])
    else:
        momentum = float(first["momentum"]) if first.get("momentum", 0) else None
    return AppliedAction(lr=float(first["lr"]), momentum=momentum)


# -- the tabular learner ---------------------------------------------------------------------


@dataclass(frozen=True)
class QState:
    """A discretised state; ``key`` is its Q-table key."""

    trend: int
    band: int
    oscillating: bool

    @property
    def key(self) -> str:
        return f"trend={self.trend},band={self.band},osc={int(self.oscillating)}"


@dataclass
class _Transition:
    state_key: str
    action_indices: dict[str, int] = field(default_factory=dict)


def relative_slope(values: Sequence[float]) -> float:
    """Least-squares slope per step over ``values`` divided by their mean magnitude."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return 0.0
    n = len(finite)
    x_mean = (n - 1) / 2
    y_mean = sum(finite) / n
    slope = sum((i - x_mean) * (y - y_mean) for i, y in enumerate(finite)) / sum(
        (i - x_mean) ** 2 for i in range(n)
    )
    return slope / (sum(abs(v) for v in finite) / n + 1e-12)


def relative_change(values: Sequence[float]) -> float:
    """The last value against the mean of the earlier finite ones, relative to that mean."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return 0.0
    reference = sum(finite[:-1]) / (len(finite) - 1)
    return (finite[-1] - reference) / (abs(reference) + 1e-12)


def trend_bin(values: Sequence[float], flat_tolerance: float, fast_change: float) -> int:
    """0 falling fast, 1 falling, 2 flat, 3 rising, 4 rising fast (see the module doc)."""
    slope = relative_slope(values)
    if slope < -fast_change:
        return 0
    if slope < -flat_tolerance:
        return 1
    if slope <= flat_tolerance:
        return 2
    if slope <= fast_change:
        return 3
    return 4


def band_bin(value: float, band: tuple[float, float]) -> int:
    """0 below, 1 inside, 2 above ``band`` (non-finite counts as above)."""
    if not math.isfinite(value) or value > band[1]:
        return 2
    return 0 if value < band[0] else 1


def oscillation_fraction(values: Sequence[float], flat_tolerance: float) -> float:
    """Share of neighbouring pairs of (significant) successive differences that change sign.

    Differences smaller than ``flat_tolerance`` × the mean magnitude are noise and skipped.
    0.0 with fewer than two significant differences.
    """
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 3:
        return 0.0
    scale = sum(abs(v) for v in finite) / len(finite)
    steps = [b - a for a, b in zip(finite, finite[1:])]
    significant = [d for d in steps if abs(d) > flat_tolerance * scale]
    if len(significant) < 2:
        return 0.0
    flips = sum((a > 0) != (b > 0) for a, b in zip(significant, significant[1:]))
    return flips / (len(significant) - 1)


class _TabularQ:
    """Shared machinery: loss history, Q-table, ε-greedy choice, update, state_dict.

    Subclasses name the losses they read (``required``), the primary one, the action heads
    (``heads``: name → options) and define ``observe`` and ``reward``.
    """

    required: tuple[str, ...] = ()
    primary: str = ""

    def __init__(self, config: QControllerConfig, seed: int | None = None):
        self.config = config
        self.rng = random.Random(config.seed if seed is None else seed)
        self.epsilon = config.epsilon
        self.q_table: dict[str, dict[str, list[float]]] = {}
        self.history: dict[str, list[float]] = {name: [] for name in self.required}
        self.last_reward: float | None = None
        self._previous: _Transition | None = None

    @property
    def heads(self) -> dict[str, tuple[float, ...]]:
        raise NotImplementedError

    def observe(self) -> QState:
        raise NotImplementedError

    def reward(self, history: Mapping[str, Sequence[float]]) -> float:
        raise NotImplementedError

    # -- shared pieces ------------------------------------------------------------------
    def _nonfinite(self, history: Mapping[str, Sequence[float]]) -> bool:
        return any(
            history.get(name) and not math.isfinite(history[name][-1]) for name in self.required
        )

    def _oscillation_penalty(self, values: Sequence[float]) -> float:
        fraction = oscillation_fraction(values, self.config.flat_tolerance)
        if fraction >= self.config.oscillation_min_fraction:
            return self.config.oscillation_penalty * fraction
        return 0.0

    def oscillating(self) -> bool:
        fraction = oscillation_fraction(self.history[self.primary], self.config.flat_tolerance)
        return fraction >= self.config.oscillation_min_fraction

    def q_values(self, state_key: str) -> dict[str, list[float]]:
        """The state's Q-values per head (zeros for a state not seen before)."""
        if state_key not in self.q_table:
            self.q_table[state_key] = {name: [0.0] * len(opts) for name, opts in self.heads.items()}
        return self.q_table[state_key]

    def record(self, losses: Mapping[str, float]) -> None:
        missing = [name for name in self.required if name not in losses]
        if missing:
            raise KeyError(f"{type(self).__name__} needs losses {missing}; got {sorted(losses)}")
        for name in self.required:
            series = self.history[name]
            series.append(float(losses[name]))
            del series[: -self.config.trend_window]

    def choose(self, state_key: str) -> dict[str, int]:
        """ε-greedy index per head; ties among the best broken by the seeded RNG."""
        chosen = {}
        for name, values in self.q_values(state_key).items():
            if self.rng.random() < self.epsilon:
                chosen[name] = self.rng.randrange(len(values))
            else:
                best = max(values)
                chosen[name] = self.rng.choice([i for i, v in enumerate(values) if v == best])
        return chosen

    def update(
        self, state_key: str, action_indices: Mapping[str, int], reward: float, next_key: str
    ) -> None:
        """Q ← Q + α (r + γ max_a' Q(s', a') − Q), per head."""
        alpha, gamma = self.config.learning_rate, self.config.discount
        current = self.q_values(state_key)
        following = self.q_values(next_key)
        for name, index in action_indices.items():
            target = reward + gamma * max(following[name])
            current[name][index] += alpha * (target - current[name][index])

    def step(self, losses: Mapping[str, float]) -> dict[str, int]:
        """Record ``losses``, learn from the previous decision, choose the next indices."""
        self.record(losses)
        state_key = self.observe().key
        if self._previous is not None:
            self.last_reward = self.reward(self.history)
            self.update(
                self._previous.state_key, self._previous.action_indices, self.last_reward, state_key
            )
        indices = self.choose(state_key)
        self._previous = _Transition(state_key, indices)
        self.epsilon = max(self.config.epsilon_min, self.epsilon * self.config.epsilon_decay)
        return indices

    # -- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain Python types only (JSON-able; loads with ``torch.load(weights_only=True)``)."""
        version, internal, gauss_next = self.rng.getstate()
        return {
            "epsilon": self.epsilon,
            "last_reward": self.last_reward,
            "q_table": {k: {h: list(v) for h, v in row.items()} for k, row in self.q_table.items()},
            "history": {k: list(v) for k, v in self.history.items()},
            "previous": None
            if self._previous is None
            else {
                "state_key": self._previous.state_key,
                "action_indices": dict(self._previous.action_indices),
            },
            "rng_state": [version, list(internal), gauss_next],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epsilon = float(state["epsilon"])
        self.last_reward = state["last_reward"]
        self.q_table = {
            k: {h: [float(x) for x in v] for h, v in row.items()}
            for k, row in state["q_table"].items()
        }
        self.history = {name: [float(x) for x in state["history"][name]] for name in self.required}
        previous = state["previous"]
        self._previous = (
            None
            if previous is None
            else _Transition(previous["state_key"], dict(previous["action_indices"]))
        )
        version, internal, gauss_next = state["rng_state"]
        self.rng.setstate((version, tuple(internal), gauss_next))


class QController(_TabularQ):
    """Learning-rate and momentum controller for one player (``role`` "gen" or "disc")."""

    def __init__(self, config: QControllerConfig, role: Role = "gen", seed: int | None = None):
        if role not in ("gen", "disc"):
            raise ConfigError(f"QController role must be 'gen' or 'disc', got {role!r}")
        self.role = role
        # gen: reconstruction against the discriminator's band; g_total only guards NaN.
        # disc: its own total loss against the generator's adversarial band.
        self.required = ("recon", "g_total", "d_total") if role == "gen" else ("d_total", "g_adv")
        self.primary = "recon" if role == "gen" else "d_total"
        super().__init__(config, seed)

    @property
    def heads(self) -> dict[str, tuple[float, ...]]:
        return {
            "lr_scale": self.config.lr_scale_options,
            "momentum_scale": self.config.momentum_scale_options,
        }

    def observe(self) -> QState:
        cfg = self.config
        trend = trend_bin(self.history[self.primary], cfg.flat_tolerance, cfg.fast_change)
        if self.role == "gen":
            band = band_bin(self.history["d_total"][-1], cfg.d_loss_band)
        else:
            band = band_bin(self.history["g_adv"][-1], cfg.g_adv_band)
        return QState(trend, band, self.oscillating())

    def reward(self, history: Mapping[str, Sequence[float]]) -> float:
        """Reward for the latest transition; ``history``: name → recent values, last current."""
        cfg = self.config
        if self._nonfinite(history):
            return -cfg.nonfinite_penalty
        d_total = history["d_total"][-1]
        in_band = band_bin(d_total, cfg.d_loss_band) == 1
        reward = cfg.band_weight if in_band else -cfg.band_weight
        if self._guessing(history["d_total"]):
            reward -= cfg.guessing_penalty
        if self.role == "gen":
            change = relative_change(history["recon"])
            reward += cfg.improvement_weight * math.tanh(-change / cfg.fast_change)
        else:
            g_adv = history["g_adv"][-1]
            if not cfg.g_adv_band[0] <= g_adv <= cfg.g_adv_band[1]:
                reward -= cfg.band_weight
        return reward - self._oscillation_penalty(history[self.primary])

    def _guessing(self, d_total: Sequence[float]) -> bool:
        """The discriminator has sat at its guessing level for the last ``trend_window``
        decisions (a single visit on the way elsewhere is not a plateau)."""
        cfg = self.config
        recent = list(d_total)[-cfg.trend_window :]
        return len(recent) == cfg.trend_window and all(
            abs(value - cfg.guessing_level) <= cfg.guessing_tolerance for value in recent
        )

    def decide(self, losses: Mapping[str, float]) -> QAction:
        """Record ``losses`` (names in ``required``), learn from the last decision's outcome
        and choose the next action (ε-greedy)."""
        indices = self.step(losses)
        return QAction(
            lr_scale=self.config.lr_scale_options[indices["lr_scale"]],
            momentum_scale=self.config.momentum_scale_options[indices["momentum_scale"]],
        )

    def state_dict(self) -> dict[str, Any]:
        return {"role": self.role, **super().state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("role", self.role) != self.role:
            raise ConfigError(
                f"Q-controller state is for role {state['role']!r}, not {self.role!r}"
            )
        super().load_state_dict(state)


class KLQController(_TabularQ):
    """λ_KL controller: scales the KL weight by one of ``kl_scale_options`` per decision.

    State ``(recon trend, kl trend, osc)`` (``QState.band`` holds the KL trend here); see the
    module docstring for the reward. Its ``kl_weight`` (the last value it set) is saved with
    it so a resumed run gets it back.
    """

    required = ("recon", "kl")
    primary = "recon"

    def __init__(self, config: QControllerConfig, seed: int | None = None):
        super().__init__(config, seed)
        self.kl_weight: float | None = None

    @property
    def heads(self) -> dict[str, tuple[float, ...]]:
        return {"kl_scale": self.config.kl_scale_options}

    def observe(self) -> QState:
        cfg = self.config
        recon = trend_bin(self.history["recon"], cfg.flat_tolerance, cfg.fast_change)
        kl = trend_bin(self.history["kl"], cfg.flat_tolerance, cfg.fast_change)
        return QState(recon, kl, self.oscillating())

    def reward(self, history: Mapping[str, Sequence[float]]) -> float:
        cfg = self.config
        if self._nonfinite(history):
            return -cfg.nonfinite_penalty
        reward = cfg.improvement_weight * math.tanh(
            -relative_change(history["recon"]) / cfg.fast_change
        )
        kl_change = relative_change(history["kl"])
        if kl_change <= cfg.flat_tolerance:
            reward += cfg.band_weight
        else:
            reward -= cfg.band_weight * math.tanh(kl_change / cfg.fast_change)
        return reward - self._oscillation_penalty(history["recon"])

    def decide(self, losses: Mapping[str, float]) -> KLAction:
        indices = self.step(losses)
        return KLAction(kl_scale=self.config.kl_scale_options[indices["kl_scale"]])

    def apply(self, kl_weight: float, action: KLAction) -> float:
        """The new KL weight; a weight of 0 or less starts from ``kl_min``."""
        start = kl_weight if kl_weight > 0 else self.config.kl_min
        self.kl_weight = scale_within(
            start, action.kl_scale, self.config.kl_min, self.config.kl_max
        )
        return self.kl_weight

    def state_dict(self) -> dict[str, Any]:
        return {"kl_weight": self.kl_weight, **super().state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.kl_weight = state.get("kl_weight")


# -- Lightning ---------------------------------------------------------------------------------


class QControllerCallback(pl.Callback):
    """Runs the controllers every ``every_n_steps`` optimiser steps of an adversarial run.

    Reads the losses from ``trainer.callback_metrics`` (``keys`` overrides
    :data:`DEFAULT_METRIC_KEYS` by name) and raises :class:`TrainingError` naming a missing
    key: a misconfigured controller must not silently do nothing. Under DDP the losses of
    rank 0 are broadcast first, so every rank makes the same decision and the optimisers stay
    identical. Logs ``q_ctrl_gen/{lrscale,momentumscale,reward,epsilon,lr,momentum}`` (the guide's names), the
    same under ``q_ctrl_disc/``, and ``q_ctrl_kl/{kl_scale,kl_weight,reward,epsilon}``
    (rewards from the second decision on), to ``trainer.loggers`` at decision steps only.
    Do not combine ``control_kl`` with a ``KLScheduleCallback``: both set the same attribute.
    """

    def __init__(
        self,
        config: QControllerConfig,
        every_n_steps: int = 10,
        gen_optimizer_index: int = 0,
        disc_optimizer_index: int | None = 1,
        keys: dict[str, str] | None = None,
        control_kl: bool = False,
        kl_attribute: str = "kl_weight",
    ):
        if every_n_steps < 1:
            raise ConfigError(f"every_n_steps must be >= 1, got {every_n_steps}")
        unknown = sorted(set(keys or {}) - set(DEFAULT_METRIC_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown Q-controller metric names {unknown}; known: {sorted(DEFAULT_METRIC_KEYS)}"
            )
        self.config = config
        self.every_n_steps = every_n_steps
        self.gen_optimizer_index = gen_optimizer_index
        self.disc_optimizer_index = disc_optimizer_index
        self.keys = {**DEFAULT_METRIC_KEYS, **(keys or {})}
        self.kl_attribute = kl_attribute
        # Different seeds so the players do not explore in lockstep.
        self.gen = QController(config, "gen", seed=config.seed)
        self.disc = (
            QController(config, "disc", seed=config.seed + 1)
            if disc_optimizer_index is not None
            else None
        )
        self.kl = KLQController(config, seed=config.seed + 2) if control_kl else None
        self.last_decision_step = -1

    def _controllers(self) -> list[_TabularQ]:
        return [c for c in (self.gen, self.disc, self.kl) if c is not None]

    def _read_losses(self, trainer: pl.Trainer) -> dict[str, float]:
        names = sorted({name for c in self._controllers() for name in c.required})
        metrics = trainer.callback_metrics
        missing = [self.keys[name] for name in names if self.keys[name] not in metrics]
        if missing:
            raise TrainingError(
                f"QControllerCallback: metric(s) {missing} not logged at step "
                f"{trainer.global_step}; logged: {sorted(metrics)} "
                "(log them in training_step or pass keys={name: metric})"
            )
        return {name: float(metrics[self.keys[name]]) for name in names}

    def _scheduler_of(self, trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> Any | None:
        for config in trainer.lr_scheduler_configs:
            if getattr(config.scheduler, "optimizer", None) is optimizer:
                return config.scheduler
        return None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The KL weight is a plain attribute, not in the checkpoint: put back the resumed value.
        if self.kl is not None and self.kl.kl_weight is not None:
            setattr(pl_module, self.kl_attribute, self.kl.kl_weight)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # global_step stands still during gradient accumulation: one decision per step.
        if step == 0 or step % self.every_n_steps or step == self.last_decision_step:
            return
        self.last_decision_step = step
        losses = trainer.strategy.broadcast(self._read_losses(trainer), src=0)
        logs: dict[str, float] = {}
        players = [("gen", self.gen, self.gen_optimizer_index)]
        if self.disc is not None:
            players.append(("disc", self.disc, self.disc_optimizer_index))
        for prefix, controller, index in players:
            action = controller.decide(losses)
            optimizer = trainer.optimizers[index]
            applied = apply_to_optimizer(
                optimizer, action, self.config, self._scheduler_of(trainer, optimizer)
            )
            # The guide's keys (document 004): q_ctrl_gen/lrscale, ... and momentumscale.
            logs[f"q_ctrl_{prefix}/lrscale"] = action.lr_scale
            logs[f"q_ctrl_{prefix}/momentumscale"] = action.momentum_scale
            logs[f"q_ctrl_{prefix}/epsilon"] = controller.epsilon
            logs[f"q_ctrl_{prefix}/lr"] = applied.lr
            if applied.momentum is not None:
                logs[f"q_ctrl_{prefix}/momentum"] = applied.momentum
            if controller.last_reward is not None:
                logs[f"q_ctrl_{prefix}/reward"] = controller.last_reward
        if self.kl is not None:
            if not hasattr(pl_module, self.kl_attribute):
                raise TrainingError(
                    f"QControllerCallback(control_kl=True): {type(pl_module).__name__} has no "
                    f"attribute {self.kl_attribute!r} to control"
                )
            action = self.kl.decide(losses)
            current = float(getattr(pl_module, self.kl_attribute))
            setattr(pl_module, self.kl_attribute, self.kl.apply(current, action))
            logs["q_ctrl_kl/kl_scale"] = action.kl_scale
            logs["q_ctrl_kl/kl_weight"] = self.kl.kl_weight
            logs["q_ctrl_kl/epsilon"] = self.kl.epsilon
            if self.kl.last_reward is not None:
                logs["q_ctrl_kl/reward"] = self.kl.last_reward
        self._log(trainer, logs)

    @staticmethod
    def _log(trainer: pl.Trainer, logs: dict[str, float]) -> None:
        # Straight to the loggers: ``pl_module.log`` from this hook would keep re-sending the
        # cached values at every later step, as if a decision had been made there. The step is
        # the one Lightning gives the module's own metrics of this batch, so they line up.
        step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
        metrics = {name: float(value) for name, value in logs.items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_decision_step": self.last_decision_step,
            "gen": self.gen.state_dict(),
            "disc": None if self.disc is None else self.disc.state_dict(),
            "kl": None if self.kl is None else self.kl.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_decision_step = int(state_dict["last_decision_step"])
        self.gen.load_state_dict(state_dict["gen"])
        for name, controller in (("disc", self.disc), ("kl", self.kl)):
            if controller is not None and state_dict.get(name) is not None:
                controller.load_state_dict(state_dict[name])
