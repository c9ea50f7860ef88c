"""Frame metrics on [-1, 1] frames, per-horizon aggregation and the Fréchet distance."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from framecast.eval.metrics import (
    background_hallucination,
    bright_smoke_mask,
    fid_from_features,
    frechet_distance,
    masked_psnr,
    mse,
    per_frame,
    per_horizon,
    psnr,
    ssim,
)


def _frames(*shape: int, seed: int = 0, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(*shape, generator=g)


def test_psnr_of_identical_images_is_inf() -> None:
    x = _frames(2, 3, 16, 16)
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()


def test_constant_offset_of_a_tenth_on_unit_scale_is_20_db() -> None:
    target = _frames(3, 3, 16, 16, high=0.8)
    pred = target + 0.2  # 0.2 on [-1, 1] is 0.1 on [0, 1]
    torch.testing.assert_close(mse(pred, target), torch.full((3,), 0.01))
    torch.testing.assert_close(psnr(pred, target), torch.full((3,), 20.0))


def test_psnr_agrees_with_torchmetrics_per_image() -> None:
    pred, target = _frames(3, 3, 16, 16, seed=1), _frames(3, 3, 16, 16, seed=2)
    expected = torch.stack(
        [
            peak_signal_noise_ratio((p + 1) / 2, (t + 1) / 2, data_range=1.0)
            for p, t in zip(pred, target, strict=True)
        ]
    )
    torch.testing.assert_close(psnr(pred, target), expected)


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (2, 3, 24, 40)])
def test_ssim_agrees_with_torchmetrics(shape: tuple[int, ...]) -> None:
    target = _frames(*shape, seed=3)
    noisy = (target + 0.3 * _frames(*shape, seed=4)).clamp(-1, 1)
    smooth = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1)
    for pred in (noisy, smooth, _frames(*shape, seed=5)):
        expected = structural_similarity_index_measure(
            (pred + 1) / 2, (target + 1) / 2, data_range=1.0, reduction="none"
        )
        assert torch.allclose(ssim(pred, target), expected, atol=1e-4)
    torch.testing.assert_close(ssim(target, target), torch.ones(shape[0]))


def test_smoke_mask_uses_mean_brightness_over_channels() -> None:
    frames = torch.full((1, 2, 3, 4, 4), -1.0)
    frames[0, 0, :, 0, 0] = 0.0  # every channel 0.5 on [0, 1]
    frames[0, 1, 0, 1, 1] = 1.0  # one channel at 1.0: mean 1/3
    mask = bright_smoke_mask(frames, brightness=0.4)
    assert mask.shape == (1, 2, 1, 4, 4) and mask.dtype == torch.bool
    assert mask[0, 0, 0, 0, 0] and mask.sum() == 1
    assert bright_smoke_mask(frames, brightness=0.3)[0, 1, 0, 1, 1]


def test_smoke_mask_agrees_with_the_training_targets_mask() -> None:
    from framecast.losses.autoencoder import smoke_class_labels

    frames = _frames(2, 3, 3, 8, 8, seed=6)
    for threshold in (0.1, 0.5):
        ours = bright_smoke_mask(frames, threshold).squeeze(-3)
        assert torch.equal(ours, smoke_class_labels(frames, threshold).bool())


def test_masked_psnr_ignores_pixels_outside_the_mask() -> None:
    target = _frames(2, 3, 8, 8, high=0.8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:5, 3:7] = True
    pred = target.clone()
    pred[~mask.expand_as(pred)] = float("nan")  # anything outside must not count
    assert torch.isinf(masked_psnr(pred, target, mask)).all()
    pred = torch.where(mask, target + 0.2, -target)
    torch.testing.assert_close(masked_psnr(pred, target, mask), torch.full((2,), 20.0))


def test_masked_psnr_is_nan_for_an_empty_mask() -> None:
    target = _frames(2, 3, 8, 8, high=0.8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[1, :, :4] = True
    out = masked_psnr(target + 0.2, target, mask)
    assert torch.isnan(out[0])
    assert out[1].item() == pytest.approx(20.0, abs=1e-4)


def test_background_hallucination_counts_lit_background_pixels() -> None:
    target = torch.full((2, 3, 4, 4), -1.0)
    target[:, :, 0, :] = 1.0  # top row is smoke: 12 background pixels
    pred = torch.full((2, 3, 4, 4), -1.0)
    pred[0, :, 0, :] = 1.0  # lit smoke pixels do not count
    pred[0, :, 1, :3] = 0.0  # 3 background pixels at 0.5
    pred[0, :, 2, 0] = -0.9  # 0.05: below the brightness threshold
    pred[1] = 1.0  # everything lit
    share = background_hallucination(pred, target, mask_threshold=0.1, brightness_threshold=0.2)
    torch.testing.assert_close(share, torch.tensor([3 / 12, 1.0]))


def test_background_hallucination_is_nan_without_background() -> None:
    target = torch.ones(1, 3, 4, 4)
    share = background_hallucination(target, target, mask_threshold=0.1, brightness_threshold=0.1)
    assert torch.isnan(share).all()


def test_per_frame_and_per_horizon_shapes_and_values() -> None:
    b, t = 3, 4
    target = _frames(b, t, 3, 8, 8, high=0.5)
    offsets = torch.tensor([0.0, 0.1, 0.2, 0.4]).view(1, t, 1, 1, 1)
    pred = target + offsets * torch.arange(1, b + 1).view(b, 1, 1, 1, 1)
    values = per_frame(mse, pred, target)
    assert values.shape == (b, t)
    for i in range(b):
        for j in range(t):
            assert values[i, j] == pytest.approx(mse(pred[i, j][None], target[i, j][None]).item())
    horizon = per_horizon(mse, pred, target)
    assert horizon.shape == (t,)
    torch.testing.assert_close(horizon, values.mean(dim=0))


def test_per_horizon_leaves_out_nan_frames() -> None:
    target = _frames(2, 2, 3, 8, 8, high=0.8)
    pred = target + 0.2
    mask = torch.ones(2, 2, 1, 8, 8, dtype=torch.bool)
    mask[0, 1] = False  # horizon 1 of sample 0 has nothing to measure
    pred[1, 1] = target[1, 1] + 0.02  # 40 dB
    # per_frame flattens (B, T) to B * T images; the mask goes with them.
    metric = partial(masked_psnr, mask=mask.flatten(0, 1))
    horizon = per_horizon(metric, pred, target)
    torch.testing.assert_close(horizon, torch.tensor([20.0, 40.0]))


def test_per_frame_rejects_wrong_shapes() -> None:
    x = _frames(2, 3, 8, 8)
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        per_frame(mse, x, x)
    seq = _frames(2, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="one value per frame"):
        per_frame(lambda p, t: p.mean(), seq, seq)


def test_frechet_distance_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 2.0, size=6), rng.uniform(0.1, 2.0, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_commuting_covariances_and_torch_inputs() -> None:
    # Covariances sharing eigenvectors commute: tr sqrt(S1 S2) = sum sqrt(l1 * l2).
    rng = np.random.default_rng(1)
    q = ortho_group.rvs(5, random_state=2)
    l1, l2 = rng.uniform(0.2, 3.0, size=5), rng.uniform(0.2, 3.0, size=5)
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(l1 + l2 - 2 * np.sqrt(l1 * l2))
    got = frechet_distance(
        torch.from_numpy(mu1).float(), torch.from_numpy(s1), torch.from_numpy(mu2), s2
    )
    assert got == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_singular_covariance_uses_the_offset() -> None:
    # sqrtm of this nilpotent product is not finite; with eps on both diagonals its
    # square root has trace 2 sqrt(eps (1 + eps)).
    s1 = np.array([[0.0, 1.0], [0.0, 0.0]])
    s2 = np.eye(2)
    with pytest.warns(Warning):
        got = frechet_distance(np.zeros(2), s1, np.zeros(2), s2, eps=1e-6)
    assert math.isfinite(got)
    assert got == pytest.approx(2 - 4 * math.sqrt(1e-6 * (1 + 1e-6)), rel=1e-9)


def test_fid_from_features_of_shifted_copies_is_the_squared_shift() -> None:
    # Equal covariances: the trace term vanishes and only ||shift||^2 remains, also
    # when N < D makes the covariances singular.
    rng = np.random.default_rng(3)
    for n, d in [(50, 4), (6, 10)]:
        feats = rng.normal(size=(n, d))
        shift = rng.normal(size=d)
        assert fid_from_features(feats, feats) == pytest.approx(0.0, abs=1e-6)
        got = fid_from_features(torch.from_numpy(feats), feats + shift)
        assert got == pytest.approx(float(shift @ shift), rel=1e-6, abs=1e-6)


def test_fid_from_features_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fid_from_features(np.zeros((4, 3)), np.zeros((5, 2)))


def test_temporal_difference_error_analytic_cases():
    from framecast.eval.metrics import temporal_difference_error

    g = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 4, 1, 8, 8, generator=g) * 2 - 1
    last = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    assert temporal_difference_error(truth, truth, last).abs().max() == 0
    # Copying the last frame: its changes are 0, so the error is the true motion energy.
    copy = last[:, None].expand_as(truth)
    unit = lambda x: (x + 1) / 2  # noqa: E731
    changes = torch.diff(torch.cat([unit(last)[:, None], unit(truth)], dim=1), dim=1)
    expected = changes.square().mean(dim=(2, 3, 4))
    assert torch.allclose(temporal_difference_error(copy, truth, last), expected)
    # A constant offset on every predicted frame costs only at the first change.
    err = temporal_difference_error(truth + 0.2, truth, last)  # 0.1 on [0, 1]
    assert torch.allclose(err[:, 0], torch.full((2,), 0.01)) and err[:, 1:].abs().max() < 1e-6
    with pytest.raises(ValueError, match="last_context"):
        temporal_difference_error(truth, truth, last[:1])


def test_frame_sums_are_the_moving_mnist_tables_mse_and_mae() -> None:
    """Per-frame sums over pixels on [0, 1]: mse × C·H·W, and an analytic case."""
    from framecast.eval.metrics import frame_sae, frame_sse, mse

    pred = torch.full((2, 1, 64, 64), -1.0)
    target = pred.clone()
    target[0, 0, :8, :8] = 1.0  # 64 pixels off by 1.0 on [0, 1]
    assert frame_sse(pred, target).tolist() == [64.0, 0.0]
    assert frame_sae(pred, target).tolist() == [64.0, 0.0]
    x, y = torch.rand(3, 3, 16, 16) * 2 - 1, torch.rand(3, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(frame_sse(x, y), mse(x, y) * 3 * 16 * 16)
