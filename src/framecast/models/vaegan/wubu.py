"""WuBu nesting: a stack of learnable-curvature Poincaré balls acting on tangent vectors.

Each level of the stack maps its input tangent vector into a Poincaré ball of curvature −c,
measures where the point lies relative to a few learnable boundary points of that ball (the
Möbius difference, read back as a tangent vector), and mixes these in tangent space with a
small MLP. Between levels a rotation and a linear map change the dimension. Hyperbolic balls
give exponentially more room near their boundary than Euclidean space, which suits the
hierarchical, multi-scale region features produced by GAAD.

Unlike the research code this is derived from (which read curvature and scale with
``.item()`` and so never trained them), curvature and scale here are tensors in the autograd
graph: ``c = softplus(raw) + 1e-4`` is learned by the optimiser like any other weight. No
function in this module converts them to Python numbers.

All maps act on the last dimension and accept a Python float or a (0-dim) tensor for ``c``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

MIN_NORM = 1e-15
"""Floor on vector norms before dividing by them (keeps v = 0 finite, gradients included)."""

BALL_EPS = 1e-5
"""Points are kept at norm ≤ (1 − BALL_EPS)/√c, strictly inside the ball of radius 1/√c."""

POSITIVE_FLOOR = 1e-4
"""Curvature and scale are ``softplus(raw) + POSITIVE_FLOOR``: positive, never zero."""


def _sqrt_curvature(c: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    # as_tensor keeps an existing tensor (and its graph) and only moves dtype/device.
    return torch.as_tensor(c, dtype=like.dtype, device=like.device).sqrt()


def _norm(x: torch.Tensor) -> torch.Tensor:
    """``(..., 1)`` Euclidean norm over the last dim, floored at ``MIN_NORM``."""
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(MIN_NORM)


def project_to_ball(
    y: torch.Tensor, c: torch.Tensor | float, eps: float = BALL_EPS
) -> torch.Tensor:
    """Shrink points of norm above ``(1 − eps)/√c`` radially onto that sphere; others unchanged.

    Args:
        y: ``(..., D)`` points.
        c: curvature magnitude (> 0), float or tensor broadcastable to ``(..., 1)``.

    Returns:
        ``(..., D)`` points strictly inside the Poincaré ball of radius ``1/√c``.
    """
    max_norm = (1 - eps) / _sqrt_curvature(c, y)
    return y * (max_norm / _norm(y)).clamp_max(1.0)


def expmap0(v: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Exponential map at the origin: tangent ``(..., D)`` → ball point ``(..., D)``.

    ``expmap0(v) = tanh(√c‖v‖) · v / (√c‖v‖)``, projected strictly inside the ball. Finite for
    ``v = 0`` (the factor tends to 1; the norm is floored) and for huge ``v`` (tanh saturates).
    """
    sqrt_c = _sqrt_curvature(c, v)
    scaled_norm = sqrt_c * _norm(v)
    return project_to_ball(torch.tanh(scaled_norm) / scaled_norm * v, c)


