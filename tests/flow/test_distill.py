"""Few-step distillation (framecast.flow.distill, ``framecast distill``): analytic cases of
the loss, the teacher kept out of the student's gradient and state, the distill config built
from a teacher run, and a distilled run that ``evaluate`` takes like any river run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from framecast.flow.distill import DistillSamplers, distillation_loss, student_endpoint
from framecast.flow.path import CondOTPath
from framecast.flow.sampling import SamplerConfig, solve_next, warm_start_state
from framecast.flow.solvers import SolverConfig

PATH = CondOTPath(1e-7)


def distill_section(**changes) -> SimpleNamespace:
    values = dict(
        student_steps=1,
        warm_start=0.1,
        teacher_solver="euler",
        teacher_steps=10,
        teacher_precision="fp32",
    )
    return SimpleNamespace(**{**values, **changes})


class Field(torch.nn.Module):
    """v = A x + b + c · (ref − ctx): linear in x, so Euler's error shrinks with the steps."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.A = torch.nn.Parameter(scale * torch.randn(4, 4) / 2)
        self.b = torch.nn.Parameter(torch.randn(4, 1, 1))
        self.c = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x, ref, ctx, tau, t):
        mixed = torch.einsum("ij,bjhw->bihw", self.A, x)
        return mixed + self.b + self.c * (ref - ctx)


def latents(batch: int = 3, frames: int = 5) -> torch.Tensor:
    return torch.randn(batch, frames, 4, 2, 2, generator=torch.Generator().manual_seed(1))


def test_a_student_that_is_the_teacher_with_the_teachers_steps_has_zero_loss():
    field = Field()
    samplers = DistillSamplers.from_config(distill_section(student_steps=10), past_horizon=None)
    out = distillation_loss(field, field, PATH, latents(), samplers, torch.Generator())
    assert out.loss.item() == pytest.approx(0.0, abs=1e-10)
    assert out.teacher_nfe == 10 and 1 <= out.available <= 4


def test_constant_velocity_needs_one_step_and_a_curved_field_does_not():
    """v = b (A = 0): one Euler step lands exactly where ten do; with A ≠ 0 one step misses,
    and a student with more steps misses less (first-order Euler error)."""
    constant = Field(scale=0.0)
    samplers = DistillSamplers.from_config(distill_section(), past_horizon=None)
    out = distillation_loss(constant, constant, PATH, latents(), samplers, torch.Generator())
    assert out.loss.item() == pytest.approx(0.0, abs=1e-10)
    curved = Field(scale=1.0)
    losses = []
    for steps in (1, 2, 4):
        samplers = DistillSamplers.from_config(distill_section(student_steps=steps), None)
        generator = torch.Generator().manual_seed(3)
        losses.append(distillation_loss(curved, curved, PATH, latents(), samplers, generator))
    assert losses[0].loss > losses[1].loss > losses[2].loss > 0


def test_only_the_student_gets_gradients():
    student, teacher = Field(), Field(scale=0.5)
    samplers = DistillSamplers.from_config(distill_section(), None)
    out = distillation_loss(student, teacher, PATH, latents(), samplers, torch.Generator())
    out.loss.backward()
    assert student.A.grad is not None and student.A.grad.abs().sum() > 0
    assert teacher.A.grad is None


def test_student_starts_from_the_teachers_warm_start_state():
    """Student and teacher share x_s: with the same field and steps they land together
    for any draw (the check above), and the state is the path's warm start."""
    frames = latents()[:, :3]
    sampler = SamplerConfig(SolverConfig("euler", 1), warm_start=0.3)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    start = warm_start_state(frames, PATH, sampler, g1)
    noise = torch.randn(3, 4, 2, 2, generator=g2)
    assert torch.allclose(start, PATH.warm_start(noise, frames[:, -1], 0.3))
    field = Field()
    ours = student_endpoint(field, frames, start, sampler, torch.Generator().manual_seed(0))
    theirs = solve_next(field, frames, start, sampler, torch.Generator().manual_seed(0)).x
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_an_fp32_teacher_stays_fp32_inside_bf16_autocast():
    seen = []

    def field(x, ref, ctx, tau, t):
        out = x @ torch.eye(2)
        seen.append(out.dtype)
        return out

    frames = latents()[:, :2]
    sampler = SamplerConfig(SolverConfig("euler", 2), precision="fp32")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        solve_next(field, frames, frames[:, -1], sampler)
        solve_next(field, frames, frames[:, -1], SamplerConfig(precision="bf16"))
    assert seen[:2] == [torch.float32, torch.float32] and seen[-1] == torch.bfloat16
    with pytest.raises(ValueError, match="resolved precision"):
        solve_next(field, frames, frames[:, -1], SamplerConfig(precision="auto"))


