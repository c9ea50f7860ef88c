"""LSF and Slurm job scripts: resources, one script per run, phase dependencies, submit."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from framecast.errors import FramecastError
from framecast.experiments.sweep import run_sweep

REPO = Path(__file__).resolve().parents[2]
KL = REPO / "configs" / "sweeps" / "kl_annealing.yaml"
PHASE1_4 = REPO / "configs" / "sweeps" / "phase1_4.yaml"


def _spec(tmp_path: Path) -> Path:
    """Two experiments × two phases, with every kind of resource."""
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        f"""
name: cluster
base: {REPO / "configs" / "vae_smoke.yaml"}
experiments: {{small: [model.latent_channels=4], big: []}}
phases:
  - {{name: p1}}
  - {{name: p2, from: last, overrides: [model.kl_weight=1.0e-3]}}
resources:
  gpus: 4
  nodes: 2
  cpus: 6
  memory: 64GB
  time: "2:30:20"
  queue: gpu_long
  partition: a100
  account: proj42
  lsf_extra: ['-R "select[a100]"']
  slurm_extra: [--qos=high]
  setup: [module load cuda/12.4, source ~/venv/bin/activate]
"""
    )
    return spec


def test_lsf_scripts(tmp_path):
    result = run_sweep(_spec(tmp_path), tmp_path / "runs", launcher="lsf", dry_run=True)
    jobs = result.sweep_dir / "jobs"
    assert sorted(p.name for p in jobs.glob("*.lsf")) == [
        "big_p1.lsf",
        "big_p2.lsf",
        "small_p1.lsf",
        "small_p2.lsf",
    ]
    text = (jobs / "small_p2.lsf").read_text()
    for line in [
        "#BSUB -J cluster.small_p2",
        "#BSUB -n 48",  # 2 nodes × 4 GPUs × 6 cores
        '#BSUB -R "span[ptile=24]"',
        '#BSUB -gpu "num=4:mode=exclusive_process"',
        # Per node whatever the cluster's reservation default (per host, or per slot).
        '#BSUB -R "rusage[mem=64G/host]"',
        "#BSUB -M 64G",  # a per-process (or per-job) limit, never per slot
        "#BSUB -W 2:31",  # minute resolution, rounded up
        # Pre-emption (issue 23 item 12): SIGUSR1 two minutes before the limit; framecast
        # saves and exits 128 + signal, which LSF requeues; the script then resumes.
        "#BSUB -wa USR1",
        "#BSUB -wt 2",
        '#BSUB -Q "138 140 143"',
        "  exec framecast train",
        "#BSUB -q gpu_long",
        "#BSUB -P proj42",
        '#BSUB -R "select[a100]"',
        "module load cuda/12.4",
        f"--config {result.sweep_dir / 'configs' / 'small_p2.yaml'}",
        f"--runs-dir {result.sweep_dir} --run-name small_p2 --num-gpus 4 --num-nodes 2",
        "--resume",
    ]:
        assert line in text, line
    assert os.stat(jobs / "small_p2.lsf").st_mode & stat.S_IXUSR
    config = (result.sweep_dir / "configs" / "small_p2.yaml").read_text()
    assert f"init_from: {result.sweep_dir / 'small_p1'}" in config and "init_which: last" in config

    submit = (jobs / "submit.sh").read_text()
    assert "JOB_0=$(bsub < small_p1.lsf" in submit
    assert 'JOB_1=$(bsub -w "done(${JOB_0})" < small_p2.lsf' in submit
    assert "JOB_2=$(bsub < big_p1.lsf" in submit
    assert 'JOB_3=$(bsub -w "done(${JOB_2})" < big_p2.lsf' in submit
    status = json.loads((result.sweep_dir / "sweep_status.json").read_text())
    assert {e["status"] for e in status["runs"].values()} == {"pending"}


def test_slurm_scripts(tmp_path):
    result = run_sweep(_spec(tmp_path), tmp_path / "runs", launcher="slurm", dry_run=True)
    jobs = result.sweep_dir / "jobs"
    text = (jobs / "big_p1.slurm").read_text()
    for line in [
        "#SBATCH --job-name=cluster.big_p1",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --mem=64G",
        "#SBATCH --time=2:30:20",
        "#SBATCH --partition=a100",
        "#SBATCH --account=proj42",
        "#SBATCH --qos=high",
        "exec srun framecast train",  # one task per GPU for Lightning's SLURMEnvironment
        "#SBATCH --signal=B:USR1@120",  # to the batch shell, exec'd into srun (forwards it)
        "#SBATCH --requeue",  # framecast asks scontrol to requeue after saving
    ]:
        assert line in text, line
    submit = (jobs / "submit.sh").read_text()
    assert "JOB_0=$(sbatch --parsable small_p1.slurm" in submit
    assert "JOB_1=$(sbatch --parsable --dependency=afterok:${JOB_0} small_p2.slurm" in submit
    assert "JOB_3=$(sbatch --parsable --dependency=afterok:${JOB_2} big_p2.slurm" in submit


def _fake_tool(bin_dir: Path, name: str, output: str) -> Path:
    """A fake bsub/sbatch: logs its arguments, prints a job id from a counter."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / f"{name}.log"
    tool = bin_dir / name
    tool.write_text(
        f"""#!/bin/bash
n=$(( $(cat {bin_dir}/count 2>/dev/null || echo 100) + 1 )); echo $n > {bin_dir}/count
echo "$@" >> {log}
cat > /dev/null <&0 || true
echo "{output}"
"""
    )
    tool.chmod(0o755)
    return log


