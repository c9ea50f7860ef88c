"""Poincaré-ball maps and the WuBu nesting stack (learnable curvature and scale)."""

from __future__ import annotations

import math

import pytest
import torch

from framecast.models.vaegan.wubu import (
    HyperbolicLevel,
    LevelTransform,
    WuBuStack,
    expmap0,
    logmap0,
    mobius_add,
    project_to_ball,
)


def random_vectors(norm: float, dtype: torch.dtype, count: int = 8, dim: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(count, dim, generator=generator, dtype=dtype)
    return v / v.norm(dim=-1, keepdim=True) * norm


# √c‖v‖ up to 2 is recoverable in float32 (artanh near 1 loses digits), up to 5 in float64.
@pytest.mark.parametrize(
    "dtype,scaled_norms",
    [(torch.float32, [1e-3, 0.5, 1.0, 2.0]), (torch.float64, [1e-3, 0.5, 1.0, 2.0, 4.0, 5.0])],
)
@pytest.mark.parametrize("c", [0.1, 1.0, 3.0])
def test_logmap0_inverts_expmap0(dtype, scaled_norms, c):
    for scaled_norm in scaled_norms:
        v = random_vectors(scaled_norm / math.sqrt(c), dtype)
        point = expmap0(v, c)
        assert (point.norm(dim=-1) < 1 / math.sqrt(c)).all()
        torch.testing.assert_close(logmap0(point, c), v, atol=1e-5, rtol=0)


def test_curvature_may_be_a_tensor_with_grad():
    c = torch.tensor(0.7, requires_grad=True)
    v = random_vectors(1.0, torch.float32)
    logmap0(mobius_add(expmap0(v, c), expmap0(-0.5 * v, c), c), c).sum().backward()
    assert c.grad is not None and torch.isfinite(c.grad) and c.grad != 0


def test_maps_are_finite_at_zero_including_gradients():
    v = torch.zeros(3, 4, requires_grad=True)
    c = torch.tensor(1.5, requires_grad=True)
    point = expmap0(v, c)
    back = logmap0(point, c)
    assert torch.equal(point, torch.zeros(3, 4)) and torch.equal(back, torch.zeros(3, 4))
    (back.sum() + point.sum()).backward()
    assert torch.isfinite(v.grad).all() and torch.isfinite(c.grad)
    torch.testing.assert_close(v.grad, torch.full((3, 4), 2.0))  # both maps have Jacobian I at 0


def test_maps_are_finite_for_huge_vectors_and_the_boundary():
    c = 2.0
    v = random_vectors(1e4, torch.float32).requires_grad_()
    point = expmap0(v, c)
    assert torch.isfinite(point).all()
    assert (point.norm(dim=-1) < 1 / math.sqrt(c)).all()
    point.sum().backward()
    assert torch.isfinite(v.grad).all()
    on_boundary = random_vectors(1 / math.sqrt(c), torch.float32)
    beyond = random_vectors(3.0, torch.float32)
    for y in (on_boundary, beyond):
        tangent = logmap0(y, c)
        assert torch.isfinite(tangent).all()
        assert (tangent.norm(dim=-1) <= math.atanh(1 - 1e-5) / math.sqrt(c) + 1e-3).all()
    projected = project_to_ball(beyond, c)
    assert (projected.norm(dim=-1) < 1 / math.sqrt(c)).all()


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_mobius_add_identities(c):
    x = expmap0(random_vectors(1.2, torch.float64), c)
    torch.testing.assert_close(mobius_add(x, torch.zeros_like(x), c), x)
    torch.testing.assert_close(mobius_add(torch.zeros_like(x), x, c), x)
    torch.testing.assert_close(mobius_add(-x, x, c), torch.zeros_like(x), atol=1e-12, rtol=0)
    assert (mobius_add(x, x, c).norm(dim=-1) < 1 / math.sqrt(c)).all()


def test_level_initial_values_and_graph():
    torch.manual_seed(0)
    level = HyperbolicLevel(6, initial_curvature=0.3, initial_scale=2.0)
    assert math.isclose(level.curvature.item(), 0.3, rel_tol=1e-6)
    assert math.isclose(level.scale.item(), 2.0, rel_tol=1e-6)
    assert level.curvature.grad_fn is not None and level.scale.grad_fn is not None
    v = torch.randn(2, 3, 6)
    assert level(v).shape == (2, 3, 6)
    assert level.boundary_points().shape == (4, 6)
    plain = HyperbolicLevel(6, num_boundary_points=0, use_descriptor=False)
    assert plain(v).shape == (2, 3, 6)
    with pytest.raises(ValueError):
        HyperbolicLevel(6, initial_curvature=0.0)


def test_level_transform_rotation_starts_as_identity():
    torch.manual_seed(0)
    transform = LevelTransform(5, 3)
    torch.testing.assert_close(transform.rotation.weight, torch.eye(5))
    v = torch.randn(4, 5)
    torch.testing.assert_close(transform.rotation(v), v)
    torch.testing.assert_close(transform(v), transform.linear(v))
    assert LevelTransform(5, 3, use_rotation=False).rotation is None


def make_stack() -> WuBuStack:
    torch.manual_seed(0)
    return WuBuStack(6, level_dims=[8, 5, 4], initial_curvatures=[1.0, 0.5, 2.0], output_dim=3)


def test_stack_output_shape_and_structure():
    stack = make_stack()
    assert len(stack.levels) == 3 and len(stack.transforms) == 2
    assert stack(torch.randn(2, 7, 6)).shape == (2, 7, 3)
    assert [round(c.item(), 6) for c in stack.curvatures()] == [1.0, 0.5, 2.0]


def test_curvature_and_scale_learn():
    stack = make_stack()
    stack(torch.randn(2, 7, 6)).square().mean().backward()
    for level in stack.levels:
        for raw in (level.raw_curvature, level.raw_scale):
            assert raw.grad is not None and torch.isfinite(raw.grad) and raw.grad != 0
    before = [level.curvature.detach().clone() for level in stack.levels]
    torch.optim.SGD(stack.parameters(), lr=0.1).step()
    after = [level.curvature.detach() for level in stack.levels]
    assert all(not torch.equal(b, a) for b, a in zip(before, after))


def test_stack_without_levels_is_linear():
    stack = WuBuStack(6, [], [], output_dim=3)
    assert len(stack.levels) == 0
    assert isinstance(stack.input_proj, torch.nn.Linear)
    assert stack(torch.randn(4, 6)).shape == (4, 3)


def test_stack_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="level_dims has 2 .* initial_curvatures has 1"):
        WuBuStack(6, [8, 5], [1.0], output_dim=3)


def test_stack_stays_finite_under_bf16_autocast():
    # bf16 rounds the 1 - 1e-5 clamp to 1 (artanh -> inf); the ball maths runs in float32.
    torch.manual_seed(0)
    stack = WuBuStack(16, [8, 8], [1.0, 0.8], 4)
    x = torch.randn(32, 16) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stack(x)
    out.float().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(level.raw_curvature.grad).all() for level in stack.levels)
