"""``framecast sweep SPEC``: run a sweep locally in order, or write/submit cluster jobs.

Layout of ``RUNS_DIR/<sweep>/``::

    sweep.yaml            the spec as run (base path made absolute), read by compare
    sweep_status.json     per run: pending | running | done | failed | submitted, error, step
    configs/<run>.yaml    each run's resolved config (what the job scripts train)
    <run>/                the run directories (config.yaml, metrics.csv, checkpoints/, ...)
    jobs/                 with --launcher: <run>.lsf|.slurm, submit.sh, logs/

Locally, runs go one after another (phases in order). The sweep is resumable: a run
whose ``last.ckpt`` reached ``training.max_steps`` is skipped, an interrupted one resumes
from ``last.ckpt``. A run that crashes is recorded as failed (its traceback in
``<run>/sweep_error.txt``) and the sweep goes on; a phase whose predecessor left no
checkpoint fails with a message naming that predecessor.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from framecast.checkpoint import load_checkpoint_file, resolve_checkpoint
from framecast.config import save_config
from framecast.errors import CheckpointError, ConfigError, FramecastError
from framecast.experiments.launchers import LAUNCHERS, write_job_scripts
from framecast.experiments.spec import EvaluateSpec, Sweep, SweepRun, expand_sweep, load_spec
from framecast.utils import atomic_write_text

STATUS_FILE = "sweep_status.json"
SPEC_FILE = "sweep.yaml"


@dataclass
class SweepResult:
    """What ``run_sweep`` did: the sweep folder, each run's status, job scripts and ids."""

    sweep_dir: Path
    runs: dict[str, dict[str, Any]]
    launcher: str | None = None
    submit_script: Path | None = None
    job_ids: dict[str, str] = field(default_factory=dict)
    config_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, entry in self.runs.items() if entry.get("status") == "failed"]

    def format(self) -> str:
        lines = [f"sweep: {self.sweep_dir}"]
        for name, entry in self.runs.items():
            status = entry.get("status", "pending")
            extra = ""
            if entry.get("job_id"):
                extra = f" job {entry['job_id']}"
            elif entry.get("global_step") is not None:
                extra = f" step {entry['global_step']}"
            if entry.get("error"):
                extra += f" — {entry['error']}"
            lines.append(f"  {name}: {status}{extra}")
        if self.submit_script is not None:
            lines.append(f"job scripts: {self.submit_script.parent}")
            lines.append(f"submit with: bash {self.submit_script}")
        lines.append(f"status: {self.sweep_dir / STATUS_FILE}")
        return "\n".join(lines)


def read_status(sweep_dir: str | os.PathLike) -> dict[str, Any]:
    """``sweep_status.json`` of a sweep folder ({} when there is none)."""
    path = Path(sweep_dir) / STATUS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); delete it to start over") from None


class _Status:
    def __init__(self, sweep: Sweep, sweep_dir: Path):
        self.path = sweep_dir / STATUS_FILE
        self.data = read_status(sweep_dir) or {}
        self.data.update({"sweep": sweep.name, "spec": str(sweep.spec_path.resolve())})
        runs = self.data.setdefault("runs", {})
        self.data["runs"] = {
            r.name: runs.get(r.name, {"status": "pending", "phase": r.phase}) for r in sweep.runs
        }
        for r in sweep.runs:  # compare groups seeded runs by experiment
            self.data["runs"][r.name].update(experiment=r.experiment, seed=r.seed)

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        return self.data["runs"]

    def set(self, name: str, **values: Any) -> None:
        self.runs[name].update(values)
        self.runs[name]["updated"] = _dt.datetime.now().isoformat(timespec="seconds")
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=False) + "\n")


def _write_spec(sweep: Sweep, sweep_dir: Path) -> None:
    data = sweep.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["name"] = sweep.name
    data["base"] = str((sweep.spec_path.parent / sweep.spec.base).resolve())
    atomic_write_text(sweep_dir / SPEC_FILE, yaml.safe_dump(data, sort_keys=False))


