"""Sweep specs: a base config, a table (or grid) of experiments, ordered phases.

A spec is YAML validated like a config (unknown keys fail, naming the key)::

    name: phase1_4                  # default: the spec file's stem
    base: ../f1_rgb_only.yaml       # relative to the spec file
    overrides: [training.max_steps=6000]
    experiments:                    # name -> overrides   (or `grid:`, not both)
      f1_rgb_only: []
      f2_rgb_seg: [model.seg_weight=0.05]
      f3_rgb_seg_cls:               # long form: overrides + this experiment's resources
        overrides: [model.cls_weight=0.01]
        resources: {gpu_model: NVIDIAA100_SXM4_80GB, queue: gpu_a100, memory: 64G}
    grid:                           # key -> values; one experiment per combination
      model.latent_channels: [4, 8]
    grid_labels: {model.latent_channels: c}   # run names c4, c8
    phases:                         # optional; each phase starts from the previous one
      - {name: 2a, overrides: [model.kl_weight=1e-5]}
      - {name: 2b, from: best, overrides: [model.kl_weight=1e-4]}
    resources: {gpus: 1, nodes: 1, cpus: 8, memory: 32G, time: "12:00", queue: gpu}
    primary_metric: val/loss
    mode: min
    seeds: [0, 1, 2]                # optional; every experiment once per seed
    decision_rules:                 # see framecast.experiments.rules for the language
      - {name: aux_helps, metric: val/loss, rule: "<= 1.02 * f1_rgb_only"}
      - {name: as_fast, metric: val/mse, rule: "converges no slower than f1_rgb_only"}
      - {name: as_stable, metric: val/mse, rule: "no less stable than f1_rgb_only"}

Run names: the experiment name, ``<experiment>_<phase>`` with phases, the phase name
alone when there is no table. :func:`expand_sweep` turns a spec into its runs (name,
phase, resolved config, predecessor) and validates every resolved config before
anything runs; a phase's config gets ``training.init_from`` = its predecessor's run.
With ``seeds`` the runs are ``<experiment>_s<seed>`` and decision rules name experiments
(arms), not runs: ``compare`` decides value and relative rules per arm on intervals over
seeds; their value rules must be affine in one arm (see :meth:`Rule.affine`).
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from framecast.config import Config, apply_overrides, validate_config
from framecast.config.loader import _format_errors, parse_override, read_yaml
from framecast.errors import ConfigError
from framecast.experiments.rules import (
    CurveRule,
    RelativeRule,
    Rule,
    RuleSyntaxError,
    parse_rule,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be letters, digits, '_', '.', '-' (it names a run directory)"
        )
    return value


def _current_metric(name: str) -> str:
    """A metric's current name (``eval/lpips`` -> ``eval/stlpips``), so specs written before
    a rename compare the same runs."""
    from framecast.eval.metrics import current_metric_name  # torch: only when a spec names one

    return current_metric_name(name)


def _check_overrides(values: list[str]) -> list[str]:
    for text in values:
        try:
            parse_override(text)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return values


class PhaseSpec(_Section):
    """One phase: its own overrides; it starts from the previous phase's checkpoint."""

    name: str
    overrides: list[str] = []
    from_: Literal["best", "last"] = Field("best", alias="from")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "phase name")

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: list[str]) -> list[str]:
        return _check_overrides(value)


