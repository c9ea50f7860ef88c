"""Autoregressive RIVER sampling: analytic fields, context draws, shapes, seeds, NFE."""

from __future__ import annotations

import pytest
import torch

from framecast.flow.path import CondOTPath
from framecast.flow.sampling import SamplerConfig, draw_context, rollout
from framecast.flow.solvers import NFE_PER_STEP, SOLVERS, SolverConfig

SIGMA = 1e-7
PATH = CondOTPath(SIGMA)


def step_up_field(x, z_ref, z_ctx, tau, t):
    """Exact marginal velocity of a path whose data is the point z_ref + 1: every
    predicted frame is the previous one plus one, whatever the noise."""
    target = z_ref + 1.0
    scale = (1.0 - (1.0 - SIGMA) * t).reshape(-1, 1, 1, 1)
    return (target - (1.0 - SIGMA) * x) / scale


@pytest.mark.parametrize("method", SOLVERS)
@pytest.mark.parametrize("warm_start", [0.0, 0.5])
def test_straight_paths_are_followed_exactly(method, warm_start):
    # float64: the exact field divides by 1 - (1 - σ) t, which is σ at t = 1.
    context = torch.randn(2, 3, 4, 2, 2, dtype=torch.float64)
    sampler = SamplerConfig(SolverConfig(method, 3), warm_start=warm_start)
    out = rollout(
        step_up_field, context, 4, PATH, sampler, generator=torch.Generator().manual_seed(0)
    )
    expected = context[:, -1:] + torch.arange(1, 5).reshape(1, 4, 1, 1, 1)
    torch.testing.assert_close(out.latents[:, 0], expected, atol=1e-5, rtol=1e-5)


def test_shapes_nfe_and_seeded_samples():
    context = torch.randn(3, 2, 4, 2, 2)

    def zero(x, z_ref, z_ctx, tau, t):  # x stays at its warm start: the result is noise
        return torch.zeros_like(x)

    sampler = SamplerConfig(SolverConfig("heun", 5), warm_start=0.2)
    a = rollout(
        zero, context, 4, PATH, sampler, samples=2, generator=torch.Generator().manual_seed(1)
    )
    b = rollout(
        zero, context, 4, PATH, sampler, samples=2, generator=torch.Generator().manual_seed(1)
    )
    assert a.latents.shape == (3, 2, 4, 4, 2, 2)
    assert a.nfe_per_frame == 5 * NFE_PER_STEP["heun"] and a.nfe_total == 4 * 10
    torch.testing.assert_close(a.latents, b.latents)  # same seed, same futures
    assert not torch.allclose(a.latents[:, 0], a.latents[:, 1])  # K samples differ


def test_context_is_drawn_before_the_reference_at_every_evaluation():
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    context = torch.arange(3.0).reshape(1, 3, 1, 1, 1).expand(2, 3, 1, 1, 1).contiguous()

    def record(x, z_ref, z_ctx, tau, t):
        # Latent values are frame indices, so the reference and context reveal which frames came in.
        seen.append((int(z_ref[0, 0, 0, 0]), z_ctx[:, 0, 0, 0].long(), tau))
        return torch.ones_like(x)  # each new frame gets a value above its reference's

    rollout(
        record,
        context,
        3,
        PATH,
        SamplerConfig(SolverConfig("euler", 4)),
        generator=torch.Generator().manual_seed(0),
    )
    assert len(seen) == 12
    for evaluation, (ref_value, ctx_values, tau) in enumerate(seen):
        available = 3 + evaluation // 4  # four euler evaluations per predicted frame
        assert torch.all((tau >= 1) & (tau <= available - 1))
        if evaluation < 4:  # observed frames only: the context value is its index
            assert ref_value == 2
            assert torch.all(ctx_values == 2 - tau)
    assert {int(v) for _, _, tau in seen for v in tau} >= {1, 2}


def test_single_observed_frame_uses_itself_as_context():
    ctx, tau = draw_context(1, 4, None, None, torch.device("cpu"))
    assert ctx.tolist() == [0] * 4 and tau.tolist() == [1] * 4


@pytest.mark.parametrize("available,horizon", [(2, None), (6, None), (6, 2), (9, 1)])
def test_draw_context_range(available, horizon):
    ctx, tau = draw_context(
        available, 2000, horizon, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    reference = available - 1
    assert torch.all(ctx < reference) and torch.all(ctx >= 0)
    assert torch.all(tau == reference - ctx)
    low = 0 if horizon is None else max(0, reference - horizon)
    assert set(ctx.tolist()) == set(range(low, reference))


def test_sampler_config_round_trip_and_validation():
    cfg = SamplerConfig(SolverConfig("rk4", 7), warm_start=0.1, past_horizon=3)
    assert SamplerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="warm_start"):
        SamplerConfig(warm_start=1.0)
    with pytest.raises(ValueError, match="unknown sampler config keys"):
        SamplerConfig.from_dict({"steps": 3})


def test_rollout_rejects_bad_context():
    with pytest.raises(ValueError, match="context must be"):
        rollout(step_up_field, torch.zeros(2, 4, 2, 2), 1, PATH)


def _zero(x, z_ref, z_ctx, tau, t):
    return torch.zeros_like(x)


