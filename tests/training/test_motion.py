"""Training the motion LSTM: a short synthetic run, its evaluation files; data and config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framecast.checkpoint import read_checkpoint
from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.data.motion import save_sessions, synthetic_sessions
from framecast.errors import ConfigError, DataError
from framecast.training.engine import train
from framecast.training.loggers import read_metrics_csv

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "motion_lstm.yaml"


def motion_config(*overrides: str):
    base = [
        "model.synthetic.num_sessions=10",
        "model.synthetic.length=80",
        "model.hidden_size=32",
        "data.batch_size=32",
        "training.max_epochs=6",
        "training.early_stopping_patience=null",
        "training.lr=3.0e-3",
        "logging.tensorboard=false",
        "logging.progress_bar=false",
        "training.log_every_n_steps=5",
    ]
    return validate_config(apply_overrides(read_yaml(CONFIG), [*base, *overrides]), str(CONFIG))


def test_short_synthetic_run_logs_and_writes_the_evaluation(tmp_path):
    result = train(motion_config(), runs_dir=tmp_path, run_name="m", progress=False)
    metrics = json.loads((result.run_dir / "eval" / "motion_metrics.json").read_text())
    test = metrics["splits"]["test"]
    assert set(test) == {"model", "copy_last", "moving_average"}
    assert {"mse", "mae", "mse_norm", "mae_head", "mse_norm_right_arm"} <= set(test["model"])
    # A few seconds of training do not reliably beat copy-last (the full config does, see
    # the closing note of issue 6); here: the model is sane and starts from copy-last.
    assert 0 < test["model"]["mse"] < 2 * test["copy_last"]["mse"]
    assert metrics["sessions"] == {"train": 6, "val": 2, "test": 2}
    assert (result.run_dir / "eval" / "motion_metrics.csv").read_text().startswith("split,")
    rows = read_metrics_csv(result.run_dir / "metrics.csv")
    logged = set().union(*rows)
    assert {
        "val/loss",
        "val/mse_head",
        "val/copy_last/mse",
        "val/moving_average/mae_norm",
    } <= logged
    assert (result.run_dir / "loss_curves.png").is_file()
    assert list((result.run_dir / "samples").glob("tracks_*.png"))
    norm = read_checkpoint(result.best_checkpoint, expected_kind="motion")["framecast"]
    assert len(norm["normalisation"]["std"]) == 12


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.target=denoise", "model.attention=true"],
        ["model.per_feature=false", "model.fault_inputs=false", "model.anchor=last"],
    ],
)
def test_variants_train_from_a_json_folder(tmp_path, overrides):
    sessions = synthetic_sessions(6, length=30, seed=3)
    sessions[0].raw, sessions[0].clean = sessions[0].raw[:5], sessions[0].clean[:5]
    save_sessions(sessions[:3], tmp_path / "data" / "a.json")
    save_sessions(sessions[3:], tmp_path / "data" / "b.json")
    config = motion_config(
        f"data.root={tmp_path / 'data'}",
        "training.max_epochs=null",
        "training.max_steps=3",
        *overrides,
    )
    with pytest.warns(UserWarning, match="skipped 1 of 6 sessions shorter than"):
        result = train(config, runs_dir=tmp_path, run_name="m", progress=False)
    assert result.global_step == 3
    assert (result.run_dir / "eval" / "motion_metrics.json").is_file()


def test_missing_or_unusable_data_fails_clearly(tmp_path):
    with pytest.raises(ConfigError, match="set data.root .* or set model.synthetic.enabled"):
        train(motion_config("model.synthetic.enabled=false"), runs_dir=tmp_path, run_name="a")
    save_sessions(synthetic_sessions(4, length=6, seed=0), tmp_path / "short.json")
    with pytest.raises(DataError, match="no session has sequence_length"):
        train(
            motion_config(f"data.root={tmp_path / 'short.json'}"), runs_dir=tmp_path, run_name="b"
        )


def test_input_noise_keeps_dropout_holds_exact():
    import torch

    from framecast.models.motion_lstm import MotionLSTM
    from framecast.training.motion import held_noise

    torch.manual_seed(0)
    x = torch.randn(4, 10, 12)
    x[:, 4:7, :3] = x[:, 3:4, :3]  # a dropout: frames 4-6 hold frame 3 of the head
    noisy = x + 0.1 * held_noise(x)
    assert torch.equal(MotionLSTM.hold_flags(noisy), MotionLSTM.hold_flags(x))
    assert not torch.equal(noisy[:, 7:], x[:, 7:])


def _users_collector_file(path: Path, sessions: int, frames: int, bad_frame: bool = False):
    """A session file as the users' DataCollector writes it: ISO-8601 timestamps from
    ``datetime.now().isoformat()`` (here a fixed start) and joints as [x, y, z] lists."""
    from datetime import datetime, timedelta

    start = datetime(2026, 11, 30, 8, 37, 4)
    data = []
    for s, session in enumerate(synthetic_sessions(sessions, length=frames, seed=5)):
        rows = []
        for i, row in enumerate(session.raw.tolist()):
            stamp = start + timedelta(hours=s, seconds=i / 30)
            rows.append(
                {
                    "timestamp": stamp.isoformat(),
                    "head": row[0:3],
                    "hips": row[3:6],
                    "left_arm": row[6:9],
                    "right_arm": row[9:12],
                }
            )
        data.append(rows)
    if bad_frame:
        del data[0][3]["hips"]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("sessions", [1, 2, 3])
def test_users_collector_file_trains_with_the_shipped_config(tmp_path, sessions, capsys):
    """`framecast train --config configs/motion_lstm.yaml data.root=their_file.json`, the
    config unchanged; 1-2 sessions are split by time within each session (with a note)."""
    from framecast.cli import main

    data = _users_collector_file(tmp_path / "their_file.json", sessions, frames=80)
    argv = ["train", "--config", str(CONFIG), "--runs-dir", str(tmp_path / "runs")]
    argv += ["--run-name", "users", "--max-steps", "2", f"data.root={data}"]
    if sessions < 3:
        with pytest.warns(UserWarning, match=f"only {sessions} session.*split by time"):
            code = main(argv)
    else:
        code = main(argv)
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "runs" / "users" / "eval" / "motion_metrics.json").read_text())
    expected = (
        {"train": sessions, "val": sessions, "test": sessions}
        if sessions < 3
        else {"train": 1, "val": 1, "test": 1}
    )
    assert metrics["sessions"] == expected
    assert metrics["skipped_bad_frames"] == 0


def test_bad_frame_is_skipped_and_counted_or_exits_2_with_strict(tmp_path, capsys):
    from framecast.cli import main

    data = _users_collector_file(tmp_path / "their_file.json", 3, frames=40, bad_frame=True)
    argv = ["train", "--config", str(CONFIG), "--runs-dir", str(tmp_path / "runs")]
    argv += ["--max-steps", "1", f"data.root={data}"]
    assert main([*argv, "--run-name", "strict", "--strict"]) == 2
    err = capsys.readouterr().err
    assert "their_file.json: session 0 frame 3: missing key(s) hips" in err
    with pytest.warns(UserWarning, match=r"skipped 1 bad frame\(s\).*session 0 frame 3"):
        assert main([*argv, "--run-name", "lenient"]) == 0
    metrics = json.loads(
        (tmp_path / "runs" / "lenient" / "eval" / "motion_metrics.json").read_text()
    )
    assert metrics["skipped_bad_frames"] == 1
