"""Every shipped config trains for two CPU steps; runs resume; bad runs fail clearly."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from framecast.checkpoint import read_checkpoint
from framecast.cli import main
from framecast.config import apply_overrides, save_config, validate_config
from framecast.config.loader import read_yaml
from framecast.errors import CheckpointError, ConfigError, FramecastError, TrainingError
from framecast.training.engine import train
from framecast.training.loggers import read_metrics_csv

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_trains_three_steps_from_the_cli(
    config_path, tiny_dataset, tmp_path, shrink, capsys
):
    """Every shipped config, shrunk but keeping its own validation and logging intervals
    (all longer than the run), trains 3 steps from the command line: exit 0, a validation
    and a log at the end, metrics.csv, config.yaml and checkpoints."""
    config = shrink(config_path, tiny_dataset, max_steps=2)
    shipped = read_yaml(config_path).get("training", {})
    keep = {k: shipped[k] for k in ("val_every_n_steps", "log_every_n_steps") if k in shipped}
    keep.setdefault("val_every_n_steps", None)  # the schema's default: once per epoch
    keep.setdefault("log_every_n_steps", 10)
    config = config.model_copy(update={"training": config.training.model_copy(update=keep)})
    path = save_config(config, tmp_path / "config.yaml")
    argv = ["train", "--config", str(path), "--runs-dir", str(tmp_path), "--run-name", "r"]
    assert main([*argv, "--max-steps", "3"]) == 0, capsys.readouterr().err
    run = tmp_path / "r"
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "best.ckpt").is_file()
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt", expected_kind=config.model.kind)
    assert ckpt["global_step"] == 3
    assert ckpt["framecast"]["config"]["model"] == config.model.model_dump(mode="json")
    rows = read_metrics_csv(run / "metrics.csv")
    assert rows and all(math.isfinite(v) for row in rows for v in row.values())
    assert rows[-1]["step"] == 2 and config.training.monitor in rows[-1]  # validated at the end
    assert any(k.startswith("train/") for k in rows[-1])  # and logged there
    assert (run / "loss_curves.png").is_file()
    assert list((run / "samples").glob("*.png"))


def test_resume_continues_and_keeps_architecture(tiny_dataset, tmp_path, shrink):
    config = shrink(CONFIGS[0], tiny_dataset)
    train(config, runs_dir=tmp_path, run_name="r", progress=False)
    with pytest.raises(ConfigError, match="already exists"):
        train(config, runs_dir=tmp_path, run_name="r", progress=False)
    with pytest.raises(ConfigError, match="cannot override model.base_channels"):
        train(
            None, runs_dir=tmp_path, run_name="r", resume=True, overrides=["model.base_channels=16"]
        )
    result = train(
        None,
        runs_dir=tmp_path,
        run_name="r",
        resume=True,
        overrides=["training.max_steps=4"],
        progress=False,
    )
    assert result.global_step == 4
    steps = [int(row["step"]) for row in read_metrics_csv(result.run_dir / "metrics.csv")]
    assert steps == sorted(set(steps))  # no duplicated rows after resuming


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tiny_dataset, tmp_path, monkeypatch, shrink):
    config = shrink(CONFIGS[0], tiny_dataset)
    train(config, runs_dir=tmp_path, run_name="r", progress=False)
    before = (tmp_path / "r" / "checkpoints" / "last.ckpt").read_bytes()

    from framecast.training.autoencoder import AutoencoderModule

    original = AutoencoderModule.compute_loss

    def poisoned(self, *args, **kwargs):
        output, loss, parts = original(self, *args, **kwargs)
        return output, loss * torch.tensor(float("nan")), parts

    monkeypatch.setattr(AutoencoderModule, "compute_loss", poisoned)
    with pytest.raises(TrainingError, match=r"non-finite loss nan at step 2"):
        train(
            None,
            runs_dir=tmp_path,
            run_name="r",
            resume=True,
            overrides=["training.max_steps=4"],
            progress=False,
        )
    assert (tmp_path / "r" / "checkpoints" / "last.ckpt").read_bytes() == before


def test_checkpoint_of_another_kind_or_shape_is_refused(tiny_dataset, tmp_path, shrink):
    from framecast.models.autoencoder.loading import load_autoencoder

    config = shrink(CONFIGS[0], tiny_dataset)
    result = train(config, runs_dir=tmp_path, run_name="r", progress=False)
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    ckpt["framecast"]["kind"] = "river"
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(
        CheckpointError, match="holds a 'river' model; expected a 'autoencoder' model"
    ):
        load_autoencoder(tmp_path / "other.ckpt")
    ckpt["framecast"]["kind"] = "autoencoder"
    ckpt["framecast"]["config"]["model"]["latent_channels"] = 4
    torch.save(ckpt, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match="weights do not fit the stored architecture"):
        load_autoencoder(tmp_path / "shape.ckpt")


def test_save_and_reload_give_identical_outputs(tiny_dataset, tmp_path, shrink):
    from framecast.models.autoencoder.loading import load_autoencoder
    from framecast.training.autoencoder import AutoencoderModule

    config = shrink(CONFIGS[0], tiny_dataset)
    result = train(config, runs_dir=tmp_path, run_name="r", progress=False)
    loaded = load_autoencoder(result.run_dir, which="last")
    module = AutoencoderModule(config)
    module.load_state_dict(torch.load(result.last_checkpoint, weights_only=True)["state_dict"])
    module.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model(x).rgb, module.model(x).rgb)
        assert torch.equal(loaded.model.encode_latents(x), module.model.encode_latents(x))


def test_missing_data_root_is_a_config_error(tmp_path):
    config = validate_config(apply_overrides({"model": {"kind": "autoencoder"}}, []))
    with pytest.raises(ConfigError, match="no dataset"):
        train(config, runs_dir=tmp_path, run_name="r", progress=False)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.discriminator.enabled=true", "model.discriminator.spectral_norm=true"],
        ["model.discriminator.enabled=true", "model.discriminator.loss=non_saturating"],
        ["model.perceptual_weight=0.1"],
        ["training.ema_decay=0.9"],
        ["training.precision=bf16-mixed"],
        ["training.early_stopping_patience=1"],
    ],
    ids=["gan-hinge-sn", "gan-nonsat", "perceptual", "ema", "bf16", "early-stop"],
)
def test_optional_training_features_run(overrides, tiny_dataset, tmp_path, shrink):
    config = shrink(CONFIGS[0], tiny_dataset)
    config = validate_config(apply_overrides(config.to_dict(), overrides))
    result = train(config, runs_dir=tmp_path, run_name="r", progress=False)
    assert result.global_step == 2  # with a discriminator, steps count autoencoder steps
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    logged = set().union(*rows)
    if config.model.discriminator.enabled:
        assert {"train/g_loss", "train/d_loss", "train/adaptive_weight"} <= logged
        ckpt = read_checkpoint(result.last_checkpoint)
        assert len(ckpt["optimizer_states"]) == 2
    if config.model.perceptual_weight > 0:
        assert "train/perceptual" in logged


class _Diverge(pl.Callback):
    """Makes the weights NaN after training step ``step``, as a huge lr would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(module.model.parameters()).fill_(float("nan"))


