"""Optical-flow motion features: Farneback flow on synthetic motion, region statistics on
hand-made flow fields, and the error messages."""

from __future__ import annotations

import math

import pytest
import torch

from framecast.models.vaegan.motion import (
    MOTION_STAT_COMPONENTS,
    farneback_flow,
    flow_region_stats,
    stats_dim,
)

SIZE = 32


def _square_clip(x_positions: list[int], batch: int = 1, channels: int = 3) -> torch.Tensor:
    """(batch, T, channels, SIZE, SIZE) clip: a bright 10x10 square on a dark background,
    its left edge at each of ``x_positions`` in turn."""
    clip = -torch.ones(batch, len(x_positions), channels, SIZE, SIZE)
    for t, x in enumerate(x_positions):
        clip[:, t, :, 11:21, x : x + 10] = 1.0
    return clip


def test_translated_square_flow_points_right():
    clip = _square_clip([10, 12])
    flow = farneback_flow(clip)
    assert flow.shape == (1, 1, 2, SIZE, SIZE)
    assert flow.dtype == torch.float32
    # The box covers the square in both frames.
    box = torch.tensor([[10.0, 11.0, 22.0, 21.0]])
    stats = flow_region_stats(flow, box, components=("mag_mean", "angle_mean"))
    assert stats.shape == (1, 1, 1, 3)
    mean_dx = (flow[0, 0, 0, 11:21, 10:22]).mean()
    mean_dy = (flow[0, 0, 1, 11:21, 10:22]).mean()
    assert mean_dx.item() == pytest.approx(2.0, abs=0.5)
    assert mean_dy.item() == pytest.approx(0.0, abs=0.5)
    magnitude, cos, sin = stats[0, 0, 0].tolist()
    assert magnitude == pytest.approx(2.0, abs=0.5)
    assert cos == pytest.approx(1.0, abs=0.05)
    assert sin == pytest.approx(0.0, abs=0.1)


def test_static_frames_have_no_motion():
    clip = _square_clip([10, 10, 10], batch=2, channels=1)
    flow = farneback_flow(clip)
    assert flow.shape == (2, 2, 2, SIZE, SIZE)
    stats = flow_region_stats(flow, torch.tensor([[0.0, 0.0, 32.0, 32.0], [8, 8, 24, 24]]))
    assert stats[..., 0].abs().max().item() < 0.05


def test_flow_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        farneback_flow(torch.zeros(1, 1, 3, 8, 8))


def test_constant_flow_statistics_are_exact():
    flow = torch.zeros(2, 3, 2, 8, 8)
    flow[:, :, 0], flow[:, :, 1] = 3.0, 4.0
    boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [2.0, 1.0, 5.0, 7.0]]]).expand(2, -1, -1)
    stats = flow_region_stats(flow, boxes, components=MOTION_STAT_COMPONENTS)
    assert stats.shape == (2, 3, 2, stats_dim(MOTION_STAT_COMPONENTS)) == (2, 3, 2, 5)
    expected = torch.tensor([5.0, 0.6, 0.8, 0.0, 0.0]).expand_as(stats)
    torch.testing.assert_close(stats, expected, atol=1e-3, rtol=0)


def test_statistics_follow_component_order_and_box_contents():
    # Left half moves right at 1 px, right half moves up (-y) at 3 px.
    flow = torch.zeros(1, 1, 2, 4, 8)
    flow[..., 0, :, :4] = 1.0
    flow[..., 1, :, 4:] = -3.0
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0], [0.0, 0.0, 8.0, 4.0]])
    stats = flow_region_stats(flow, boxes, components=("angle_mean", "mag_std", "mag_mean"))
    left, right, both = stats[0, 0]
    torch.testing.assert_close(left, torch.tensor([1.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(right, torch.tensor([0.0, -1.0, 0.0, 3.0]))
    # Half the pixels point along +x, half along -y: mean direction at -45 degrees,
    # magnitudes 1 and 3 give mean 2 and standard deviation 1.
    torch.testing.assert_close(
        both, torch.tensor([math.sqrt(0.5), -math.sqrt(0.5), 1.0, 2.0]), atol=1e-5, rtol=0
    )
    # Two perpendicular unit vectors: R = sqrt(0.5), circular std = sqrt(ln 2).
    angle_std = flow_region_stats(flow, boxes, components=("angle_std",))
    assert angle_std[0, 0, 2, 0].item() == pytest.approx(math.sqrt(math.log(2.0)), abs=1e-5)


def test_empty_boxes_give_zeros_not_nan():
    flow = torch.randn(1, 2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[3.0, 3.0, 3.0, 6.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 8.0, 8.0]])
    stats = flow_region_stats(flow, boxes, components=MOTION_STAT_COMPONENTS)
    assert torch.isfinite(stats).all()
    assert (stats[:, :, :2] == 0).all()
    assert (stats[:, :, 2] != 0).any()


def test_unknown_component_and_bad_shapes_are_rejected():
    flow = torch.zeros(1, 1, 2, 4, 4)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    with pytest.raises(ValueError, match="'speed'.*mag_mean, angle_mean, mag_std, angle_std"):
        flow_region_stats(flow, boxes, components=("mag_mean", "speed"))
    with pytest.raises(ValueError, match="'speed'"):
        stats_dim(("speed",))
    with pytest.raises(ValueError, match="boxes must be"):
        flow_region_stats(flow, torch.zeros(2, 3, 4))
    assert stats_dim(("mag_mean", "angle_mean")) == 3
