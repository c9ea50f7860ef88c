"""Checkpoint IO (atomic, weights-only, kind check) and the run's CSV logger."""

from __future__ import annotations

import pickle

import pytest
import torch

from framecast.checkpoint import read_checkpoint, resolve_checkpoint
from framecast.errors import CheckpointError
from framecast.training.checkpoint import AtomicCheckpointIO
from framecast.training.loggers import RunCSVLogger, read_metrics_csv
from framecast.training.module import lr_lambda


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_atomic_save_and_kind_check(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint(
        {"state_dict": {"model.w": torch.ones(2)}, "framecast": {"kind": "a", "config": {}}}, path
    )
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left
    assert read_checkpoint(path, expected_kind="a")["state_dict"]["model.w"].sum() == 2
    with pytest.raises(CheckpointError, match="holds a 'a' model; expected a 'b' model"):
        read_checkpoint(path, expected_kind="b")


def test_failed_save_keeps_previous_file(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"x": torch.zeros(1)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        io.save_checkpoint(
            {"x": torch.ones(3), "lam": lambda: 0}, path
        )  # lambdas cannot be pickled
    assert torch.load(path, weights_only=True)["x"].shape == (1,)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_loading_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"framecast": Evil()}, f)
    with pytest.raises(CheckpointError, match="only loads checkpoints weights-only"):
        read_checkpoint(path)


def test_foreign_and_missing_checkpoints(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not written by framecast"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="has no checkpoints/best.ckpt"):
        resolve_checkpoint(tmp_path / "run")


def test_csv_logger_merges_steps_and_drops_rows_after_resume_point(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = RunCSVLogger(path)
    for step in range(5):
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    logger.log_metrics({"val/loss": 0.5}, step=4)
    logger.save()
    rows = read_metrics_csv(path)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[4]["val/loss"] == 0.5 and rows[4]["train/loss"] == pytest.approx(0.2)
    # A resumed run from step 2 re-logs steps 3 and 4: no duplicated rows.
    resumed = RunCSVLogger(path, resume_step=2)
    resumed.log_metrics({"train/loss": 9.0}, step=3)
    resumed.save()
    rows = read_metrics_csv(path)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert rows[3]["train/loss"] == 9.0


def test_lr_schedule():
    assert lr_lambda(0, 10, 100, "constant") == pytest.approx(0.1)
    assert lr_lambda(9, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_lambda(10, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_lambda(100, 10, 100, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_lambda(55, 10, 100, "linear") == pytest.approx(0.5)


def test_unsafe_checkpoint_error_never_advises_weights_only_false(tmp_path):
    from framecast.checkpoint import load_checkpoint_file
    from framecast.errors import CheckpointError

    torch.save({"state_dict": {}, "extra": _Pickled()}, tmp_path / "unsafe.ckpt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(tmp_path / "unsafe.ckpt")
    message = str(info.value)
    assert "unsafe.ckpt" in message and "_Pickled" in message
    assert "weights_only=False" not in message and "weights_only" not in message.replace(
        "weights-only", ""
    )


class _Pickled:
    """An arbitrary object: torch's weights-only loader refuses to unpickle it."""