def test_diverged_model_never_replaces_the_good_checkpoint(tiny_dataset, tmp_path, shrink):
    config = shrink(CONFIGS[0], tiny_dataset, max_steps=4)
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"val_every_n_steps": 1})}
    )
    with pytest.raises(TrainingError, match=r"last good checkpoint .*last\.ckpt \(step 1\)"):
        train(config, runs_dir=tmp_path, run_name="r", progress=False, callbacks=[_Diverge(2)])
    checkpoints = tmp_path / "r" / "checkpoints"
    for name in ("last.ckpt", "best.ckpt"):  # validation at step 2 gave NaN: not saved
        assert read_checkpoint(checkpoints / name)["global_step"] == 1

    from framecast.checkpoint import load_model_weights
    from framecast.models.autoencoder.loading import load_autoencoder

    ckpt = torch.load(checkpoints / "last.ckpt", weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.startswith("model."))
    ckpt["state_dict"][name] = torch.full_like(ckpt["state_dict"][name], float("nan"))
    torch.save(ckpt, tmp_path / "nan.ckpt")
    with pytest.raises(CheckpointError, match=r"nan\.ckpt: the model's weights are not finite"):
        load_autoencoder(tmp_path / "nan.ckpt")
    with pytest.raises(CheckpointError, match="not finite"):
        load_model_weights(torch.nn.Linear(1, 1), ckpt, tmp_path / "nan.ckpt")
    warm = [f"training.init_from={tmp_path / 'nan.ckpt'}"]
    warm_config = validate_config(apply_overrides(config.to_dict(), warm))
    with pytest.raises(CheckpointError, match=r"nan\.ckpt are not finite"):
        train(warm_config, runs_dir=tmp_path, run_name="warm", progress=False)
    assert not (tmp_path / "warm").exists()  # a failed start leaves no folder


