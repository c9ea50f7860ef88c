"""A training process killed hard after a checkpoint resumes to the same end as one that
was never interrupted: same final step, the same logged steps, no duplicated rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from framecast.config import save_config
from framecast.training.engine import train
from framecast.training.loggers import read_metrics_csv

REPO = Path(__file__).resolve().parents[2]

# os._exit: no cleanup, no final checkpoint, like SIGKILL from a scheduler.
KILLED_SCRIPT = textwrap.dedent(
    """
    import os, sys

    import lightning.pytorch as pl

    from framecast.config import load_config
    from framecast.training.engine import train


    class KillAfter(pl.Callback):
        def __init__(self, step):
            self.step = step

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step >= self.step:
                sys.stdout.flush()
                os._exit(9)


    config_path, runs_dir, kill_step = sys.argv[1], sys.argv[2], int(sys.argv[3])
    train(load_config(config_path), runs_dir=runs_dir, run_name="run", progress=False,
          callbacks=[KillAfter(kill_step)])
    """
)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_end(tmp_path, tiny_dataset, shrink):
    config = shrink(REPO / "configs" / "ae_smoke.yaml", tiny_dataset, max_steps=6)
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"val_every_n_steps": 2})}
    )
    config_path = save_config(config, tmp_path / "config.yaml")

    reference = train(config, runs_dir=tmp_path / "ref", run_name="run", progress=False)

    runs = tmp_path / "killed"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(config_path), str(runs), "5"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 9, done.stderr[-2000:]
    assert (runs / "run" / "checkpoints" / "last.ckpt").is_file()  # written at step 4

    resumed = train(None, runs_dir=runs, run_name="run", resume=True, progress=False)
    assert resumed.global_step == reference.global_step == 6
    steps = [int(row["step"]) for row in read_metrics_csv(resumed.run_dir / "metrics.csv")]
    assert steps == sorted(set(steps))  # no duplicated rows
    expected = [int(row["step"]) for row in read_metrics_csv(reference.run_dir / "metrics.csv")]
    assert steps == expected
