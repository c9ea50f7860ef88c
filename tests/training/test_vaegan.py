"""The WuBu-GAAD VAE-GAN end to end on tiny clips: prediction from context only, gradients
into curvature and scale, the users' metric names, sample panels, the Q-controller's state
in checkpoints and on resume, and bad configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from framecast.checkpoint import read_checkpoint
from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.errors import ConfigError
from framecast.models.vaegan.loading import load_vaegan
from framecast.models.vaegan.model import WuBuGAADVAEGAN
from framecast.training.engine import train
from framecast.training.loggers import read_metrics_csv

REPO = Path(__file__).resolve().parents[2]
VAEGAN = REPO / "configs" / "wubu_vaegan.yaml"

TRAIN_KEYS = (
    "loss_recon",
    "loss_kl",
    "loss_g_adv",
    "loss_g_total",
    "loss_d_real",
    "loss_d_fake",
    "loss_d_total",
    "lr_gen",
    "lr_disc",
)
# The guide's names (document 004): "`val/avg_val_psnr`, `val/avg_val_ssim`,
# `val/avg_val_lpips`, `val/avg_val_recon_mse`".
VAL_KEYS = ("avg_val_psnr", "avg_val_ssim", "avg_val_lpips", "avg_val_recon_mse")


@pytest.fixture
def tiny_vaegan(tiny_dataset, shrink):
    """``tiny_vaegan(*overrides, max_steps=2)``: the shipped config shrunk (32×32 frames,
    3 context → 3 future frames, motion branch on)."""

    def make(*overrides: str, max_steps: int = 2):
        config = shrink(VAEGAN, tiny_dataset, max_steps=max_steps)
        return validate_config(apply_overrides(config.to_dict(), list(overrides)), "test")

    return make


def _model(config) -> WuBuGAADVAEGAN:
    t = config.training
    torch.manual_seed(0)
    return WuBuGAADVAEGAN(
        config.model, config.data.image_size, t.condition_frames, t.frames_to_generate
    )


def test_encoder_predicts_from_context_and_mixes_every_frame(tiny_vaegan):
    config = tiny_vaegan()
    model = _model(config).eval()
    size = config.data.image_size
    context = torch.rand(2, config.training.condition_frames, 3, size, size) * 2 - 1
    with torch.no_grad():
        out = model(context, sample_posterior=False)
        changed_first = context.clone()
        changed_first[:, 0] = -1.0  # only the oldest frame differs
        mu_first, _ = model.encoder(changed_first)
    assert out.frames.shape == (2, config.training.frames_to_generate, 3, size, size)
    assert out.frames.abs().max() <= 1.0
    # The temporal stage reads every context frame, not only the last one.
    assert not torch.allclose(mu_first, out.mu)
    # The encoder takes the context only: handing it context + future is refused.
    clip = torch.cat([context, out.frames], dim=1)
    with pytest.raises(ValueError, match="context frames"):
        model.encoder(clip)


def test_generator_step_reaches_every_curvature_and_scale(tiny_vaegan):
    config = tiny_vaegan()
    model = _model(config)
    size = config.data.image_size
    context = torch.rand(2, config.training.condition_frames, 3, size, size) * 2 - 1
    target = torch.rand(2, config.training.frames_to_generate, 3, size, size) * 2 - 1
    out = model(context)
    loss = torch.nn.functional.mse_loss(out.frames, target)
    loss.backward()
    stacks = [model.encoder.wubu_s, model.encoder.wubu_t, model.encoder.wubu_m]
    levels = [level for stack in stacks for level in stack.levels]
    assert len(levels) == 4  # S has two levels, T and M one each (tiny config)
    for level in levels:
        for param in (level.raw_curvature, level.raw_scale):
            assert param.grad is not None and torch.isfinite(param.grad).all()
            assert param.grad.abs().sum() > 0


FILM_ON = ("model.gen_use_gaad_film=true", "model.disc_use_gaad_film_condition=true")


@pytest.mark.parametrize("film", [(), FILM_ON], ids=["film_off", "film_on"])
def test_two_step_training_logs_the_users_metrics_and_panels(tiny_vaegan, tmp_path, film):
    result = train(tiny_vaegan(*film), runs_dir=tmp_path, run_name="v", progress=False)
    assert result.global_step == 2
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    logged = {key for row in rows for key in row}
    assert {f"train/{k}" for k in TRAIN_KEYS} <= logged
    assert {f"val/{k}" for k in VAL_KEYS} <= logged
    samples = result.run_dir / "samples"
    # The guide's image keys (document 004): samples/train_recon,
    # samples/val_reconstruction_samples, samples/fixed_noise_generated.
    for key in ("train_recon", "val_reconstruction_samples", "fixed_noise_generated"):
        assert list(samples.glob(f"{key}_step*.png")), key
    ckpt = read_checkpoint(result.best_checkpoint, expected_kind="vaegan")
    assert ckpt["framecast"]["config"]["training"]["monitor"] == "val/avg_val_psnr"
    # Posterior draws are decoded with their own clip's context (the generator's FiLM
    # reads it when on): each draw and each clip gets a future of its own.
    run = load_vaegan(result.run_dir)
    size = run.image_size
    context = torch.rand(2, run.context_frames, 3, size, size) * 2 - 1
    futures = run.predict(context, samples=2, generator=torch.Generator().manual_seed(0))
    assert futures.shape == (2, 2, run.future_frames, 3, size, size)
    assert torch.isfinite(futures).all()


def test_q_controller_state_in_checkpoint_and_resume(tiny_vaegan, tmp_path):
    config = tiny_vaegan(
        "model.q_controller.enabled=true",
        "model.q_controller.every_n_steps=1",
        "model.q_controller.epsilon=1.0",
        max_steps=3,
    )
    train(config, runs_dir=tmp_path, run_name="q", progress=False)
    run = tmp_path / "q"

    def controller_state() -> dict:
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        states = [v for k, v in ckpt["callbacks"].items() if "QController" in k]
        assert len(states) == 1 and states[0]
        return states[0]

    first = controller_state()
    assert first["last_decision_step"] == 3 and len(first["gen"]["history"]["recon"]) == 3
    rows = read_metrics_csv(run / "metrics.csv")
    assert any(k.startswith("q_ctrl_gen/") for row in rows for k in row)
    assert any(k.startswith("q_ctrl_disc/") for row in rows for k in row)
    resumed = train(
        None,
        runs_dir=tmp_path,
        run_name="q",
        resume=True,
        overrides=["training.max_steps=5"],
        progress=False,
    )
    assert resumed.global_step == 5
    # The restored controller carries on: 3 + 2 decisions of history and ε decay, not 2.
    after = controller_state()
    decay = config.model.q_controller.epsilon_decay
    assert after["last_decision_step"] == 5
    assert len(after["gen"]["history"]["recon"]) == 5
    assert after["gen"]["history"]["recon"][:3] == first["gen"]["history"]["recon"]
    assert after["disc"]["epsilon"] == pytest.approx(decay**5)


def test_phased_kl_schedule_and_controller_conflict(tiny_vaegan):
    raw = read_yaml(VAEGAN)
    raw["model"]["kl_schedule"] = {"mode": "steps", "phases": [[0, 1e-4], [10, 1e-3]]}
    raw["model"]["q_controller"] = {"enabled": True, "control_kl": True}
    with pytest.raises(ConfigError, match="control_kl"):
        validate_config(raw, "wubu.yaml")
    raw["model"]["wubu_s"] = {"hyperbolic_dims": [8, 4], "initial_curvatures": [1.0]}
    with pytest.raises(ConfigError, match="initial_curvatures"):
        validate_config(raw, "wubu.yaml")


def test_motion_branch_needs_two_context_frames(tiny_vaegan, tmp_path):
    config = tiny_vaegan("training.condition_frames=1")
    with pytest.raises(ConfigError, match="at least 2 context frames"):
        train(config, runs_dir=tmp_path, run_name="m", progress=False)


def test_detect_anomaly_flag_reaches_the_trainer(tiny_vaegan, tmp_path):
    import lightning.pytorch as pl

    seen: list[bool] = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.append(torch.is_anomaly_enabled())

    train(
        tiny_vaegan("training.limit_val_batches=0", max_steps=1),
        runs_dir=tmp_path,
        run_name="a",
        detect_anomaly=True,
        progress=False,
        callbacks=[Probe()],
    )
    assert seen == [True]


def test_schema_defaults_are_the_guides():
    """The users' guide (document 004) starts phase 1 with ``lambda_kl = 0.0001`` ("Start very
    low: `0.0001`") and says of DISC_APPLY_SPECTRAL_NORM "Keep `true`.": a config that does not
    set them gets the guide's values, not only the shipped YAML (issue 23 item 7)."""
    from framecast.config import validate_config

    config = validate_config({"model": {"kind": "vaegan"}})
    assert config.model.lambda_kl == 0.0001
    assert config.model.disc_apply_spectral_norm is True


