"""RIVER index sampling and the smoke-weighted flow-matching loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from framecast.losses.flow import sample_river_indices, smoke_weights, weighted_flow_matching_loss


@settings(max_examples=60, deadline=None)
@given(
    num_frames=st.integers(3, 40),
    condition_frames=st.integers(1, 39),
    seed=st.integers(0, 2**31 - 1),
)
def test_indices_are_valid(num_frames, condition_frames, seed):
    if num_frames < max(condition_frames, 2) + 1:
        with pytest.raises(ValueError, match="too small"):
            sample_river_indices(num_frames, condition_frames, 4)
        return
    g = torch.Generator().manual_seed(seed)
    k, ref, c = sample_river_indices(num_frames, condition_frames, 64, generator=g)
    assert k.dtype == ref.dtype == c.dtype == torch.int64 and k.shape == (64,)
    assert torch.equal(ref, k - 1)
    assert not (c >= k - 1).any()
    assert not (k < condition_frames).any()
    assert (c >= 0).all() and (k <= num_frames - 1).all() and (k >= 2).all()


@pytest.mark.parametrize("num_frames,condition_frames", [(10, 1), (10, 4), (3, 2)])
def test_indices_cover_full_ranges(num_frames, condition_frames):
    g = torch.Generator().manual_seed(0)
    k, _, c = sample_river_indices(num_frames, condition_frames, 4000, generator=g)
    low = max(condition_frames, 2)
    assert set(k.tolist()) == set(range(low, num_frames))
    for target in range(low, num_frames):
        assert set(c[k == target].tolist()) == set(range(target - 1))


@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_context_horizon_limits_how_far_back_the_context_is_drawn(horizon):
    g = torch.Generator().manual_seed(0)
    k, ref, c = sample_river_indices(12, 1, 6000, generator=g, context_horizon=horizon)
    for target in range(2, 12):
        # Uniform on the last min(horizon, k - 1) frames before the reference, all of them hit.
        span = min(horizon, target - 1)
        assert set(c[k == target].tolist()) == set(range(target - 1 - span, target - 1))
    assert ((ref - c) <= horizon).all() and ((ref - c) >= 1).all()


def test_a_horizon_beyond_the_clip_draws_the_same_numbers_as_none():
    draws = [
        sample_river_indices(10, 1, 256, torch.Generator().manual_seed(3), context_horizon=h)
        for h in (None, 8, 50)
    ]
    for other in draws[1:]:
        assert all(torch.equal(a, b) for a, b in zip(draws[0], other, strict=True))


def test_indices_reject_bad_arguments():
    with pytest.raises(ValueError, match="condition_frames"):
        sample_river_indices(10, 0, 2)
    with pytest.raises(ValueError, match="too small"):
        sample_river_indices(2, 1, 2)
    with pytest.raises(ValueError, match="batch"):
        sample_river_indices(10, 1, 0)
    with pytest.raises(ValueError, match="context_horizon"):
        sample_river_indices(10, 1, 2, context_horizon=0)


def test_unit_weights_equal_plain_mse():
    g = torch.Generator().manual_seed(0)
    v, u, z = (torch.randn(3, 4, 5, 5, generator=g) for _ in range(3))
    v.requires_grad_(True)
    out = weighted_flow_matching_loss(
        v, u, z, smoke_threshold=0.1, smoke_weight=1.0, background_weight=1.0
    )
    assert torch.equal(out.loss, F.mse_loss(v, u))
    assert out.loss.requires_grad and not out.mse.requires_grad
    assert torch.equal(out.mse, F.mse_loss(v, u).detach())


@pytest.mark.parametrize("smoke", [True, False])
def test_uniform_targets_scale_by_their_weight(smoke):
    g = torch.Generator().manual_seed(0)
    v, u = (torch.randn(2, 4, 3, 3, generator=g) for _ in range(2))
    z = torch.full((2, 4, 3, 3), 1.0 if smoke else 0.0)
    out = weighted_flow_matching_loss(
        v, u, z, smoke_threshold=0.1, smoke_weight=5.0, background_weight=0.5
    )
    factor = 5.0 if smoke else 0.5
    assert torch.allclose(out.loss, factor * F.mse_loss(v, u), rtol=1e-6, atol=0)
    assert out.smoke_ratio.item() == (1.0 if smoke else 0.0)


def test_mask_threshold_on_hand_made_latents():
    z = torch.zeros(1, 2, 1, 4)
    z[0, :, 0, 0] = torch.tensor([0.06, 0.08])  # norm 0.1: not above the threshold
    z[0, :, 0, 1] = torch.tensor([0.0, 0.11])  # norm 0.11: smoke
    z[0, :, 0, 2] = torch.tensor([-0.3, 0.4])  # norm 0.5, negative channel: smoke
    weights, mask = smoke_weights(z, smoke_threshold=0.1, smoke_weight=5.0, background_weight=1.0)
    assert mask.shape == weights.shape == (1, 1, 1, 4) and mask.dtype == torch.bool
    assert mask.flatten().tolist() == [False, True, True, False]
    assert weights.flatten().tolist() == [1.0, 5.0, 5.0, 1.0]


def test_smoke_ratio_and_weighted_value():
    z = torch.zeros(2, 1, 2, 2)
    z[0, 0, 0, 0] = 1.0
    z[1, 0, 1, :] = 1.0  # 3 of 8 pixels are smoke
    v = torch.ones(2, 1, 2, 2)
    u = torch.zeros(2, 1, 2, 2)
    out = weighted_flow_matching_loss(
        v, u, z, smoke_threshold=0.1, smoke_weight=5.0, background_weight=1.0
    )
    assert out.smoke_ratio.item() == pytest.approx(3 / 8)
    assert out.loss.item() == pytest.approx((3 * 5.0 + 5 * 1.0) / 8)
    assert out.mse.item() == 1.0
    assert out.smoke_pixels == 3 and out.pixels == 8


def test_logged_names_mean_what_the_users_mean():
    """flow_matching_mse is the weighted loss that is optimised; the unweighted MSE and the
    per-region MSEs say where the error lives."""
    z = torch.zeros(1, 1, 2, 2)
    z[0, 0, 0, :] = 1.0  # top row smoke
    v = torch.tensor([[[[2.0, 2.0], [1.0, 1.0]]]])  # errors: smoke 4, background 1
    u = torch.zeros(1, 1, 2, 2)
    out = weighted_flow_matching_loss(
        v, u, z, smoke_threshold=0.5, smoke_weight=5.0, background_weight=1.0
    )
    logged = out.logged()
    assert logged["Training/Loss/flow_matching_mse"].item() == pytest.approx((2 * 5 * 4 + 2) / 4)
    assert logged["Training/Loss/flow_matching_mse_unweighted"].item() == pytest.approx(10 / 4)
    assert logged["Training/Loss/smoke_mse"].item() == pytest.approx(4.0)
    assert logged["Training/Loss/background_mse"].item() == pytest.approx(1.0)
    assert logged["Training/Stats/smoke_ratio"].item() == pytest.approx(0.5)
    assert not logged["Training/Loss/flow_matching_mse"].requires_grad
    # No smoke in the batch: the smoke MSE is undefined (NaN), not 0.
    empty = weighted_flow_matching_loss(v, u, torch.zeros_like(z), smoke_threshold=0.5)
    assert torch.isnan(empty.smoke_mse) and empty.background_mse.item() == pytest.approx(2.5)


def test_mask_is_measured_from_the_black_frames_latent():
    """A background that encodes far from 0 is not smoke once measured from its own latent."""
    background = torch.full((2, 2, 2), 3.0)  # the black frame's latent: norm 4.2 everywhere
    z = background.clone()[None]
    z[0, :, 1, 1] += torch.tensor([0.3, 0.4])  # one cell 0.5 away from the background
    _, plain = smoke_weights(z, smoke_threshold=0.1)
    assert plain.all()  # the users' rule on such latents: everything is "smoke"
    _, mask = smoke_weights(z, smoke_threshold=0.1, background_latent=background)
    assert mask.flatten().tolist() == [False, False, False, True]


class _RecordingField(torch.nn.Module):
    """A zero velocity field that keeps what it was conditioned on."""

    def forward(self, x_t, z_reference, z_context, tau, t):
        self.seen = (z_reference.clone(), z_context.clone())
        return torch.zeros_like(x_t)


def test_context_noise_perturbs_only_the_conditioning():
    from framecast.flow.path import CondOTPath
    from framecast.losses.flow import river_flow_loss

    latents = torch.randn(256, 6, 4, 4, 4)
    field = _RecordingField()

    def run(noise: float):
        out = river_flow_loss(
            field,
            CondOTPath(0.0),
            latents,
            1,
            smoke_threshold=0.5,
            generator=torch.Generator().manual_seed(0),
            context_noise=noise,
        )
        return out, field.seen

    clean, (ref0, ctx0) = run(0.0)
    noisy, (ref1, ctx1) = run(0.6)
    # The target, t and the path noise are drawn first: a zero field's loss is unchanged.
    assert torch.equal(clean.loss, noisy.loss)
    delta_ref, delta_ctx = (ref1 - ref0).flatten(1), (ctx1 - ctx0).flatten(1)
    # Per clip noise of std u * 0.6, u ~ U[0, 1]: mean variance 0.36 / 3 = 0.12.
    assert delta_ref.var(dim=1).mean() == pytest.approx(0.12, rel=0.15)
    assert delta_ctx.var(dim=1).mean() == pytest.approx(0.12, rel=0.15)
    assert delta_ref.std(dim=1).max() < 0.6 * 1.5  # bounded by the ceiling (sampling noise)
    assert not torch.equal(delta_ref, delta_ctx)  # independent draws
    # Off: no extra draws, the clean conditioning exactly.
    again, (ref2, _) = run(0.0)
    assert torch.equal(ref2, ref0)


def test_pushforward_replaces_the_reference_with_the_models_own_frame():
    from framecast.flow.path import CondOTPath
    from framecast.losses.flow import predicted_reference, river_flow_loss

    latents = torch.randn(64, 6, 4, 4, 4)
    field = _RecordingField()

    def run(probability: float):
        out = river_flow_loss(
            field,
            CondOTPath(0.0),
            latents,
            1,
            smoke_threshold=0.5,
            generator=torch.Generator().manual_seed(0),
            pushforward=probability,
        )
        return out, field.seen[0]

    clean, reference = run(0.0)
    pushed, replaced = run(1.0)
    assert torch.equal(clean.loss, pushed.loss)  # drawn after the target, t and noise
    # Which clips were replaced: those with k >= 3 (k = 2 has no frame before k - 1 to
    # predict it from), found again from the same first draws.
    target, _, _ = sample_river_indices(6, 1, 64, torch.Generator().manual_seed(0))
    changed = (replaced != reference).flatten(1).any(dim=1)
    assert torch.equal(changed, target >= 3)
    assert 0 < (target == 2).sum() < 64
    # A zero field leaves the warm start: 0.9 noise + 0.1 z_{k-2}, so the replaced reference
    # is noise-like, not the true z_{k-1}.
    rows = torch.arange(64)
    gen = torch.Generator().manual_seed(1)
    own = predicted_reference(
        field, CondOTPath(0.0), latents, torch.full((64,), 5), 1.0, 3, 0.1, gen
    )
    residual = own - 0.1 * latents[rows, 3]
    assert residual.std() == pytest.approx(0.9, rel=0.1)
    half = predicted_reference(
        field, CondOTPath(0.0), latents, torch.full((64,), 5), 0.5, 2, 0.1, gen
    )
    kept = (half == latents[rows, 4]).flatten(1).all(dim=1).float().mean()
    assert 0.3 < kept < 0.7  # about half the clips keep the true reference