@pytest.mark.parametrize(
    "method, steps, warm_start, steps_over, nfe_budget, steps_taken",
    [
        ("euler", 10, 0.0, "span", None, 10),
        ("euler", 10, 0.5, "span", None, 10),  # the default: a warm start saves nothing
        ("euler", 10, 0.5, "unit", None, 5),  # RIVER: int((1 - s) * steps)
        ("heun", 10, 0.3, "unit", None, 7),
        ("euler", 10, 0.9, "unit", None, 1),  # (1 - 0.9) * 10 = 0.999...: still 1 step
        ("euler", 4, 0.95, "unit", None, 1),  # int() would give 0: at least 1
        ("euler", 10, 0.0, "unit", None, 10),  # s = 0: both meanings agree
        ("heun", 10, 0.5, "span", 7, 3),  # NFE budget 7 with 2 evaluations per step
        ("rk4", 10, 0.2, "unit", 8, 2),  # the budget overrides steps and steps_over
    ],
)
def test_steps_per_frame_and_measured_nfe(
    method, steps, warm_start, steps_over, nfe_budget, steps_taken
):
    sampler = SamplerConfig(
        SolverConfig(method, steps), warm_start, steps_over=steps_over, nfe_budget=nfe_budget
    )
    assert sampler.steps_per_frame == steps_taken
    out = rollout(_zero, torch.randn(1, 2, 1, 2, 2), 3, PATH, sampler)
    assert out.nfe_per_frame == steps_taken * NFE_PER_STEP[method]
    assert out.nfe_total == 3 * steps_taken * NFE_PER_STEP[method]
    if nfe_budget is not None:
        assert out.nfe_per_frame <= nfe_budget
    assert f"{steps_taken} step(s) per frame" in sampler.describe()


def test_river_steps_follow_straight_paths_and_round_trip():
    context = torch.randn(2, 3, 4, 2, 2, dtype=torch.float64)
    sampler = SamplerConfig(SolverConfig("heun", 8), warm_start=0.5, steps_over="unit")
    restored = SamplerConfig.from_dict(sampler.to_dict())
    assert restored == sampler and restored.steps_per_frame == 4
    runs = [
        rollout(step_up_field, context, 3, PATH, cfg, generator=torch.Generator().manual_seed(0))
        for cfg in (sampler, restored)
    ]
    torch.testing.assert_close(runs[0].latents, runs[1].latents, rtol=0, atol=0)
    expected = context[:, -1:] + torch.arange(1, 4).reshape(1, 3, 1, 1, 1)
    torch.testing.assert_close(runs[0].latents[:, 0], expected, atol=1e-5, rtol=1e-5)
    # a config saved before steps_over/nfe_budget existed keeps its meaning (span)
    old = {"solver": {"method": "euler", "steps": 6}, "warm_start": 0.5, "past_horizon": None}
    assert SamplerConfig.from_dict(old).steps_per_frame == 6
    budget = SamplerConfig(SolverConfig("rk4", 3), nfe_budget=12)
    assert SamplerConfig.from_dict(budget.to_dict()).frame_solver == SolverConfig("rk4", 3)


def test_bad_step_settings_are_refused():
    with pytest.raises(ValueError, match="steps_over must be one of span, unit"):
        SamplerConfig(steps_over="river")
    with pytest.raises(ValueError, match="nfe_budget needs a fixed-step method"):
        SamplerConfig(SolverConfig("dopri5", 4), nfe_budget=20)
    with pytest.raises(ValueError, match="below one rk4 step"):
        SamplerConfig(SolverConfig("rk4", 4), nfe_budget=3)


def test_cli_help_states_what_steps_count(capsys):
    from framecast.cli import main

    for command in ("generate", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--steps-over {span,unit}" in text and "--nfe NFE" in text
        assert "int((1 - s) * steps)" in text and "NFE budget per frame" in text


def test_generate_prints_steps_and_nfe_of_river_warm_start(
    tiny_river_run, tiny_dataset, tmp_path, capsys
):
    """`framecast generate --warm-start 0.5 --steps 4 --steps-over unit`: 2 heun steps per
    frame, 4 NFE, and the output says so; the default (span) keeps 4 steps, 8 NFE."""
    from framecast.cli import main

    shard = tiny_dataset / "test" / "part-00000.fcshard"
    argv = ["generate", "--run", str(tiny_river_run), "--input", str(shard), "--no-progress"]
    argv += ["--context", "2", "--frames", "2", "--solver", "heun", "--steps", "4"]
    argv += ["--warm-start", "0.5"]
    assert main([*argv, "--out", str(tmp_path / "unit.gif"), "--steps-over", "unit"]) == 0
    text = capsys.readouterr().out
    assert "4 NFE per frame" in text and "2 step(s) per frame over [0.5, 1]" in text
    assert "4 steps counted over [0, 1] (RIVER)" in text
    assert main([*argv, "--out", str(tmp_path / "span.gif")]) == 0
    text = capsys.readouterr().out
    assert "8 NFE per frame" in text and "4 step(s) per frame over [0.5, 1]" in text
    assert main([*argv, "--out", str(tmp_path / "nfe.gif"), "--nfe", "6"]) == 0
    assert "6 NFE per frame" in capsys.readouterr().out


def test_within_the_trained_horizon_fills_only_an_unset_past_horizon():
    assert SamplerConfig().within(4).past_horizon == 4
    assert SamplerConfig(past_horizon=7).within(4).past_horizon == 7  # asked for: kept
