"""Vector quantiser with an EMA codebook, dead-code restarts and a straight-through estimator.

The codebook is not learned by gradient descent: each training step moves every code to
the exponential moving average of the encodings assigned to it (van den Oord et al. 2017,
appendix; Razavi et al. 2019), which is stabler than the codebook loss. The encoder only
receives the commitment loss ``commitment_weight * ||z - sg(q)||^2`` and the
reconstruction gradient passed straight through the quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class QuantizerOutput:
    """Result of :meth:`VectorQuantizer.forward`.

    quantized: (B, D, h, w), straight-through (forward = codes, gradient = identity to z).
    indices: (B, h, w) long, the code of each position.
    loss: scalar commitment loss (already times ``commitment_weight``).
    perplexity: scalar, exp(entropy) of this process's batch code histogram (1 .. codebook_size).
    usage: scalar, fraction of codes used at least once in the batch.
    restarted: scalar, number of dead codes restarted in this call (0 outside training).
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor
    restarted: torch.Tensor

    def stats(self) -> dict[str, torch.Tensor]:
        """Detached scalars for logging: perplexity, usage, restarted."""
        return {
            "perplexity": self.perplexity.detach(),
            "usage": self.usage.detach(),
            "restarted": self.restarted.detach(),
        }


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation of (B, D, h, w) latents with an EMA-updated codebook.

    Buffers (all in the state dict): ``codebook`` (K, D), ``cluster_size`` (K,) the EMA of
    per-code assignment counts, ``embed_sum`` (K, D) the EMA of the summed assigned
    encodings. ``codebook = embed_sum / cluster_size`` (Laplace-smoothed).
    """

    def __init__(
        self,
        codebook_size: int,
        codebook_dim: int,
        commitment_weight: float = 0.25,
        ema_decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.commitment_weight = commitment_weight
        self.ema_decay = ema_decay
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps
        # A new or restarted code starts with an EMA count of twice the threshold: unused,
        # it stays alive for about ln 2 / (1 - ema_decay) steps (69 at 0.99) to be picked.
        self.reset_count = max(2.0 * dead_code_threshold, 1.0)
        codebook = torch.randn(codebook_size, codebook_dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.full((codebook_size,), self.reset_count))
        self.register_buffer("embed_sum", codebook * self.reset_count)

    def codes_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code per position: (B, D, h, w) -> (B, h, w) long."""
        batch, _, height, width = z.shape
        flat = rearrange(z, "b d h w -> (b h w) d")
        return self._nearest(flat).view(batch, height, width)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``indices``: (B, h, w) long -> (B, D, h, w)."""
        return rearrange(F.embedding(indices, self.codebook), "b h w d -> b d h w")

    def forward(self, z: torch.Tensor, update: bool | None = None) -> QuantizerOutput:
        """Quantise ``z`` (B, D, h, w); update the codebook when ``update`` (default: training)."""
        if update is None:
            update = self.training
        batch, _, height, width = z.shape
        # Distances and EMA statistics in float32 even under bf16/fp16 autocast: argmin ties
        # and the running sums are sensitive to rounding.
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = rearrange(z.float(), "b d h w -> (b h w) d")
            indices = self._nearest(flat)
            onehot = F.one_hot(indices, self.codebook_size).to(flat.dtype)
            counts = onehot.sum(0)
            restarted = torch.zeros((), dtype=torch.long, device=z.device)
            if update:
                restarted = self._ema_update(flat.detach(), onehot, counts)
            codes = F.embedding(indices, self.codebook)
            codes = rearrange(codes, "(b h w) d -> b d h w", b=batch, h=height, w=width)
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            usage = (counts > 0).float().mean()
        codes = codes.to(z.dtype)
        loss = self.commitment_weight * F.mse_loss(z, codes.detach())
        # Straight-through: the decoder sees the codes, the encoder gets the decoder's gradient.
        quantized = z + (codes - z).detach()
        return QuantizerOutput(
            quantized=quantized,
            indices=indices.view(batch, height, width),
            loss=loss,
            perplexity=perplexity,
            usage=usage,
            restarted=restarted,
        )

    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) index of the nearest code (squared Euclidean distance)."""
        codebook = self.codebook.to(flat.dtype)
        distances = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ codebook.t()
            + codebook.pow(2).sum(1)[None, :]
        )
        return distances.argmin(1)

    @torch.no_grad()
    def _ema_update(
        self, flat: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """EMA step of the codebook and dead-code restarts; returns the number restarted."""
        sums = onehot.t() @ flat
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            # Every rank must apply the same update, from the statistics of the global batch.
            counts = counts.clone()
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        decay = self.ema_decay
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        self.embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
        # Laplace smoothing keeps a code that has drifted to a tiny count from dividing by ~0.
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

        dead = self.cluster_size < self.dead_code_threshold
        if self.dead_code_threshold > 0:
            # Restart dead codes at random encodings of this batch: they land where the
            # encoder's outputs actually are and will be picked on the next steps. Masked
            # writes over all codes avoid a device-to-host sync on the number of dead codes.
            picks = flat[torch.randint(0, flat.shape[0], (self.codebook_size,), device=flat.device)]
            self.codebook.copy_(torch.where(dead[:, None], picks, self.codebook))
            self.embed_sum.copy_(
                torch.where(dead[:, None], picks * self.reset_count, self.embed_sum)
            )
            self.cluster_size.masked_fill_(dead, self.reset_count)
            if distributed:
                # Ranks drew from different local batches; rank 0's choice wins everywhere.
                for buffer in (self.codebook, self.cluster_size, self.embed_sum):
                    dist.broadcast(buffer, src=0)
        return dead.sum()
