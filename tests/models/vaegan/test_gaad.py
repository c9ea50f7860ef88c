"""GAAD boxes (golden subdivision, φ-spiral, hybrid) and the grid_sample RoIAlign."""

from __future__ import annotations

import math

import pytest
import torch

from framecast.models.vaegan.gaad import (
    PHI,
    gaad_boxes,
    golden_subdivision_boxes,
    hybrid_boxes,
    phi_spiral_boxes,
    roi_align,
)

# 64×64 worked by hand: cut 64 at a = 64/φ, remainder b = 64 − a; then each 64-tall strip is cut
# at a again. Areas: 64², 64a, 64b = a² (tie, produced first), a·b = b·a (tie, produced first).
A64 = 64 / PHI
SQUARE_64 = [
    [0, 0, 64, 64],
    [0, 0, A64, 64],
    [A64, 0, 64, 64],
    [0, 0, A64, A64],
    [0, A64, A64, 64],
    [A64, 0, 64, A64],
]


def areas(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def assert_inside(boxes: torch.Tensor, height: int, width: int) -> None:
    tol = 1e-4
    assert (boxes[:, 0] >= -tol).all() and (boxes[:, 1] >= -tol).all()
    assert (boxes[:, 2] <= width + tol).all() and (boxes[:, 3] <= height + tol).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


@pytest.mark.parametrize("num_boxes", [1, 2, 3, 4, 5, 6])
def test_subdivision_square_frame_by_hand(num_boxes):
    boxes = golden_subdivision_boxes(64, 64, num_boxes)
    assert boxes.shape == (num_boxes, 4) and boxes.dtype == torch.float32
    torch.testing.assert_close(
        boxes, torch.tensor(SQUARE_64[:num_boxes], dtype=torch.float32), atol=1e-4, rtol=0
    )


def test_subdivision_landscape_frame_by_hand():
    # 64 wide, 40 tall: first cut at x = 64/φ ≈ 39.55; both 40-tall strips are portrait, cut at
    # y = 40/φ ≈ 24.72. Areas 64·40/φ² (strip b and square-ish a×24.72) tie, and so do 64·40/φ³.
    a, h = 64 / PHI, 40 / PHI
    expected = torch.tensor(
        [[0, 0, 64, 40], [0, 0, a, 40], [a, 0, 64, 40], [0, 0, a, h], [0, h, a, 40], [a, 0, 64, h]]
    )
    boxes = golden_subdivision_boxes(40, 64, 6)
    assert math.isclose(boxes[1, 2].item(), 39.5542, abs_tol=1e-3)
    torch.testing.assert_close(boxes, expected, atol=1e-4, rtol=0)


def test_subdivision_portrait_is_transposed_landscape():
    landscape = golden_subdivision_boxes(40, 64, 7)
    portrait = golden_subdivision_boxes(64, 40, 7)
    torch.testing.assert_close(portrait, landscape[:, [1, 0, 3, 2]])


@pytest.mark.parametrize("height,width", [(64, 64), (40, 64), (37, 91), (128, 96)])
def test_subdivision_inside_frame_and_area_sorted(height, width):
    boxes = golden_subdivision_boxes(height, width, 24)
    assert_inside(boxes, height, width)
    box_areas = areas(boxes)
    assert (box_areas[1:] <= box_areas[:-1] + 1e-3).all()
    assert (torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 4.0 - 1e-5).all()


def test_subdivision_pads_with_full_frame():
    # 8×8, min_size 4: full frame, 4.94×8, then 4.94×4.94 (3.06-wide pieces are dropped).
    boxes = golden_subdivision_boxes(8, 8, 6)
    assert boxes.shape == (6, 4)
    torch.testing.assert_close(boxes[2], torch.tensor([0, 0, 8 / PHI, 8 / PHI]))
    torch.testing.assert_close(boxes[3:], torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 3))


