"""Multi-process training (CPU DDP over gloo), cluster detection, seeding, W&B, progress bars."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from framecast.config import apply_overrides, save_config, validate_config
from framecast.errors import ConfigError
from framecast.training import engine
from framecast.training.engine import (
    _trainer_devices,
    cluster_environment,
    detect_cluster,
    launch_rank_is_zero,
    train,
)
from framecast.training.loggers import read_metrics_csv

REPO = Path(__file__).resolve().parents[2]
AE_SMOKE = REPO / "configs" / "ae_smoke.yaml"
# The VAE-GAN steps two optimisers by hand: its gradients must be all-reduced as well.
VAEGAN = REPO / "configs" / "wubu_vaegan.yaml"
# So does the stage-1 autoencoder with its PatchGAN discriminator (active from step 0).
AE_DISC = ["model.discriminator.enabled=true", "model.discriminator.disc_start=0"]

# Launched in a fresh interpreter: Lightning's DDP launcher re-runs this script once per
# extra rank (LOCAL_RANK=1), so the test process itself never joins a process group.
DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path

    import lightning.pytorch as pl

    from framecast.config import load_config
    from framecast.training.engine import train

    config_path, runs_dir, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])


    def state_hash(named):
        digest = hashlib.sha256()
        for name, value in sorted(named):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


    class Record(pl.Callback):
        # Which clips each rank trained on, and hashes of its weights: the model's state at
        # the end; the parameters of the autoencoder's separate discriminator (if any) at the
        # start and the end. Not its BatchNorm running statistics: DDP keeps those per rank
        # (rank 0's are broadcast at every forward and saved), by design.
        def __init__(self):
            self.seen = []
            self.disc_start = None

        def on_train_start(self, trainer, module):
            if getattr(module, "adversarial", None) is not None:
                self.disc_start = state_hash(module.adversarial.named_parameters())

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.seen.append([trainer.current_epoch, batch["video_index"].tolist()])

        def on_train_end(self, trainer, module):
            record = {"hash": state_hash(module.model.state_dict().items()), "seen": self.seen,
                      "world_size": trainer.world_size, "disc_start": self.disc_start}
            if self.disc_start is not None:
                record["disc_end"] = state_hash(module.adversarial.named_parameters())
            (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


    train(load_config(config_path), runs_dir=runs_dir, run_name="ddp", num_processes=2,
          progress=False, callbacks=[Record()])
    """
)


def _param_hash(state: dict) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, value in sorted(state.items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shipped", "overrides"),
    [(AE_SMOKE, []), (AE_SMOKE, AE_DISC), (VAEGAN, [])],
    ids=["ae_smoke", "ae_smoke_discriminator", "wubu_vaegan"],
)
def test_two_process_cpu_ddp_identical_parameters_one_metrics_file(
    shipped, overrides, tmp_path, tiny_dataset, shrink
):
    from framecast.checkpoint import model_state_dict, read_checkpoint

    config = shrink(shipped, tiny_dataset, max_steps=2)
    config = validate_config(apply_overrides(config.to_dict(), overrides), "test")
    config_path = tmp_path / "config.yaml"
    save_config(config, config_path)
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(script), str(config_path), str(runs), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # DDP keeps the replicas in step: same parameters on both ranks, and in the checkpoint.
    assert ranks[0]["hash"] == ranks[1]["hash"]
    if overrides == AE_DISC:
        # The discriminator trained (its weights moved) and stayed in step across ranks.
        assert ranks[0]["disc_start"] == ranks[1]["disc_start"]
        assert ranks[0]["disc_end"] != ranks[0]["disc_start"]
        assert ranks[0]["disc_end"] == ranks[1]["disc_end"]
    run = runs / "ddp"
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert _param_hash(model_state_dict(ckpt)) == ranks[0]["hash"]
    assert ckpt["global_step"] == 2
    # Data sharded per rank: each epoch, the two ranks train on different clips.
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 2
    for (epoch0, clips0), (epoch1, clips1) in zip(ranks[0]["seen"], ranks[1]["seen"], strict=True):
        assert epoch0 == epoch1
        assert not set(clips0) & set(clips1)
    # Only rank 0 wrote: one metrics.csv, one row per step, one config.
    assert sorted(p.name for p in run.rglob("metrics.csv")) == ["metrics.csv"]
    steps = [int(row["step"]) for row in read_metrics_csv(run / "metrics.csv")]
    assert steps and len(steps) == len(set(steps))
    assert (run / "config.yaml").is_file()


