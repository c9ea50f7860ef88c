"""Experiments at scale: sweep specs, local and cluster sweeps, run comparisons."""

from framecast.experiments.compare import Comparison, compare
from framecast.experiments.spec import Sweep, SweepSpec, expand_sweep, load_spec
from framecast.experiments.sweep import SweepResult, run_sweep

__all__ = [
    "Comparison",
    "Sweep",
    "SweepResult",
    "SweepSpec",
    "compare",
    "expand_sweep",
    "load_spec",
    "run_sweep",
]