@pytest.mark.parametrize("builder", [phi_spiral_boxes, hybrid_boxes])
@pytest.mark.parametrize("num_boxes", [1, 2, 5, 12])
def test_spiral_and_hybrid_count_and_inside(builder, num_boxes):
    for height, width in [(64, 64), (40, 64), (24, 100)]:
        boxes = builder(height, width, num_boxes)
        assert boxes.shape == (num_boxes, 4) and boxes.dtype == torch.float32
        assert_inside(boxes, height, width)


def test_spiral_sizes_and_centre():
    boxes = phi_spiral_boxes(64, 96, 6, min_size=2.0)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    # First box: half the frame, centred; then sizes shrink by 1/φ down to min_size.
    torch.testing.assert_close(boxes[0], torch.tensor([24.0, 16.0, 72.0, 48.0]))
    torch.testing.assert_close(widths[1:] / widths[:-1], torch.full((5,), 1 / PHI))
    assert (heights >= 2.0 - 1e-6).all()
    tiny = phi_spiral_boxes(64, 96, 12, min_size=5.0)
    assert ((tiny[:, 2] - tiny[:, 0]).min() - 5.0).abs() < 1e-5


def test_hybrid_is_subdivision_then_spiral():
    boxes = hybrid_boxes(40, 64, 5)
    torch.testing.assert_close(boxes[:3], golden_subdivision_boxes(40, 64, 3))
    torch.testing.assert_close(boxes[3:], phi_spiral_boxes(40, 64, 2))


def test_gaad_boxes_dispatch_and_errors():
    torch.testing.assert_close(
        gaad_boxes("subdivide", 64, 64, 3), golden_subdivision_boxes(64, 64, 3)
    )
    torch.testing.assert_close(gaad_boxes("spiral", 64, 64, 3), phi_spiral_boxes(64, 64, 3))
    torch.testing.assert_close(gaad_boxes("hybrid", 64, 64, 3), hybrid_boxes(64, 64, 3))
    with pytest.raises(ValueError, match="'grid'.*subdivide, spiral, hybrid"):
        gaad_boxes("grid", 64, 64, 3)
    for kind in ("subdivide", "spiral", "hybrid"):
        with pytest.raises(ValueError, match="num_boxes"):
            gaad_boxes(kind, 64, 64, 0)


# --- roi_align ---------------------------------------------------------------------------------


