"""Config loading: overrides, unknown keys and bad values fail with clear messages."""

from __future__ import annotations

import warnings
from typing import Literal

import pytest
import yaml

from framecast.config import (
    ModelConfig,
    apply_overrides,
    load_config,
    parse_override,
    register_model_kind,
    save_config,
    validate_config,
)
from framecast.errors import ConfigError


@register_model_kind("dummy_test_kind")
class DummyModelConfig(ModelConfig):
    kind: Literal["dummy_test_kind"] = "dummy_test_kind"
    width: int = 4


def base() -> dict:
    return {"model": {"kind": "dummy_test_kind", "width": 8}, "training": {"lr": 1e-3}}


def test_defaults_and_values():
    config = validate_config(base())
    assert config.model.width == 8
    assert config.training.lr == 1e-3
    assert config.data.image_size == 64
    assert config.training.smoke_weight == 5.0
    assert config.training.background_weight == 1.0
    assert config.training.smoke_threshold == "auto"
    assert config.training.smoke_threshold_scale == 1.0


def test_parse_override_types():
    assert parse_override("training.lr=1e-3") == (["training", "lr"], 1e-3)
    assert parse_override("data.root=/tmp/x") == (["data", "root"], "/tmp/x")
    assert parse_override("logging.wandb=true") == (["logging", "wandb"], True)
    assert parse_override("training.grad_clip=null") == (["training", "grad_clip"], None)
    with pytest.raises(ConfigError, match="expected KEY.SUB=VALUE"):
        parse_override("training.lr")
    with pytest.raises(ConfigError, match="expected KEY.SUB=VALUE"):
        parse_override("training..lr=1")


def test_apply_overrides_creates_sections_and_does_not_mutate():
    raw = base()
    out = apply_overrides(raw, ["data.batch_size=3", "model.width=2"])
    assert out["data"]["batch_size"] == 3 and out["model"]["width"] == 2
    assert raw["model"]["width"] == 8
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(raw, ["training.lr.x=1"])


def test_unknown_key_names_key_and_allowed_keys():
    raw = base()
    raw["training"]["lrr"] = 1
    with pytest.raises(ConfigError) as info:
        validate_config(raw, "cfg.yaml")
    message = str(info.value)
    assert "cfg.yaml" in message and "training.lrr" in message and "allowed keys" in message
    assert "lr" in message.split("allowed keys:")[1]


def test_unknown_model_key():
    raw = base()
    raw["model"]["depthh"] = 2
    with pytest.raises(ConfigError, match=r"unknown key 'model.depthh'.*allowed keys: kind, width"):
        validate_config(raw)


def test_unknown_section():
    raw = base()
    raw["trainin"] = {}
    with pytest.raises(ConfigError, match="unknown key 'trainin'"):
        validate_config(raw)


def test_wrong_type_names_key_value_and_expectation():
    with pytest.raises(ConfigError) as info:
        validate_config(apply_overrides(base(), ["training.lr=fast"]))
    message = str(info.value)
    assert "training.lr" in message and "'fast'" in message and "number" in message


@pytest.mark.parametrize(
    "override", ["data.image_size=0", "data.image_size=-4", "data.batch_size=0"]
)
def test_zero_or_negative_size(override):
    with pytest.raises(ConfigError, match="greater than 0"):
        validate_config(apply_overrides(base(), [override]))


def test_unknown_kind_lists_allowed():
    with pytest.raises(ConfigError, match="model.kind.*'nope'.*dummy_test_kind"):
        validate_config({"model": {"kind": "nope"}})
    with pytest.raises(ConfigError, match="missing 'model' section"):
        validate_config({})


def test_condition_frames_must_be_below_num_observations():
    with pytest.raises(ConfigError, match="condition_frames"):
        validate_config(
            apply_overrides(base(), ["training.num_observations=3", "training.condition_frames=3"])
        )