def logmap0(y: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Logarithmic map at the origin: ball point ``(..., D)`` → tangent ``(..., D)``.

    ``logmap0(y) = artanh(√c‖y‖) · y / (√c‖y‖)``, with ``√c‖y‖`` clamped to ``1 − 1e-5`` so that
    points on (or beyond) the boundary map to a finite vector of length ``artanh(1 − 1e-5)/√c``.
    """
    sqrt_c = _sqrt_curvature(c, y)
    scaled_norm = sqrt_c * _norm(y)
    return torch.atanh(scaled_norm.clamp_max(1 - BALL_EPS)) / scaled_norm * y


def mobius_add(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Möbius addition ``x ⊕ y`` in the Poincaré ball of curvature −c (broadcasting ``(..., D)``).

    ``x ⊕ y = ((1 + 2c⟨x,y⟩ + c‖y‖²) x + (1 − c‖x‖²) y) / (1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²)``; the
    denominator is floored (it only approaches 0 for points on the boundary) and the result
    projected inside the ball. ``x ⊕ 0 = x`` and ``(−x) ⊕ x = 0``.
    """
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    x_sq = x.pow(2).sum(dim=-1, keepdim=True)
    y_sq = y.pow(2).sum(dim=-1, keepdim=True)
    dot = (x * y).sum(dim=-1, keepdim=True)
    numerator = (1 + 2 * c * dot + c * y_sq) * x + (1 - c * x_sq) * y
    denominator = (1 + 2 * c * dot + c.pow(2) * x_sq * y_sq).clamp_min(MIN_NORM)
    return project_to_ball(numerator / denominator, c)


def _inverse_softplus(value: float) -> float:
    """``raw`` with ``softplus(raw) + POSITIVE_FLOOR == value`` (stable for large values)."""
    target = value - POSITIVE_FLOOR
    if target <= 0:
        raise ValueError(f"value must exceed {POSITIVE_FLOOR}, got {value}")
    # softplus⁻¹(t) = log(eᵗ − 1) = t + log(1 − e⁻ᵗ)
    return target + math.log(-math.expm1(-target))


class HyperbolicLevel(nn.Module):
    """One WuBu level: a Poincaré ball with learnable curvature, scale and boundary points.

    ``forward`` maps a tangent vector ``v`` to ``point = expmap0(s·v, c)`` and describes the
    point by (1) its own tangent vector ``logmap0(point, c)/s``, (2) for each boundary point
    ``b``, the tangent vector of the point seen from ``b``, ``logmap0((−b) ⊕ point, c)``, and (3)
    the level's learnable descriptor vector. A two-layer MLP combines their concatenation into
    a ``dim`` tangent vector that is added to ``v`` (a residual: a stack of levels starts near
    the identity and gradients reach early layers undiminished).

    The curvature and scale receive gradients through the relative vectors (the own vector is
    exactly ``v`` away from the ball's edge), so ``num_boundary_points >= 1`` is what makes them
    learn.

    Args:
        dim: tangent (and ball) dimension D.
        initial_curvature: c at initialisation (> 1e-4); the ball has radius ``1/√c``.
        initial_scale: s at initialisation (> 1e-4), applied before ``expmap0``.
        num_boundary_points: P learnable reference points in the ball.
        use_descriptor: append a learnable level descriptor to the combiner input.
        dropout: dropout inside the combiner MLP.
    """

    def __init__(
        self,
        dim: int,
        initial_curvature: float = 1.0,
        initial_scale: float = 1.0,
        num_boundary_points: int = 4,
        use_descriptor: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if num_boundary_points < 0:
            raise ValueError(f"num_boundary_points must be >= 0, got {num_boundary_points}")
        self.dim = dim
        self.num_boundary_points = num_boundary_points
        self.raw_curvature = nn.Parameter(torch.tensor(_inverse_softplus(initial_curvature)))
        self.raw_scale = nn.Parameter(torch.tensor(_inverse_softplus(initial_scale)))
        # Tangent-space parameters: unconstrained, mapped into the current ball on every call,
        # so they stay valid whatever the curvature becomes. Spread ~0.5/√c from the origin.
        self.boundary_tangents = nn.Parameter(
            torch.randn(num_boundary_points, dim) * (0.5 / math.sqrt(initial_curvature))
        )
        self.descriptor = nn.Parameter(torch.randn(dim) * 0.01) if use_descriptor else None
        combined_dim = dim * (1 + num_boundary_points + (1 if use_descriptor else 0))
        hidden_dim = 2 * dim
        self.combiner = nn.Sequential(
            nn.Linear(combined_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
        )

    @property
    def curvature(self) -> torch.Tensor:
        """0-dim tensor c > 0 (in the autograd graph)."""
        return F.softplus(self.raw_curvature) + POSITIVE_FLOOR

    @property
    def scale(self) -> torch.Tensor:
        """0-dim tensor s > 0 (in the autograd graph)."""
        return F.softplus(self.raw_scale) + POSITIVE_FLOOR

    def boundary_points(self) -> torch.Tensor:
        """``(P, D)`` boundary points in the ball of the current curvature."""
        return expmap0(self.boundary_tangents, self.curvature)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Tangent ``(..., D)`` → tangent ``(..., D)``.

        The ball maths runs in float32 even under bf16/fp16 autocast: in bf16 the clamp
        1 − 1e-5 rounds to 1 and artanh returns inf (a bf16 training run went NaN at step 2).
        """
        with torch.autocast(device_type=v.device.type, enabled=False):
            c, s = self.curvature.float(), self.scale.float()
            point = expmap0(s * v.float(), c)  # (..., D)
            parts = [logmap0(point, c) / s]
            if self.num_boundary_points > 0:
                boundary = self.boundary_points().float()  # (P, D)
                relative = logmap0(mobius_add(-boundary, point.unsqueeze(-2), c), c)  # (..., P, D)
                parts.append(relative.flatten(start_dim=-2))
            if self.descriptor is not None:
                parts.append(self.descriptor.float().expand(*v.shape[:-1], self.dim))
            geometry = torch.cat(parts, dim=-1)
        return v + self.combiner(geometry)


class LevelTransform(nn.Module):
    """Tangent-space map between levels: a rotation of ``in_dim`` then a Linear to ``out_dim``.

    The rotation is a bias-free ``in_dim × in_dim`` Linear under
    ``torch.nn.utils.parametrizations.orthogonal`` (matrix-exponential map, so it stays a proper
    rotation during training) and starts as the identity.

    Args:
        in_dim, out_dim: tangent dimensions of the source and target levels.
        use_rotation: without it, only the Linear map is applied.
    """

    def __init__(self, in_dim: int, out_dim: int, use_rotation: bool = True) -> None:
        super().__init__()
        self.rotation: nn.Linear | None = None
        if use_rotation:
            rotation = nn.Linear(in_dim, in_dim, bias=False)
            nn.init.eye_(rotation.weight)
            self.rotation = orthogonal(rotation)
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim)`` → ``(..., out_dim)``."""
        if self.rotation is not None:
            v = self.rotation(v)
        return self.linear(v)


class WuBuStack(nn.Module):
    """Linear in → level 0 → transform → level 1 → … → level L−1 → Linear out.

    Args:
        input_dim: features of the input ``(..., input_dim)``.
        level_dims: tangent dimension of each level.
        initial_curvatures: initial c of each level (same length as ``level_dims``).
        output_dim: features of the output ``(..., output_dim)``.
        num_boundary_points: boundary points per level.
        dropout: dropout inside each level's combiner.
        use_rotation: rotations in the inter-level transforms.

    With no levels the stack is a single ``Linear(input_dim, output_dim)``.
    """

    def __init__(
        self,
        input_dim: int,
        level_dims: list[int],
        initial_curvatures: list[float],
        output_dim: int,
        num_boundary_points: int = 4,
        dropout: float = 0.1,
        use_rotation: bool = True,
    ) -> None:
        super().__init__()
        if len(level_dims) != len(initial_curvatures):
            raise ValueError(
                f"level_dims has {len(level_dims)} entries but initial_curvatures has "
                f"{len(initial_curvatures)}; give one curvature per level"
            )
        self.levels = nn.ModuleList(
            HyperbolicLevel(
                dim,
                initial_curvature=curvature,
                num_boundary_points=num_boundary_points,
                dropout=dropout,
            )
            for dim, curvature in zip(level_dims, initial_curvatures)
        )
        self.transforms = nn.ModuleList(
            LevelTransform(source, target, use_rotation=use_rotation)
            for source, target in zip(level_dims[:-1], level_dims[1:])
        )
        if level_dims:
            self.input_proj: nn.Module = nn.Linear(input_dim, level_dims[0])
            self.output_proj: nn.Module = nn.Linear(level_dims[-1], output_dim)
        else:
            self.input_proj = nn.Linear(input_dim, output_dim)
            self.output_proj = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., input_dim)`` → ``(..., output_dim)``."""
        v = self.input_proj(x)
        for index, level in enumerate(self.levels):
            if index > 0:
                v = self.transforms[index - 1](v)
            v = level(v)
        return self.output_proj(v)

    def curvatures(self) -> list[torch.Tensor]:
        """Current curvature of each level (tensors, for logging call ``.item()`` yourself)."""
        return [level.curvature for level in self.levels]
