"""Simulated smoke plumes (PhiFlow) written as a framecast dataset.

Physics: 2-D incompressible Navier–Stokes without viscosity, with buoyancy, on a square
domain of ``DOMAIN`` simulation units whatever the resolution (so a plume moves the same
fraction of the frame per frame at 32×32 as at 64×64). Per step (one step per frame,
``DT`` = 1):

1. the smoke density (CenteredGrid) is advected by MacCormack and the inflow is added:
   a Gaussian blob near the bottom, one per plume (position, radius, strength);
2. the velocity (StaggeredGrid) is advected semi-Lagrangian and pushed by the force
   ``density · (wind, buoyancy)``: smoke rises, and wind leans it sideways (a uniform
   horizontal force would do nothing: the pressure projection removes it entirely);
3. the pressure projection makes the velocity divergence-free (scipy CG, ``NotConverged``
   suppressed: PhiFlow's default solver diverges in float32). A batch whose solve raises
   ``Diverged`` is simulated again video by video, a video that diverges alone in float64.

Walls are closed left, right and at the bottom, open at the top: smoke leaves through
the top instead of piling up there, and the pressure solve has a unique solution.

Several plumes run as one batched simulation (PhiFlow batch dimension ``plume``): the
per-step cost is mostly Python overhead, so batching 8 plumes is several times faster
per video than simulating them one by one.

Randomised per plume (uniform, from a NumPy Generator seeded by ``seed``):

============  =========================  =================================================
parameter     range                      meaning
============  =========================  =================================================
inflow_x      0.25 .. 0.75               inflow centre, fraction of the width from the left
radius        0.04 .. 0.08               inflow Gaussian radius, fraction of the width
strength      0.1 .. 0.3                 density added per unit time at the inflow centre
buoyancy      0.2 .. 0.5                 upward force per unit density
wind          -wind .. +wind (0.15)      sideways force per unit density (+ = right)
============  =========================  =================================================

Presets (``preset=``, ``framecast data smoke --preset``): ``simple`` is the table above,
one plume per video (the files are byte-identical to those written before presets
existed). ``varied`` draws, per video, uniformly from:

================  =====================  ================================================
parameter         range                  meaning
================  =====================  ================================================
inflows           1 .. 3 (integer)       number of smoke sources
inflow x          0.15 .. 0.85           per inflow: centre, fraction of the width
inflow y          0.05 .. 0.25           per inflow: centre height, fraction from bottom
radius            0.03 .. 0.08           per inflow: Gaussian radius, fraction of width
rate              0.1 .. 0.35            per inflow: density added per unit time
mode              constant / pulse /     per inflow, probabilities 0.5 / 0.25 / 0.25
                  stop
pulse period      6 .. 16 frames         pulse: on for the first ``duty`` of each period,
pulse duty        0.3 .. 0.7             shifted by a phase uniform in [0, period)
stop at           0.25 .. 0.75 × frames  stop: no inflow from that output frame on
buoyancy          0.15 .. 0.6            upward force per unit density (whole video)
wind              -0.25 .. +0.25         sideways force per unit density (whole video)
obstacles         0 .. 2 (integer)       solid discs (PhiFlow ``Obstacle``: no flow
obstacle x        0.2 .. 0.8             through them), centre, fraction of the width
obstacle y        0.4 .. 0.75            centre height, fraction from the bottom
obstacle radius   0.05 .. 0.1            fraction of the width
================  =====================  ================================================

``wind=`` replaces either preset's wind range by ``[-wind, wind]``. Each video's meta
records its parameters (:meth:`PlumeParams.to_meta`, :meth:`VariedParams.to_meta`); the
same seed gives the same bytes, and the first videos of a larger dataset have the
parameters of a smaller one. One difference: with obstacles in a batch, PhiFlow's pressure
solve runs over the batch as a whole, so a varied video's bytes depend on its batch mates
(measured: not byte-equal when simulated alone); the same seed with the same
``plumes_per_batch`` gives the same bytes, whatever ``workers``. A batch with obstacles
costs about twice a simple batch per step. Sizes: 64×64 by default, 128×128 as well (any
``size`` >= 8, up to 215 for varied: PhiFlow's obstacle solve indexes its matrix in int32,
so a varied batch with obstacles is also split to keep videos · size² <= 46340, e.g. 2
videos at 128×128; the physics is in simulation units, the same at every size).

Class label (for the autoencoder's classification head): which way the plume leans. The
force on the smoke points ``atan(lean)`` from vertical, with ``lean = wind / buoyancy``,
and the plume leans that way; the label bins the lean at ``±LEAN_UPRIGHT`` (0.15, about
8.5°): 0 ``leans_left`` (lean < -0.15), 1 ``upright``, 2 ``leans_right``
(lean > 0.15). Binning the lean rather than the wind alone keeps the label visible in the
frames (a strong wind on a very buoyant plume barely tilts it). With the default ranges
the classes come out about 32/35/32 %; the bins are fixed, so a label means the same tilt
in every dataset (``wind=0`` gives only ``upright``). Plumes near a side wall may still
bend towards it a little: the walls are part of the physics, not of the label.

Rendering: density → intensity ``1 - exp(-density / DENSITY_SCALE)`` (a fixed scale,
like light absorbed by smoke: never per-frame, never a hard clip), times a slightly
cool white, on black. Row 0 is the top of the image: plumes rise towards row 0.
Frames are stored RGB; their content is luminance only, so a greyscale model
(``data.channels: 1``, or ``auto``: the varied preset's dataset.json records
``"channels": 1``, and a simple dataset's ``phiflow-smoke`` source counts as 1) reads
their BT.601 luma.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from framecast.data.shard import SHARD_SUFFIX, ShardWriter
from framecast.data.splits import assign_splits, split_fractions
from framecast.errors import DataError
from framecast.utils import atomic_write_text, replace_folder

SPLITS = ("train", "val", "test")
HELDOUT = "heldout"  # the split of videos outside the training family (``holdout=``)
DATASET_JSON = "dataset.json"
_SHARD_NAME = f"part-00000{SHARD_SUFFIX}"  # the one shard of each split
SOURCE = "phiflow-smoke"

DOMAIN = 64.0  # domain side in simulation units; the grid has `size` cells across it
DT = 1.0  # simulation time per frame
INFLOW_Y = 0.1  # inflow centre height, fraction of the domain from the bottom
DENSITY_SCALE = 1.0  # density giving intensity 1 - 1/e; fixed so brightness is comparable
SMOKE_TINT = (0.90, 0.94, 1.0)  # RGB of dense smoke: white with a faint cool tint
PRESSURE_TOLERANCE = 1e-3  # relative and absolute CG tolerance of the pressure solve

DEFAULT_WARMUP_FRAMES = 8  # by then every plume is a visible blob that has begun to rise
DEFAULT_WIND = 0.15
LEAN_UPRIGHT = 0.15
LABEL_NAMES = ("leans_left", "upright", "leans_right")

# Ranges of the randomised parameters besides wind, in the order they are drawn.
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "inflow_x": (0.25, 0.75),
    "radius": (0.04, 0.08),
    "strength": (0.1, 0.3),
    "buoyancy": (0.2, 0.5),
}


@dataclass(frozen=True)
class PlumeParams:
    """The randomised parameters of one plume (see the module docstring for units)."""

    inflow_x: float
    radius: float
    strength: float
    buoyancy: float
    wind: float

    def __post_init__(self) -> None:
        values = asdict(self)
        if (
            not all(np.isfinite(v) for v in values.values())
            or self.radius <= 0
            or self.buoyancy <= 0
        ):
            raise DataError(
                f"smoke: plume parameters must be finite with radius > 0 and buoyancy > 0, got {values}"
            )

    @property
    def lean(self) -> float:
        """Tangent of the plume's tilt from vertical: ``wind / buoyancy`` (+ = right)."""
        return self.wind / self.buoyancy

    @property
    def label(self) -> int:
        """Lean class: index into :data:`LABEL_NAMES`."""
        return lean_label(self.lean)

    def to_meta(self) -> dict[str, Any]:
        """Per-video metadata: the parameters, ``lean``, ``label`` and ``label_names``."""
        return {
            **asdict(self),
            "lean": self.lean,
            "label": self.label,
            "label_names": list(LABEL_NAMES),
        }


