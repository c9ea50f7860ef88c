"""Long-rollout and ensemble metrics on analytic cases: intensity drift, blow-up checks,
spread, CRPS and the streaming spread–skill calibration."""

from __future__ import annotations

import math

import pytest
import torch

from framecast.eval.metrics import (
    BLOWUP_LIMIT,
    SPREAD_BIN_EDGES,
    SpreadSkill,
    blown_up,
    ensemble_crps,
    ensemble_spread,
    intensity,
    intensity_ratio,
    latent_blown_up,
    mae,
)

# (B, K, F, C, H, W) of the calibration cases: 4·3·1·32·32 = 12288 elements per member.
B, K, F, C, H, W = 4, 4, 3, 1, 32, 32


def _gaussian_case(member_scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Truth ~ N(mu, s^2) per element, s varying over elements in [0.01, 0.21]; members
    ~ N(mu, (member_scale s)^2). Returns (samples (B, K, F, C, H, W), truth (B, F, C, H, W))
    in the models' units (on [0, 1] every spread and error is halved; ratios are not)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(B, F, C, H, W, generator=g) * 0.4 - 0.2
    sd = torch.rand(B, F, C, H, W, generator=g) * 0.2 + 0.01
    truth = mu + sd * torch.randn(B, F, C, H, W, generator=g)
    samples = mu[:, None] + member_scale * sd[:, None] * torch.randn(B, K, F, C, H, W, generator=g)
    return samples, truth


def _calibration(member_scale: float, seed: int = 0) -> SpreadSkill:
    accumulator = SpreadSkill(F, K, seed=seed)
    samples, truth = _gaussian_case(member_scale, seed)
    accumulator.update(samples, truth)
    return accumulator


def test_an_ensemble_from_the_true_distribution_is_calibrated() -> None:
    # With 12288 elements the ratio's sampling error is about 1% (measured over seeds
    # 0-5: 0.984-1.006); 5% leaves room. Without the sqrt((K+1)/K) correction the
    # ratio would be sqrt(4/5) = 0.89, outside the tolerance.
    for seed in range(3):
        overall = _calibration(1.0, seed).overall()
        assert overall["spread_skill"] == pytest.approx(1.0, abs=0.05), seed
        # Larger true spread, larger error: the spread carries information.
        assert overall["pearson"] > 0.2 and overall["spearman"] > 0.2
        assert overall["elements"] == B * F * C * H * W


def test_per_horizon_ratios_and_the_finite_k_factor() -> None:
    accumulator = _calibration(1.0)
    rows = accumulator.per_horizon()
    assert len(rows) == F
    for row in rows:
        assert row["spread_skill"] == pytest.approx(1.0, abs=0.08)
        assert row["spread_corrected"] == pytest.approx(row["spread"] * math.sqrt((K + 1) / K))


def test_identical_members_have_no_spread() -> None:
    samples, truth = _gaussian_case(1.0)
    samples = samples[:, :1].expand_as(samples)
    accumulator = SpreadSkill(F, K)
    accumulator.update(samples, truth)
    overall = accumulator.overall()
    assert overall["spread"] == 0 and overall["spread_skill"] == 0
    assert math.isnan(overall["pearson"]) and math.isnan(overall["spearman"])
    bins = accumulator.bins()
    assert len(bins) == 1 and bins[0]["low"] == 0 and bins[0]["high"] == SPREAD_BIN_EDGES[1]


def test_an_over_dispersed_ensemble_has_a_ratio_above_one() -> None:
    # Members twice as wide as the truth's distribution: expected ratio
    # sqrt(5/4) * 2 / sqrt(1 + 4/K) = 1.58.
    assert _calibration(2.0).overall()["spread_skill"] == pytest.approx(1.58, abs=0.08)
    # And an under-dispersed one (half as wide) is over-confident: below 1.
    assert _calibration(0.5).overall()["spread_skill"] < 0.8


def test_bins_sum_to_every_element_and_are_ordered() -> None:
    accumulator = _calibration(1.0)
    bins = accumulator.bins()
    assert sum(row["elements"] for row in bins) == B * F * C * H * W
    for row in bins:
        assert row["low"] <= row["mean_spread"] < row["high"]
    assert [row["low"] for row in bins] == sorted(row["low"] for row in bins)


def test_streaming_over_batches_equals_one_pass() -> None:
    samples, truth = _gaussian_case(1.0)
    whole = SpreadSkill(F, K)
    whole.update(samples, truth)
    split = SpreadSkill(F, K)
    split.update(samples[:1], truth[:1])
    split.update(samples[1:], truth[1:])
    for key in ("spread", "rmse", "spread_skill", "pearson", "crps", "mae"):
        assert split.overall()[key] == pytest.approx(whole.overall()[key], rel=1e-9)
    for a, b in zip(split.bins(), whole.bins(), strict=True):
        assert a["elements"] == b["elements"]
        assert a["rmse"] == pytest.approx(b["rmse"], rel=1e-9)


def test_wrong_shapes_are_refused() -> None:
    samples, truth = _gaussian_case(1.0)
    with pytest.raises(ValueError, match="samples"):
        SpreadSkill(F + 1, K).update(samples, truth)
    with pytest.raises(ValueError, match="truth"):
        SpreadSkill(F, K).update(samples, truth[:, :1])
    with pytest.raises(ValueError, match="at least 2"):
        SpreadSkill(F, 1)


def test_spread_is_the_unbiased_std_on_the_unit_scale() -> None:
    samples = torch.tensor([[-1.0, 0.0, 1.0]])  # one element, 3 members: 0, 0.5, 1 on [0, 1]
    assert ensemble_spread(samples).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="K >= 2"):
        ensemble_spread(samples[:, :1])