def _finished_step(
    run: SweepRun, sweep_dir: Path, entry: dict[str, Any]
) -> tuple[int | None, bool]:
    """(global step of last.ckpt or None, finished?)."""
    last = sweep_dir / run.name / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None, False
    step = int(load_checkpoint_file(last).get("global_step", 0))
    max_steps = run.config.training.max_steps
    if max_steps > 0:
        return step, step >= max_steps
    return step, entry.get("status") == "done"  # epoch-limited: trust the recorded status


def _config_changed(run: SweepRun, run_dir: Path) -> bool:
    """Whether a finished run was trained with another config than the spec resolves to now."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return False
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) != run.config.to_dict()
    except yaml.YAMLError:
        return True


def run_sweep(
    spec_path: str | os.PathLike,
    runs_dir: str | os.PathLike = "runs",
    launcher: str | None = None,
    submit: bool = False,
    dry_run: bool = False,
    extra_overrides: list[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run (locally, in order) or write/submit (``launcher``) the sweep of ``spec_path``.

    ``extra_overrides`` apply to every run after the spec's own (e.g. ``data.root=...``).
    Every resolved config is validated before anything runs or is written.
    """
    say = echo or (lambda text: None)
    if launcher is not None and launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    if submit and launcher is None:
        raise ConfigError("--submit needs --launcher lsf or --launcher slurm")
    if submit and dry_run:
        raise ConfigError("--submit and --dry-run exclude each other")
    spec = load_spec(spec_path)
    name = spec.name or Path(spec_path).stem
    sweep_dir = Path(runs_dir).resolve() / name
    sweep = expand_sweep(spec_path, sweep_dir, extra_overrides)

    sweep_dir.mkdir(parents=True, exist_ok=True)
    _write_spec(sweep, sweep_dir)
    config_paths = {
        run.name: save_config(run.config, sweep_dir / "configs" / f"{run.name}.yaml")
        for run in sweep.runs
    }
    result = SweepResult(sweep_dir=sweep_dir, runs={}, launcher=launcher, config_paths=config_paths)

    if launcher is not None:
        result.submit_script = write_job_scripts(launcher, sweep, sweep_dir, config_paths)
        status = _Status(sweep, sweep_dir)
        if submit:
            result.job_ids = _submit(result.submit_script, launcher)
            for run_name, job_id in result.job_ids.items():
                status.set(run_name, status="submitted", job_id=job_id, launcher=launcher)
        else:
            status.save()
        result.runs = status.runs
        return result
    if dry_run:
        result.runs = {r.name: {"status": "planned", "phase": r.phase} for r in sweep.runs}
        return result

    status = _Status(sweep, sweep_dir)
    for run in sweep.runs:
        _run_one(run, sweep_dir, status, say)
        if spec.evaluate is not None and status.runs[run.name].get("status") == "done":
            _evaluate_one(run, sweep_dir, spec.evaluate, status, say)
    result.runs = status.runs
    return result


def evaluation_dir(run_dir: Path, evaluation: EvaluateSpec) -> Path:
    """Where a sweep's ``evaluate`` step writes a run's results (metrics.json, CSV, PNGs)."""
    return run_dir / "eval" / evaluation.split


def _evaluate_one(
    run: SweepRun,
    sweep_dir: Path,
    evaluation: EvaluateSpec,
    status: _Status,
    say: Callable[[str], None],
) -> None:
    """``framecast evaluate`` on a finished run, unless its results are newer than the
    checkpoint they were computed from."""
    from framecast.eval.evaluate import evaluate
    from framecast.flow.sampling import SamplerConfig
    from framecast.flow.solvers import SolverConfig

    run_dir = sweep_dir / run.name
    out = evaluation_dir(run_dir, evaluation)
    try:
        checkpoint = resolve_checkpoint(run_dir, which=evaluation.which)
    except CheckpointError as exc:
        status.set(run.name, evaluation_error=str(exc))
        say(f"{run.name}: not evaluated — {exc}")
        return
    metrics = out / "metrics.json"
    if metrics.is_file() and metrics.stat().st_mtime >= checkpoint.stat().st_mtime:
        say(f"{run.name}: evaluation up to date ({metrics})")
        return
    say(f"{run.name}: evaluating the {evaluation.which} checkpoint on split {evaluation.split!r}")
    sampler = SamplerConfig(
        SolverConfig(evaluation.solver, evaluation.steps), warm_start=evaluation.warm_start
    )
    try:
        result = evaluate(
            run_dir,
            run.config.data.root,
            split=evaluation.split,
            out=out,
            context=evaluation.context,
            frames=evaluation.frames,
            sampler=sampler,
            samples=evaluation.samples,
            seed=evaluation.seed,
            max_clips=evaluation.max_clips,
            which=evaluation.which,
            progress=False,
        )
    except FramecastError as exc:  # a run that cannot be evaluated must not stop the sweep
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        status.set(run.name, evaluation_error=first)
        say(f"{run.name}: evaluation failed — {first}")
        return
    status.set(run.name, evaluation=str(result.files["metrics"]), evaluation_error=None)
    say(f"{run.name}: evaluated into {out}")


