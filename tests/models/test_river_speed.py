"""RIVER regressor speed switches: ``model.compile`` with its eager fallback."""

from __future__ import annotations

import warnings

import pytest
import torch

from framecast.config.river import RiverConfig, VectorFieldRegressorConfig
from framecast.models import river as river_module
from framecast.models.river import CompileFallbackWarning, VectorFieldRegressor

TINY = {"state_size": 4, "state_res": [4, 4], "inner_dim": 32, "depth": 1, "mid_depth": 1}


@pytest.fixture(autouse=True)
def fresh_compile_state(monkeypatch):
    """Each test starts as a new process would: nothing compiled, nothing failed."""
    monkeypatch.setattr(river_module, "_compiled_velocity", None)


def make(use_compile: bool) -> VectorFieldRegressor:
    torch.manual_seed(0)
    model = VectorFieldRegressor.from_config(
        VectorFieldRegressorConfig(**TINY), use_compile=use_compile
    )
    with torch.no_grad():  # a non-zero field, so agreement means something
        model.head.weight.normal_(0.0, 0.1)
    return model


def inputs(batch: int = 3):
    g = torch.Generator().manual_seed(1)
    x_t, z_ref, z_ctx = (torch.randn(batch, 4, 4, 4, generator=g) for _ in range(3))
    return x_t, z_ref, z_ctx, torch.arange(1, batch + 1), torch.linspace(0.1, 0.9, batch)


def test_compile_is_a_config_switch_off_by_default():
    assert RiverConfig().compile is False
    assert RiverConfig(compile=True).compile is True
    assert make(use_compile=False).use_compile is False
    # The switch is not state: compiled and eager checkpoints are interchangeable.
    assert make(True).state_dict().keys() == make(False).state_dict().keys()


def test_compile_failure_falls_back_with_one_warning(monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nsecond line")

    monkeypatch.setattr(torch, "compile", broken_compile)
    compiled, eager = make(use_compile=True), make(use_compile=False)
    with pytest.warns(CompileFallbackWarning, match="RuntimeError: no C\\+\\+ compiler found"):
        first = compiled(*inputs())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, from this or another instance
        second = compiled(*inputs())
        other = make(use_compile=True)(*inputs())
    expected = eager(*inputs())
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    torch.testing.assert_close(second, expected, rtol=0, atol=0)
    torch.testing.assert_close(other, expected, rtol=0, atol=0)
    assert river_module.compile_failed()


def test_failure_inside_the_compiled_call_also_falls_back(monkeypatch):
    """torch.compile is lazy: a backend usually fails at the first call, not at compile()."""

    def lazily_broken_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            raise OSError("backend compiler failed")

        return compiled

    monkeypatch.setattr(torch, "compile", lazily_broken_compile)
    model = make(use_compile=True)
    with pytest.warns(CompileFallbackWarning, match="OSError: backend compiler failed"):
        out = model(*inputs())
    torch.testing.assert_close(out, make(use_compile=False)(*inputs()), rtol=0, atol=0)


def test_a_genuine_model_error_still_raises(monkeypatch):
    """The fallback hides compiler failures, not the model's own: eager raises them again."""
    monkeypatch.setattr(torch, "compile", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
    model = make(use_compile=True)
    x_t, z_ref, z_ctx, tau, t = inputs()
    with pytest.raises(ValueError, match="does not match state_res"):
        model(x_t[..., :3], z_ref, z_ctx, tau, t)
    with pytest.warns(CompileFallbackWarning), pytest.raises(RuntimeError, match="shapes"):
        model(x_t[:, :3], z_ref, z_ctx, tau, t)  # 3 channels where the model takes 4


def test_compiled_graph_matches_eager_forward_and_gradients(monkeypatch):
    """The regressor traces through TorchDynamo in one piece and agrees with eager mode.

    The ``eager`` backend keeps this test to seconds: Inductor's C++ build takes minutes on
    a loaded 2-core machine, so its speed and agreement are measured by
    benchmarks/river_speed.py --compile instead.
    """
    real_compile = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda fn, **kw: real_compile(fn, backend="eager", fullgraph=True)
    )
    torch._dynamo.reset()
    compiled, eager = make(use_compile=True), make(use_compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        out_compiled = compiled(*inputs())
    out_eager = eager(*inputs())
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-5, atol=1e-6)
    out_compiled.square().sum().backward()
    out_eager.square().sum().backward()
    for (name, p_c), p_e in zip(compiled.named_parameters(), eager.parameters()):
        # fp32 round-off grows with the gradient's scale (up to ~30 here), and the two graphs
        # sum in different orders (on an AVX-512 EPYC: 4.8e-6 apart where the scale is 12).
        scale = float(p_e.grad.abs().max().clamp_min(1.0))
        torch.testing.assert_close(p_c.grad, p_e.grad, rtol=1e-4, atol=1e-6 * scale, msg=name)
    assert not river_module.compile_failed()


def test_cpu_attention_takes_the_math_path_only_for_bf16_training(monkeypatch):
    """bf16 training on a CPU asks for SDPA's math path (faster there); fp32 training and
    sampling keep PyTorch's default kernel (flash, faster in fp32: river_speed.py)."""
    from framecast.models.river import Attention

    asked = []
    real = river_module.sdpa_kernel
    monkeypatch.setattr(
        river_module, "sdpa_kernel", lambda backend: asked.append(backend) or real(backend)
    )
    attn = Attention(dim=32, num_heads=4, dropout=0.0)
    x = torch.randn(2, 17, 32)
    attn(x)  # fp32 training
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x)  # bf16 sampling
    assert asked == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x)  # bf16 training
    assert asked == [river_module.SDPBackend.MATH]


def test_bf16_math_path_agrees_with_the_definition():
    from einops import rearrange

    from framecast.models.river import Attention

    torch.manual_seed(0)
    attn = Attention(dim=32, num_heads=4, dropout=0.0)
    x = torch.randn(2, 17, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = attn(x).float()
        q, k, v = rearrange(attn.qkv(x), "b l (three h d) -> three b h l d", three=3, h=4)
        weights = torch.softmax(q.float() @ k.float().transpose(-1, -2) / 8**0.5, dim=-1)
        expected = attn.proj(rearrange(weights @ v.float(), "b h l d -> b l (h d)")).float()
    scale = expected.abs().max()
    assert (trained - expected).abs().max() < 0.02 * scale  # bf16 rounding, not another formula


def test_cpu_training_attention_path_agrees_with_the_flash_kernel_and_the_definition():
    """On CPU, fp32 training and sampling take the flash kernel: both give
    softmax(q kᵀ / √d) v, and the gradients are those of that formula."""
    from einops import rearrange

    from framecast.models.river import Attention

    torch.manual_seed(0)
    attn = Attention(dim=32, num_heads=4, dropout=0.0)
    x = torch.randn(2, 17, 32, requires_grad=True)

    def by_definition(x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(attn.qkv(x), "b l (three h d) -> three b h l d", three=3, h=4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        return attn.proj(rearrange(weights @ v, "b h l d -> b l (h d)"))

    trained = attn(x)
    with torch.no_grad():
        sampled = attn(x)
    expected = by_definition(x)
    torch.testing.assert_close(trained, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sampled, expected.detach(), rtol=1e-5, atol=1e-6)
    (grad_path,) = torch.autograd.grad(trained.square().sum(), x)
    (grad_definition,) = torch.autograd.grad(expected.square().sum(), x)
    torch.testing.assert_close(grad_path, grad_definition, rtol=1e-5, atol=1e-6)
