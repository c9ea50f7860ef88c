"""``training.smoke_threshold: auto``: a smoke mask that means smoke with no tuning.

The shipped default must mark a plausible share of latent pixels as smoke (0.05–0.5) on
simulated smoke and on an imported smoke-on-black video, record the number it used, and
refuse data without smoke instead of training with an empty mask.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml

from framecast.checkpoint import read_checkpoint
from framecast.cli import main
from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.data.shard import ShardReader, write_shard
from framecast.encode import encode_dataset
from framecast.errors import DataError
from framecast.models.autoencoder.loading import load_autoencoder
from framecast.training import resolve_run_config
from framecast.training.engine import train
from framecast.training.loggers import read_metrics_csv

REPO = Path(__file__).resolve().parents[2]
RIVER = REPO / "configs" / "smoke_dataset.yaml"
SIZE = 32  # tiny_autoencoder_run's frame size


def _config(data_root: Path, autoencoder: Path, *extra: str):
    """The shipped smoke_dataset.yaml, shrunk, with no smoke_threshold override."""
    overrides = [
        f"data.root={data_root}",
        f"model.autoencoder={autoencoder}",
        f"data.image_size={SIZE}",
        "model.vector_field_regressor.state_res=[4, 4]",
        "model.vector_field_regressor.inner_dim=32",
        "model.vector_field_regressor.num_heads=2",
        "data.batch_size=4",
        "data.clips_per_video=4",
        "data.eval_clips_per_video=1",
        "training.num_observations=4",
        "training.condition_frames=1",
        "training.frames_to_generate=3",
        "training.max_steps=4",
        "training.val_every_n_steps=4",
        "training.limit_val_batches=1",
        "training.warmup_steps=0",
        "training.precision=32",
        "training.ema_decay=null",
        "logging.tensorboard=false",
        *extra,
    ]
    return validate_config(apply_overrides(read_yaml(RIVER), overrides), "test")


def _train_and_check(config, runs: Path) -> dict:
    assert config.training.smoke_threshold == "auto"  # the shipped default, untouched
    result = train(config, runs_dir=runs, run_name="river", progress=False)
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    train_rows = [r for r in rows if "Training/Stats/smoke_ratio" in r]
    assert len(train_rows) == 4
    ratio = statistics.mean(r["Training/Stats/smoke_ratio"] for r in train_rows)
    assert 0.05 <= ratio <= 0.5, ratio
    for name in (
        "Training/Loss/flow_matching_mse",
        "Training/Loss/flow_matching_mse_unweighted",
        "Training/Loss/background_mse",
    ):
        assert all(name in r for r in train_rows), name
    assert any("Training/Loss/smoke_mse" in r for r in train_rows)
    # The weighted loss (smoke 5, background 1) is above the unweighted MSE.
    assert all(
        r["Training/Loss/flow_matching_mse"] >= r["Training/Loss/flow_matching_mse_unweighted"]
        for r in train_rows
    )
    val = [r for r in rows if "val/flow_matching_mse_unweighted" in r]
    # (val/smoke_mse is logged only for validations whose targets hold smoke.)
    assert val and "val/background_mse" in val[-1] and "val/flow_matching_mse" in val[-1]
    written = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    threshold = written["training"]["smoke_threshold"]
    assert isinstance(threshold, float) and threshold > 0  # the number this run used
    # Resolved before the module was built, which records where the number came from.
    provenance = read_checkpoint(result.last_checkpoint, expected_kind="river")["framecast"]
    assert provenance["smoke_threshold"]["source"] == "training frames"  # no latent cache
    assert provenance["smoke_threshold"]["threshold"] == threshold
    return {"ratio": ratio, "threshold": threshold, "run_dir": result.run_dir}


@pytest.fixture(scope="module")
def simulated_smoke(tmp_path_factory) -> Path:
    from framecast.data.smoke import simulate_smoke_dataset

    out = tmp_path_factory.mktemp("sim") / "smoke"
    simulate_smoke_dataset(
        out,
        videos=4,
        frames=6,
        size=SIZE,
        seed=0,
        warmup_frames=4,
        splits=(0.5, 0.25, 0.25),
        plumes_per_batch=4,
        workers=1,
        progress=False,
    )
    return out


def test_default_threshold_on_simulated_smoke(simulated_smoke, tiny_autoencoder_run, tmp_path):
    got = _train_and_check(_config(simulated_smoke, tiny_autoencoder_run), tmp_path)
    # Resuming reads the recorded number back instead of deriving it again.
    config = read_yaml(got["run_dir"] / "config.yaml")
    assert validate_config(config, "resumed").training.smoke_threshold == got["threshold"]
    resumed = train(
        None, tmp_path, "river", resume=True, overrides=["training.max_steps=5"], progress=False
    )
    assert resumed.global_step == 5
    written = yaml.safe_load((resumed.run_dir / "config.yaml").read_text())["training"]
    assert written["smoke_threshold"] == got["threshold"]


def test_default_threshold_on_an_imported_smoke_video(
    simulated_smoke, tiny_autoencoder_run, tmp_path, write_mp4
):
    from framecast.data.importer import import_dataset

    src = tmp_path / "videos"
    src.mkdir()
    reader = ShardReader(next((simulated_smoke / "train").glob("*.fcshard")))
    plume = reader.read(0)  # (T, 32, 32, 3) smoke on black
    for i in range(4):  # four clips of one plume, shifted sideways, at 64×64 (import resizes)
        frames = np.roll(plume, shift=4 * i, axis=2).repeat(2, axis=1).repeat(2, axis=2)
        write_mp4(src / f"plume{i}.mp4", np.ascontiguousarray(frames))
    data = tmp_path / "imported"
    import_dataset(src, data, size=SIZE, splits=(0.5, 0.25, 0.25), progress=False)
    _train_and_check(_config(data, tiny_autoencoder_run), tmp_path / "runs")


def test_cache_and_frames_agree_and_scale_applies(simulated_smoke, tiny_autoencoder_run, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(simulated_smoke, data)
    choice = "smoke_threshold_choice"
    from_frames = resolve_run_config(_config(data, tiny_autoencoder_run)).module_kwargs[choice]
    assert from_frames.source == "training frames"
    stage1 = load_autoencoder(tiny_autoencoder_run)
    encode_dataset(stage1.model, data, SIZE, "ae", progress=False)
    config = _config(data, tiny_autoencoder_run, "training.smoke_threshold_scale=0.5")
    from_cache = resolve_run_config(config).module_kwargs[choice]
    assert from_cache.source == "latent cache"
    # Fewer than 32 training videos: both looked at the same frames.
    assert from_cache.derived == pytest.approx(from_frames.derived, rel=1e-4)
    assert from_cache.threshold == pytest.approx(0.5 * from_frames.derived, rel=1e-4)
    # The resolved config records the number used, with the scale already applied.
    assert config.training.smoke_threshold == from_cache.threshold
    assert config.training.smoke_threshold_scale == 1.0


def test_auto_without_smoke_names_the_folder(tiny_autoencoder_run, tmp_path):
    black = np.zeros((6, SIZE, SIZE, 3), np.uint8)
    for split in ("train", "val", "test"):
        write_shard(tmp_path / split / "part-00000.fcshard", [(f"{split}-0", black, {})])
    with pytest.raises(DataError, match=rf"{tmp_path}/train: .*auto found no smoke in 6 frames"):
        resolve_run_config(_config(tmp_path, tiny_autoencoder_run))


@pytest.mark.parametrize(
    "value,expected",
    [("-1", "finite number >= 0"), ("lots", "expected 'auto' or a number"), ("nan", "finite")],
)
def test_bad_threshold_exits_2_naming_the_key(tmp_path, capsys, value, expected):
    code = main(
        [
            "train",
            "--config",
            str(RIVER),
            "--runs-dir",
            str(tmp_path),
            f"training.smoke_threshold={value}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "training.smoke_threshold" in err and expected in err
    assert not any(tmp_path.iterdir())  # refused before any work


def test_scale_with_a_number_is_refused():
    with pytest.raises(Exception, match="smoke_threshold_scale=0.5 scales the derived"):
        validate_config(
            apply_overrides(
                read_yaml(RIVER),
                ["training.smoke_threshold=2.0", "training.smoke_threshold_scale=0.5"],
            ),
            "test",
        )
