"""EMA vector quantiser: round trips, EMA updates, dead-code restarts, statistics, gradients."""

from __future__ import annotations

import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st

from framecast.models.autoencoder import VectorQuantizer


def _vq(codebook_size: int = 8, dim: int = 4, **kwargs) -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(codebook_size, dim, **kwargs)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_indices_to_codes_to_indices(seed: int) -> None:
    vq = _vq(codebook_size=16)
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randint(0, 16, (2, 3, 3), generator=gen)
    codes = vq.indices_to_codes(indices)
    assert codes.shape == (2, 4, 3, 3)
    assert torch.equal(vq.codes_to_indices(codes), indices)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_codes_to_indices_to_codes(seed: int) -> None:
    vq = _vq(codebook_size=16).eval()
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 3, 3, generator=gen)
    out = vq(z)
    codes = out.quantized.detach()
    # The quantised latents are codebook rows, and they map back to the same indices.
    assert torch.equal(vq.codes_to_indices(codes), out.indices)
    assert torch.allclose(vq.indices_to_codes(out.indices), codes, atol=1e-6)


def test_nearest_code_is_chosen() -> None:
    vq = _vq(codebook_size=3, dim=2).eval()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    z = torch.tensor([[1.0, 1.0], [9.0, 1.0], [1.0, 8.0], [6.0, 0.0]]).t().reshape(1, 2, 2, 2)
    assert vq(z).indices.flatten().tolist() == [0, 1, 2, 1]


def test_ema_update_moves_codes_toward_assigned_encodings() -> None:
    decay = 0.9
    vq = _vq(codebook_size=2, dim=2, ema_decay=decay, dead_code_threshold=0.0).train()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vq.embed_sum.copy_(vq.codebook * vq.reset_count)
    # Three encodings near code 0, one near code 1.
    flat = torch.tensor([[1.0, 0.0], [1.0, 2.0], [1.0, 1.0], [9.0, 9.0]])
    z = flat.t().reshape(1, 2, 2, 2)
    before = vq.codebook.clone()
    out = vq(z)
    assert out.restarted.item() == 0
    # Hand computation of the EMA step (Laplace smoothing included).
    counts = torch.tensor([3.0, 1.0])
    sums = torch.stack([flat[:3].sum(0), flat[3]])
    cluster = vq.reset_count * decay + (1 - decay) * counts
    embed_sum = before * vq.reset_count * decay + (1 - decay) * sums
    total = cluster.sum()
    smoothed = (cluster + vq.eps) / (total + 2 * vq.eps) * total
    assert torch.allclose(vq.cluster_size, cluster)
    assert torch.allclose(vq.codebook, embed_sum / smoothed[:, None], atol=1e-5)
    # Each code moved toward the mean of its encodings.
    means = torch.stack([flat[:3].mean(0), flat[3]])
    assert ((vq.codebook - means).norm(dim=1) < (before - means).norm(dim=1)).all()
    # Repeated steps converge to the means.
    for _ in range(200):
        vq(z)
    assert torch.allclose(vq.codebook, means, atol=1e-2)


def test_no_update_in_eval_or_when_asked() -> None:
    vq = _vq().eval()
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(2, 4, 3, 3))
    vq.train()(torch.randn(2, 4, 3, 3), update=False)
    for key, value in vq.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_dead_codes_restart_from_batch_encodings() -> None:
    vq = _vq(codebook_size=4, dim=2, ema_decay=0.5, dead_code_threshold=1.0).train()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]))
    vq.embed_sum.copy_(vq.codebook * vq.reset_count)
    flat = torch.randn(8, 2) * 0.1
    z = flat.reshape(2, 2, 2, 2).permute(0, 3, 1, 2)  # (b h w) d -> b d h w
    # reset_count = 2; unused codes decay 2 -> 1 -> 0.5: the second step restarts them.
    first = vq(z)
    assert first.restarted.item() == 0
    second = vq(z)
    assert second.restarted.item() == 3
    for code in vq.codebook[1:]:
        assert ((flat - code).abs().sum(1) < 1e-6).any(), "restarted code is not a batch encoding"
    assert torch.allclose(vq.cluster_size[1:], torch.full((3,), vq.reset_count))


def test_dead_code_threshold_zero_never_restarts() -> None:
    vq = _vq(codebook_size=4, dim=2, ema_decay=0.5, dead_code_threshold=0.0).train()
    z = torch.zeros(1, 2, 2, 2)
    assert sum(vq(z).restarted.item() for _ in range(10)) == 0


def test_perplexity_and_usage() -> None:
    vq = _vq(codebook_size=4, dim=2).eval()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    one_code = vq(torch.zeros(1, 2, 2, 2))
    assert torch.isclose(one_code.perplexity, torch.tensor(1.0))
    assert one_code.usage.item() == 0.25
    every_code = vq(vq.codebook.t().reshape(1, 2, 2, 2))
    assert torch.isclose(every_code.perplexity, torch.tensor(4.0), atol=1e-4)
    assert every_code.usage.item() == 1.0
    assert set(every_code.stats()) == {"perplexity", "usage", "restarted"}


def test_straight_through_gradient_and_commitment() -> None:
    vq = _vq(commitment_weight=0.0).train()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    (out.quantized * 3.0).sum().backward()
    assert torch.allclose(z.grad, torch.full_like(z, 3.0))

    vq = _vq(commitment_weight=0.5).eval()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    expected = 0.5 * ((z - out.quantized) ** 2).mean()
    assert torch.isclose(out.loss, expected)
    out.loss.backward()
    assert z.grad.abs().sum() > 0


def test_autocast_bf16_keeps_input_dtype() -> None:
    vq = _vq().train()
    z = torch.randn(2, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z.bfloat16())
    assert out.quantized.dtype == torch.bfloat16
    assert vq.codebook.dtype == torch.float32


def test_distributed_update_matches_single_process(tmp_path) -> None:
    # World size 1: all_reduce/broadcast are identities, so results must match exactly.
    z = torch.randn(2, 4, 3, 3)
    reference = _vq(dead_code_threshold=1.5).train()
    torch.manual_seed(1)
    reference(z)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        vq = _vq(dead_code_threshold=1.5).train()
        torch.manual_seed(1)
        vq(z)
    finally:
        dist.destroy_process_group()
    for key, value in reference.state_dict().items():
        assert torch.equal(vq.state_dict()[key], value), key