def lean_label(lean: float) -> int:
    """0 ``leans_left`` if lean < -LEAN_UPRIGHT, 2 ``leans_right`` if > LEAN_UPRIGHT, else 1."""
    if lean < -LEAN_UPRIGHT:
        return 0
    if lean > LEAN_UPRIGHT:
        return 2
    return 1


def sample_plume_params(
    rng: np.random.Generator, count: int, wind: float = DEFAULT_WIND
) -> list[PlumeParams]:
    """Draw ``count`` plumes, one after another from ``rng``.

    Drawing plume by plume (not field by field) makes the first plumes of a larger draw
    equal to a smaller draw with the same seed: 8 videos are a prefix of 64.
    """
    lows = np.array([lo for lo, _ in PARAM_RANGES.values()] + [-wind])
    highs = np.array([hi for _, hi in PARAM_RANGES.values()] + [wind])
    return [PlumeParams(*(float(v) for v in rng.uniform(lows, highs))) for _ in range(count)]


# -- the varied preset ------------------------------------------------------------------

PRESETS = ("simple", "varied")
INFLOW_MODES = ("constant", "pulse", "stop")
# Ranges of the varied preset (see the module docstring); counts are inclusive integers.
VARIED_RANGES: dict[str, tuple[float, float]] = {
    "inflows": (1, 3),
    "inflow_x": (0.15, 0.85),
    "inflow_y": (0.05, 0.25),
    "radius": (0.03, 0.08),
    "rate": (0.1, 0.35),
    "buoyancy": (0.15, 0.6),
    "wind": (-0.25, 0.25),
    "pulse_period": (6.0, 16.0),
    "pulse_duty": (0.3, 0.7),
    "stop_at": (0.25, 0.75),
    "obstacles": (0, 2),
    "obstacle_x": (0.2, 0.8),
    "obstacle_y": (0.4, 0.75),
    "obstacle_radius": (0.05, 0.1),
}
INFLOW_MODE_PROBABILITIES = (0.5, 0.25, 0.25)  # constant, pulse, stop


@dataclass(frozen=True)
class Inflow:
    """One smoke source of a varied video; positions and radius are fractions of the width.

    ``mode``: ``constant``; ``pulse`` (on for the first ``duty`` of every ``period``
    frames, shifted by ``phase`` frames); ``stop`` (on until output frame ``stop_frame``,
    off from then on; warm-up frames count as before frame 0).
    """

    x: float
    y: float
    radius: float
    rate: float
    mode: str = "constant"
    period: float = 0.0
    duty: float = 1.0
    phase: float = 0.0
    stop_frame: int = 0

    def to_meta(self) -> dict[str, Any]:
        """Position, radius, rate and mode, plus the mode's own fields (pulse, stop)."""
        meta: dict[str, Any] = {k: getattr(self, k) for k in ("x", "y", "radius", "rate", "mode")}
        if self.mode == "pulse":
            meta.update(period=self.period, duty=self.duty, phase=self.phase)
        elif self.mode == "stop":
            meta["stop_frame"] = self.stop_frame
        return meta

    def on(self, frame: int) -> bool:
        """Whether the inflow adds smoke at output frame ``frame`` (negative: warm-up)."""
        if self.mode == "pulse":
            return (frame + self.phase) % self.period < self.duty * self.period
        if self.mode == "stop":
            return frame < self.stop_frame
        return True


