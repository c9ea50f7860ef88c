"""Cluster job scripts for a sweep: one LSF or Slurm script per run, and ``submit.sh``.

Each script trains one run with ``framecast train --config <resolved config>``; a job
requeued after its run wrote ``last.ckpt`` resumes instead of starting over. ``submit.sh``
submits the scripts in order, captures each job id and makes a phase's job depend on its
predecessor's (LSF ``-w "done(ID)"``, Slurm ``--dependency=afterok:ID``), so a phase
starts only after the previous one finished successfully. Each run's resources are the
spec's, with its experiment's own ``resources`` on top (e.g. F3 on another GPU model).

Memory is per node in the spec. LSF reserves ``rusage[mem=X]`` per host by default but per
task (slot) where the cluster sets ``RESOURCE_RESERVE_PER_TASK=y``, so the same line can ask
for 8 × the memory of a ``-n 8`` job. ``lsf_memory: host`` (default) writes the method
explicitly, ``rusage[mem=X/host]`` (LSF 10.1.0.9 and later; a job-level method overrides
queue and cluster), which means per node on every cluster. ``lsf_memory: slot`` divides the
node's memory by its slots instead, for older LSF that reserves per task. ``-M`` is a
per-process limit (per job with ``LSB_JOB_MEMLIMIT=y``), never per slot: it keeps the
per-node amount.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

from framecast.experiments.spec import ResourceSpec, Sweep, SweepRun
from framecast.utils import atomic_write_text

LAUNCHERS = ("lsf", "slurm")
_LSF_REQUEUE_EXIT_VALUES = "138 140 143"  # framecast stopped by SIGUSR1, SIGUSR2, SIGTERM
SUFFIX = {"lsf": ".lsf", "slurm": ".slurm"}


def _lsf_time(time: str) -> str:
    parts = time.split(":")
    hours, minutes = int(parts[0]), int(parts[1])
    if len(parts) == 3 and int(parts[2]) > 0:
        minutes += 1  # LSF -W has minute resolution; round up
    hours, minutes = hours + minutes // 60, minutes % 60
    return f"{hours}:{minutes:02d}"


def _slurm_time(time: str) -> str:
    return time if time.count(":") == 2 else f"{time}:00"


_UNIT_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}


def _megabytes(memory: str) -> float:
    """'32G' → 32768.0 (a bare number counts as MB, as in Slurm's --mem)."""
    unit = memory[-1] if memory[-1] in _UNIT_MB else "M"
    return float(memory.rstrip("KMGT")) * _UNIT_MB[unit]


def lsf_memory_lines(res: ResourceSpec, slots_per_host: int) -> list[str]:
    """``#BSUB`` lines that reserve and limit ``res.memory`` per node (see module doc)."""
    if not res.memory:
        return []
    if res.lsf_memory == "slot":
        per_slot = math.ceil(_megabytes(res.memory) / slots_per_host)
        rusage = f"mem={per_slot}M"
    else:
        rusage = f"mem={res.memory}/host"
    return [f'#BSUB -R "rusage[{rusage}]"', f"#BSUB -M {res.memory}"]


def _lsf_gpu(res: ResourceSpec) -> str:
    model = f":gmodel={res.gpu_model}" if res.gpu_model else ""
    return f'#BSUB -gpu "num={res.gpus}:mode=exclusive_process{model}"'


def _train_command(
    run: SweepRun, config_path: Path, sweep_dir: Path, res: ResourceSpec, launcher: str
) -> list[str]:
    base = [
        "framecast",
        "train",
        "--runs-dir",
        str(sweep_dir),
        "--run-name",
        run.name,
        "--num-gpus",
        str(res.gpus),
        "--num-nodes",
        str(res.nodes),
    ]
    prefix = res.command_prefix
    if prefix is None and launcher == "slurm" and (res.gpus > 1 or res.nodes > 1):
        prefix = "srun"  # Lightning's SLURMEnvironment: one task per GPU
    head = f"{prefix} " if prefix else ""
    fresh = " ".join(shlex.quote(a) for a in [*base, "--config", str(config_path)])
    resume = " ".join(shlex.quote(a) for a in [*base, "--resume"])
    last = shlex.quote(str(sweep_dir / run.name / "checkpoints" / "last.ckpt"))
    return [
        "# A requeued job continues its run instead of starting over. exec: the scheduler's",
        "# warning signal reaches framecast, which saves last.ckpt and exits 128 + signal.",
        f"if [ -f {last} ]; then",
        f"  exec {head}{resume}",
        "else",
        f"  exec {head}{fresh}",
        "fi",
    ]


def job_script(
    launcher: str, sweep: Sweep, run: SweepRun, config_path: Path, sweep_dir: Path
) -> str:
    """The text of one run's job script."""
    res = run.resources or sweep.spec.resources
    job_name = f"{sweep.name}.{run.name}"
    logs = sweep_dir / "jobs" / "logs"
    lines = ["#!/bin/bash"]
    if launcher == "lsf":
        procs = res.nodes * max(1, res.gpus)
        slots_per_host = max(1, res.gpus) * res.cpus if res.gpus else res.cpus
        lines += [
            f"#BSUB -J {job_name}",
            f"#BSUB -n {procs * res.cpus if res.gpus else res.cpus}",
            f"#BSUB -o {logs}/{run.name}.%J.out",
            f"#BSUB -e {logs}/{run.name}.%J.err",
        ]
        if res.nodes > 1:
            lines.append(f'#BSUB -R "span[ptile={slots_per_host}]"')
        else:
            lines.append('#BSUB -R "span[hosts=1]"')
        if res.gpus:
            lines.append(_lsf_gpu(res))
        lines += lsf_memory_lines(res, slots_per_host)
        if res.time:
            lines.append(f"#BSUB -W {_lsf_time(res.time)}")
            # SIGUSR1 2 minutes before the limit; framecast saves and exits 138 (128 + 10),
            # which LSF requeues (-Q), or 143 after a SIGTERM (bkill, preemption).
            lines += ["#BSUB -wa USR1", "#BSUB -wt 2"]
        lines.append(f'#BSUB -Q "{_LSF_REQUEUE_EXIT_VALUES}"')
        if res.queue:
            lines.append(f"#BSUB -q {res.queue}")
        if res.account:
            lines.append(f"#BSUB -P {res.account}")
        lines += [f"#BSUB {extra}" for extra in res.lsf_extra]
    elif launcher == "slurm":
        lines += [
            f"#SBATCH --job-name={job_name}",
            f"#SBATCH --nodes={res.nodes}",
            f"#SBATCH --ntasks-per-node={max(1, res.gpus)}",
            f"#SBATCH --cpus-per-task={res.cpus}",
            f"#SBATCH --output={logs}/{run.name}.%j.out",
            f"#SBATCH --error={logs}/{run.name}.%j.err",
        ]
        if res.gpus:
            model = f"{res.gpu_model}:" if res.gpu_model else ""
            lines.append(f"#SBATCH --gpus-per-node={model}{res.gpus}")
        if res.memory:
            lines.append(f"#SBATCH --mem={res.memory}")
        if res.time:
            lines.append(f"#SBATCH --time={_slurm_time(res.time)}")
        # SIGUSR1 to the batch shell (exec'd into framecast or srun, which forwards it) 120 s
        # before the limit: framecast saves last.ckpt and asks scontrol to requeue the job.
        lines += ["#SBATCH --signal=B:USR1@120", "#SBATCH --requeue"]
        if res.partition:
            lines.append(f"#SBATCH --partition={res.partition}")
        if res.account:
            lines.append(f"#SBATCH --account={res.account}")
        lines += [f"#SBATCH {extra}" for extra in res.slurm_extra]
    else:
        raise ValueError(f"unknown launcher {launcher!r}; expected one of {LAUNCHERS}")
    lines += [
        "",
        f"# framecast sweep {sweep.name}: run {run.name}"
        + (f" (phase {run.phase}, from {run.parent_which} of {run.parent})" if run.parent else ""),
        "set -euo pipefail",
        *res.setup,
        *_train_command(run, config_path, sweep_dir, res, launcher),
        "",
    ]
    return "\n".join(lines)


def submit_script(launcher: str, sweep: Sweep, scripts: dict[str, Path]) -> str:
    """``submit.sh``: submit in order, capture ids, chain phases by dependencies."""
    lines = [
        "#!/bin/bash",
        f"# Submit the {len(scripts)} jobs of sweep {sweep.name}; prints 'RUN JOBID' per job.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "",
    ]
    var = {run.name: f"JOB_{i}" for i, run in enumerate(sweep.runs)}
    for run in sweep.runs:
        script = shlex.quote(scripts[run.name].name)
        if launcher == "lsf":
            dep = f'-w "done(${{{var[run.parent]}}})" ' if run.parent else ""
            submit = (
                f"bsub {dep}< {script} | sed -n 's/^Job <\\([0-9][0-9]*\\)>.*/\\1/p' | head -n 1"
            )
        else:
            dep = f"--dependency=afterok:${{{var[run.parent]}}} " if run.parent else ""
            submit = f"sbatch --parsable {dep}{script} | cut -d';' -f1"
        lines += [
            f"{var[run.name]}=$({submit})",
            f'if [ -z "${{{var[run.name]}}}" ]; then echo "submitting {run.name} failed" >&2; '
            "exit 1; fi",
            f'echo "{run.name} ${{{var[run.name]}}}"',
        ]
    return "\n".join(lines) + "\n"


def write_job_scripts(
    launcher: str, sweep: Sweep, sweep_dir: Path, config_paths: dict[str, Path]
) -> Path:
    """Write ``jobs/<run>.lsf|.slurm`` and ``jobs/submit.sh``; return the submit script."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; expected one of {LAUNCHERS}")
    jobs = sweep_dir / "jobs"
    (jobs / "logs").mkdir(parents=True, exist_ok=True)
    scripts: dict[str, Path] = {}
    for run in sweep.runs:
        path = jobs / f"{run.name}{SUFFIX[launcher]}"
        atomic_write_text(path, job_script(launcher, sweep, run, config_paths[run.name], sweep_dir))
        path.chmod(0o755)
        scripts[run.name] = path
    submit = jobs / "submit.sh"
    atomic_write_text(submit, submit_script(launcher, sweep, scripts))
    submit.chmod(0o755)
    return submit