@pytest.mark.parametrize(
    ("launcher", "tool", "output", "dependency"),
    [
        ("lsf", "bsub", "Job <$n> is submitted to queue <gpu>.", "-w done({})"),
        ("slurm", "sbatch", "$n;cluster", "--parsable --dependency=afterok:{}"),
    ],
)
def test_submit_with_fake_scheduler(tmp_path, monkeypatch, launcher, tool, output, dependency):
    log = _fake_tool(tmp_path / "bin", tool, output)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = run_sweep(KL, tmp_path / "runs", launcher=launcher, submit=True)
    assert result.job_ids == {"2a": "101", "2b": "102", "2c": "103"}
    calls = log.read_text().splitlines()
    assert len(calls) == 3
    assert dependency.format(101) in calls[1] and dependency.format(102) in calls[2]
    status = json.loads((result.sweep_dir / "sweep_status.json").read_text())["runs"]
    assert status["2c"]["status"] == "submitted" and status["2c"]["job_id"] == "103"


def test_submit_without_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to("/bin/bash")
    for tool in ("sed", "head", "cut", "dirname", "cat"):
        found = next(Path(p) / tool for p in ["/usr/bin", "/bin"] if (Path(p) / tool).exists())
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(FramecastError, match="is bsub on PATH"):
        run_sweep(PHASE1_4, tmp_path / "runs", launcher="lsf", submit=True)


def _two_gpu_types(tmp_path: Path, lsf_memory: str = "host") -> Path:
    """phase1_4's experiments, F3 in the long form on another queue and GPU model."""
    spec = tmp_path / "gpu_types.yaml"
    spec.write_text(
        f"""
name: gpu_types
base: {REPO / "configs" / "f1_rgb_only.yaml"}
experiments:
  f1_rgb_only: []
  f2_rgb_seg: [model.seg_weight=0.05, model.seg_classes=2]
  f3_rgb_seg_cls:
    overrides: [model.seg_weight=0.05, model.cls_weight=0.01, model.seg_classes=2,
                model.num_classes=3]
    resources: {{queue: gpu_h100, gpu_model: NVIDIAH100, memory: 96G}}
resources:
  {{gpus: 1, cpus: 8, memory: 32G, queue: gpu_v100, partition: v100, gpu_model: TeslaV100,
    lsf_memory: {lsf_memory}, time: "6:00"}}
"""
    )
    return spec