def _run_one(run: SweepRun, sweep_dir: Path, status: _Status, say: Callable[[str], None]) -> None:
    from framecast.training import engine

    entry = status.runs[run.name]
    run_dir = sweep_dir / run.name
    try:
        step, finished = _finished_step(run, sweep_dir, entry)
    except CheckpointError as exc:  # a corrupt last.ckpt: start the run over
        say(f"{run.name}: {exc}; starting over")
        step, finished = None, False
    if finished:
        changed = _config_changed(run, run_dir)
        say(
            f"{run.name}: finished at step {step}, skipped"
            + (
                " (its config differs from the spec's now; delete the run to retrain)"
                if changed
                else ""
            )
        )
        status.set(
            run.name,
            status="done",
            global_step=step,
            run_dir=str(run_dir),
            error=None,
            config_changed=changed,
        )
        return
    resume = step is not None
    if run.parent is not None and not resume:
        parent_dir = sweep_dir / run.parent
        try:
            resolve_checkpoint(parent_dir, which=run.parent_which)
        except CheckpointError as exc:
            parent_status = status.runs.get(run.parent, {}).get("status", "pending")
            message = (
                f"phase {run.phase} starts from the {run.parent_which} checkpoint of run "
                f"{run.parent} (status: {parent_status}), which has none: {exc}"
            )
            say(f"{run.name}: failed — {message}")
            status.set(run.name, status="failed", error=message, run_dir=str(run_dir))
            return
    say(f"{run.name}: {'resuming from step ' + str(step) if resume else 'training'}")
    status.set(run.name, status="running", run_dir=str(run_dir), error=None)
    started = time.monotonic()
    try:
        if resume:
            result = engine.train(
                None,
                sweep_dir,
                run.name,
                resume=True,
                overrides=[f"training.max_steps={run.config.training.max_steps}"],
            )
        else:
            result = engine.train(run.config, sweep_dir, run.name, overwrite=run_dir.exists())
    except KeyboardInterrupt:
        status.set(run.name, status="interrupted")
        raise
    except Exception as exc:  # noqa: BLE001 - any crash of one run must not stop the sweep
        first = str(exc).splitlines()[0] if str(exc) else ""
        message = f"{type(exc).__name__}: {first}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "sweep_error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        say(f"{run.name}: failed — {message}")
        status.set(
            run.name,
            status="failed",
            error=message,
            user_error=isinstance(exc, FramecastError),
            seconds=round(time.monotonic() - started, 1),
        )
        return
    status.set(
        run.name,
        status="done",
        global_step=result.global_step,
        best_checkpoint=str(result.best_checkpoint) if result.best_checkpoint else None,
        last_checkpoint=str(result.last_checkpoint) if result.last_checkpoint else None,
        seconds=round(time.monotonic() - started, 1),
    )
    say(f"{run.name}: done at step {result.global_step}")


def _submit(submit_script: Path, launcher: str) -> dict[str, str]:
    try:
        proc = subprocess.run(
            ["bash", str(submit_script)], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise FramecastError(f"could not run {submit_script}: {exc}") from None
    ids: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            ids[parts[0]] = parts[1]
    if proc.returncode != 0:
        tool = "bsub" if launcher == "lsf" else "sbatch"
        detail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise FramecastError(
            f"{submit_script} failed (exit {proc.returncode}) after submitting "
            f"{len(ids)} job(s): {detail} (is {tool} on PATH?)"
        )
    return ids