class ResourceSpec(_Section):
    """Cluster resources of every job (``#BSUB`` / ``#SBATCH`` lines)."""

    gpus: NonNegativeInt = Field(1, description="GPUs per node (0: CPU job)")
    gpu_model: str | None = Field(
        None,
        description="GPU model: LSF -gpu gmodel=MODEL (as lshosts -gpu names it), "
        "Slurm --gpus-per-node=MODEL:N (the gres type)",
    )
    nodes: PositiveInt = 1
    cpus: PositiveInt = Field(4, description="CPU cores per GPU process (per job when gpus=0)")
    memory: str | None = Field(None, description="per node, e.g. 32G")
    lsf_memory: Literal["host", "slot"] = Field(
        "host",
        description="how the LSF rusage line says 'per node': host = rusage[mem=32G/host] "
        "(explicit method, LSF >= 10.1.0.9, whatever the cluster's default); slot = the "
        "node's memory divided by its slots, for older LSF with RESOURCE_RESERVE_PER_TASK=y",
    )
    time: str | None = Field(None, description="wall-clock limit H:MM or H:MM:SS")
    queue: str | None = Field(None, description="LSF queue")
    partition: str | None = Field(None, description="Slurm partition")
    account: str | None = Field(None, description="LSF project (-P) / Slurm account (-A)")
    lsf_extra: list[str] = Field([], description="extra '#BSUB' options, e.g. '-R select[a100]'")
    slurm_extra: list[str] = Field([], description="extra '#SBATCH' options, e.g. '--qos=high'")
    setup: list[str] = Field([], description="shell lines before the command (module load ...)")
    command_prefix: str | None = Field(
        None, description="launcher before 'framecast' (default: srun for multi-process Slurm)"
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+(\.\d+)?[KMGT]?B?", str(value), re.I):
            raise ValueError(f"expected an amount like 32G or 16000M, got {value!r}")
        return None if value is None else str(value).upper().removesuffix("B")

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+:[0-5]\d(:[0-5]\d)?", str(value)):
            raise ValueError(f"expected a wall-clock limit H:MM or H:MM:SS, got {value!r}")
        return value


class ExperimentSpec(_Section):
    """One experiment in the long form: its overrides and its own ``resources``.

    ``resources`` holds only the keys that differ from the spec's ``resources`` (e.g. another
    queue and GPU model for one experiment); the rest is inherited.
    """

    overrides: list[str] = []
    resources: dict[str, Any] = {}

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: list[str]) -> list[str]:
        return _check_overrides(value)

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, Any]) -> dict[str, Any]:
        ResourceSpec.model_validate(value)  # unknown keys and bad values fail here, named
        return value


class DecisionRuleSpec(_Section):
    """Verdict per run (per arm with seeds): ``<its metric value> <rule>``, e.g.
    ``<= 1.02 * f1_rgb_only``, a curve rule (``finite``) or a relative one
    (``converges no slower than f1_rgb_only``); see :mod:`framecast.experiments.rules`."""

    name: str
    rule: str
    metric: str | None = Field(None, description="default: the spec's primary_metric")
    mode: Literal["min", "max"] | None = Field(
        None,
        description="which way is better, for relative rules (default: the spec's mode for "
        "the primary metric, else from the metric's name as compare ranks it)",
    )
    value: Literal["best", "final"] = Field(
        "final",
        description="which value of each run: final (its last validation, the default) or "
        "best (its best over the validation curve: optimistic, labelled best-of-curve)",
    )
    runs: list[str] | None = Field(
        None,
        description="runs judged, or arms (experiments) with seeds (default: every run or "
        "arm the rule does not refer to)",
    )
    description: str = ""

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        return None if value is None else _current_metric(value)

    @field_validator("rule")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            parse_rule(value)
        except RuleSyntaxError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def parsed(self) -> Rule | CurveRule | RelativeRule:
        return parse_rule(self.rule)


class EvaluateSpec(_Section):
    """``framecast evaluate`` after each finished run (river and vaegan runs).

    Its means over horizons join the comparison as ``eval/<metric>`` (e.g. ``eval/psnr``,
    ``eval/smoke_psnr``, ``eval/temporal_mse``); per-horizon values stay in
    ``RUN/eval/<split>/``.
    """

    split: str = "test"
    context: PositiveInt | None = Field(None, description="default: training.condition_frames")
    frames: PositiveInt | None = Field(None, description="default: training.frames_to_generate")
    solver: Literal["euler", "midpoint", "heun", "rk4", "dopri5"] = "euler"
    steps: PositiveInt = 10
    warm_start: float = Field(0.0, ge=0, lt=1)
    samples: PositiveInt = 1
    which: Literal["best", "last"] = Field(
        "last", description="checkpoint evaluated (last: every arm after the same steps)"
    )
    max_clips: PositiveInt | None = None
    seed: int = 0