@dataclass(frozen=True)
class Disc:
    """A solid round obstacle: centre and radius as fractions of the width (y from the bottom)."""

    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class VariedParams:
    """The randomised parameters of one varied-preset video (several inflows, obstacles)."""

    inflows: tuple[Inflow, ...]
    obstacles: tuple[Disc, ...]
    buoyancy: float
    wind: float

    def __post_init__(self) -> None:
        if not self.inflows or self.buoyancy <= 0 or not np.isfinite(self.wind):
            raise DataError(
                f"smoke: a varied video needs >= 1 inflow, buoyancy > 0 and a finite wind, got {self}"
            )

    @property
    def lean(self) -> float:
        """Tangent of the plumes' tilt from vertical: ``wind / buoyancy`` (+ = right)."""
        return self.wind / self.buoyancy

    @property
    def label(self) -> int:
        return lean_label(self.lean)

    def to_meta(self) -> dict[str, Any]:
        """Per-video metadata: every parameter, ``lean``, ``label`` and ``label_names``."""
        return {
            "preset": "varied",
            "inflows": [inflow.to_meta() for inflow in self.inflows],
            "obstacles": [asdict(disc) for disc in self.obstacles],
            "buoyancy": self.buoyancy,
            "wind": self.wind,
            "lean": self.lean,
            "label": self.label,
            "label_names": list(LABEL_NAMES),
        }


def sample_varied_params(
    rng: np.random.Generator, count: int, frames: int, wind: float | None = None
) -> list[VariedParams]:
    """Draw ``count`` varied videos, one after another from ``rng`` (see :data:`VARIED_RANGES`).

    ``frames`` (output frames per video) places the ``stop`` frames; ``wind``, when given,
    replaces the wind range by ``[-wind, wind]``. Video by video, so the first videos of a
    larger draw equal a smaller draw with the same seed.
    """
    r = dict(VARIED_RANGES)
    if wind is not None:
        r["wind"] = (-wind, wind)

    def uniform(name: str) -> float:
        low, high = r[name]
        return float(rng.uniform(low, high))

    videos = []
    for _ in range(count):
        inflows = []
        for _ in range(int(rng.integers(r["inflows"][0], r["inflows"][1] + 1))):
            x, y, radius, rate = (uniform(k) for k in ("inflow_x", "inflow_y", "radius", "rate"))
            mode = INFLOW_MODES[int(rng.choice(len(INFLOW_MODES), p=INFLOW_MODE_PROBABILITIES))]
            extra: dict[str, Any] = {}
            if mode == "pulse":
                period = uniform("pulse_period")
                extra = {
                    "period": period,
                    "duty": uniform("pulse_duty"),
                    "phase": float(rng.uniform(0, period)),
                }
            elif mode == "stop":
                extra = {"stop_frame": int(round(uniform("stop_at") * frames))}
            inflows.append(Inflow(x, y, radius, rate, mode, **extra))
        obstacles = tuple(
            Disc(uniform("obstacle_x"), uniform("obstacle_y"), uniform("obstacle_radius"))
            for _ in range(int(rng.integers(r["obstacles"][0], r["obstacles"][1] + 1)))
        )
        videos.append(VariedParams(tuple(inflows), obstacles, uniform("buoyancy"), uniform("wind")))
    return videos


def render_density(density: np.ndarray) -> np.ndarray:
    """Density ``(..., H, W)`` (row 0 = top) → RGB smoke on black ``(..., H, W, 3)`` uint8."""
    intensity = -np.expm1(-np.maximum(density, 0.0) / DENSITY_SCALE)
    rgb = intensity[..., None] * np.asarray(SMOKE_TINT, dtype=np.float32)
    return np.round(rgb * 255.0).astype(np.uint8)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"smoke: {name} must be an integer >= {minimum}, got {value!r}")


MAX_OBSTACLES = int(VARIED_RANGES["obstacles"][1])
MAX_INFLOWS = int(VARIED_RANGES["inflows"][1])
# With obstacles, PhiFlow builds one sparse pressure matrix over the whole batch with int32
# indices into its (videos · cells)² entries: a batch must keep videos · size² <= 46340
# (measured: 4 videos at 128×128 overflow). Larger batches are split; one video allows
# sizes up to 215.
OBSTACLE_SOLVE_CELLS = 46340
MAX_OBSTACLE_SIZE = math.isqrt(OBSTACLE_SOLVE_CELLS)


def simulate_plumes(
    params: Sequence[PlumeParams] | Sequence[VariedParams],
    frames: int,
    size: int,
    warmup_frames: int = DEFAULT_WARMUP_FRAMES,
) -> np.ndarray:
    """Simulate the videos of ``params`` together as one batch; return their frames.

    ``params`` are all :class:`PlumeParams` (preset ``simple``) or all
    :class:`VariedParams` (preset ``varied``). The first ``warmup_frames`` frames, while
    the plumes form, are simulated but not returned. Deterministic: the same arguments give
    the same bytes (a varied batch with obstacles: the same bytes for the same batch, see
    the module docstring). When PhiFlow's float32 pressure solve diverges (``Diverged``),
    the batch is simulated again one video at a time, and a video that diverges alone is
    simulated in float64.

    Returns:
        ``(B, T, H, W, 3)`` uint8 with ``B = len(params)``, ``T = frames``,
        ``H = W = size``; row 0 is the top of the image.
    """
    _check_batch(params, frames, size, warmup_frames)
    if isinstance(params[0], VariedParams) and any(q.obstacles for q in params):
        per_batch = OBSTACLE_SOLVE_CELLS // (size * size)
        if len(params) > per_batch:
            return np.concatenate(
                [
                    simulate_plumes(params[i : i + per_batch], frames, size, warmup_frames)
                    for i in range(0, len(params), per_batch)
                ]
            )
    from phi.math import Diverged

    try:
        densities = _simulate_densities(params, frames, size, warmup_frames, 32)
    except AssertionError as error:
        # phiml cannot drop the empty rows of a batched pressure system ("Shape arithmetic
        # not allowed for batch dims"): a slit under a cell wide between two discs can shut
        # fluid cells in. Found on 1 video in 300 (seed 0, video 188). Such a video is
        # simulated with its slits closed, and says so.
        if "batch dims" not in str(error) or not isinstance(params[0], VariedParams):
            raise
        return _simulate_slits_closed(params, frames, size, warmup_frames, error)
    except Diverged:
        if len(params) > 1:
            return _simulate_one_by_one(params, frames, size, warmup_frames)
        try:
            densities = _simulate_densities(params, frames, size, warmup_frames, 64)
        except Diverged:
            raise DataError(
                f"smoke: the pressure solve diverged, even in float64, for {params[0]}"
            ) from None
    if not np.isfinite(densities).all():
        raise DataError(
            f"smoke: simulation diverged (non-finite density) for plumes {list(params)}"
        )
    return render_density(densities)