# Each rank's random state at the start of every training step (the flow-matching times,
# noise and frame indices, dropout and the VAE-GAN's latent draws all come from these
# generators), for a fresh run or a resume to MAX_STEPS.
RNG_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, random, sys
    from pathlib import Path

    import lightning.pytorch as pl
    import numpy as np
    import torch

    from framecast.config import load_config
    from framecast.training.engine import train

    config_path, runs_dir, out, mode, max_steps = sys.argv[1:6]


    class Record(pl.Callback):
        def __init__(self):
            self.states = {}

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            digest = hashlib.sha256(torch.get_rng_state().numpy().tobytes())
            digest.update(np.random.get_state()[1].tobytes())
            digest.update(repr(random.getstate()).encode())
            self.states[trainer.global_step] = digest.hexdigest()

        def on_train_end(self, trainer, module):
            path = Path(out) / f"{mode}_rank{trainer.global_rank}.json"
            path.write_text(json.dumps(self.states))


    overrides = [f"training.max_steps={max_steps}"]
    if mode == "resume":
        train(None, runs_dir=runs_dir, run_name="ddp", resume=True, overrides=overrides,
              num_processes=2, progress=False, callbacks=[Record()])
    else:
        train(load_config(config_path), runs_dir=runs_dir, run_name="ddp", num_processes=2,
              overrides=overrides, progress=False, callbacks=[Record()])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("shipped", [REPO / "configs" / "river_tiny.yaml", VAEGAN],
                         ids=["river", "wubu_vaegan"])  # fmt: skip
