"""ST-LPIPS: weights from the stlpips-pytorch wheel, loaded into our own network.

How the architecture was validated against the weights: strict loading (every key of
the file has a parameter or buffer of the same shape, and nothing is left over), the
blur filters stored in the file equal the binomial filter we build, and, once, outside
this suite, the package's own model (importable only with torchvision stubbed out)
agreed with ours to 1e-8 on random inputs of several sizes and reproduced the
published example (imgs/ex_ref.png vs ex_p0.png, 64×64: 0.7777554988861084 for alex,
0.652 for vgg) exactly. The reference values below were taken from both.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from framecast.errors import FramecastError
from framecast.eval import lpips
from framecast.eval.lpips import STLPIPS, STLPIPSWeightsError, load_stlpips, stlpips_distance


def _seeded_pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    return x, y


def _plume(seed: int) -> torch.Tensor:
    """A textured smoke-like blob on black, (1, 3, 64, 64) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, 64, 64, generator=g)
    texture = F.conv2d(
        F.pad(noise, (1, 1, 1, 1), mode="reflect"), torch.ones(3, 1, 3, 3) / 9, groups=3
    )
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    envelope = torch.exp(-((xx - 32) ** 2 + (yy - 34) ** 2) / (2 * 12.0**2))
    return (3 * envelope * texture - 1).clamp(-1, 1)


@pytest.mark.parametrize(("net", "n_keys"), [("alex", 20), ("vgg", 37)])
def test_file_holds_trunk_and_heads_matching_our_network(net: str, n_keys: int) -> None:
    raw = torch.load(lpips.weights_path(net), map_location="cpu", weights_only=True)
    assert len(raw) == n_keys
    assert any(k.startswith("net.slice") and k.endswith(".weight") for k in raw)
    assert sum(k.startswith("lin") for k in raw) == 5
    ours = load_stlpips(net).state_dict()
    mapped = {lpips._our_key(k): v for k, v in raw.items()}
    assert mapped.keys() == ours.keys()
    for key, value in mapped.items():
        assert value.shape == ours[key].shape, key
        assert torch.equal(value, ours[key]), key
    blur = lpips.BlurDownsample(1).filt
    for key, value in raw.items():
        if key.endswith(".filt"):
            assert torch.allclose(value, blur.expand_as(value)), key


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        ("alex", [0.038677483797073364, 0.03862108662724495]),
        ("vgg", [0.06852789968252182, 0.06584083288908005]),
    ],
)
def test_reference_values_at_frame_size(net: str, expected: list[float]) -> None:
    x, y = _seeded_pair()
    with torch.no_grad():
        d = load_stlpips(net)(x, y)
    assert d.shape == (2,)
    torch.testing.assert_close(d, torch.tensor(expected), rtol=1e-5, atol=1e-7)


def test_zero_for_identical_positive_for_different_and_symmetric() -> None:
    x, y = _seeded_pair()
    model = load_stlpips("alex")
    with torch.no_grad():
        assert torch.equal(model(x, x), torch.zeros(2))
        d_xy, d_yx = model(x, y), model(y, x)
    assert (d_xy > 0).all()
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-6, atol=1e-8)


def test_one_pixel_shift_is_much_closer_than_another_plume() -> None:
    a = _plume(0)
    shifted = torch.roll(a, 1, dims=-1)
    other = _plume(1)
    with torch.no_grad():
        d_shift = stlpips_distance(a, shifted).item()
        d_other = stlpips_distance(a, other).item()
    assert d_shift < 0.2 * d_other
    # The point of shift tolerance: the shift is discounted far more than by pixels.
    mse_ratio = ((a - shifted).square().mean() / (a - other).square().mean()).item()
    assert d_shift / d_other < 0.5 * mse_ratio


def test_frozen_but_differentiable_in_the_inputs() -> None:
    model = load_stlpips("alex")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    x, y = _seeded_pair()
    x = x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert not model(x, y).requires_grad


def test_unit_normalise_has_finite_gradient_at_a_zero_feature_vector() -> None:
    f = torch.zeros(1, 4, 2, 2)
    f[..., 0, 0] = torch.tensor([3.0, 0.0, 4.0, 0.0])
    f.requires_grad_(True)
    out = lpips._unit_normalise(f)
    torch.testing.assert_close(out[0, :, 0, 0].detach(), torch.tensor([0.6, 0.0, 0.8, 0.0]))
    out.sum().backward()
    assert torch.isfinite(f.grad).all()


def test_loaded_once_per_net_and_device() -> None:
    assert load_stlpips("alex", "cpu") is load_stlpips("alex", torch.device("cpu"))
    assert load_stlpips("alex") is not load_stlpips("vgg")
    x, y = _seeded_pair()
    with torch.no_grad():
        torch.testing.assert_close(stlpips_distance(x, y), load_stlpips("alex")(x, y))


def test_rejects_mismatched_and_too_small_inputs() -> None:
    model = load_stlpips("alex")
    with pytest.raises(ValueError, match="one shape"):
        model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 32))
    with pytest.raises(ValueError, match="at least 21"):
        model(torch.zeros(1, 3, 20, 64), torch.zeros(1, 3, 20, 64))


def test_missing_package_or_file_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(lpips.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FramecastError, match=r"pip install --no-deps stlpips-pytorch"):
        STLPIPS("alex")
    empty_package = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(lpips.importlib.util, "find_spec", lambda name: empty_package)
    with pytest.raises(STLPIPSWeightsError, match="ST-LPIPS weights not found"):
        lpips.weights_path("vgg")


def test_file_that_does_not_match_the_network_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    raw = torch.load(lpips.weights_path("alex"), map_location="cpu", weights_only=True)
    del raw["lin4.model.1.weight"]
    broken = tmp_path / "alex_shift_tolerant.pth"
    torch.save(raw, broken)
    monkeypatch.setattr(lpips, "weights_path", lambda net: broken)
    with pytest.raises(STLPIPSWeightsError, match="do not match"):
        STLPIPS("alex")


def test_building_the_network_leaves_the_global_generator_alone() -> None:
    """Its layers' random init is overwritten by the loaded weights; drawing it from torch's
    global generator shifted a training run's noise after its first validation, so a run and
    its resume (or the same run second in a process) differed from that step on."""
    from framecast.eval import lpips as module

    module._cached.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    module.load_stlpips("alex", "cpu")
    assert torch.equal(torch.rand(4), expected)