def reference_roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned):
    """Loop-by-loop port of torchvision's CPU RoIAlign kernel, for (1, C, H, W) and (N, 4)."""
    _, channels, height, width = features.shape
    out_h, out_w = output_size
    result = torch.zeros(boxes.shape[0], channels, out_h, out_w, dtype=torch.float64)
    fmap = features[0].double()

    def bilinear(y, x):
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return torch.zeros(channels, dtype=torch.float64)
        y, x = max(y, 0.0), max(x, 0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_low = y_high = height - 1
            y = float(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_low = x_high = width - 1
            x = float(x_low)
        else:
            x_high = x_low + 1
        ly, lx = y - y_low, x - x_low
        hy, hx = 1 - ly, 1 - lx
        return (
            hy * hx * fmap[:, y_low, x_low]
            + hy * lx * fmap[:, y_low, x_high]
            + ly * hx * fmap[:, y_high, x_low]
            + ly * lx * fmap[:, y_high, x_high]
        )

    offset = 0.5 if aligned else 0.0
    for n, (x1, y1, x2, y2) in enumerate(boxes.double().tolist()):
        start_x, start_y = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        roi_w = x2 * spatial_scale - offset - start_x
        roi_h = y2 * spatial_scale - offset - start_y
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / out_w, roi_h / out_h
        for ph in range(out_h):
            for pw in range(out_w):
                total = torch.zeros(channels, dtype=torch.float64)
                for iy in range(sampling_ratio):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / sampling_ratio
                    for ix in range(sampling_ratio):
                        x = start_x + pw * bin_w + (ix + 0.5) * bin_w / sampling_ratio
                        total += bilinear(y, x)
                result[n, :, ph, pw] = total / sampling_ratio**2
    return result


def test_roi_align_constant_map_gives_constant():
    features = torch.full((2, 3, 9, 11), 2.5)
    boxes = torch.tensor([[0.0, 0.0, 11.0, 9.0], [1.3, 2.2, 7.9, 5.1], [0.0, 4.0, 3.0, 9.0]])
    pooled = roi_align(features, boxes, (3, 4))
    assert pooled.shape == (2, 3, 3, 3, 4)
    torch.testing.assert_close(pooled, torch.full_like(pooled, 2.5))


def test_roi_align_linear_ramp_equals_value_at_bin_centre():
    height, width, (a, b, c) = 16, 20, (0.7, -1.3, 2.0)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    features = (a * xs + b * ys + c).expand(1, 1, height, width)
    box = torch.tensor([[3.0, 2.5, 15.0, 12.5]], dtype=torch.float64)  # interior
    out_h, out_w = 2, 3
    pooled = roi_align(features, box, (out_h, out_w), sampling_ratio=2)[0, 0, 0]
    # aligned=True: image pixel i has its centre at coordinate i + 0.5 → map index i.
    bin_w, bin_h = (15.0 - 3.0) / out_w, (12.5 - 2.5) / out_h
    centre_x = 3.0 - 0.5 + (torch.arange(out_w, dtype=torch.float64) + 0.5) * bin_w
    centre_y = 2.5 - 0.5 + (torch.arange(out_h, dtype=torch.float64) + 0.5) * bin_h
    expected = a * centre_x[None, :] + b * centre_y[:, None] + c
    torch.testing.assert_close(pooled, expected)


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_matches_torchvision_kernel_including_borders(aligned):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 2, 6, 7, generator=generator, dtype=torch.float64)
    boxes = torch.tensor(
        [
            [1.0, 1.0, 9.0, 7.0],  # interior (scaled by 0.5 below)
            [-4.0, -3.0, 6.0, 5.0],  # hangs off the top-left: some samples are dropped
            [10.0, 8.0, 17.0, 14.0],  # bottom-right margin: edge-clamped and dropped
            [4.0, 4.0, 4.6, 4.3],  # smaller than one cell
        ],
        dtype=torch.float64,
    )
    ours = roi_align(features, boxes, (2, 3), spatial_scale=0.5, sampling_ratio=3, aligned=aligned)
    reference = reference_roi_align(features, boxes, (2, 3), 0.5, 3, aligned)
    torch.testing.assert_close(ours[0], reference)


def test_roi_align_gradient_reaches_features():
    features = torch.randn(2, 3, 8, 8, requires_grad=True)
    boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [2.0, 1.0, 6.0, 5.0]]]).expand(2, -1, -1)
    roi_align(features, boxes, (2, 2)).square().sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert (features.grad.abs().sum(dim=(1, 2, 3)) > 0).all()


def test_roi_align_shared_boxes_broadcast_over_batch():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(3, 2, 10, 12, generator=generator)
    boxes = torch.tensor([[0.0, 0.0, 12.0, 10.0], [2.5, 1.0, 9.0, 8.5]])
    shared = roi_align(features, boxes, (2, 2), spatial_scale=1.0)
    per_image = roi_align(features, boxes.expand(3, -1, -1), (2, 2))
    assert shared.shape == (3, 2, 2, 2, 2)
    torch.testing.assert_close(shared, per_image)
    # Each image is pooled from its own map.
    torch.testing.assert_close(shared[1:2], roi_align(features[1:2], boxes, (2, 2)))


def test_roi_align_rejects_bad_inputs():
    features = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(features, torch.zeros(1, 4), (2, 2), sampling_ratio=0)
    with pytest.raises(ValueError, match="boxes"):
        roi_align(features, torch.zeros(3, 1, 4), (2, 2))
