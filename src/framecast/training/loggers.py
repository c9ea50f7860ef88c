"""The always-on CSV logger: ``runs/<run>/metrics.csv``, one row per step.

Lightning's own CSVLogger writes into version sub-folders and duplicates rows when a
run resumes. This one keeps one file per run, merges metrics logged at the same step
into one row, rewrites the file atomically on each flush, and on resume drops rows
newer than the checkpoint it resumes from, so a killed and resumed run has no
duplicated steps.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from framecast.utils import atomic_write_text

FLUSH_EVERY = 50


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a metrics CSV as dicts of floats (empty cells left out)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


class RunCSVLogger(Logger):
    """Wide CSV of every logged metric, keyed by global step."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        super().__init__()
        self.path = Path(path)
        self._rows: dict[int, dict[str, float]] = {}
        if resume_step is not None:
            for row in read_metrics_csv(self.path):
                step = int(row.get("step", -1))
                if step <= resume_step:  # rows after the checkpoint will be logged again
                    self._rows[step] = row

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return "0"

    @property
    @rank_zero_experiment
    def experiment(self) -> RunCSVLogger:
        return self

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        # The resolved config is saved as config.yaml beside this file.
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        step = int(step if step is not None else metrics.get("step", 0))
        row = self._rows.setdefault(step, {"step": step})
        for key, value in metrics.items():
            value = float(value.item() if hasattr(value, "item") else value)
            if key != "epoch" or not math.isnan(value):
                row[key] = value
        # Written after every validation and every FLUSH_EVERY rows: a crashed run keeps its curve.
        if any(key.startswith("val/") for key in metrics) or len(self._rows) % FLUSH_EVERY == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        if not self._rows:
            return
        columns = ["step", "epoch"]
        for row in self._rows.values():
            columns.extend(k for k in row if k not in columns)
        columns = [c for c in columns if any(c in r for r in self._rows.values())]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for step in sorted(self._rows):
            writer.writerow({k: _fmt(v) for k, v in self._rows[step].items()})
        atomic_write_text(self.path, buffer.getvalue())

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
