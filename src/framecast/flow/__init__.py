"""framecast.flow: the probability path and the ODE solvers of stage 2 (RIVER flow matching)."""

from framecast.flow.path import DEFAULT_SIGMA, CondOTPath, PathSample
from framecast.flow.solvers import SOLVERS, ODEResult, SolverConfig, solve

__all__ = [
    "DEFAULT_SIGMA",
    "SOLVERS",
    "CondOTPath",
    "ODEResult",
    "PathSample",
    "SolverConfig",
    "solve",
]