def test_the_frames_seen_can_be_given_and_must_leave_one_to_predict():
    field = Field(scale=0.5)
    samplers = DistillSamplers.from_config(distill_section(), None)
    given = distillation_loss(field, Field(), PATH, latents(), samplers, torch.Generator(), 4)
    assert given.available == 4
    for wrong in (0, 5):
        with pytest.raises(ValueError, match=f"available={wrong} frames must lie in \\[1, 4\\]"):
            distillation_loss(field, field, PATH, latents(), samplers, torch.Generator(), wrong)


def test_distill_validation_averages_over_every_number_of_seen_frames():
    """One validation batch used to be scored at one random k, so val/distill_mse (the
    checkpoint monitor) measured one draw; now it is the mean over k = 1 .. N - 1."""
    from framecast.training.river import RiverDistillModule

    seen, logged = [], {}

    def distill_loss(batch_latents, generator, available=None):
        seen.append(available)
        return SimpleNamespace(loss=torch.tensor(float(available)))

    module = SimpleNamespace(
        clip_latents=lambda batch: latents(batch=2, frames=5),
        config=SimpleNamespace(training=SimpleNamespace(seed=0)),
        distill_loss=distill_loss,
        log_dict_prefixed=lambda prefix, values, **kwargs: logged.update(values),
        _validation_rollout=lambda clips: None,
    )
    RiverDistillModule.validation_step(module, {}, 0)
    assert seen == [1, 2, 3, 4]
    assert logged["distill_mse"].item() == pytest.approx(2.5)


def test_distill_config_takes_the_teachers_architecture_and_training_defaults(tiny_river_run):
    from framecast.config import load_config
    from framecast.training.river import adopt_teacher, distill_config

    config = distill_config(tiny_river_run, ["model.vector_field_regressor.depth=5"], "last")
    assert config.model.distill.teacher == str(tiny_river_run)
    assert config.training.monitor == "val/distill_mse" and config.training.lr == 2e-4
    teacher = load_config(tiny_river_run / "config.yaml")
    adopt_teacher(config)  # the student is the teacher's network, whatever was asked
    assert config.model.vector_field_regressor == teacher.model.vector_field_regressor
    assert config.training.smoke_threshold == teacher.training.smoke_threshold
    assert config.training.init_from.endswith("last.ckpt")  # the teacher checkpoint asked for


def test_distill_command_makes_a_river_run_that_evaluate_takes(
    tiny_river_run, tiny_dataset, tmp_path
):
    from framecast.checkpoint import read_checkpoint
    from framecast.cli import main

    args = ["distill", "--teacher", str(tiny_river_run), "--runs-dir", str(tmp_path)]
    steps = ["--run-name", "student", "--max-steps", "2", "training.val_every_n_steps=2"]
    quiet = ["logging.progress_bar=false", "model.distill.teacher_steps=2", "data.batch_size=2"]
    assert main([*args, *steps, *quiet]) == 0
    meta = read_checkpoint(tmp_path / "student" / "checkpoints" / "last.ckpt")["framecast"]
    assert meta["kind"] == "river" and meta["distilled_from"].endswith(".ckpt")
    assert SamplerConfig.from_dict(meta["sampler"]).steps_per_frame == 1
    evaluate = ["evaluate", "--run", str(tmp_path / "student"), "--data", str(tiny_dataset)]
    evaluate += ["--context", "1", "--frames", "2", "--no-progress"]
    # Without sampler options the student is sampled as its checkpoint records (1 NFE from
    # s = 0.1); given options win (2 Euler steps); a plain river run keeps Euler 10.
    for options, nfe, warm in (([], 1, 0.1), (["--steps", "2"], 2, 0.0)):
        out = tmp_path / f"eval{nfe}"
        assert main([*evaluate, *options, "--out", str(out)]) == 0
        result = json.loads((out / "metrics.json").read_text())
        assert result["nfe_per_frame"] == nfe and result["sampler"]["warm_start"] == warm
    teacher = ["evaluate", "--run", str(tiny_river_run), *evaluate[3:]]
    assert main([*teacher, "--out", str(tmp_path / "teacher")]) == 0
    assert json.loads((tmp_path / "teacher" / "metrics.json").read_text())["nfe_per_frame"] == 10
