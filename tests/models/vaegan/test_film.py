"""GAAD-FiLM reads what is inside the GAAD regions, and only there; and it learns from it.

A change of content inside a patch must move the FiLM parameters of every box that overlaps
the patch and leave those of boxes disjoint from it (by more than RoIAlign's bilinear
support) bit-identical; on the spatial maps, only cells covered by an overlapping box may
move. Checked on the FiLM of a real generator and a real (spectrally normalised)
discriminator over the shipped GAAD boxes. CPU, 32×32, seeded.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framecast.models.vaegan.discriminator import VideoDiscriminator
from framecast.models.vaegan.film import RegionFiLM, box_coverage
from framecast.models.vaegan.gaad import gaad_boxes
from framecast.models.vaegan.generator import VideoGenerator

SIZE = 32
REGIONS = 6
FRAMES = 2
PATCH = (slice(24, 30), slice(24, 30))  # rows (y), columns (x): bottom-right of the frame
# RoIAlign's samples sit inside a box and read their bilinear neighbours: at most 1.5 px
# beyond its edge. Boxes further than this from the patch must not see it.
SUPPORT_PX = 2.0


def _film(owner: str, num_regions: int = REGIONS) -> RegionFiLM:
    torch.manual_seed(0)
    if owner == "generator":
        model = VideoGenerator(
            latent_dim=8,
            num_frames=2,
            image_size=SIZE,
            base_channels=8,
            num_regions=num_regions,
            context_frames=FRAMES,
        )
    else:
        model = VideoDiscriminator(
            num_frames=FRAMES,
            image_size=SIZE,
            base_channels=8,
            max_channels=16,
            apply_spectral_norm=True,
            use_gaad_film=True,
            num_regions=num_regions,
        )
    film = model.film
    # The projection starts at zero (FiLM = identity); give it weights as training would.
    nn.init.normal_(film.project.weight, std=0.5)
    nn.init.normal_(film.project.bias, std=0.5)
    return film.eval()


def _frames_and_edit() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    frames = torch.rand(1, FRAMES, 3, SIZE, SIZE, generator=gen) * 2 - 1
    edited = frames.clone()
    edited[:, 1, :, PATCH[0], PATCH[1]] = torch.rand(3, 6, 6, generator=gen) * 2 - 1
    return frames, edited


def _overlaps_patch(boxes: torch.Tensor, margin: float) -> torch.Tensor:
    """(N,) True for boxes that come within ``margin`` px of the patch."""
    py1, py2, px1, px2 = PATCH[0].start, PATCH[0].stop, PATCH[1].start, PATCH[1].stop
    x1, y1, x2, y2 = boxes.unbind(-1)
    return (x1 < px2 + margin) & (x2 > px1 - margin) & (y1 < py2 + margin) & (y2 > py1 - margin)


@pytest.mark.parametrize("owner", ["generator", "discriminator"])
def test_film_parameters_follow_region_content_and_nothing_else(owner):
    film = _film(owner)
    boxes = gaad_boxes("subdivide", SIZE, SIZE, REGIONS)
    frames, edited = _frames_and_edit()
    with torch.no_grad():
        before = film.region_params(frames, boxes)[0]  # (N, 2·ΣC)
        after = film.region_params(edited, boxes)[0]
    touching = _overlaps_patch(boxes, 0.0)
    near = _overlaps_patch(boxes, SUPPORT_PX)
    # The shipped boxes give both kinds: the full frame and the right strip hold the patch,
    # the left half and the top-right piece are > 4 px away from it.
    assert touching.sum() >= 2 and (~near).sum() >= 2
    moved = (after - before).abs().amax(dim=1)  # (N,)
    assert (moved[touching] > 1e-4).all(), moved
    assert (moved[~near] == 0).all(), moved  # bit-identical: the patch is never read

    # FiLM sees content, not just the layout: the same boxes with other frames differ
    # everywhere (the coordinate-only FiLM gave one constant per box).
    with torch.no_grad():
        other = film.region_params(torch.flip(frames, dims=[-1]), boxes)[0]
    assert ((other - before).abs().amax(dim=1) > 1e-4).all()


@pytest.mark.parametrize("owner", ["generator", "discriminator"])
def test_film_maps_move_only_where_overlapping_boxes_cover(owner):
    # Without the full-frame box (which overlaps every change and covers every cell), so
    # that part of the map is covered by far boxes only.
    boxes = gaad_boxes("subdivide", SIZE, SIZE, REGIONS + 1)[1:]
    film = _film(owner, num_regions=REGIONS)
    frames, edited = _frames_and_edit()
    near = _overlaps_patch(boxes, SUPPORT_PX)
    with torch.no_grad():
        before, after = film(frames, boxes), film(edited, boxes)
    for (g0, b0), (g1, b1), size in zip(before, after, film.block_sizes, strict=True):
        assert g0.shape == (1, g0.shape[1], 1, size, size)
        moved = ((g1 - g0).abs() + (b1 - b0).abs()).amax(dim=(1, 2))[0]  # (S, S)
        covered_by_near = box_coverage(boxes[None], SIZE, size)[0, near].sum(dim=0) > 0
        assert (~covered_by_near).any()  # the left half: far boxes only
        assert (moved[~covered_by_near] == 0).all()
        assert (moved[covered_by_near] > 0).any()


def test_generator_output_follows_context_regions_only_with_film():
    torch.manual_seed(0)
    options = dict(
        latent_dim=8,
        num_frames=2,
        image_size=SIZE,
        base_channels=8,
        num_regions=REGIONS,
        context_frames=FRAMES,
    )
    with_film = VideoGenerator(**options, use_gaad_film=True)
    nn.init.normal_(with_film.film.project.weight, std=0.5)
    without_film = VideoGenerator(**options, use_gaad_film=False)
    boxes = gaad_boxes("hybrid", SIZE, SIZE, REGIONS)
    frames, edited = _frames_and_edit()
    z = torch.randn(1, 8)
    with torch.no_grad():
        assert not torch.allclose(with_film(z, boxes, frames), with_film(z, boxes, edited))
        # Control: without FiLM the generator never reads the context.
        torch.testing.assert_close(without_film(z, boxes, frames), without_film(z, boxes, edited))


def test_box_coverage_is_area_fraction():
    boxes = torch.tensor([[[0.0, 0.0, 32.0, 32.0], [4.0, 0.0, 12.0, 6.0]]])
    coverage = box_coverage(boxes, 32, 4)  # cells of 8×8 px
    torch.testing.assert_close(coverage[0, 0], torch.ones(4, 4))
    expected = torch.zeros(4, 4)
    expected[0, 0], expected[0, 1] = 0.5 * 0.75, 0.5 * 0.75
    torch.testing.assert_close(coverage[0, 1], expected)


def test_generator_learns_region_content_through_film_only():
    # Each sample's context is four flat quadrants of random brightness and the future
    # repeats them; z is the same for every sample. Without FiLM the generator can only
    # learn the mean clip; with FiLM over the four quadrant boxes it can follow each region.
    size, steps = 16, 30
    quadrants = torch.tensor(
        [[0, 0, 8, 8], [8, 0, 16, 8], [0, 8, 8, 16], [8, 8, 16, 16]], dtype=torch.float32
    )

    def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        levels = torch.rand(16, 1, 1, 2, 2, generator=gen) * 1.6 - 0.8  # (B, 1, 1, 2, 2)
        frames = levels.repeat_interleave(8, dim=-1).repeat_interleave(8, dim=-2)
        return frames.expand(-1, 2, 3, -1, -1), frames.expand(-1, 2, 3, -1, -1)

    losses = {}
    for use_film in (False, True):
        torch.manual_seed(0)
        generator = VideoGenerator(
            latent_dim=4,
            num_frames=2,
            image_size=size,
            base_channels=8,
            num_regions=4,
            use_gaad_film=use_film,
            context_frames=2,
        )
        optimiser = torch.optim.Adam(generator.parameters(), lr=3e-3)
        data = torch.Generator().manual_seed(1)
        for _ in range(steps):
            context, future = batch(data)
            loss = (generator(torch.zeros(16, 4), quadrants, context) - future).square().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            context, future = batch(torch.Generator().manual_seed(2))
            out = generator(torch.zeros(16, 4), quadrants, context)
            losses[use_film] = (out - future).square().mean().item()
    # The control stays near the levels' variance (1.6²/12 ≈ 0.21); FiLM reads the regions
    # (measured: 0.16 vs 0.008).
    assert losses[False] > 0.1
    assert losses[True] < 0.3 * losses[False], losses