class SweepSpec(_Section):
    """A sweep: base config + common overrides + experiments or grid (+ phases)."""

    name: str | None = None
    description: str = ""
    base: str
    overrides: list[str] = []
    experiments: dict[str, list[str] | ExperimentSpec] | None = None
    grid: dict[str, list[Any]] | None = None
    grid_labels: dict[str, str] = Field(
        {}, description="short names of grid keys in run names (default: the key's last part)"
    )
    phases: list[PhaseSpec] | None = None
    resources: ResourceSpec = ResourceSpec()
    seeds: list[int] | None = Field(
        None,
        description="run every experiment once per seed (training.seed); run names get "
        "_s<seed>, and compare reports each experiment's mean ± std over its seeds",
    )
    evaluate: EvaluateSpec | None = Field(
        None, description="evaluate each finished run; its means join the comparison"
    )
    report_metrics: list[str] | None = Field(
        None,
        description="metrics compared arm by arm (with seeds) in this order; default: all",
    )
    primary_metric: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    decision_rules: list[DecisionRuleSpec] = []

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"expected distinct seeds, at least one, got {value}")
        return value

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: list[str]) -> list[str]:
        return _check_overrides(value)

    @field_validator("primary_metric")
    @classmethod
    def _primary_metric(cls, value: str) -> str:
        return _current_metric(value)

    @field_validator("report_metrics")
    @classmethod
    def _report_metrics(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_current_metric(m) for m in value]

    @field_validator("experiments")
    @classmethod
    def _experiments(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for name, entry in (value or {}).items():
            _check_name(str(name), "experiment name")
            if not isinstance(entry, ExperimentSpec):
                _check_overrides(entry or [])
        if value is not None and not value:
            raise ValueError("needs at least one experiment")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if value is not None:
            if not value:
                raise ValueError("needs at least one key")
            for key, values in value.items():
                if not values:
                    raise ValueError(f"key {key!r} has no values")
                _check_overrides([f"{key}={values[0]}"])
        return value

    def arm_names(self) -> list[str]:
        """The experiments (arms): the table's names, or the grid's run names."""
        if self.grid is not None:
            return list(_grid_experiments(self.grid, self.grid_labels))
        return list(self.experiments) if self.experiments is not None else [""]

    @model_validator(mode="after")
    def _one_table(self) -> SweepSpec:
        if self.experiments is not None and self.grid is not None:
            raise ValueError("give either 'experiments' or 'grid', not both")
        if self.phases is not None:
            if not self.phases:
                raise ValueError("'phases' needs at least one phase")
            names = [p.name for p in self.phases]
            if len(set(names)) != len(names):
                raise ValueError(f"phase names repeat: {names}")
        return self


@dataclass
class SweepRun:
    """One run of a sweep: a resolved config, and the run it starts from (phases)."""

    name: str
    experiment: str
    phase: str | None
    config: Config
    overrides: list[str]
    parent: str | None = None  # run name of the previous phase
    parent_which: str = "best"
    phase_index: int = 0
    resources: ResourceSpec | None = None  # the spec's, merged with the experiment's own
    seed: int | None = None  # with the spec's `seeds`: this run's training.seed


@dataclass
class Sweep:
    """An expanded spec: its runs in execution order (phases in order within each experiment)."""

    name: str
    spec: SweepSpec
    spec_path: Path
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def run_names(self) -> list[str]:
        return [r.name for r in self.runs]

    def run(self, name: str) -> SweepRun:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(name)


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a spec file; ConfigError names the file and the key."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        message = _format_errors(exc, f"sweep spec {path}", SweepSpec)
        raise ConfigError(message.replace("'from_'", "'from'")) from None


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    return str(value)


def _grid_experiments(grid: dict[str, list[Any]], labels: dict[str, str]) -> dict[str, list[str]]:
    keys = list(grid)
    out: dict[str, list[str]] = {}
    for combo in itertools.product(*(grid[k] for k in keys)):
        parts = [f"{labels.get(k, k.split('.')[-1])}{_value_text(v)}" for k, v in zip(keys, combo)]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "", "_".join(parts))
        out[name] = [f"{k}={_value_text(v)}" for k, v in zip(keys, combo)]
    return out


