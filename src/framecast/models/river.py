"""RIVER vector field regressor: a U-ViT over latent pixels.

Predicts the flow-matching velocity of the next frame's latent given a noisy sample
``x_t``, the reference latent (the frame just before the target), a context latent from
further back, the index distance ``tau`` from context to reference, and the flow time ``t``.

Conditioning enters as follows:
- ``x_t``, ``z_ref`` and ``z_ctx`` are concatenated along channels, so each latent pixel
  becomes one token (``H * W`` tokens);
- learned row and column position embeddings are added to every pixel token;
- ``log tau`` goes through a small MLP and is added to every pixel token (as in RIVER);
- ``t`` becomes a sinusoidal embedding, an MLP turns it into one extra token prepended to
  the sequence, so every block can attend to it.

The output head is initialised to zero, so a fresh model predicts velocity 0 everywhere.

``use_compile=True`` (config ``model.compile``) runs the forward pass through ``torch.compile``;
where compiling fails (no C++ compiler, an unsupported backend, ...) the model warns once
and carries on eagerly. The state dict is the same either way.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from framecast.config.river import VectorFieldRegressorConfig


def sinusoidal_embedding(values: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Sinusoidal features of scalar values.

    values: (B,) float. Returns (B, dim). ``scale`` stretches [0, 1] times so that the
    highest frequencies still separate nearby t (as diffusion models do with step indices).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10_000.0) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    args = scale * values.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class CompileFallbackWarning(UserWarning):
    """``torch.compile`` failed; the regressor runs eagerly (same results, slower)."""


# One compiled function per process, shared by every regressor instance (dynamo guards on
# the instance and recompiles per instance), so copies such as an EMA model never hold a
# compiled closure over another module. None until first used; False once it has failed.
_compiled_velocity: Callable[..., Tensor] | bool | None = None


def _fall_back_to_eager(exc: BaseException) -> None:
    global _compiled_velocity
    _compiled_velocity = False
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    warnings.warn(
        f"torch.compile of the RIVER regressor failed ({type(exc).__name__}: {first_line}); "
        "running it eagerly instead (same results, slower). Set model.compile=false to "
        "silence this.",
        CompileFallbackWarning,
        stacklevel=3,
    )


def compile_failed() -> bool:
    """True once compiling the regressor has failed in this process (it then runs eagerly)."""
    return _compiled_velocity is False


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        q, k, v = rearrange(
            self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads
        )
        dropout = self.dropout if self.training else 0.0
        if (
            x.device.type == "cpu"
            and q.dtype == torch.bfloat16
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        ):
            # CPU training in bf16: at these short sequences (1 + H*W tokens) the flash
            # kernel's bf16 backward is slow; the math path trains 4-17 % (paper size) to
            # 27-60 % (tiny) faster on AMX and AVX512-BF16 CPUs (benchmarks/river_speed.py,
            # row "same, flash attention in training"). In fp32 (CPUs without native bf16)
            # the flash kernel is as fast or faster (0-13 %), and sampling keeps it too.
            with sdpa_kernel(SDPBackend.MATH):
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return self.proj_drop(self.proj(rearrange(out, "b h l d -> b l (h d)")))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)), MLP ratio 4."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, L, D) -> (B, L, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VectorFieldRegressor(nn.Module):
    """U-ViT velocity model ``v(x_t | z_ref, z_ctx, tau, t)`` on a (C, H, W) latent grid."""

    def __init__(
        self,
        state_size: int = 8,
        state_res: tuple[int, int] = (8, 8),
        inner_dim: int = 256,
        depth: int = 2,
        mid_depth: int = 1,
        num_heads: int = 4,
        dropout: float = 0.0,
        use_compile: bool = False,
    ) -> None:
        super().__init__()
        # Plain attribute, not state: checkpoints of compiled and eager models are the same.
        self.use_compile = use_compile
        if inner_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide inner_dim={inner_dim}")
        self.state_size = state_size
        self.state_res = (int(state_res[0]), int(state_res[1]))
        self.inner_dim = inner_dim
        height, width = self.state_res

        self.project_in = nn.Linear(3 * state_size, inner_dim)
        # Small init: the position embeddings start as a mild perturbation of the tokens.
        self.row_embedding = nn.Parameter(0.02 * torch.randn(height, inner_dim))
        self.col_embedding = nn.Parameter(0.02 * torch.randn(width, inner_dim))
        # log tau spans a few units (tau = 1 .. tens of frames), so a plain MLP on it suffices.
        self.distance_mlp = nn.Sequential(
            nn.Linear(1, inner_dim), nn.SiLU(), nn.Linear(inner_dim, inner_dim)
        )
        self.time_mlp = nn.Sequential(
            nn.Linear(inner_dim, inner_dim), nn.SiLU(), nn.Linear(inner_dim, inner_dim)
        )

        def block() -> TransformerBlock:
            return TransformerBlock(inner_dim, num_heads, dropout)

        self.in_blocks = nn.ModuleList(block() for _ in range(depth))
        self.mid_blocks = nn.ModuleList(block() for _ in range(mid_depth))
        self.skip_projections = nn.ModuleList(
            nn.Linear(2 * inner_dim, inner_dim) for _ in range(depth)
        )
        self.out_blocks = nn.ModuleList(block() for _ in range(depth))

        self.norm_out = nn.LayerNorm(inner_dim)
        self.head = nn.Linear(inner_dim, state_size)
        # Zero head: the initial velocity is exactly 0, so training starts from the
        # "stay at the noise" field instead of a random one.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_config(
        cls, cfg: VectorFieldRegressorConfig, use_compile: bool = False
    ) -> VectorFieldRegressor:
        """The regressor ``cfg`` describes; ``use_compile``: the config's ``model.compile``."""
        return cls(
            state_size=cfg.state_size,
            state_res=tuple(cfg.state_res),
            inner_dim=cfg.inner_dim,
            depth=cfg.depth,
            mid_depth=cfg.mid_depth,
            num_heads=cfg.num_heads,
            dropout=cfg.dropout,
            use_compile=use_compile,
        )

    def forward(self, x_t: Tensor, z_ref: Tensor, z_ctx: Tensor, tau: Tensor, t: Tensor) -> Tensor:
        """Velocity at ``x_t``.

        x_t, z_ref, z_ctx: (B, C, H, W) with C = state_size, (H, W) = state_res.
        tau: (B,) integer distance from the context frame to the reference frame, >= 1.
        t: (B,) flow time in [0, 1].
        Returns (B, C, H, W).
        """
        height, width = x_t.shape[-2:]
        if (height, width) != self.state_res:
            raise ValueError(
                f"latent grid {(height, width)} does not match state_res {self.state_res}"
            )
        global _compiled_velocity
        if self.use_compile and _compiled_velocity is not False:
            try:
                if _compiled_velocity is None:
                    _compiled_velocity = torch.compile(VectorFieldRegressor._velocity)
                return _compiled_velocity(self, x_t, z_ref, z_ctx, tau, t)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly
                # A genuine error in the model raises again from the eager call below.
                _fall_back_to_eager(exc)
        return self._velocity(x_t, z_ref, z_ctx, tau, t)

    def _velocity(
        self, x_t: Tensor, z_ref: Tensor, z_ctx: Tensor, tau: Tensor, t: Tensor
    ) -> Tensor:
        """:meth:`forward` without the input check: the part that ``compile`` compiles."""
        height, width = x_t.shape[-2:]
        tokens = self.project_in(
            rearrange(torch.cat([x_t, z_ref, z_ctx], dim=1), "b c h w -> b (h w) c")
        )
        pos = rearrange(
            self.row_embedding[:, None, :] + self.col_embedding[None, :, :], "h w d -> (h w) d"
        )
        log_tau = torch.log(tau.to(tokens.dtype))[:, None]  # tau >= 1: log tau >= 0
        tokens = tokens + pos[None] + self.distance_mlp(log_tau)[:, None, :]

        time_token = self.time_mlp(sinusoidal_embedding(t, self.inner_dim).to(tokens.dtype))
        x = torch.cat([time_token[:, None, :], tokens], dim=1)  # (B, 1 + H*W, D)

        skips = []
        for blk in self.in_blocks:
            x = blk(x)
            skips.append(x)
        for blk in self.mid_blocks:
            x = blk(x)
        for blk, proj in zip(self.out_blocks, self.skip_projections):
            x = blk(proj(torch.cat([x, skips.pop()], dim=-1)))

        out = self.head(self.norm_out(x[:, 1:]))  # drop the time token
        return rearrange(out, "b (h w) c -> b c h w", h=height, w=width)
