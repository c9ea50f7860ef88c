"""Stage-2 training: the RIVER module, its data (cache or online), checkpoints, warnings."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

from framecast.checkpoint import read_checkpoint
from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.data.dataset import ClipDataset
from framecast.data.latent_dataset import LatentClipDataset, latent_shard_path
from framecast.encode import encode_dataset
from framecast.errors import CheckpointError, ConfigError, DataError
from framecast.flow.pipeline import load_river
from framecast.flow.sampling import SamplerConfig, rollout
from framecast.flow.solvers import SolverConfig
from framecast.models.autoencoder.loading import load_autoencoder
from framecast.training import resolve_run_config
from framecast.training.engine import train
from framecast.training.loggers import read_metrics_csv
from framecast.training.river import (
    RiverDataModule,
    RiverModule,
    SmokeRatioWarning,
    SmokeThresholdChoice,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "river_tiny.yaml"


def test_logs_smoke_statistics_and_stores_the_autoencoder(tiny_river_run):
    rows = read_metrics_csv(tiny_river_run / "metrics.csv")
    train_rows = [r for r in rows if "Training/Stats/smoke_ratio" in r]
    assert len(train_rows) == 4  # every step
    assert all(0.0 <= r["Training/Stats/smoke_ratio"] <= 1.0 for r in train_rows)
    assert all("Training/Loss/flow_matching_mse" in r for r in train_rows)
    assert any("val/rollout_psnr" in r for r in rows)
    assert list((tiny_river_run / "samples").glob("rollout_step*.png"))
    ckpt = read_checkpoint(tiny_river_run / "checkpoints" / "last.ckpt", expected_kind="river")
    assert any(k.startswith("autoencoder.") for k in ckpt["state_dict"])
    assert ckpt["framecast"]["autoencoder_config"]["model"]["kind"] == "autoencoder"


def test_pipeline_loads_and_predicts(tiny_river_run):
    pipeline = load_river(tiny_river_run)
    frames = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    sampler = SamplerConfig(SolverConfig("euler", 2), warm_start=0.1)
    out = pipeline.predict(
        frames, 4, sampler, samples=2, generator=torch.Generator().manual_seed(0)
    )
    assert out.frames.shape == (2, 2, 4, 3, 32, 32)
    assert out.latents.shape == (2, 2, 4, 8, 4, 4)
    assert out.frames.abs().max() <= 1.0 and out.nfe_per_frame == 2
    with pytest.raises(ValueError, match="expects 32x32"):
        pipeline.predict(torch.zeros(1, 1, 3, 16, 16), 1)


def test_checkpoint_kinds_are_checked(tiny_river_run, tiny_autoencoder_run):
    with pytest.raises(CheckpointError, match="holds a 'autoencoder' model; expected a 'river'"):
        load_river(tiny_autoencoder_run)
    with pytest.raises(CheckpointError, match="holds a 'river' model; expected a 'autoencoder'"):
        load_autoencoder(tiny_river_run)


def _tiny_config(data_root, autoencoder, *extra):
    overrides = [
        f"data.root={data_root}",
        f"model.autoencoder={autoencoder}",
        "data.image_size=32",
        "model.vector_field_regressor.state_res=[4, 4]",
        "model.vector_field_regressor.inner_dim=32",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "training.num_observations=4",
        "training.max_steps=2",
        "training.val_every_n_steps=2",
        "training.limit_val_batches=1",
        "training.precision=32",
        "logging.tensorboard=false",
        *extra,
    ]
    return validate_config(apply_overrides(read_yaml(TINY), overrides), str(TINY))


def _module(config) -> RiverModule:
    """A river module built as the engine builds it: from the resolved config."""
    resolved = resolve_run_config(config)
    return RiverModule(resolved.config, **resolved.module_kwargs)


def test_latent_shape_mismatch_names_the_fix(tiny_dataset, tiny_autoencoder_run):
    config = _tiny_config(
        tiny_dataset, tiny_autoencoder_run, "model.vector_field_regressor.state_res=[8, 8]"
    )
    with pytest.raises(ConfigError, match=r"set state_size=8 and state_res=\[4, 4\]"):
        resolve_run_config(config)  # the stage-1 checks come first, before any module
    config = _tiny_config(tiny_dataset, tiny_autoencoder_run, "model.autoencoder=null")
    with pytest.raises(ConfigError, match="model.autoencoder"):
        resolve_run_config(config)


def test_the_module_builds_only_from_a_resolved_config(tiny_dataset, tiny_autoencoder_run):
    config = _tiny_config(tiny_dataset, tiny_autoencoder_run)
    assert config.training.smoke_threshold == "auto"
    with pytest.raises(
        ConfigError,
        match=r"training.smoke_threshold=auto: .* call .*\.resolve_river_config\(config\)",
    ):
        RiverModule(config)
    assert config.training.smoke_threshold == "auto"  # the module decided nothing
    resolved = resolve_run_config(config)
    assert resolved.config is config and isinstance(config.training.smoke_threshold, float)
    module = RiverModule(resolved.config, **resolved.module_kwargs)
    assert module.autoencoder is resolved.module_kwargs["stage1"].model  # loaded once
    assert module.smoke_threshold_choice.source == "training frames"
    assert module.smoke_threshold_choice.threshold == config.training.smoke_threshold
    # Idempotent: a resolved config (a resumed run's) keeps its number, now the config's.
    again = resolve_run_config(config)
    assert again.config.training.smoke_threshold == config.training.smoke_threshold
    assert again.module_kwargs["smoke_threshold_choice"].source == "config"
    # Built by hand from numbers alone: the threshold counts as the config's.
    plain = RiverModule(config)
    expected = SmokeThresholdChoice(config.training.smoke_threshold, "config")
    assert plain.smoke_threshold_choice == expected
    unresolved = _tiny_config(
        tiny_dataset, tiny_autoencoder_run, "training.smoke_threshold=0.1", "data.channels=auto"
    )
    with pytest.raises(ConfigError, match="data.channels=auto: .*resolve_river_config"):
        RiverModule(unresolved)


@pytest.fixture(scope="module")
def cached_dataset(tmp_path_factory, tiny_dataset, tiny_autoencoder_run):
    root = tmp_path_factory.mktemp("cached") / "data"
    shutil.copytree(tiny_dataset, root)
    stage1 = load_autoencoder(tiny_autoencoder_run)
    encode_dataset(stage1.model, root, stage1.image_size, "tiny", progress=False)
    return root


def test_latent_clips_line_up_with_frame_clips(cached_dataset, tiny_autoencoder_run):
    stage1 = load_autoencoder(tiny_autoencoder_run)
    latents = LatentClipDataset(
        latent_shard_path(cached_dataset, "val"), 4, train=False, clips_per_video=3
    )
    frames = ClipDataset(cached_dataset / "val", 4, train=False, clips_per_video=3)
    assert len(latents) == len(frames) == 6
    for index in (0, 4):
        a, b = latents[index], frames[index]
        assert (a["video_id"], a["start"], a["label"]) == (b["video_id"], b["start"], b["label"])
        with torch.no_grad():
            expected = stage1.model.encode_latents(b["frames"])
        torch.testing.assert_close(a["latents"], expected, atol=1e-5, rtol=1e-4)


def test_trains_from_the_cache_without_warning(cached_dataset, tiny_autoencoder_run, tmp_path):
    config = _tiny_config(cached_dataset, tiny_autoencoder_run)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        datamodule = RiverDataModule(config)
    assert datamodule.use_cache
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["latents"].shape == (2, 4, 8, 4, 4)
    result = train(config, runs_dir=tmp_path, run_name="r", progress=False)
    assert result.global_step == 2


def test_cache_of_another_autoencoder_falls_back_to_online(cached_dataset, tiny_dataset, tmp_path):
    other = validate_config(
        apply_overrides(
            read_yaml(REPO / "configs" / "ae_smoke.yaml"),
            [
                f"data.root={tiny_dataset}",
                "data.image_size=32",
                "model.base_channels=8",
                "model.norm_groups=4",
                "training.max_steps=1",
                "training.val_every_n_steps=1",
                "training.limit_val_batches=1",
                "training.precision=32",
                "training.seed=7",
                "logging.tensorboard=false",
            ],
        ),
        "other",
    )
    other_run = train(other, runs_dir=tmp_path, run_name="ae2", progress=False).run_dir
    config = _tiny_config(cached_dataset, other_run)
    with pytest.warns(UserWarning, match="written by another autoencoder"):
        datamodule = RiverDataModule(config)
    assert not datamodule.use_cache
    assert "frames" in next(iter(datamodule.train_dataloader()))


def test_missing_latent_split_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no latent cache for split 'train'"):
        latent_shard_path(tmp_path, "train")


def test_smoke_ratio_warning_once(tiny_dataset, tiny_autoencoder_run):
    module = _module(
        _tiny_config(tiny_dataset, tiny_autoencoder_run, "training.smoke_threshold=0.1")
    )
    with pytest.warns(SmokeRatioWarning, match="above 0.5.*smoke_threshold=0.1.*auto derives"):
        for _ in range(60):
            module._check_smoke_ratio(0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(60):
            module._check_smoke_ratio(0.9)  # warned once per run, not every step
    quiet = _module(_tiny_config(tiny_dataset, tiny_autoencoder_run))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(60):
            quiet._check_smoke_ratio(0.2)


def test_unit_weights_give_the_plain_flow_matching_loss(tiny_dataset, tiny_autoencoder_run):
    module = _module(
        _tiny_config(
            tiny_dataset,
            tiny_autoencoder_run,
            "training.smoke_weight=1.0",
            "training.background_weight=1.0",
        )
    )
    latents = torch.randn(3, 4, 8, 4, 4)
    out = module.flow_loss(latents, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.loss, out.mse)


def test_context_noise_and_pushforward_apply_in_training_only(tiny_dataset, tiny_autoencoder_run):
    plain = _module(_tiny_config(tiny_dataset, tiny_autoencoder_run))
    noisy = _module(_tiny_config(tiny_dataset, tiny_autoencoder_run, "training.context_noise=2.0"))
    torch.manual_seed(0)
    for parameter in plain.model.parameters():  # the output head starts at zero: a field
        parameter.data.normal_(0, 0.1)  # that ignores its conditioning would hide the noise
    noisy.model.load_state_dict(plain.model.state_dict())
    latents = torch.randn(3, 4, 8, 4, 4)

    def loss(module, training: bool):
        module.train(training)
        return module.flow_loss(latents, torch.Generator().manual_seed(0)).loss

    torch.testing.assert_close(loss(noisy, False), loss(plain, False))  # validation: clean
    torch.testing.assert_close(loss(plain, True), loss(plain, False))
    assert not torch.allclose(loss(noisy, True), loss(plain, True))


def test_context_horizon_applies_in_training_and_validation(
    tiny_dataset, tiny_autoencoder_run, monkeypatch
):
    plain = _module(_tiny_config(tiny_dataset, tiny_autoencoder_run))
    near = _module(_tiny_config(tiny_dataset, tiny_autoencoder_run, "training.context_horizon=1"))
    torch.manual_seed(0)
    for parameter in plain.model.parameters():  # a field that reads its context (see above)
        parameter.data.normal_(0, 0.1)
    near.model.load_state_dict(plain.model.state_dict())
    latents = torch.randn(8, 4, 8, 4, 4)  # k = 3 draws c from {0, 1}, or only 1 with H = 1

    def loss(module, training: bool):
        module.train(training)
        return module.flow_loss(latents, torch.Generator().manual_seed(0)).loss

    for training in (True, False):  # it defines the task: validation draws like training
        assert not torch.allclose(loss(near, training), loss(plain, training))
    assert near.config.training.trained_horizon == 1

    # The validation rollout draws its contexts as far back as training did.
    seen = []

    def spy(*args, **kwargs):
        seen.append(args[4].past_horizon)
        return rollout(*args, **kwargs)

    monkeypatch.setattr("framecast.training.river.rollout", spy)
    monkeypatch.setattr(RiverModule, "log", lambda *a, **k: None)
    for module in (plain, near):
        module._validation_rollout(latents[:2])
    assert seen == [2, 1]  # num_observations 4: tau <= 2 without a horizon