def expand_sweep(
    spec_path: str | os.PathLike,
    sweep_dir: str | os.PathLike | None = None,
    extra_overrides: list[str] | None = None,
) -> Sweep:
    """Validate ``spec_path`` and resolve every run's config (ConfigError before any work).

    ``sweep_dir`` is where the runs will live (phase configs point ``training.init_from``
    into it); ``extra_overrides`` apply to every run last (command-line ``k=v``).
    """
    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    name = spec.name or spec_path.stem
    _check_name_error(name, spec_path)
    base_path = (spec_path.parent / spec.base).resolve()
    if not base_path.is_file():
        raise ConfigError(
            f"sweep spec {spec_path}: key 'base' has value {spec.base!r}: no config at {base_path}"
        )
    base_raw = read_yaml(base_path)
    extra = list(extra_overrides or [])
    for text in extra:
        parse_override(text)
    if spec.grid is not None:
        experiments = _grid_experiments(spec.grid, spec.grid_labels)
    elif spec.experiments is not None:
        experiments = {
            k: list(v.overrides if isinstance(v, ExperimentSpec) else v or [])
            for k, v in spec.experiments.items()
        }
    else:
        experiments = {"": []}
    phases = spec.phases or [None]
    sweep_dir = Path(sweep_dir) if sweep_dir is not None else Path("runs") / name
    sweep = Sweep(name=name, spec=spec, spec_path=spec_path)
    seeds: list[int | None] = list(spec.seeds) if spec.seeds else [None]
    for experiment, exp_overrides, seed in (
        (e, o, s) for e, o in experiments.items() for s in seeds
    ):
        resources = experiment_resources(spec, experiment)
        previous: str | None = None
        seed_tag = f"s{seed}" if seed is not None else ""
        for index, phase in enumerate(phases):
            run_name = "_".join(p for p in (experiment, seed_tag, phase.name if phase else "") if p)
            overrides = [*spec.overrides, *exp_overrides]
            if seed is not None:
                overrides.append(f"training.seed={seed}")
            if phase is not None:
                overrides += phase.overrides
            overrides += extra
            if previous is not None:
                overrides += [
                    f"training.init_from={(sweep_dir / previous).resolve()}",
                    f"training.init_which={phase.from_}",
                ]
            source = f"sweep spec {spec_path} (run {run_name})"
            config = validate_config(apply_overrides(base_raw, overrides), source)
            sweep.runs.append(
                SweepRun(
                    name=run_name,
                    experiment=experiment,
                    phase=phase.name if phase else None,
                    config=config,
                    overrides=overrides,
                    parent=previous,
                    parent_which=phase.from_ if phase else "best",
                    phase_index=index,
                    resources=resources,
                    seed=seed,
                )
            )
            previous = run_name
    names = sweep.run_names
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep spec {spec_path}: run names repeat: {names}")
    check_rule_names(spec, f"sweep spec {spec_path}", names, list(experiments))
    return sweep


def check_rule_names(
    spec: SweepSpec, source: str, run_names: list[str], arms: list[str] | None = None
) -> None:
    """Every name a decision rule refers to or judges exists: a run, or with seeds an arm
    (``arms``, default :meth:`SweepSpec.arm_names`), where value rules must also be
    affine in one arm to have an interval. ConfigError naming the rule otherwise."""
    seeded = bool(spec.seeds)
    arms = spec.arm_names() if arms is None else arms
    known, what = (arms, "arm") if seeded else (run_names, "run")
    for i, rule in enumerate(spec.decision_rules):
        key = f"{source}: key 'decision_rules.{i}' ({rule.name}, {rule.rule!r})"
        for ref in [*rule.parsed.references, *(rule.runs or [])]:
            if ref not in known:
                hint = (
                    "; with seeds, rules name arms (experiments), not seeded runs"
                    if seeded and ref in run_names
                    else ""
                )
                raise ConfigError(
                    f"{key} refers to {what} {ref!r}; {what}s of this sweep: "
                    f"{', '.join(known)}{hint}"
                )
        if seeded and isinstance(rule.parsed, Rule):
            try:
                rule.parsed.affine()
            except RuleSyntaxError as exc:
                raise ConfigError(f"{key}: {exc}") from None


def experiment_resources(spec: SweepSpec, experiment: str) -> ResourceSpec:
    """The spec's ``resources`` with the experiment's own keys (long form) on top."""
    entry = (spec.experiments or {}).get(experiment)
    if not isinstance(entry, ExperimentSpec) or not entry.resources:
        return spec.resources
    merged = {**spec.resources.model_dump(exclude_unset=True), **entry.resources}
    return ResourceSpec.model_validate(merged)


def _check_name_error(name: str, spec_path: Path) -> None:
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"sweep spec {spec_path}: key 'name' has value {name!r}: use letters, digits, '_', '.', '-'"
        )