def test_an_experiment_overrides_its_resources(tmp_path):
    lsf = run_sweep(_two_gpu_types(tmp_path), tmp_path / "lsf", launcher="lsf", dry_run=True)
    jobs = lsf.sweep_dir / "jobs"
    for run in ("f1_rgb_only", "f2_rgb_seg"):
        text = (jobs / f"{run}.lsf").read_text()
        assert "#BSUB -q gpu_v100" in text
        assert '#BSUB -gpu "num=1:mode=exclusive_process:gmodel=TeslaV100"' in text
        assert '#BSUB -R "rusage[mem=32G/host]"' in text
    f3 = (jobs / "f3_rgb_seg_cls.lsf").read_text()
    assert "#BSUB -q gpu_h100" in f3 and "gpu_v100" not in f3
    assert '#BSUB -gpu "num=1:mode=exclusive_process:gmodel=NVIDIAH100"' in f3
    assert '#BSUB -R "rusage[mem=96G/host]"' in f3 and "#BSUB -M 96G" in f3
    assert "#BSUB -W 6:00" in f3  # inherited from the spec's resources
    # The experiment's overrides still apply.
    config = (lsf.sweep_dir / "configs" / "f3_rgb_seg_cls.yaml").read_text()
    assert "cls_weight: 0.01" in config

    slurm = run_sweep(_two_gpu_types(tmp_path), tmp_path / "slurm", launcher="slurm", dry_run=True)
    jobs = slurm.sweep_dir / "jobs"
    assert "#SBATCH --gpus-per-node=TeslaV100:1" in (jobs / "f1_rgb_only.slurm").read_text()
    f3 = (jobs / "f3_rgb_seg_cls.slurm").read_text()
    assert "#SBATCH --gpus-per-node=NVIDIAH100:1" in f3 and "#SBATCH --mem=96G" in f3
    assert "#SBATCH --partition=v100" in f3  # not overridden: inherited


def test_lsf_memory_per_node_with_eight_slots(tmp_path):
    # -n 8 on one node: LSF reserves rusage mem per host by default, per slot where the
    # cluster sets RESOURCE_RESERVE_PER_TASK=y. "host" names the method, so 32G means the
    # node on either cluster; "slot" divides by the 8 slots for LSF without the method.
    host = run_sweep(_two_gpu_types(tmp_path), tmp_path / "host", launcher="lsf", dry_run=True)
    text = (host.sweep_dir / "jobs" / "f1_rgb_only.lsf").read_text()
    assert "#BSUB -n 8" in text and '#BSUB -R "span[hosts=1]"' in text
    assert '#BSUB -R "rusage[mem=32G/host]"' in text and "#BSUB -M 32G" in text

    slot_spec = _two_gpu_types(tmp_path, lsf_memory="slot")
    slot = run_sweep(slot_spec, tmp_path / "slot", launcher="lsf", dry_run=True)
    text = (slot.sweep_dir / "jobs" / "f1_rgb_only.lsf").read_text()
    assert '#BSUB -R "rusage[mem=4096M]"' in text  # 32G / 8 slots
    assert "#BSUB -M 32G" in text  # the limit is per process (or job), never per slot
    f3 = (slot.sweep_dir / "jobs" / "f3_rgb_seg_cls.lsf").read_text()
    assert '#BSUB -R "rusage[mem=12288M]"' in f3  # 96G / 8


def test_lsf_memory_per_slot_on_several_nodes(tmp_path):
    from framecast.experiments.launchers import lsf_memory_lines
    from framecast.experiments.spec import ResourceSpec

    res = ResourceSpec(gpus=4, nodes=2, cpus=6, memory="100G", lsf_memory="slot")
    # 24 slots per host (span[ptile=24]); 100 GiB / 24 rounded up to whole MB.
    assert lsf_memory_lines(res, 24)[0] == '#BSUB -R "rusage[mem=4267M]"'
    assert lsf_memory_lines(ResourceSpec(memory="1.5G"), 3) == [
        '#BSUB -R "rusage[mem=1.5G/host]"',
        "#BSUB -M 1.5G",
    ]
    assert lsf_memory_lines(ResourceSpec(), 8) == []