def test_ranks_draw_their_own_numbers_and_resume_them(shipped, tmp_path, tiny_dataset, shrink):
    """Every rank has its own random stream (not rank 0's copied), and a resumed two-process
    run continues each rank's stream exactly where the interrupted one left it."""
    config = shrink(shipped, tiny_dataset, max_steps=4)
    config.training.limit_val_batches = 0
    config_path = save_config(config, tmp_path / "config.yaml")
    script = tmp_path / "rng.py"
    script.write_text(RNG_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()

    def launch(runs: str, mode: str, max_steps: int) -> list[dict[str, str]]:
        argv = [sys.executable, str(script), str(config_path), str(tmp_path / runs), str(out)]
        proc = subprocess.run([*argv, mode, str(max_steps)], capture_output=True, text=True,
                              timeout=240, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return [json.loads((out / f"{mode}_rank{r}.json").read_text()) for r in (0, 1)]

    whole = launch("whole", "whole", 4)
    assert list(whole[0]) == list(whole[1]) == ["0", "1", "2", "3"]
    for step in whole[0]:  # the ranks never draw the same numbers
        assert whole[0][step] != whole[1][step]
    first = launch("stopped", "first", 2)
    resumed = launch("stopped", "resume", 4)
    assert first == [{s: states[s] for s in ("0", "1")} for states in whole]
    assert resumed == [{s: states[s] for s in ("2", "3")} for states in whole]


def test_rng_restore_reads_single_state_checkpoints_and_seeds_ranks_it_lacks():
    from types import SimpleNamespace

    import torch

    from framecast.training.callbacks import RestoreRNG, capture_rng, rank_seed

    torch.manual_seed(3)
    old = capture_rng()  # a checkpoint written before per-rank states: rank 0's state alone
    expected = torch.rand(3)
    callback = RestoreRNG(seed=0)
    callback.load_state_dict(old)
    torch.manual_seed(99)
    callback.on_train_start(SimpleNamespace(global_rank=0, global_step=5), None)
    assert torch.equal(torch.rand(3), expected)
    # A resume on more processes: rank 1 has no stored state and gets its own stream.
    callback.load_state_dict({"ranks": [old]})
    callback.on_train_start(SimpleNamespace(global_rank=1, global_step=5), None)
    drawn = torch.rand(3)
    torch.manual_seed(rank_seed(0, 1, 5))
    assert torch.equal(torch.rand(3), drawn)
    assert len({rank_seed(0, 1, 5), rank_seed(0, 1), rank_seed(0, 2), rank_seed(1, 1)}) == 4


def _train_losses(config, runs: Path, name: str) -> list[float]:
    train(config, runs_dir=runs, run_name=name, progress=False)
    rows = read_metrics_csv(runs / name / "metrics.csv")
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(losses) == 2
    return losses


@pytest.mark.slow
def test_random_seed_reproduces_losses(tmp_path, tiny_dataset, shrink):
    config = shrink(AE_SMOKE, tiny_dataset, max_steps=2)
    config.training.limit_val_batches = 0  # the training losses are what is compared
    seeded = config.model_copy(deep=True)
    seeded.training.seed = 7
    other = config.model_copy(deep=True)
    other.training.seed = 8
    first = _train_losses(seeded, tmp_path, "a")
    again = _train_losses(seeded, tmp_path, "b")
    different = _train_losses(other, tmp_path, "c")
    assert first == again
    assert first != different


def test_detect_cluster():
    assert detect_cluster({}) is None
    assert detect_cluster({"SLURM_JOB_ID": "42", "SLURM_NTASKS": "4"}) == "slurm"
    assert detect_cluster({"LSB_JOBID": "17"}) == "lsf"
    assert detect_cluster({"SLURM_JOB_ID": ""}) is None


def test_cluster_environment_plugins(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.environments import LSFEnvironment, SLURMEnvironment

    assert cluster_environment({}) is None
    slurm = {"SLURM_JOB_ID": "1", "SLURM_NTASKS": "2", "SLURM_JOB_NAME": "train"}
    assert isinstance(cluster_environment(slurm), SLURMEnvironment)
    # An interactive Slurm shell: Lightning starts the processes itself.
    assert cluster_environment({**slurm, "SLURM_JOB_NAME": "bash"}) is None
    rankfile = tmp_path / "rankfile"
    host = socket.gethostname()
    rankfile.write_text(f"batchhost\n{host}\n{host}\n")
    jsrun = {
        "LSB_JOBID": "3",
        "LSB_DJOB_RANKFILE": str(rankfile),
        "JSM_NAMESPACE_LOCAL_RANK": "0",
        "JSM_NAMESPACE_SIZE": "2",
        "JSM_NAMESPACE_RANK": "0",
    }
    for name, value in jsrun.items():  # LSFEnvironment() reads the rank file from os.environ
        monkeypatch.setenv(name, value)
    assert isinstance(cluster_environment(jsrun), LSFEnvironment)
    # An LSF job without jsrun: Lightning's own launcher.
    assert cluster_environment({"LSB_JOBID": "3"}) is None


def test_launch_rank_is_zero():
    assert launch_rank_is_zero({})
    assert launch_rank_is_zero({"LOCAL_RANK": "0", "NODE_RANK": "0", "SLURM_PROCID": "0"})
    assert not launch_rank_is_zero({"LOCAL_RANK": "1"})
    assert not launch_rank_is_zero({"LOCAL_RANK": "0", "NODE_RANK": "1"})
    assert not launch_rank_is_zero({"SLURM_PROCID": "3"})
    assert not launch_rank_is_zero({"JSM_NAMESPACE_RANK": "2"})


def test_trainer_devices_cpu_processes():
    assert _trainer_devices(0, 1) == {
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
    }
    ddp = _trainer_devices(0, 1, num_processes=2)
    assert ddp["devices"] == 2 and ddp["strategy"] == "ddp" and ddp["accelerator"] == "cpu"
    assert _trainer_devices(0, 2)["strategy"] == "ddp"
    with pytest.raises(ConfigError, match="--num-processes"):
        _trainer_devices(0, 1, num_processes=0)


def test_multi_process_run_needs_a_run_name(tmp_path, tiny_dataset, shrink):
    config = shrink(AE_SMOKE, tiny_dataset, max_steps=2)
    with pytest.raises(ConfigError, match="--run-name"):
        train(config, runs_dir=tmp_path, num_processes=2, progress=False)
    assert not any(tmp_path.iterdir())


def test_cli_num_processes_flag(monkeypatch):
    from framecast import cli

    seen = {}

    def fake_train(config, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(engine, "train", fake_train)
    with pytest.raises(SystemExit):
        cli.main(["train", "--resume", "--run-name", "r", "--num-processes", "3"])
    assert seen["num_processes"] == 3


def test_wandb_missing_gives_clear_error(tmp_path, tiny_dataset, shrink, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    config = shrink(AE_SMOKE, tiny_dataset, max_steps=2)
    config.logging.wandb = True
    with pytest.raises(ConfigError, match=r"pip install 'framecast\[wandb\]'"):
        train(config, runs_dir=tmp_path, run_name="w", progress=False)


@pytest.mark.slow
def test_wandb_offline_writes_into_run_dir(tmp_path, tiny_dataset, shrink, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = shrink(AE_SMOKE, tiny_dataset, max_steps=2)
    config.logging.wandb = True
    config.logging.wandb_offline = True
    train(config, runs_dir=tmp_path, run_name="w", progress=False)
    (offline,) = (tmp_path / "w" / "wandb").glob("offline-run-*")
    # The run's sample grids went along as media.
    assert list(offline.rglob("media/images/samples/*.png"))


def test_progress_bar_choice(monkeypatch):
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert isinstance(engine._progress_bar(1), TQDMProgressBar)
    pytest.importorskip("rich")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert isinstance(engine._progress_bar(1), RichProgressBar)


def test_find_unused_parameters_only_where_a_second_player_trains(tiny_dataset, shrink):
    from framecast.training.tasks import get_task

    config = shrink(AE_SMOKE, tiny_dataset, max_steps=2)
    task = get_task("autoencoder")
    assert not task.needs_find_unused_parameters(config)
    with_disc = validate_config(apply_overrides(config.to_dict(), AE_DISC), "test")
    assert task.needs_find_unused_parameters(with_disc)
    assert get_task("vaegan").needs_find_unused_parameters(shrink(VAEGAN, tiny_dataset))