def _check_batch(
    params: Sequence[PlumeParams] | Sequence[VariedParams],
    frames: int,
    size: int,
    warmup_frames: int,
) -> None:
    """The argument checks of :func:`simulate_plumes`."""
    if len(params) == 0:
        raise DataError("smoke: simulate_plumes needs at least one parameter set")
    kinds = {type(q) for q in params}
    if len(kinds) != 1 or not kinds <= {PlumeParams, VariedParams}:
        raise DataError(
            "smoke: simulate_plumes takes a batch of PlumeParams or of VariedParams, "
            f"not {sorted(k.__name__ for k in kinds)}"
        )
    _check_int("frames", frames, 1)
    _check_int("size", size, 8)
    _check_int("warmup_frames", warmup_frames, 0)
    obstacles = isinstance(params[0], VariedParams) and any(q.obstacles for q in params)
    if obstacles and size > MAX_OBSTACLE_SIZE:
        raise DataError(
            f"smoke: varied videos with obstacles need size <= {MAX_OBSTACLE_SIZE} "
            f"(PhiFlow's obstacle pressure solve), got size {size}"
        )


def _simulate_one_by_one(
    params: Sequence[PlumeParams] | Sequence[VariedParams],
    frames: int,
    size: int,
    warmup_frames: int,
) -> np.ndarray:
    """:func:`simulate_plumes` video by video, so a failure retries only its own video."""
    return np.concatenate([simulate_plumes([q], frames, size, warmup_frames) for q in params])


def _simulate_slits_closed(
    params: Sequence[VariedParams],
    frames: int,
    size: int,
    warmup_frames: int,
    error: AssertionError,
) -> np.ndarray:
    """After phiml's batch-dims failure: each video again, a lone one with its slits closed."""
    if len(params) > 1:
        return _simulate_one_by_one(params, frames, size, warmup_frames)
    closed = close_slits(params[0], size)
    if closed == params[0]:
        raise DataError(
            f"smoke: PhiFlow's pressure solve failed ({error}) for {params[0]}"
        ) from error
    warnings.warn(
        f"smoke: obstacles {params[0].obstacles} leave a slit under one cell wide; "
        f"simulated with it closed: {closed.obstacles}",
        stacklevel=3,  # the caller of simulate_plumes, as when this was inline there
    )
    return simulate_plumes([closed], frames, size, warmup_frames)


def close_slits(params: VariedParams, size: int) -> VariedParams:
    """``params`` with every pair of discs less than one cell apart grown until they touch.

    Each of the two grows by half the gap plus one cell, so the slit (unresolvable at
    ``size`` cells across) becomes solid wall; other discs are unchanged. (Growing by a
    quarter or half a cell was measured to fail still on some videos; a whole cell passed
    on all five failing videos of seed 0's first 2,000.)
    """
    cell = 1.0 / size
    discs = params.obstacles
    radii = [d.radius for d in discs]
    for i, j in itertools.combinations(range(len(discs)), 2):
        gap = math.hypot(discs[i].x - discs[j].x, discs[i].y - discs[j].y)
        gap -= discs[i].radius + discs[j].radius
        if 0 <= gap < cell:
            radii[i] += gap / 2 + cell
            radii[j] += gap / 2 + cell
    obstacles = tuple(dataclasses.replace(d, radius=r) for d, r in zip(discs, radii, strict=True))
    return dataclasses.replace(params, obstacles=obstacles)


@dataclass(frozen=True)
class _Sources:
    """A batch's forcing as NumPy arrays, first axis the video; positions in simulation units.

    ``inflow``: simple, the constant inflow rate ``(B, x, y)``; varied, one Gaussian per
    inflow slot ``(B, MAX_INFLOWS, x, y)``, switched per step by ``on`` ``(S, B, I)``.
    ``disc_centres`` ``(B, D, 2)`` and ``disc_radii`` ``(B, D)``: None without obstacles.
    """

    inflow: np.ndarray
    wind: np.ndarray
    buoyancy: np.ndarray
    on: np.ndarray | None = None
    disc_centres: np.ndarray | None = None
    disc_radii: np.ndarray | None = None


def _simulate_densities(
    params: Sequence[PlumeParams] | Sequence[VariedParams],
    frames: int,
    size: int,
    warmup_frames: int,
    bits: int,
) -> np.ndarray:
    """The simulation of :func:`simulate_plumes`: densities ``(B, T, H, W)``, row 0 = top."""
    # Cell centres in simulation units, indexed (x, y) like PhiFlow's grids (y up).
    centres = (np.arange(size, dtype=np.float32) + 0.5) * (DOMAIN / size)
    if isinstance(params[0], VariedParams):
        sources = _varied_sources(params, centres, frames, warmup_frames)
    else:
        sources = _plume_sources(params, centres)
    return _run_simulation(sources, frames, size, warmup_frames, bits)


