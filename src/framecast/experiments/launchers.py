"""Cluster job scripts for a sweep: one LSF or Slurm script per run, and ``submit.sh``.

Each script trains one run with ``framecast train --config <resolved config>``; a job
requeued after its run wrote ``last.ckpt`` resumes instead of starting over. ``submit.sh``
submits the scripts in order, captures each job id and makes a phase's job depend on its
predecessor's (LSF ``-w "done(ID)"``, Slurm ``--dependency=afterok:ID``), so a phase
starts only after the previous one finished successfully.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from framecast.experiments.spec import ResourceSpec, Sweep, SweepRun
from framecast.utils import atomic_write_text

LAUNCHERS = ("lsf", "slurm")
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
        "# A requeued job continues its run instead of starting over.",
        f"if [ -f {last} ]; then",
        f"  {head}{resume}",
        "else",
        f"  {head}{fresh}",
        "fi",
    ]


def job_script(
    launcher: str, sweep: Sweep, run: SweepRun, config_path: Path, sweep_dir: Path
) -> str:
    """The text of one run's job script."""
    res = sweep.spec.resources
    job_name = f"{sweep.name}.{run.name}"
    logs = sweep_dir / "jobs" / "logs"
    lines = ["#!/bin/bash"]
    if launcher == "lsf":
        procs = res.nodes * max(1, res.gpus)
        lines += [
            f"#BSUB -J {job_name}",
            f"#BSUB -n {procs * res.cpus if res.gpus else res.cpus}",
            f"#BSUB -o {logs}/{run.name}.%J.out",
            f"#BSUB -e {logs}/{run.name}.%J.err",
        ]
        if res.nodes > 1:
            lines.append(f'#BSUB -R "span[ptile={max(1, res.gpus) * res.cpus}]"')
        else:
            lines.append('#BSUB -R "span[hosts=1]"')
        if res.gpus:
            lines.append(f'#BSUB -gpu "num={res.gpus}:mode=exclusive_process"')
        if res.memory:
            lines.append(f'#BSUB -R "rusage[mem={res.memory}]"')
            lines.append(f"#BSUB -M {res.memory}")
        if res.time:
            lines.append(f"#BSUB -W {_lsf_time(res.time)}")
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
            lines.append(f"#SBATCH --gpus-per-node={res.gpus}")
        if res.memory:
            lines.append(f"#SBATCH --mem={res.memory}")
        if res.time:
            lines.append(f"#SBATCH --time={_slurm_time(res.time)}")
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
