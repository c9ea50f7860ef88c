"""Install metadata: torch is a range in pyproject.toml (a user's own torch 2.x build stays
installed) and pinned exactly in constraints.txt (what `make install` and the suite use)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
requirements = pytest.importorskip("packaging.requirements")
version = pytest.importorskip("packaging.version")

REPO = Path(__file__).resolve().parents[1]


def _torch_requirement():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [requirements.Requirement(r) for r in project["dependencies"]]
    (torch_req,) = [r for r in reqs if r.name == "torch"]
    return torch_req


def test_torch_is_a_range_in_pyproject_and_exact_in_constraints():
    spec = _torch_requirement().specifier
    assert not any(s.operator in ("==", "===") for s in spec), f"torch pinned exactly: {spec}"
    pins = [
        line.split("#")[0].strip()
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line.strip().startswith("torch")
    ]
    assert pins == ["torch==2.13.0"]
    # the tested pin, the torch running this suite, and nearby user builds are all allowed
    installed = version.Version(torch.__version__).base_version
    for v in ("2.13.0", installed, "2.5.1", "2.14.1+cu130", "2.99"):
        assert spec.contains(v, prereleases=False), (v, spec)
    for v in ("2.4.1", "1.13.1", "3.0.0"):
        assert not spec.contains(v), (v, spec)