def _plume_sources(params: Sequence[PlumeParams], centres: np.ndarray) -> _Sources:
    """Simple preset: one constant Gaussian inflow per video."""
    p = {
        name: np.array([getattr(q, name) for q in params], np.float32) for name in asdict(params[0])
    }
    dx2 = (centres[None, :, None] - p["inflow_x"][:, None, None] * DOMAIN) ** 2
    dy2 = (centres[None, None, :] - INFLOW_Y * DOMAIN) ** 2
    sigma = p["radius"][:, None, None] * DOMAIN
    inflow_rate = p["strength"][:, None, None] * np.exp(-(dx2 + dy2) / (2 * sigma**2))
    return _Sources(inflow_rate, p["wind"], p["buoyancy"])


def _varied_sources(
    params: Sequence[VariedParams], centres: np.ndarray, frames: int, warmup_frames: int
) -> _Sources:
    """Varied preset: up to MAX_INFLOWS switched Gaussians and the discs of each video."""
    # Per video, MAX_INFLOWS Gaussians (absent ones at rate 0): (B, I, x, y).
    slots = [list(q.inflows) + [None] * (MAX_INFLOWS - len(q.inflows)) for q in params]
    x, y, radius, rate = (
        np.array([[getattr(i, k, 0.0) if i else 0.0 for i in row] for row in slots], np.float32)
        for k in ("x", "y", "radius", "rate")
    )
    radius = np.where(radius > 0, radius, 1.0).astype(np.float32)
    dx2 = (centres[None, None, :, None] - x[:, :, None, None] * DOMAIN) ** 2
    dy2 = (centres[None, None, None, :] - y[:, :, None, None] * DOMAIN) ** 2
    sigma = radius[:, :, None, None] * DOMAIN
    gauss = rate[:, :, None, None] * np.exp(-(dx2 + dy2) / (2 * sigma**2))
    on = np.array(
        [
            [[i.on(f) if i else False for i in row] for row in slots]
            for f in range(-warmup_frames, frames)
        ],
        np.float32,
    )  # (S, B, I)
    # As many discs per video as the most in the batch; absent ones far outside the
    # domain (PhiFlow's batched geometry needs the same count in every video).
    most = max(len(q.obstacles) for q in params)
    disc_centres = np.full((len(params), most, 2), -10 * DOMAIN, np.float32)
    disc_radii = np.full((len(params), most), 1.0, np.float32)
    for b, q in enumerate(params):
        for k, disc in enumerate(q.obstacles):
            disc_centres[b, k] = (disc.x * DOMAIN, disc.y * DOMAIN)
            disc_radii[b, k] = disc.radius * DOMAIN
    wind = np.array([q.wind for q in params], np.float32)
    buoyancy = np.array([q.buoyancy for q in params], np.float32)
    if most == 0:
        return _Sources(gauss, wind, buoyancy, on)
    return _Sources(gauss, wind, buoyancy, on, disc_centres, disc_radii)


def _run_simulation(
    sources: _Sources, frames: int, size: int, warmup_frames: int, bits: int
) -> np.ndarray:
    """Step PhiFlow through warm-up and output frames; densities ``(B, T, H, W)``."""
    # Imported here: PhiFlow is only needed when simulating, not to import framecast.data.
    from phi.field import CenteredGrid, StaggeredGrid, resample
    from phi.geom import Box
    from phi.math import NotConverged, Solve, batch, extrapolation, precision, spatial, tensor, vec
    from phi.math.backend import NUMPY
    from phi.physics import advect, fluid

    bounds = Box(x=DOMAIN, y=DOMAIN)
    velocity_bc = extrapolation.combine_sides(
        x=extrapolation.ZERO, y=(extrapolation.ZERO, extrapolation.ZERO_GRADIENT)
    )
    solve = Solve("scipy-CG", PRESSURE_TOLERANCE, PRESSURE_TOLERANCE, suppress=[NotConverged])
    densities = np.empty((len(sources.wind), frames, size, size), np.float32)
    dtype = np.float32 if bits == 32 else np.float64

    def grid(values: np.ndarray) -> Any:
        return CenteredGrid(
            tensor(values.astype(dtype), batch("plume"), spatial("x,y")),
            extrapolation.ZERO_GRADIENT,
            bounds=bounds,
        )

    # Pin backend and precision: another module may have switched PhiFlow's defaults.
    with NUMPY, precision(bits):
        obstacles = _obstacles(sources)
        if sources.on is None:
            inflow = grid(sources.inflow)
        push = vec(
            x=tensor(sources.wind, batch("plume")), y=tensor(sources.buoyancy, batch("plume"))
        )
        smoke = CenteredGrid(0, extrapolation.ZERO_GRADIENT, x=size, y=size, bounds=bounds)
        velocity = StaggeredGrid(0, velocity_bc, x=size, y=size, bounds=bounds)
        for step in range(warmup_frames + frames):
            if sources.on is not None:
                # Elementwise per video (no reduction across the batch): batch-independent.
                rates = sources.on[step][:, :, None, None] * sources.inflow
                inflow = grid(sum(rates[:, i] for i in range(MAX_INFLOWS)))
            smoke = advect.mac_cormack(smoke, velocity, DT) + inflow * DT
            force = resample(smoke * push, to=velocity)
            velocity = advect.semi_lagrangian(velocity, velocity, DT) + force * DT
            velocity, _ = fluid.make_incompressible(velocity, obstacles, solve)
            if step >= warmup_frames:
                # (plume, y, x) with y flipped: image row 0 is the top of the domain.
                densities[:, step - warmup_frames] = smoke.values.numpy("plume,y,x")[:, ::-1]
    return densities


