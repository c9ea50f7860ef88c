"""The command line: help on every subcommand, version, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from framecast import __version__
from framecast.cli import build_parser, main

SUBCOMMANDS = [
    ["data"],
    ["data", "smoke"],
    ["data", "import"],
    ["train"],
    ["reconstruct"],
    ["encode"],
    ["generate"],
    ["evaluate"],
    ["export"],
    ["export", "onnx"],
    ["demo"],
]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("data", "train", "reconstruct", "encode", "generate", "evaluate", "demo"):
        assert name in out


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as info:
        main([*words, "--help"])
    assert info.value.code == 0
    assert "usage: framecast" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "smoke", "out", "--size", "0"])
    assert info.value.code == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["bogus"])
    assert info.value.code == 2


def test_config_error_is_one_line_exit_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model: {kind: autoencoder}\ntraining: {lrr: 1}\n")
    assert main(["train", "--config", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("framecast: error:") and "training.lrr" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_debug_shows_traceback(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {kind: autoencoder}\ntraining: {lrr: 1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "--debug", "train", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_train_flags_become_overrides():
    from framecast.cli import train_overrides

    args = build_parser().parse_args(
        [
            "train",
            "--config",
            "c.yaml",
            "--data",
            "d",
            "--max-steps",
            "7",
            "--random-seed",
            "3",
            "--wandb",
            "training.lr=0.1",
        ]
    )
    assert train_overrides(args) == [
        "training.lr=0.1",
        "data.root=d",
        "training.max_steps=7",
        "training.seed=3",
        "logging.wandb=true",
    ]


def test_console_script_installed():
    proc = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_generate_and_evaluate_commands(
    tiny_river_run, tiny_dataset, tmp_path, capsys, fake_hardware
):
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC)  # a CPU without native bf16
    gif = tmp_path / "out.gif"
    shard = tiny_dataset / "test" / "part-00000.fcshard"
    args = ["--run", str(tiny_river_run), "--steps", "2", "--warm-start", "0.1", "--no-progress"]
    assert main(["generate", *args, "--input", str(shard), "--out", str(gif), "--frames", "2"]) == 0
    captured = capsys.readouterr()
    assert gif.is_file() and "NFE" in captured.out
    # precision auto: fp32 on this (faked) AVX2 CPU, said once per process.
    assert "sampling precision auto -> fp32: CPU with AVX2" in captured.err
    out = tmp_path / "eval"
    code = main(
        ["evaluate", *args, "--data", str(tiny_dataset), "--max-clips", "2", "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "copy_last" in printed and str(out) in printed
    assert (out / "metrics.json").is_file()
    # metrics.json records what ran, not "auto".
    assert json.loads((out / "metrics.json").read_text())["sampler"]["precision"] == "fp32"
    fake_hardware.use(cpu=fake_hardware.AMX_XEON)  # bf16 where it is native
    code = main(
        ["evaluate", *args, "--data", str(tiny_dataset), "--max-clips", "1", "--out", str(out)]
    )
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["sampler"]["precision"] == "bf16"
    fp32_out = tmp_path / "eval_fp32"
    code = main(
        [
            "evaluate",
            *args,
            "--data",
            str(tiny_dataset),
            "--max-clips",
            "2",
            "--out",
            str(fp32_out),
            "--precision",
            "fp32",
        ]
    )
    assert code == 0
    assert json.loads((fp32_out / "metrics.json").read_text())["sampler"]["precision"] == "fp32"


def test_bad_sampler_option_is_one_line_error(tiny_river_run, tmp_path, capsys):
    code = main(
        [
            "generate",
            "--run",
            str(tiny_river_run),
            "--input",
            str(tmp_path),
            "--out",
            str(tmp_path / "x.gif"),
            "--warm-start",
            "1.5",
        ]
    )
    assert code == 2
    assert "warm_start" in capsys.readouterr().err


def test_config_not_utf8_is_one_line_exit_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"\xff\xfe\x00m\x00o\x00d\x00e\x00l\x00")
    assert main(["train", "--config", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config) in err and "not UTF-8" in err


def test_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  kind: autoencoder\n   base_channels: 8\n")
    assert main(["train", "--config", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"config file {config} is not valid YAML: line 3, column 17" in err
    config.write_text("model: {kind: autoencoder}\n")
    assert main(["train", "--config", str(config), "training.lr=[1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 1, column 3" in err


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--bogus-flag"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--bogus-flag" in err


def test_overrides_are_accepted_anywhere():
    from framecast.cli import parse_args, train_overrides

    args = parse_args(
        build_parser(), ["train", "a.b=1", "--run-name", "r", "c.d=2", "--max-steps", "3", "e=f"]
    )
    assert args.run_name == "r"
    assert train_overrides(args) == ["a.b=1", "c.d=2", "e=f", "training.max_steps=3"]


def test_os_error_is_one_line_exit_2(tmp_path, capsys):
    # --runs-dir under a regular file: the OSError of creating the run folder is the
    # user's input, not a bug, so no traceback either.
    config = tmp_path / "c.yaml"
    config.write_text("model: {kind: autoencoder}\n")
    (tmp_path / "file").write_text("")
    argv = ["train", "--config", str(config), "--runs-dir", str(tmp_path / "file" / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "file" in err


def test_evaluate_smoke_brightness_keeps_its_old_option_name(capsys):
    """``--smoke-brightness`` is a frame brightness (``training.smoke_threshold`` is river's
    latent distance); scripts that pass the old ``--smoke-threshold`` still work, and the
    default is the one the metrics use."""
    from framecast.eval.metrics import SMOKE_BRIGHTNESS

    parser = build_parser()
    base = ["evaluate", "--run", "r", "--data", "d"]
    assert parser.parse_args(base).smoke_brightness == SMOKE_BRIGHTNESS
    assert parser.parse_args([*base, "--smoke-brightness", "0.3"]).smoke_brightness == 0.3
    assert parser.parse_args([*base, "--smoke-threshold", "0.2"]).smoke_brightness == 0.2
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--help"])
    assert "--smoke-threshold" not in capsys.readouterr().out
