"""Two processes on one run folder (issue 23 item 13): the second stops with one line
naming the holder; a lock whose process died is taken over; the lock goes with the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framecast.cli import main
from framecast.errors import ConfigError
from framecast.training.run import lock_path, run_lock

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from framecast.training.run import run_lock
with run_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(runs: Path, name: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(runs), name], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_train_of_a_held_run_is_one_line_naming_the_holder(tmp_path, capsys):
    runs = tmp_path / "runs"
    holder = _hold(runs, "r")
    try:
        config = str(REPO / "configs" / "ae_smoke.yaml")
        argv = ["train", "--config", config, "--runs-dir", str(runs), "--run-name", "r"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"is in use by pid {holder.pid}" in err and str(lock_path(runs, "r")) in err
        assert not (runs / "r").exists()  # nothing written into the held run
        assert main([*argv[:-2], "--run-name", "r", "--resume"]) == 2  # resume too
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    runs = tmp_path / "runs"
    holder = _hold(runs, "r")
    os.kill(holder.pid, signal.SIGKILL)  # no finally runs: the lock file stays
    holder.wait()
    assert lock_path(runs, "r").exists()
    with run_lock(runs, "r") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert f"pid {holder.pid}" in err and "has exited" in err
    assert not lock_path(runs, "r").exists()  # released on exit


def test_the_lock_is_released_on_errors_and_held_against_this_process_too(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError):
        with run_lock(runs, "r"):
            with pytest.raises(ConfigError, match="is in use by pid"):
                with run_lock(runs, "r"):
                    pass
            raise RuntimeError("boom")
    assert not lock_path(runs, "r").exists()
    # A lock another host holds cannot be checked: it is respected.
    lock_path(runs, "r").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(ConfigError, match="pid 1 on elsewhere since x"):
        with run_lock(runs, "r"):
            pass
    # An unreadable lock is a holder still writing it, until it is old.
    lock_path(runs, "r").write_text("")
    with pytest.raises(ConfigError, match="still writing its lock"):
        with run_lock(runs, "r"):
            pass
    old = time.time() - 3600
    os.utime(lock_path(runs, "r"), (old, old))
    with run_lock(runs, "r"):
        pass
