"""GAAD-FiLM conditioned on what is inside the golden-ratio regions.

GAAD boxes depend on the frame size alone, so FiLM computed from box coordinates is one
constant scale and shift per channel: a bias, not a conditioning. ``RegionFiLM`` instead
reads the *content* of every box: the frames it is given (the generator's context frames,
the discriminator's judged clip) are pooled per box and per frame with RoIAlign, a small
MLP shared by all boxes turns each box's pooled pixels (plus its normalised coordinates, so
boxes can still differ by position) into one (gamma, beta) pair per modulated channel, and
every cell of a block's feature map gets the coverage-weighted mean of the pairs of the
boxes that cover it.

Locality, which the tests check: a box's pair depends only on the pixels RoIAlign samples
for it (the box plus at most one pixel of bilinear support around it), and a cell's
modulation only on the pairs of boxes that overlap that cell. So changing the content inside
one box moves the pairs of the boxes overlapping the change and the modulation of the cells
those boxes cover, and nothing else. Pixels are pooled directly (no convolution before
RoIAlign), precisely so that no receptive field leaks content from outside a box.

The MLP's output layer starts at zero: a fresh module is the identity (gamma = beta = 0)
and the conditioning is learned from there rather than from random modulation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from framecast.models.vaegan.gaad import roi_align


def apply_film(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """FiLM as a residual modulation: ``x * (1 + gamma) + beta`` (identity at gamma=beta=0)."""
    return x * (1.0 + gamma) + beta


def box_coverage(boxes: Tensor, image_size: int, grid_size: int) -> Tensor:
    """Fraction of each cell of a ``grid_size²`` grid over the frame that each box covers.

    Args:
        boxes: (B, N, 4) ``[x1, y1, x2, y2]`` pixel boxes of a square ``image_size`` frame.
        image_size: frame side in pixels.
        grid_size: cells per side (a block's feature-map size).

    Returns:
        (B, N, grid_size, grid_size) in [0, 1]: 1 where the box covers the whole cell, 0
        where it does not touch it.
    """
    cell = image_size / grid_size
    edges = torch.arange(grid_size + 1, device=boxes.device, dtype=boxes.dtype) * cell
    low, high = edges[:-1], edges[1:]

    def overlap(start: Tensor, end: Tensor) -> Tensor:  # (B, N) → (B, N, grid_size)
        return (torch.minimum(end[..., None], high) - torch.maximum(start[..., None], low)).clamp(
            min=0.0
        ) / cell

    x_cover = overlap(boxes[..., 0], boxes[..., 2])
    y_cover = overlap(boxes[..., 1], boxes[..., 3])
    return y_cover[..., :, None] * x_cover[..., None, :]


class RegionFiLM(nn.Module):
    """Frames + GAAD boxes → spatial FiLM parameters for each modulated block.

    Args:
        in_channels: channels C of the frames read.
        num_frames: frames T read per sample (all of them are pooled; flattened per box).
        num_regions: N, boxes per sample.
        image_size: side of the (square) frames and of the pixel space the boxes live in.
        block_channels: channel count of each modulated block, in order.
        block_sizes: spatial side of each block's feature map (where its FiLM applies).
        roi_output: ``(oh, ow)`` RoIAlign bins per box and frame.
        hidden_dim: width of the per-box embedding.
        wrap_linear: applied to the embedding Linear (spectral norm in the discriminator).
            Not applied to the zero-initialised projection: spectral norm of an all-zero
            weight divides 0 by 0.
    """

    def __init__(
        self,
        in_channels: int,
        num_frames: int,
        num_regions: int,
        image_size: int,
        block_channels: Sequence[int],
        block_sizes: Sequence[int],
        roi_output: tuple[int, int] = (2, 2),
        hidden_dim: int = 64,
        wrap_linear: Callable[[nn.Module], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if len(block_channels) != len(block_sizes):
            raise ValueError(
                f"block_channels {tuple(block_channels)} and block_sizes {tuple(block_sizes)} "
                "must have one entry per block"
            )
        self.in_channels = in_channels
        self.num_frames = num_frames
        self.num_regions = num_regions
        self.image_size = image_size
        self.block_channels = tuple(block_channels)
        self.block_sizes = tuple(block_sizes)
        self.roi_output = tuple(roi_output)
        pooled_dim = num_frames * in_channels * self.roi_output[0] * self.roi_output[1]
        embed = nn.Linear(pooled_dim + 4, hidden_dim)
        self.embed = wrap_linear(embed) if wrap_linear is not None else embed
        self.activation = nn.SiLU()
        self.project = nn.Linear(hidden_dim, 2 * sum(self.block_channels))
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def _batch_boxes(self, boxes: Tensor, batch: int, dtype: torch.dtype) -> Tensor:
        if boxes.ndim == 2:
            boxes = boxes.unsqueeze(0).expand(batch, -1, -1)
        if boxes.shape != (batch, self.num_regions, 4):
            raise ValueError(
                f"boxes must be (B, N, 4) or (N, 4) with B={batch}, N={self.num_regions}, "
                f"got shape {tuple(boxes.shape)}"
            )
        return boxes.to(dtype)

    def region_params(self, frames: Tensor, boxes: Tensor) -> Tensor:
        """Per-box FiLM parameters from the content of each box.

        Args:
            frames: (B, T, C, H, W) frames, H = W = image_size.
            boxes: (B, N, 4) or (N, 4) ``[x1, y1, x2, y2]`` pixel boxes.

        Returns:
            (B, N, 2·ΣC_block): for each box, every block's gammas then betas.
        """
        expected = (self.num_frames, self.in_channels, self.image_size, self.image_size)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"FiLM frames must be (B, {', '.join(map(str, expected))}), "
                f"got {tuple(frames.shape)}"
            )
        batch, num_frames = frames.shape[:2]
        dtype = self.project.weight.dtype
        boxes = self._batch_boxes(boxes.to(frames.device), batch, dtype)
        pooled = roi_align(
            frames.flatten(0, 1).to(dtype),
            boxes.repeat_interleave(num_frames, dim=0),
            self.roi_output,
        )  # (B·T, N, C, oh, ow)
        pooled = pooled.unflatten(0, (batch, num_frames)).transpose(1, 2).flatten(2)
        geometry = boxes / float(self.image_size)  # (B, N, 4) in [0, 1]
        features = torch.cat([pooled, geometry], dim=-1)  # (B, N, T·C·oh·ow + 4)
        return self.project(self.activation(self.embed(features)))

    def forward(self, frames: Tensor, boxes: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Frames + boxes → one spatial (gamma, beta) pair per block.

        Args:
            frames: (B, T, C, H, W) frames whose box contents condition the modulation.
            boxes: (B, N, 4) or (N, 4) ``[x1, y1, x2, y2]`` pixel boxes.

        Returns:
            For block k, gamma and beta of shape (B, C_k, 1, S_k, S_k) (S_k = its feature-map
            side), broadcasting over a (B, C_k, T', S_k, S_k) activation. A cell gets the
            mean of the pairs of the boxes covering it, weighted by the fraction covered
            (divided by max(total coverage, 1), so a cell no box touches is left unmodulated).
        """
        params = self.region_params(frames, boxes)  # (B, N, 2·ΣC)
        boxes = self._batch_boxes(boxes.to(params.device), params.shape[0], params.dtype)
        pairs = []
        chunks = params.split([2 * c for c in self.block_channels], dim=-1)
        for chunk, size in zip(chunks, self.block_sizes, strict=True):
            weights = box_coverage(boxes, self.image_size, size)  # (B, N, S, S)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
            maps = torch.einsum("bnk,bnhw->bkhw", chunk, weights)  # (B, 2·C_k, S, S)
            gamma, beta = maps.unsqueeze(2).chunk(2, dim=1)  # (B, C_k, 1, S, S) each
            pairs.append((gamma, beta))
        return pairs