def _obstacles(sources: _Sources) -> tuple:
    """The batch's discs as PhiFlow obstacles (none without discs); call under its backend."""
    from phi.geom import Sphere
    from phi.math import batch, channel, instance, tensor
    from phi.physics import fluid

    if sources.disc_centres is None or sources.disc_radii is None:
        return ()
    discs = Sphere(
        center=tensor(
            sources.disc_centres, batch("plume"), instance("obstacle"), channel(vector="x,y")
        ),
        radius=tensor(sources.disc_radii, batch("plume"), instance("obstacle")),
    )
    return (fluid.Obstacle(discs),)


# Per-video quantities a ``holdout`` condition may name, from a video's metadata.
HOLDOUT_KEYS = {
    "buoyancy": lambda m: m["buoyancy"],
    "wind": lambda m: m["wind"],
    "abs_wind": lambda m: abs(m["wind"]),
    "lean": lambda m: m["lean"],
    "abs_lean": lambda m: abs(m["lean"]),
    "inflows": lambda m: len(m["inflows"]) if "inflows" in m else 1,
    "obstacles": lambda m: len(m.get("obstacles", [])),
    "max_rate": lambda m: max(i["rate"] for i in m["inflows"]) if "inflows" in m else m["strength"],
    "max_radius": lambda m: (
        max(i["radius"] for i in m["inflows"]) if "inflows" in m else m["radius"]
    ),
}
_HOLDOUT_OPERATORS = {
    "<=": float.__le__,
    ">=": float.__ge__,
    "!=": float.__ne__,
    "==": float.__eq__,
    "<": float.__lt__,
    ">": float.__gt__,
}
_HOLDOUT_PATTERN = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|!=|==|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class HoldoutCondition:
    """``KEY OP NUMBER``: a video for which it holds goes to the ``heldout`` split.

    KEY is one of :data:`HOLDOUT_KEYS` (``abs_wind > 0.05``, ``buoyancy > 0.4``,
    ``inflows >= 3``, ``obstacles >= 1``, ...).
    """

    key: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> HoldoutCondition:
        match = _HOLDOUT_PATTERN.match(text)
        if match is None:
            raise DataError(
                f"smoke: holdout condition {text!r}: expected KEY OP NUMBER, e.g. 'buoyancy > 0.4' "
                f"(OP one of {', '.join(_HOLDOUT_OPERATORS)})"
            )
        key, op, number = match.groups()
        if key not in HOLDOUT_KEYS:
            raise DataError(
                f"smoke: holdout condition {text!r}: unknown key {key!r}; allowed: "
                f"{', '.join(HOLDOUT_KEYS)}"
            )
        try:
            value = float(number)
        except ValueError:
            raise DataError(
                f"smoke: holdout condition {text!r}: {number!r} is not a number"
            ) from None
        return cls(key, op, value)

    def holds(self, meta: dict[str, Any]) -> bool:
        return _HOLDOUT_OPERATORS[self.op](float(HOLDOUT_KEYS[self.key](meta)), self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"


@dataclass
class SmokeSummary:
    """What :func:`simulate_smoke_dataset` wrote: counts per split, timing, paths."""

    out: Path
    videos: dict[str, int]
    frames: int
    size: int
    seconds: float
    frames_per_second: float
    shards: dict[str, list[Path]]
    dataset_json: Path
    preset: str = "simple"

    def format(self) -> str:
        """Human-readable summary, as the CLI prints it."""
        total = sum(self.videos.values())
        lines = [
            f"simulated {total} smoke video{'s' if total != 1 else ''} (preset {self.preset}, "
            f"{self.frames} frames at {self.size}x{self.size}) into {self.out} "
            f"in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)"
        ]
        for split in self.videos:
            where = ", ".join(str(p) for p in self.shards[split]) or "(empty)"
            lines.append(f"  {split:<7} {self.videos[split]:>6} videos  {where}")
        lines.append(f"wrote {self.dataset_json}")
        return "\n".join(lines)


def simulate_smoke_dataset(
    out: str | os.PathLike,
    videos: int = 64,
    frames: int = 40,
    size: int = 64,
    seed: int = 0,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    plumes_per_batch: int = 8,
    workers: int | None = None,
    warmup_frames: int = DEFAULT_WARMUP_FRAMES,
    wind: float | None = None,
    progress: bool = True,
    overwrite: bool = False,
    preset: str = "simple",
    holdout: Sequence[str] = (),
) -> SmokeSummary:
    """Simulate ``videos`` smoke plumes into the dataset folder ``out``.

    Writes ``out/{train,val,test}/part-00000.fcshard`` (a split with no videos is an
    empty folder) and ``out/dataset.json``. Videos are ``smoke-00000``, ... in simulation
    order; each is ``(frames, size, size, 3)`` uint8 with meta :meth:`PlumeParams.to_meta`
    (preset ``simple``) or :meth:`VariedParams.to_meta` (preset ``varied``).
    Plume parameters and the split of each video come from independent streams seeded by
    ``seed``: the same arguments give byte-identical files, and the first videos of a
    larger dataset have the parameters of a smaller one.

    Args:
        splits: train, val, test fractions (normalised to sum 1); val and test counts are
            rounded, train gets the rest and at least one video.
        plumes_per_batch: plumes simulated together (faster per video; more memory).
        workers: processes simulating batches in parallel (PhiFlow's numpy backend uses
            one core); default: the CPU count, at most the number of batches. Batches
            are independent and their parameters drawn up front, so the files do not
            depend on ``workers``.
        warmup_frames: frames simulated before the first written one, while plumes form.
        wind: the wind force is drawn uniformly from ``[-wind, wind]``; 0 disables it;
            None: the preset's range (simple ±0.15, varied ±0.25).
        preset: ``simple`` (one plume per video, as before presets existed: the same seed
            gives the same bytes) or ``varied`` (several inflows, stronger side wind, a
            wider buoyancy range, pulsing or stopping inflows, obstacles); ranges in the
            module docstring.
        overwrite: allow a non-empty ``out``; its splits and dataset.json are replaced
            (only once the new ones are complete), other files are left alone.
        holdout: conditions (:class:`HoldoutCondition`, e.g. ``"abs_wind > 0.05"``,
            ``"buoyancy > 0.4"``); a video for which any holds goes to a fourth split,
            ``heldout/``, and train/val/test are drawn from the others only: train on one
            family of plumes, test on another (``evaluate --split heldout``). The same
            seed gives the same parameters per video with or without conditions.

    Raises:
        DataError: a bad argument (the message names it and its value; an unknown preset
            also names the allowed ones), or ``out`` is not empty and ``overwrite`` is false.
    """
    wind = _check_arguments(
        preset, videos, frames, size, plumes_per_batch, workers, warmup_frames, seed, wind
    )
    fractions = split_fractions(splits)
    out = _check_output(out, overwrite)
    params_seed, split_seed = np.random.SeedSequence(seed).spawn(2)
    params = _draw_params(preset, params_seed, videos, frames, wind)
    plan = _plan_splits(params, holdout, fractions, split_seed)

    out.mkdir(parents=True, exist_ok=True)
    # New splits are built in a hidden staging folder and moved in at the end, so a crash
    # or an interrupt never leaves a half-replaced dataset.
    staging = Path(tempfile.mkdtemp(prefix=".smoke-", dir=out))
    try:
        seconds = _simulate_into(
            staging,
            plan,
            _shard_meta(seed, size, preset),
            frames=frames,
            size=size,
            warmup_frames=warmup_frames,
            plumes_per_batch=plumes_per_batch,
            workers=workers,
            progress=progress,
        )
        shards = _move_splits_in(staging, out, plan)
        simulation = _simulation_record(warmup_frames, wind, preset)
        record = _dataset_record(plan, fractions, shards, simulation, frames, size, seed, preset)
        # Written last: its presence marks a complete dataset. No timestamp, so that the
        # same arguments give a byte-identical dataset.
        dataset_json = out / DATASET_JSON
        atomic_write_text(dataset_json, json.dumps(record, indent=2) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    return SmokeSummary(
        out=out,
        videos=plan.counts,
        frames=frames,
        size=size,
        seconds=seconds,
        frames_per_second=videos * frames / seconds,
        shards=shards,
        dataset_json=dataset_json,
        preset=preset,
    )


def _check_arguments(
    preset: str,
    videos: int,
    frames: int,
    size: int,
    plumes_per_batch: int,
    workers: int | None,
    warmup_frames: int,
    seed: int,
    wind: float | None,
) -> float:
    """Raise DataError for a bad argument; return ``wind``, the preset's when None."""
    if preset not in PRESETS:
        raise DataError(f"smoke: unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    if preset == "varied" and isinstance(size, int) and size > MAX_OBSTACLE_SIZE:
        raise DataError(
            f"smoke: preset varied (obstacles) needs size <= {MAX_OBSTACLE_SIZE}, got size {size}"
        )
    _check_int("videos", videos, 1)
    _check_int("frames", frames, 1)
    _check_int("size", size, 8)
    _check_int("plumes_per_batch", plumes_per_batch, 1)
    if workers is not None:
        _check_int("workers", workers, 1)
    _check_int("warmup_frames", warmup_frames, 0)
    _check_int("seed", seed, 0)
    if wind is None:
        wind = DEFAULT_WIND if preset == "simple" else VARIED_RANGES["wind"][1]
    if isinstance(wind, bool) or not (
        isinstance(wind, int | float | np.floating) and np.isfinite(wind) and wind >= 0
    ):
        raise DataError(
            f"smoke: wind must be a finite number >= 0 (the largest wind force), got {wind!r}"
        )
    return wind


def _check_output(out: str | os.PathLike, overwrite: bool) -> Path:
    """``out`` as a Path; DataError if it is a file, or a non-empty folder without overwrite."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"smoke: output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(
            f"smoke: output folder {out} is not empty; choose another or pass overwrite"
        )
    return out


def _draw_params(
    preset: str, seed: np.random.SeedSequence, videos: int, frames: int, wind: float
) -> list[Any]:
    """Every video's parameters, drawn in order from one stream."""
    rng = np.random.default_rng(seed)
    if preset == "simple":
        return sample_plume_params(rng, videos, float(wind))
    return sample_varied_params(rng, videos, frames, float(wind))


@dataclass(frozen=True)
class _Plan:
    """The videos in simulation order, and where each one goes."""

    ids: list[str]
    params: list[Any]  # PlumeParams (simple) or VariedParams (varied)
    assignment: list[str]  # each video's split
    conditions: list[HoldoutCondition]
    splits: tuple[str, ...]  # the split folders written, heldout only with conditions
    counts: dict[str, int]  # videos per split in ``splits``


def _plan_splits(
    params: list[Any],
    holdout: Sequence[str],
    fractions: Sequence[float],
    split_seed: np.random.SeedSequence,
) -> _Plan:
    """Name the videos, hold out those meeting a condition, and split the others."""
    videos = len(params)
    width = max(5, len(str(videos - 1)))
    ids = [f"smoke-{i:0{width}d}" for i in range(videos)]
    conditions = [HoldoutCondition.parse(text) for text in holdout]
    held = {
        video_id
        for video_id, p in zip(ids, params, strict=True)
        if any(c.holds(p.to_meta()) for c in conditions)
    }
    in_family = [video_id for video_id in ids if video_id not in held]
    if conditions and not in_family:
        raise DataError(
            f"smoke: every one of the {videos} videos meets a holdout condition "
            f"({'; '.join(map(str, conditions))}): nothing is left to train on"
        )
    by_id = assign_splits(in_family, fractions, int(split_seed.generate_state(1)[0]))
    by_id.update(dict.fromkeys(held, HELDOUT))
    assignment = [by_id[video_id] for video_id in ids]
    splits = (*SPLITS, HELDOUT) if conditions else SPLITS
    counts = {split: assignment.count(split) for split in splits}
    return _Plan(ids, params, assignment, conditions, splits, counts)


def _shard_meta(seed: int, size: int, preset: str) -> dict[str, Any]:
    """Metadata shared by the shards of every split."""
    meta = {"source": SOURCE, "seed": seed, "size": size, "label_names": list(LABEL_NAMES)}
    if preset != "simple":  # simple's files stay byte-identical to those from before presets
        meta["preset"] = preset
    return meta


def _simulate_into(
    staging: Path,
    plan: _Plan,
    shard_meta: dict[str, Any],
    *,
    frames: int,
    size: int,
    warmup_frames: int,
    plumes_per_batch: int,
    workers: int | None,
    progress: bool,
) -> float:
    """Simulate the plan into one shard per non-empty split under ``staging``; seconds taken."""
    params = plan.params
    start = time.perf_counter()
    with ExitStack() as stack:
        writers = {
            split: stack.enter_context(
                ShardWriter(staging / split / _SHARD_NAME, {**shard_meta, "split": split})
            )
            for split in plan.splits
            if plan.counts[split] > 0
        }
        bar = stack.enter_context(
            tqdm(total=len(params), unit="video", desc="simulating smoke", disable=not progress)
        )
        batches = [
            params[i : i + plumes_per_batch] for i in range(0, len(params), plumes_per_batch)
        ]
        # Entered last, so the pool is shut down before the bar and the writers close.
        results = _simulate_batches(stack, batches, frames, size, warmup_frames, workers)
        index = 0
        for batch_params, clips in zip(batches, results, strict=True):  # in order: ids stay stable
            for plume, clip in zip(batch_params, clips, strict=True):
                writers[plan.assignment[index]].add(plan.ids[index], clip, plume.to_meta())
                index += 1
            bar.update(len(batch_params))
    return time.perf_counter() - start


def _simulate_batches(
    stack: ExitStack,
    batches: list[list[Any]],
    frames: int,
    size: int,
    warmup_frames: int,
    workers: int | None,
) -> Iterator[np.ndarray]:
    """Each batch's frames, in order; in a pool of processes (owned by ``stack``) if > 1."""
    processes = min(workers or os.cpu_count() or 1, len(batches))
    if processes > 1:
        pool = stack.enter_context(ProcessPoolExecutor(processes, mp_context=get_context("spawn")))
        return pool.map(
            simulate_plumes,
            batches,
            *([x] * len(batches) for x in (frames, size, warmup_frames)),
        )
    return (simulate_plumes(batch, frames, size, warmup_frames) for batch in batches)


def _move_splits_in(staging: Path, out: Path, plan: _Plan) -> dict[str, list[Path]]:
    """Replace ``out``'s split folders by the staged ones; return each split's shards."""
    stale = out / HELDOUT  # from an earlier dataset with conditions; none now
    if not plan.conditions and stale.is_dir():
        shutil.rmtree(stale)
    for split in plan.splits:
        (staging / split).mkdir(exist_ok=True)
        replace_folder(staging / split, out / split)
    return {
        split: [out / split / _SHARD_NAME] if plan.counts[split] else [] for split in plan.splits
    }


def _simulation_record(warmup_frames: int, wind: float, preset: str) -> dict[str, Any]:
    """dataset.json's ``simulation``: the physics and the parameter ranges."""
    ranges: dict[str, Any] = {**PARAM_RANGES, "wind": (-wind, wind)}
    if preset != "simple":
        ranges = {**VARIED_RANGES, "wind": (-wind, wind)}
    record = {
        "warmup_frames": warmup_frames,
        "wind": wind,
        "ranges": ranges,
        "domain": DOMAIN,
        "dt": DT,
        "inflow_y": INFLOW_Y,
        "density_scale": DENSITY_SCALE,
        "smoke_tint": SMOKE_TINT,
        "pressure_solve": f"scipy-CG rel/abs tolerance {PRESSURE_TOLERANCE}",
    }
    if preset != "simple":  # no key for simple: its dataset.json stays byte-identical
        record["inflow_modes"] = dict(zip(INFLOW_MODES, INFLOW_MODE_PROBABILITIES, strict=True))
        record["max_obstacles"] = MAX_OBSTACLES
    return record


def _dataset_record(
    plan: _Plan,
    fractions: Sequence[float],
    shards: dict[str, list[Path]],
    simulation: dict[str, Any],
    frames: int,
    size: int,
    seed: int,
    preset: str,
) -> dict[str, Any]:
    """The contents of dataset.json (key order matters: the same arguments give the same bytes)."""
    record: dict[str, Any] = {
        "framecast_dataset": 1,
        "source": SOURCE,
        "videos": len(plan.ids),
        "frames": frames,
        "size": size,
        "seed": seed,
        "split_ratios": dict(zip(SPLITS, fractions, strict=True)),
        "splits": {
            split: {
                "videos": plan.counts[split],
                "frames": plan.counts[split] * frames,
                "shards": [p.name for p in shards[split]],
            }
            for split in plan.splits
        },
        "label_names": list(LABEL_NAMES),
        "label": f"plume lean = wind / buoyancy: < -{LEAN_UPRIGHT} leans_left, > {LEAN_UPRIGHT} leans_right, else upright",
        "simulation": simulation,
    }
    if preset != "simple":  # no key for simple: its dataset.json stays byte-identical
        # Luminance only (the faint tint is the same at every pixel): data.channels: auto
        # reads this (and takes a simple dataset's source, phiflow-smoke, as 1 too).
        record.update(preset=preset, channels=1)
    if plan.conditions:  # no key without them: earlier datasets stay byte-identical
        record["holdout"] = {
            "conditions": [str(c) for c in plan.conditions],
            "rule": f"a video meeting any condition is in {HELDOUT}/; train, val and "
            "test are drawn from the others",
        }
    return record