def test_crps_matches_the_pairwise_definition() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 5, 7, generator=g), torch.randn(3, 7, generator=g)
    xu, yu = (x + 1) / 2, (y + 1) / 2
    pairwise = (xu - yu[:, None]).abs().mean(1) - (xu[:, :, None] - xu[:, None]).abs().mean(
        (1, 2)
    ) / 2
    assert torch.allclose(ensemble_crps(x, y), pairwise, atol=1e-6)


def test_crps_of_a_point_ensemble_is_the_mae() -> None:
    g = torch.Generator().manual_seed(2)
    guess = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    truth = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    point = guess[:, None].expand(-1, 6, -1, -1, -1)  # six identical members
    crps = ensemble_crps(point, truth).mean(dim=(1, 2, 3))
    assert torch.allclose(crps, mae(guess, truth), atol=1e-6)
    assert torch.allclose(ensemble_crps(guess[:, None], truth).mean(dim=(1, 2, 3)), crps)


def test_crps_of_a_wide_gaussian_ensemble_approaches_the_closed_form() -> None:
    # CRPS(N(0, s^2), y) = s (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)), z = y / s.
    g = torch.Generator().manual_seed(3)
    s, y = 0.2, 0.1  # on [0, 1]: members ~ N(0.5, s^2), truth 0.5 + y
    members = torch.randn(1, 4000, generator=g) * 2 * s  # model units: x -> 2 x - 1
    truth = torch.tensor([2 * y])
    z = torch.tensor(y / s)
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = s * (
        z * (2 * normal.cdf(z) - 1) + 2 * normal.log_prob(z).exp() - 1 / math.sqrt(math.pi)
    )
    # Finite-K bias of the standard estimator: + s / (K sqrt(pi)), negligible at K = 4000.
    assert ensemble_crps(members, truth).item() == pytest.approx(expected.item(), abs=3e-3)


def test_intensity_ratio_is_one_without_drift_and_tracks_fading() -> None:
    g = torch.Generator().manual_seed(4)
    truth = torch.rand(3, 5, 1, 8, 8, generator=g) * 2 - 1  # (N, F, C, H, W)
    faded = (truth + 1) * 0.5 - 1  # half the intensity on [0, 1]
    true_sums = intensity(truth)
    assert true_sums.shape == (3, 5) and true_sums.dtype == torch.float64
    assert torch.allclose(intensity_ratio(intensity(truth), true_sums), torch.ones(5).double())
    assert torch.allclose(
        intensity_ratio(intensity(faded), true_sums), torch.full((5,), 0.5).double()
    )


def test_intensity_ratio_is_a_ratio_of_sums_and_nan_on_black_truth() -> None:
    pred = torch.tensor([[2.0, 1.0], [0.0, 1.0]])  # (N, F)
    true = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    ratio = intensity_ratio(pred, true)
    assert ratio[0].item() == pytest.approx(1.0)  # (2 + 0) / (1 + 1)
    assert math.isnan(ratio[1].item())
    # A near-black true frame does not dominate: per-clip ratios would average to 50.5.
    skewed = intensity_ratio(torch.tensor([[1.0], [1.0]]), torch.tensor([[0.01], [1.0]]))
    assert skewed.item() == pytest.approx(2 / 1.01)
    with pytest.raises(ValueError, match="intensity"):
        intensity_ratio(pred, true[:, :1])


def test_blow_up_checks() -> None:
    frames = torch.zeros(2, 3, 1, 4, 4)
    frames[0, 1, 0, 2, 2] = float("nan")
    frames[1, 2, 0, 0, 0] = BLOWUP_LIMIT + 0.5
    frames[1, 0, 0, 0, 0] = -1.0  # in range: not a blow-up
    expected = torch.tensor([[False, True, False], [False, False, True]])
    assert torch.equal(blown_up(frames), expected)
    latents = torch.randn(2, 3, 4, 2, 2, generator=torch.Generator().manual_seed(5))
    latents[0, 0] *= 100  # RMS ~100
    latents[1, 1, 0, 0, 0] = float("inf")
    flags = latent_blown_up(latents)
    assert flags.tolist() == [[True, False, False], [False, True, False]]
