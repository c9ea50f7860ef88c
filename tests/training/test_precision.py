"""``training.precision: auto`` in the engine: every shipped config on every hardware class,
the one line a run prints, what config.yaml and the checkpoint record, the warning for an
explicit bf16 on emulating hardware, and bad values (issue 21)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from framecast.checkpoint import read_checkpoint
from framecast.cli import main
from framecast.config import apply_overrides, save_config, validate_config
from framecast.config.loader import read_yaml
from framecast.demo import SIZES, demo_autoencoder_config, demo_river_config
from framecast.errors import ConfigError
from framecast.training.engine import announce_precision, resolve_precision, train
from framecast.training.tasks import get_task

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
CPU = {"accelerator": "cpu", "devices": 1}
GPU = {"accelerator": "gpu", "devices": 1}


def shipped(path: Path):
    raw = read_yaml(path)
    if raw["model"]["kind"] == "river":  # validation does not open the autoencoder
        raw = apply_overrides(raw, ["model.autoencoder=unused"])
    return validate_config(raw, str(path))


def resolved(config, devices) -> str:
    announce_precision(resolve_precision(config, get_task(config.model.kind), devices))
    return config.training.precision


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_no_shipped_config_hard_codes_a_precision(path):
    """The hardware decides: every shipped config leaves training.precision at auto."""
    assert read_yaml(path).get("training", {}).get("precision", "auto") == "auto"
    assert shipped(path).training.precision == "auto"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_on_every_hardware_class(path, fake_hardware):
    config = shipped(path)
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC)
    assert resolved(config.model_copy(deep=True), CPU) == "32"
    fake_hardware.use(cpu=fake_hardware.AMX_XEON)
    assert resolved(config.model_copy(deep=True), CPU) == "bf16-mixed"
    fake_hardware.use(gpu=fake_hardware.H200)
    assert resolved(config.model_copy(deep=True), GPU) == "bf16-mixed"
    fake_hardware.use(gpu=fake_hardware.V100)
    # fp16 where Lightning's loss scaler can run; the GANs step two optimisers by hand.
    by_hand = config.model.kind == "vaegan" or getattr(
        getattr(config.model, "discriminator", None), "enabled", False
    )
    assert resolved(config.model_copy(deep=True), GPU) == ("32" if by_hand else "16-mixed")


def test_the_demo_trains_and_samples_in_fp32_on_a_cpu_without_native_bf16(fake_hardware, tmp_path):
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC)
    sizes = SIZES["full"]
    ae = validate_config(demo_autoencoder_config(tmp_path, sizes))
    river = demo_river_config(tmp_path, tmp_path / "ae", sizes)
    assert ae.training.precision == "auto" and river["training"]["precision"] == "auto"
    assert resolved(ae, CPU) == "32"
    assert resolved(validate_config(river), CPU) == "32"
    from framecast.demo import demo_sampler

    assert demo_sampler(sizes).for_device("cpu").precision == "fp32"
    fake_hardware.use(cpu=fake_hardware.AMX_XEON)
    assert demo_sampler(sizes).for_device("cpu").precision == "bf16"


def test_a_run_says_its_choice_once_and_records_it(
    fake_hardware, tiny_dataset, tmp_path, shrink, capsys
):
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC)
    config = shrink(CONFIGS[0], tiny_dataset)
    config.training.precision = "auto"
    result = train(config, runs_dir=tmp_path, run_name="r", progress=False)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "precision auto" in line]
    assert lines == [
        "framecast: precision auto -> 32: CPU with AVX2, no AMX or AVX512-BF16: bf16 would "
        "be emulated, 40-100× slower than fp32"
    ]
    assert read_yaml(result.run_dir / "config.yaml")["training"]["precision"] == "32"
    ckpt = read_checkpoint(result.last_checkpoint, expected_kind="autoencoder")
    assert ckpt["framecast"]["config"]["training"]["precision"] == "32"
    # A resumed run keeps what was resolved (no second announcement)...
    train(None, runs_dir=tmp_path, run_name="r", resume=True, overrides=["training.max_steps=3"])
    assert "precision auto" not in capsys.readouterr().err
    # ...and may ask again on other hardware: precision is a resumable key.
    fake_hardware.use(cpu=fake_hardware.AMX_XEON)
    again = train(
        None,
        runs_dir=tmp_path,
        run_name="r",
        resume=True,
        overrides=["training.max_steps=4", "training.precision=auto"],
        progress=False,
    )
    assert "precision auto -> bf16-mixed" in capsys.readouterr().err
    assert read_yaml(again.run_dir / "config.yaml")["training"]["precision"] == "bf16-mixed"


def test_explicit_bf16_on_emulating_hardware_warns_once_with_the_slowdown(fake_hardware):
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC, probe=fake_hardware.EMULATED)
    config = shipped(CONFIGS[0])
    config.training.precision = "bf16-mixed"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolved(config, CPU) == "bf16-mixed"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "68× slower" in messages[0]


def test_fp16_is_refused_where_optimisers_are_stepped_by_hand(fake_hardware):
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC)
    config = shipped(REPO / "configs" / "wubu_vaegan.yaml")
    config.training.precision = "16-mixed"
    with pytest.raises(ConfigError, match="'16-mixed' is not supported for this vaegan"):
        resolved(config, CPU)


@pytest.mark.parametrize("value", ["bf16", "fp32", "64", "true"])
def test_a_precision_that_is_not_a_value_exits_2_naming_the_key(value, tmp_path, capsys):
    config = shipped(CONFIGS[0])
    path = save_config(config, tmp_path / "c.yaml")
    code = main(["train", "--config", str(path), "--runs-dir", str(tmp_path),
                 f"training.precision={value}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "training.precision" in err and "auto, 32, bf16-mixed, 16-mixed" in err


def test_sampling_precision_flag_rejects_other_values(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--run", "r", "--data", "d", "--precision", "bf16-mixed"])
    assert exit_.value.code == 2
    assert "--precision" in capsys.readouterr().err