@pytest.mark.parametrize(
    "overrides,horizon",
    [
        ([], 8),  # RIVER: every frame before the reference of a 10-frame clip
        (["training.context_horizon=2"], 2),
        (["training.context_horizon=50"], 8),  # never beyond the clip
        (["training.num_observations=3", "training.context_horizon=4"], 1),
    ],
)
def test_trained_horizon_is_how_far_back_training_draws_the_context(overrides, horizon):
    river = {"model": {"kind": "river"}}
    assert validate_config(apply_overrides(river, overrides)).training.trained_horizon == horizon


def test_context_horizon_must_be_positive():
    with pytest.raises(ConfigError, match="context_horizon"):
        validate_config(
            apply_overrides({"model": {"kind": "river"}}, ["training.context_horizon=0"])
        )


@pytest.mark.parametrize(
    "override",
    ["training.context_noise=0.3", "training.smoke_weight=2.0", "training.pushforward=1"],
)
def test_river_only_training_keys_are_refused_for_other_kinds(override):
    with pytest.raises(ConfigError, match=rf"{override.split('=')[0]}.*only applies to.*river"):
        validate_config(apply_overrides(base(), [override]))
    # The default spelled out is harmless: every saved config.yaml holds it.
    key = override.split("=")[0].split(".")[1]
    default = validate_config(base()).training.model_dump()[key]
    validate_config(apply_overrides(base(), [f"training.{key}={default}"]))


def test_the_river_only_keys_come_from_the_schemas_marker():
    from framecast.config.loader import RIVER_TRAINING_KEYS

    assert RIVER_TRAINING_KEYS == (
        "smoke_weight",
        "background_weight",
        "smoke_threshold",
        "smoke_threshold_scale",
        "context_noise",
        "pushforward",
        "pushforward_steps",
        "context_horizon",
    )


def test_yaml_roundtrip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base()))
    config = load_config(path, ["training.max_steps=5"])
    saved = save_config(config, tmp_path / "out" / "config.yaml")
    again = load_config(saved)
    assert again == config
    assert again.training.max_steps == 5


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_stage2_monitors_the_unweighted_flow_mse_by_default():
    """val/loss grows with smoke_weight, so a river run's best checkpoint is chosen on the
    unweighted flow-matching MSE unless the config says otherwise (issue 23 item 2)."""
    from pathlib import Path

    import framecast.config.river  # noqa: F401  (registers the river kind)

    river = {"model": {"kind": "river"}, "training": {"smoke_weight": 5.0}}
    assert validate_config(river).training.monitor == "val/flow_matching_mse_unweighted"
    river["training"]["monitor"] = "val/rollout_psnr"
    assert validate_config(river).training.monitor == "val/rollout_psnr"  # explicit is kept
    assert validate_config(base()).training.monitor == "val/loss"  # other kinds unchanged
    configs = Path(__file__).resolve().parents[2] / "configs"
    for path in sorted(configs.glob("*.yaml")):
        config = load_config(path)
        if config.model.kind == "river":
            assert config.training.monitor != "val/loss", path.name


def test_autoencoder_smoke_brightness_takes_its_old_name_with_a_warning():
    """The autoencoder's frame brightness was ``model.smoke_threshold``, the name river uses
    for a latent distance; old configs and checkpoints still load, with a FutureWarning where
    the value is not the default every older config.yaml holds."""
    import framecast.config.autoencoder  # noqa: F401  (registers the kind)

    raw = {"model": {"kind": "autoencoder", "smoke_threshold": 0.3}}
    with pytest.warns(FutureWarning, match="now model.smoke_brightness"):
        config = validate_config(raw)
    assert config.model.smoke_brightness == 0.3
    assert "smoke_threshold" not in config.model.model_dump()
    saved = {"model": {"kind": "autoencoder", "smoke_threshold": 0.1}}  # an older config.yaml
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate_config(saved).model.smoke_brightness == 0.1
    both = {"model": {"kind": "autoencoder", "smoke_threshold": 0.3, "smoke_brightness": 0.2}}
    with pytest.raises(ConfigError, match="old name of model.smoke_brightness"):
        validate_config(both)