@pytest.mark.slow
def test_a_stopped_and_resumed_run_logs_the_uninterrupted_runs_numbers(tiny_vaegan, tmp_path):
    """Step-for-step resume of the VAE-GAN (issue 23 item 4): two players stepped by hand,
    the Q-controller deciding every step, stopped by a real SIGTERM during step 3 (saved at
    step 3, the run's scheduler path) and resumed: the same losses and metrics row for row as
    a run that never stopped."""
    import os
    import signal

    import lightning.pytorch as pl

    from framecast.errors import Preempted

    overrides = (
        "model.q_controller.enabled=true",
        "model.q_controller.every_n_steps=1",
        "training.val_every_n_steps=2",
    )
    config = tiny_vaegan(*overrides, max_steps=5)
    reference = train(config, runs_dir=tmp_path / "ref", run_name="v", progress=False)

    class SigtermDuringStep3(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    runs = tmp_path / "stopped"
    with pytest.raises(Preempted, match="received SIGTERM at step 3: saved"):
        train(config, runs_dir=runs, run_name="v", progress=False, callbacks=[SigtermDuringStep3()])
    resumed = train(None, runs_dir=runs, run_name="v", resume=True, progress=False)
    assert resumed.global_step == reference.global_step == 5
    rows = read_metrics_csv(resumed.run_dir / "metrics.csv")
    expected = read_metrics_csv(reference.run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(5))
    assert rows == expected
