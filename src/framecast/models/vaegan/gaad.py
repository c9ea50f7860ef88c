"""Golden Aspect Adaptive Decomposition (GAAD): golden-ratio regions of a frame, and RoIAlign.

The WuBu-GAAD VAE-GAN does not encode a frame as one grid of patches. It cuts the frame into
regions whose proportions follow the golden ratio φ, pools features inside each region with
RoIAlign and hands the per-region vectors to the WuBu stack. Two region families are provided:

* ``golden_subdivision_boxes``: the classic golden-rectangle subdivision, a tiling hierarchy
  from the full frame down to small, roughly square pieces (large context first);
* ``phi_spiral_boxes``: boxes whose centres follow a golden logarithmic spiral out of the frame
  centre and whose sizes shrink by 1/φ at each step (small details toward the edges);

and ``hybrid_boxes`` mixes both. All boxes are ``[x1, y1, x2, y2]`` in pixels with exclusive
``x2``/``y2``, so the full frame is ``[0, 0, width, height]``; coordinates are fractional.

``roi_align`` re-implements ``torchvision.ops.roi_align`` on top of ``F.grid_sample`` because
torchvision is not a dependency of this project. It reproduces torchvision's sampling grid and
its border rule exactly (see the function docstring) and is differentiable with respect to the
features.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import torch
import torch.nn.functional as F

PHI = (1 + 5**0.5) / 2
"""The golden ratio φ ≈ 1.618."""

GOLDEN_ANGLE = 2 * math.pi * (1 - 1 / PHI)
"""The golden angle 2π(1 − 1/φ) ≈ 2.39996 rad ≈ 137.5°."""

GAAD_KINDS = ("subdivide", "spiral", "hybrid")

# Areas closer than this (in px²) count as equal when ordering boxes, so that mathematically
# equal areas (e.g. 64²/φ² reached along two different cut paths) keep their breadth-first
# production order instead of an order decided by float rounding.
_AREA_TIE_PX2 = 1e-4


def _check_request(height: int, width: int, num_boxes: int) -> None:
    if num_boxes < 1:
        raise ValueError(f"num_boxes must be >= 1, got {num_boxes}")
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got height={height}, width={width}")


def golden_subdivision_boxes(
    height: int, width: int, num_boxes: int, min_size: float = 4.0
) -> torch.Tensor:
    """The ``num_boxes`` largest rectangles of the golden-ratio subdivision of a frame.

    Starting from the full frame, rectangles are taken breadth first from a queue. Each one is
    cut across its longer side at ``length / φ`` into the larger, roughly square piece (kept at
    the top-left, i.e. the origin side) and the remainder (bottom/right); a square is cut
    across its width. Every rectangle produced, the full frame included, is a candidate; a
    piece with a side shorter than ``min_size`` is dropped (neither kept nor cut further). The
    candidates are ordered by area, largest first, ties (within 1e-4 px²) in production order,
    and the first ``num_boxes`` are returned.

    If the subdivision yields fewer than ``num_boxes`` candidates (small frame, large
    ``min_size``), the result is padded by repeating the full-frame box, so the output shape is
    always fixed. The full frame is always a candidate even if it is smaller than ``min_size``.

    Args:
        height, width: frame size in pixels.
        num_boxes: number of boxes N (>= 1).
        min_size: smallest allowed side, in pixels.

    Returns:
        ``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]``.
    """
    _check_request(height, width, num_boxes)
    full_frame = (0.0, 0.0, float(width), float(height))
    candidates: list[tuple[float, float, float, float]] = [full_frame]
    # Min-heap of the num_boxes largest candidate areas: its top is the area a new rectangle
    # must reach to still matter. Children are strictly smaller than their parent, so a
    # rectangle below that bar is kept as a candidate but not cut further (pure pruning: the
    # returned boxes are the same as with an exhaustive subdivision, just cheaper on big frames).
    largest_areas = [float(width) * float(height)]
    queue = deque([full_frame])
    while queue:
        x1, y1, x2, y2 = queue.popleft()
        rect_w, rect_h = x2 - x1, y2 - y1
        if len(largest_areas) == num_boxes and rect_w * rect_h < largest_areas[0] - _AREA_TIE_PX2:
            continue
        if rect_w >= rect_h:  # cut across the width: a vertical line at x1 + w/φ
            cut = x1 + rect_w / PHI
            pieces = [(x1, y1, cut, y2), (cut, y1, x2, y2)]
        else:  # portrait: a horizontal line at y1 + h/φ
            cut = y1 + rect_h / PHI
            pieces = [(x1, y1, x2, cut), (x1, cut, x2, y2)]
        for piece in pieces:
            if min(piece[2] - piece[0], piece[3] - piece[1]) < min_size:
                continue
            candidates.append(piece)
            queue.append(piece)
            area = (piece[2] - piece[0]) * (piece[3] - piece[1])
            if len(largest_areas) < num_boxes:
                heapq.heappush(largest_areas, area)
            elif area > largest_areas[0]:
                heapq.heapreplace(largest_areas, area)

    # Python's sort is stable, so equal (rounded) areas keep breadth-first production order.
    def area_key(box: tuple[float, float, float, float]) -> float:
        area = (box[2] - box[0]) * (box[3] - box[1])
        return -round(area / _AREA_TIE_PX2) * _AREA_TIE_PX2

    chosen = sorted(candidates, key=area_key)[:num_boxes]
    chosen += [full_frame] * (num_boxes - len(chosen))
    return torch.tensor(chosen, dtype=torch.float32)


def _spiral_boxes(height: int, width: int, num_boxes: int, min_size: float) -> torch.Tensor:
    """``phi_spiral_boxes`` without the ``num_boxes >= 1`` check (0 gives a ``(0, 4)`` tensor)."""
    boxes = []
    # The outermost centre lies 1/φ of the way from the frame centre to the frame edge.
    outer_radius = 1 / PHI
    for index in range(num_boxes):
        # Logarithmic spiral r(θ) = r_outer · φ^(θ/γ − (N−1)), γ = golden angle, sampled at
        # θ_i = i·γ: each step turns by the golden angle (no two boxes line up) and grows the
        # radius by φ; box 0 sits exactly at the centre. The radius is normalised per axis
        # (x by width/2, y by height/2), so the spiral is stretched to the frame's aspect.
        radius = 0.0 if index == 0 else outer_radius * PHI ** (index - (num_boxes - 1))
        angle = index * GOLDEN_ANGLE
        centre_x = width / 2 * (1 + radius * math.cos(angle))
        centre_y = height / 2 * (1 + radius * math.sin(angle))
        # Box 0 covers half the frame in each direction; each next box is 1/φ the size.
        shrink = PHI**-index
        box_w = min(max(width / 2 * shrink, min_size), float(width))
        box_h = min(max(height / 2 * shrink, min_size), float(height))
        # Slide the box (keeping its size) so that it lies inside the frame.
        x1 = min(max(centre_x - box_w / 2, 0.0), width - box_w)
        y1 = min(max(centre_y - box_h / 2, 0.0), height - box_h)
        boxes.append((x1, y1, x1 + box_w, y1 + box_h))
    return torch.tensor(boxes, dtype=torch.float32).reshape(num_boxes, 4)


def phi_spiral_boxes(
    height: int, width: int, num_boxes: int, min_size: float = 4.0
) -> torch.Tensor:
    """Boxes centred on a golden logarithmic spiral out of the frame centre, shrinking by 1/φ.

    Box ``i`` (``i = 0 .. N−1``) is centred at angle ``i·γ`` (γ = golden angle ≈ 137.5°) and
    normalised radius ``φ^(i − (N−1)) / φ`` (0 for box 0): a logarithmic spiral whose radius
    grows by φ per golden-angle turn, stretched to the frame's aspect ratio, with the last centre
    ``1/φ`` of the way to the edge. Box 0 is ``width/2 × height/2``; box ``i`` is ``1/φ^i``
    that size, with each side at least ``min_size`` (but never larger than the frame). A box
    crossing the frame edge is slid back inside, keeping its size.

    Returns:
        ``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]``, all inside ``[0, 0, width, height]``.
    """
    _check_request(height, width, num_boxes)
    return _spiral_boxes(height, width, num_boxes, min_size)


def hybrid_boxes(height: int, width: int, num_boxes: int, min_size: float = 4.0) -> torch.Tensor:
    """``ceil(N/2)`` golden-subdivision boxes followed by ``floor(N/2)`` spiral boxes.

    Returns:
        ``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]``.
    """
    _check_request(height, width, num_boxes)
    num_subdivision = math.ceil(num_boxes / 2)
    return torch.cat(
        [
            golden_subdivision_boxes(height, width, num_subdivision, min_size),
            _spiral_boxes(height, width, num_boxes - num_subdivision, min_size),
        ]
    )


def gaad_boxes(
    kind: str, height: int, width: int, num_boxes: int, min_size: float = 4.0
) -> torch.Tensor:
    """Dispatch on ``kind`` in ``("subdivide", "spiral", "hybrid")``; returns ``(N, 4)`` boxes."""
    builders = {
        "subdivide": golden_subdivision_boxes,
        "spiral": phi_spiral_boxes,
        "hybrid": hybrid_boxes,
    }
    if kind not in builders:
        raise ValueError(f"unknown GAAD kind {kind!r}; expected one of {', '.join(GAAD_KINDS)}")
    return builders[kind](height, width, num_boxes, min_size)


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    output_size: tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> torch.Tensor:
    """RoIAlign with ``torchvision.ops.roi_align`` semantics, built on ``F.grid_sample``.

    Each box is scaled by ``spatial_scale`` (image pixels → feature-map cells) and, when
    ``aligned``, shifted by −0.5 so that pixel centres sit at integer coordinates. The box is
    split into ``oh × ow`` bins; each bin averages ``sampling_ratio × sampling_ratio`` bilinear
    samples at the centres of a regular sub-grid of the bin. Without ``aligned`` (legacy
    torchvision behaviour) boxes are not shifted and are at least one cell wide and tall.

    Borders follow torchvision exactly: a sample farther than one cell outside the map
    (coordinate < −1 or > H resp. W, in cell-centre coordinates) contributes zero; a sample
    within that one-cell margin is clamped onto the edge cells (``padding_mode="border"``). So a
    box hanging off the map is averaged with zeros for its far-outside samples, and a constant
    map gives a constant output for any box that stays within the margin.

    Args:
        features: ``(B, C, H, W)`` feature maps.
        boxes: ``(B, N, 4)`` per-image boxes, or ``(N, 4)`` shared by all images;
            ``[x1, y1, x2, y2]`` in input-image pixels.
        output_size: ``(oh, ow)`` bins per box.
        spatial_scale: feature-map cells per image pixel (e.g. 1/4 after two stride-2 convs).
        sampling_ratio: samples per bin along each axis; must be >= 1 (torchvision's adaptive
            ``<= 0`` mode gives every box a different sample count and is not supported).
        aligned: subtract half a cell after scaling (the correct, modern behaviour).

    Returns:
        ``(B, N, C, oh, ow)`` pooled features, same dtype as ``features``.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be >= 1, got {sampling_ratio}")
    batch, channels, map_h, map_w = features.shape
    if boxes.dim() == 2:
        boxes = boxes.unsqueeze(0).expand(batch, -1, -1)
    if boxes.dim() != 3 or boxes.shape[0] != batch or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4) or ({batch}, N, 4), got {tuple(boxes.shape)}")
    out_h, out_w = output_size
    num_boxes = boxes.shape[1]
    boxes = boxes.to(dtype=features.dtype, device=features.device)

    offset = 0.5 if aligned else 0.0
    x1 = boxes[..., 0] * spatial_scale - offset  # (B, N)
    y1 = boxes[..., 1] * spatial_scale - offset
    box_w = boxes[..., 2] * spatial_scale - offset - x1
    box_h = boxes[..., 3] * spatial_scale - offset - y1
    if not aligned:
        box_w = box_w.clamp_min(1.0)
        box_h = box_h.clamp_min(1.0)

    # Sample positions in units of bins: bin p, sub-sample k → (p + (k + 0.5)/ratio).
    def sample_fractions(num_bins: int) -> torch.Tensor:
        steps = torch.arange(num_bins * sampling_ratio, device=features.device)
        return (steps.to(features.dtype) + 0.5) / sampling_ratio  # (num_bins·ratio,)

    xs = x1[..., None] + sample_fractions(out_w) * (box_w / out_w)[..., None]  # (B, N, ow·r)
    ys = y1[..., None] + sample_fractions(out_h) * (box_h / out_h)[..., None]  # (B, N, oh·r)

    # torchvision's rule: zero beyond one cell outside the map, edge-clamped within it.
    inside_x = (xs >= -1.0) & (xs <= map_w)
    inside_y = (ys >= -1.0) & (ys <= map_h)
    valid = (inside_y[..., :, None] & inside_x[..., None, :]).to(features.dtype)

    # Cell-centre coordinate p → grid_sample's normalised g (align_corners=False): g = (2p+1)/W − 1.
    grid_x = (2 * xs + 1) / map_w - 1
    grid_y = (2 * ys + 1) / map_h - 1
    samples_h, samples_w = out_h * sampling_ratio, out_w * sampling_ratio
    grid = torch.stack(
        [
            grid_x[..., None, :].expand(-1, -1, samples_h, -1),
            grid_y[..., :, None].expand(-1, -1, -1, samples_w),
        ],
        dim=-1,
    )  # (B, N, oh·r, ow·r, 2)
    # All boxes of an image go through one grid_sample call: stack them along the grid height.
    sampled = F.grid_sample(
        features,
        grid.reshape(batch, num_boxes * samples_h, samples_w, 2),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )  # (B, C, N·oh·r, ow·r)
    sampled = sampled.reshape(batch, channels, num_boxes, samples_h, samples_w)
    sampled = sampled * valid[:, None]
    pooled = sampled.reshape(
        batch, channels, num_boxes, out_h, sampling_ratio, out_w, sampling_ratio
    ).mean(dim=(4, 6))  # (B, C, N, oh, ow)
    return pooled.permute(0, 2, 1, 3, 4)
