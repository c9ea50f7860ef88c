"""The command line: help on every subcommand, version, exit codes and one-line errors."""

from __future__ import annotations

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
    ["demo"],
]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("data", "train", "reconstruct", "encode", "demo"):
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