def test_nan_metric_is_never_saved_or_ranked():
    from types import SimpleNamespace

    from framecast.training.checkpoint import unsaveable_reason

    trainer = SimpleNamespace(
        lightning_module=torch.nn.Linear(2, 2), callback_metrics={"val/loss": torch.tensor(0.5)}
    )
    assert unsaveable_reason(trainer, "val/loss") is None
    trainer.callback_metrics["val/loss"] = torch.tensor(float("nan"))
    assert unsaveable_reason(trainer, "val/loss") == "val/loss = nan"


def test_resume_applies_lr_and_refuses_what_cannot_change(tiny_dataset, tmp_path, shrink):
    config = shrink(CONFIGS[0], tiny_dataset, max_steps=2)
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"lr_schedule": "constant"})}
    )
    train(config, runs_dir=tmp_path, run_name="r", progress=False)
    with pytest.raises(ConfigError, match=r"data\.batch_size, training\.seed cannot change"):
        train(
            None,
            runs_dir=tmp_path,
            run_name="r",
            resume=True,
            overrides=["training.seed=7", "data.batch_size=4", "training.max_steps=4"],
        )
    result = train(
        None,
        runs_dir=tmp_path,
        run_name="r",
        resume=True,
        overrides=["training.lr=0.0123", "training.max_steps=4"],
        progress=False,
    )
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]  # no step lost or repeated
    lrs = [r["lr-AdamW"] for r in rows]
    assert lrs[0] == config.training.lr and lrs[2:] == [0.0123, 0.0123]  # what ran
    assert read_yaml(result.run_dir / "config.yaml")["training"]["lr"] == 0.0123  # what says
    ckpt = read_checkpoint(result.last_checkpoint)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == 0.0123
    assert ckpt["lr_schedulers"][0]["base_lrs"] == [0.0123]


def test_failed_start_leaves_no_run_folder_and_lightning_keeps_quiet(
    tiny_dataset, tmp_path, shrink, capfd
):
    config = shrink(CONFIGS[0], tiny_dataset)
    broken = config.model_copy(
        update={"data": config.data.model_copy(update={"root": str(tmp_path / "nowhere")})}
    )
    with pytest.raises(FramecastError):
        train(broken, runs_dir=tmp_path / "runs", run_name="r", progress=False)
    assert not (tmp_path / "runs" / "r").exists()
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # what a user's plain `framecast train` would see
        train(config, runs_dir=tmp_path / "runs", run_name="r", progress=False)
    out = "".join(capfd.readouterr())
    assert "Tip:" not in out and "litlogger" not in out
    assert "deprecated" not in out.lower()


def test_unknown_monitor_is_a_config_error(tiny_dataset, tmp_path, shrink):
    config = shrink(CONFIGS[0], tiny_dataset)
    config = validate_config(apply_overrides(config.to_dict(), ["training.monitor=val/nope"]))
    with pytest.raises(
        ConfigError, match=r"training.monitor 'val/nope' is not a metric .*val/loss"
    ):
        train(config, runs_dir=tmp_path, run_name="r", progress=False)
