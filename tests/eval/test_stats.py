"""framecast.eval.stats on synthetic data of known difference: intervals find a true
difference at a high rate and call a null one at no more than about the nominal rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from framecast.eval.stats import (
    corrected_leads,
    corrected_welch,
    expanded_level,
    holm,
    paired_bootstrap,
    welch_interval,
)


def _clustered(rng, delta: float, videos: int, clips: int = 2, horizons: int = 3, within=0.3):
    """(videos * clips, horizons) differences with true mean ``delta``: a video effect
    (sd 1, shared by the video's clips and horizons, plus a per-horizon part of sd 0.3)
    and clip noise of sd ``within``; returns (diff, video ids)."""
    video = rng.normal(0, 1, (videos, 1, 1)) + rng.normal(0, 0.3, (videos, 1, horizons))
    clip = rng.normal(0, within, (videos, clips, horizons))
    return (delta + video + clip).reshape(videos * clips, horizons), np.repeat(
        np.arange(videos), clips
    )


def test_paired_bootstrap_mean_shapes_and_seed():
    rng = np.random.default_rng(0)
    diff, videos = _clustered(rng, 0.5, videos=6)
    result = paired_bootstrap(diff, videos, n_boot=500, seed=3)
    assert len(result.mean) == len(result.low) == len(result.high) == 3
    assert result.mean == pytest.approx(diff.mean(axis=0).tolist())
    assert result.overall_mean == pytest.approx(diff.mean())
    assert all(lo <= m <= hi for lo, m, hi in zip(result.low, result.mean, result.high))
    assert (result.clips, result.clusters, result.n_boot, result.seed) == (12, 6, 500, 3)
    assert paired_bootstrap(diff, videos, n_boot=500, seed=3) == result  # seeded
    assert paired_bootstrap(diff, videos, n_boot=500, seed=4) != result
    # Cluster ids may be any labels (video names).
    names = np.array([f"video-{v}" for v in videos])
    assert paired_bootstrap(diff, names, n_boot=500, seed=3) == result
    json = result.to_json()
    assert json["per_horizon"]["low"] == list(result.low) and json["clusters"] == 6


def test_paired_bootstrap_nan_values_and_too_few_videos():
    diff = np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, np.nan], [5.0, 4.0]])
    result = paired_bootstrap(diff, [0, 0, 1, 1], n_boot=200)
    # NaN entries are left out of the means; the all-NaN clip is dropped.
    assert result.mean == pytest.approx([3.0, 3.0]) and result.clips == 3
    assert result.overall_mean == pytest.approx((1.0 + 2.5 + 4.5) / 3)
    one = paired_bootstrap(np.ones((4, 2)), [7, 7, 7, 7])
    assert one.mean == (1.0, 1.0) and one.clusters == 1
    assert all(math.isnan(v) for v in (*one.low, *one.high, one.overall_low))
    assert not one.excludes_zero() and not one.excludes_zero(1)
    # A constant difference is certain: a zero-width interval that excludes 0.
    constant = paired_bootstrap(np.full((6, 2), 0.25), [0, 0, 1, 1, 2, 2], n_boot=100)
    assert constant.low == constant.high == (0.25, 0.25) and constant.excludes_zero(2)
    with pytest.raises(ValueError, match="clusters must be"):
        paired_bootstrap(np.ones((4, 2)), [0, 1, 2])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(np.ones((4, 2)), [0, 0, 1, 1], level=95)


def test_expanded_level_widens_with_few_videos():
    assert expanded_level(0.95, 16) == pytest.approx(0.9723, abs=2e-4)
    assert expanded_level(0.95, 1000) == pytest.approx(0.95, abs=1e-3)
    assert expanded_level(0.95, 2) > 0.999 and math.isnan(expanded_level(0.95, 1))


def test_cluster_interval_is_wider_than_the_naive_one_for_correlated_clips():
    """Eight clips per video that nearly repeat each other: 4 independent videos, not 32
    clips. Resampling clips as if independent gives a far too narrow interval."""
    rng = np.random.default_rng(1)
    widths = []
    for _ in range(20):
        diff, videos = _clustered(rng, 0.0, videos=4, clips=8, within=0.05)
        cluster = paired_bootstrap(diff, videos, n_boot=500)
        naive = paired_bootstrap(diff, np.arange(len(diff)), n_boot=500)
        widths.append(
            (cluster.overall_high - cluster.overall_low) / (naive.overall_high - naive.overall_low)
        )
    assert min(widths) > 2.0, widths


def _rates(delta: float, draws: int, videos: int, seed: int) -> tuple[float, float]:
    """Share of draws whose interval excludes 0: over all horizons and at horizon 1."""
    rng = np.random.default_rng(seed)
    overall = first = 0
    for i in range(draws):
        diff, clusters = _clustered(rng, delta, videos)
        result = paired_bootstrap(diff, clusters, n_boot=1000, seed=i)
        overall += result.excludes_zero()
        first += result.excludes_zero(1)
    return overall / draws, first / draws


def test_paired_bootstrap_finds_a_true_difference_and_rarely_calls_a_null_one():
    """16 videos, 2 clips each, 400 seeded draws per case (about 1.5 s). Measured: a true
    difference of 1 video-sd is found in 94.8 % (over all horizons) and 92.5 % (horizon 1)
    of draws; a null difference is called in 3.5 % and 3.8 % (nominal 5 %)."""
    power = _rates(1.0, draws=400, videos=16, seed=10)
    null = _rates(0.0, draws=400, videos=16, seed=11)
    assert min(power) >= 0.9, power
    assert max(null) <= 0.07, null


def test_few_videos_keep_the_null_rate():
    """3 videos: a plain percentile interval called 26 % of null differences (it cannot
    reach beyond the extreme video); the t floor holds it at 3.7 % / 4.3 % (overall /
    horizon 1) over these 300 draws."""
    null = _rates(0.0, draws=300, videos=3, seed=12)
    assert max(null) <= 0.08, null


def test_welch_interval_matches_scipy():
    a, b = [20.1, 21.5, 20.9], [19.0, 19.8, 18.1, 19.5]
    w = welch_interval(a, b, level=0.9)
    ref = scipy.stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.9)
    assert w.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert w.p_value == pytest.approx(ref.pvalue)
    assert (w.low, w.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert w.df == pytest.approx(ref.df) and (w.n_a, w.n_b) == (3, 4)
    one = welch_interval([1.0], [2.0, 3.0])
    assert math.isnan(one.low) and math.isnan(one.p_value) and not one.excludes_zero()
    flat = welch_interval([2.0, 2.0], [1.0, 1.0])
    assert (flat.low, flat.high, flat.p_value) == (1.0, 1.0, 0.0) and flat.excludes_zero()
    with pytest.raises(ValueError, match="finite"):
        welch_interval([1.0, float("nan")], [1.0, 2.0])


def test_holm_step_down():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([0.2, float("nan"), 0.01])  # NaN left out of m = 2
    assert got[0] == pytest.approx(0.2) and math.isnan(got[1]) and got[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 0.8 x 2 capped; 0.9 follows


def test_corrected_intervals_use_the_bonferroni_level():
    a, b = [1.0, 1.4, 1.2], [0.2, 0.5, 0.1]
    result = corrected_welch({"psnr": (a, b), "ssim": (a, b), "lpips": (b, a)})
    for comparison in result.values():
        assert comparison.family == 3 and comparison.level == pytest.approx(1 - 0.05 / 3)
        ref = welch_interval(*((a, b) if comparison is not result["lpips"] else (b, a)))
        wide = comparison.interval
        assert wide.high - wide.low > ref.high - ref.low  # 98.3 % is wider than 95 %
        assert comparison.p_holm == pytest.approx(min(1.0, 3 * ref.p_value))
    assert result["lpips"].interval.diff < 0  # sign kept


def _arms(rng, delta: float, arms: int, seeds: int, metrics: int) -> dict:
    """Arm 0 ahead by ``delta`` (in seed sd) on every metric; the best arm by its mean
    against every other, per metric, as compare forms them."""
    x = rng.normal(0, 1, (arms, seeds, metrics))
    x[0] += delta
    family = {}
    for j in range(metrics):
        best = int(np.argmax(x[:, :, j].mean(axis=1)))
        family[(j, best)] = {o: (x[best, :, j], x[o, :, j]) for o in range(arms) if o != best}
    return family


@pytest.mark.parametrize("arms", [2, 3])
def test_corrected_leads_find_a_true_lead_and_rarely_call_a_null_one(arms):
    """3 seeds per arm, 3 metrics, 1,000 seeded families per case (under 2 s each).
    Measured (2 arms / 3 arms): a lead of 6 seed-sd is called clear on 88 % / 81 % of
    metrics, always for the right arm; with no difference, a family holds any false
    clear in 3.1 % / 0.1 % of draws (family-wise α = 5 %; per metric 1.0 % / 0.03 %)."""
    rng = np.random.default_rng(20 + arms)
    draws = 1000
    found = false_family = 0
    for _ in range(draws):
        result = corrected_leads(_arms(rng, 6.0, arms, seeds=3, metrics=3))
        found += sum(c.clear and best == 0 for (_, best), c in result.items())
        assert all(best == 0 for (_, best), c in result.items() if c.clear)
        null = corrected_leads(_arms(rng, 0.0, arms, seeds=3, metrics=3))
        false_family += any(c.clear for c in null.values())
        assert all(c.clear <= (c.p_holm <= 0.05) for c in null.values())
    power, false_rate = found / (3 * draws), false_family / draws
    assert power >= (0.85 if arms == 2 else 0.7), power
    assert false_rate <= 0.05, false_rate


def test_video_clusters_are_shared_by_runs_on_the_same_videos(tmp_path):
    from framecast.eval.stats import video_clusters

    (tmp_path / "a" / "test").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "test").symlink_to(tmp_path / "a" / "test")  # b's split is a's
    (tmp_path / "c" / "test").mkdir(parents=True)
    ids = video_clusters([tmp_path / "a", tmp_path / "b", tmp_path / "c"], [[0, 0, 1], [0, 1], [0]])
    assert ids.tolist() == ["0:0", "0:0", "0:1", "0:0", "0:1", "1:0"]
    with pytest.raises(ValueError, match="2 datasets for 1 runs"):
        video_clusters([tmp_path / "a", tmp_path / "c"], [[0]])
