"""compare's rule for seeded arms on synthetic arms of known difference, and its outputs:
final values by default, best-of-curve only when asked and labelled, the rule stated."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from framecast.cli import main
from framecast.experiments.compare import ARM_RULE, RunSummary, compare, summarise_arms

REPO = Path(__file__).resolve().parents[2]
F1 = REPO / "configs" / "f1_rgb_only.yaml"
METRICS = ["eval/psnr", "eval/ssim", "eval/stlpips"]  # max, max, min


def _synthetic_runs(rng, delta: float, arms: int = 2, seeds: int = 3) -> list[RunSummary]:
    """Arm ``a0`` ahead of the others by ``delta`` seed-sd on every metric (higher PSNR and
    SSIM, lower LPIPS), the rest equal; one final value per run and metric."""
    runs = []
    for arm in range(arms):
        for seed in range(seeds):
            ahead = delta if arm == 0 else 0.0
            values = rng.normal(0.0, 1.0, len(METRICS)) + ahead
            final = {
                "eval/psnr": 20.0 + values[0],
                "eval/ssim": 0.8 + 0.01 * values[1],
                "eval/stlpips": 0.1 - 0.001 * values[2],
            }
            runs.append(
                RunSummary(f"a{arm}_s{seed}", Path("."), "done", final=final, arm=f"a{arm}")
            )
    return runs


@pytest.mark.parametrize("arms", [2, 3])
def test_a_true_lead_is_found_and_a_null_one_is_not_called_clear(arms):
    """500 seeded sweeps per case, 3 seeds per arm, 3 metrics (about 2 s). Measured
    (2 arms / 3 arms): a lead of 6 seed-sd is called clear on 87 % / 84 % of metrics,
    never for the wrong arm; with no difference, 4.0 % / 0.2 % of sweeps call any metric
    clear (family-wise α = 5 %; per metric 1.3 % / 0.07 %)."""
    rng = np.random.default_rng(100 + arms)
    draws = 500
    found = false_sweeps = 0
    for _ in range(draws):
        _, winners = summarise_arms(_synthetic_runs(rng, 6.0, arms), METRICS, METRICS[0], "max")
        assert [w.mode for w in winners] == ["max", "max", "min"]
        assert all(w.winner == "a0" for w in winners if w.clear)
        found += sum(w.clear for w in winners)
        _, null = summarise_arms(_synthetic_runs(rng, 0.0, arms), METRICS, METRICS[0], "max")
        false_sweeps += any(w.clear for w in null)
        for w in null:  # every clear verdict is one whose interval excludes 0
            assert w.clear == all(iv.low > 0 for iv in w.leads.values())
            assert w.family == 3 and w.level == pytest.approx(1 - 0.05 / 3)
    power, false_rate = found / (3 * draws), false_sweeps / draws
    assert power >= (0.8 if arms == 2 else 0.7), power
    assert false_rate <= 0.05, false_rate


def _write_runs(folder: Path, curves: dict[str, list[float]]) -> None:
    for name, values in curves.items():
        (folder / name).mkdir(parents=True)
        rows = "\n".join(f"{i},{v}" for i, v in enumerate(values))
        (folder / name / "metrics.csv").write_text(f"step,val/psnr\n{rows}\n")


def test_compare_uses_final_values_and_writes_the_intervals(tmp_path, capsys):
    """Arm b peaks early (best-of-curve 30 dB) and ends low; arm a ends clearly ahead."""
    folder = tmp_path / "runs"
    _write_runs(
        folder,
        {
            "a_s0": [20.0, 25.0],
            "a_s1": [20.0, 25.5],
            "a_s2": [20.0, 24.5],
            "b_s0": [30.0, 21.0],
            "b_s1": [29.0, 21.5],
            "b_s2": [30.5, 20.5],
        },
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"base: {F1}\nexperiments: {{a: [], b: []}}\nseeds: [0, 1, 2]\n"
        "primary_metric: val/psnr\nmode: max\nreport_metrics: [val/psnr]\n"
    )
    final = compare(folder, spec=spec, plots=False)
    assert final.value == "final" and final.runs[0].name.startswith("a")
    [winner] = final.winners
    assert winner.winner == "a" and winner.clear and winner.margin == pytest.approx(4.0)
    lead = winner.leads["b"]
    assert lead.diff == pytest.approx(4.0) and lead.low > 0 and lead.level == pytest.approx(0.95)
    text = final.format()
    assert "each run's final value" in text and "ranked by val/psnr (max), its final" in text
    assert " ".join(ARM_RULE.split()) in " ".join(text.split())  # wrapped in the terminal
    assert "+4 [+" in text and "a (clear)" in text
    markdown = final.files["table"].read_text()
    assert ARM_RULE in markdown and "| val/psnr | a | b | 4 |" in markdown
    with open(final.files["arm_leads"], newline="") as f:
        [row] = list(csv.DictReader(f))
    assert (row["best_arm"], row["vs"], row["clear"], row["value"]) == ("a", "b", "True", "final")
    assert float(row["low"]) == pytest.approx(lead.low)

    best = compare(folder, spec=spec, plots=False, best_of_curve=True)
    assert best.value == "best" and best.runs[0].name.startswith("b")
    assert best.winners[0].winner == "b"
    text = best.format()
    assert "BEST-OF-CURVE" in text and "ranked by val/psnr (max), its BEST-OF-CURVE" in text
    assert "BEST-OF-CURVE" in best.files["table"].read_text()

    out = tmp_path / "cli"
    assert main(["compare", str(folder), "--spec", str(spec), "--no-plots", "--out", str(out)]) == 0
    assert "a (clear)" in capsys.readouterr().out
    args = ["compare", str(folder), "--spec", str(spec), "--no-plots", "--best-of-curve"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "BEST-OF-CURVE" in printed and "b (clear)" in printed


def test_compare_groups_seeds_and_reads_evaluations_of_runs_made_outside_a_sweep(tmp_path, capsys):
    """--seeded --evaluation test: river_s* and simvp_s* (no sweep, no spec) become two arms
    compared on their framecast evaluate results (RUN/eval/test/metrics.json)."""
    import json

    folder = tmp_path / "runs"
    psnr = {"river_s0": 25.0, "river_s1": 25.4, "river_s2": 24.8}
    psnr |= {"simvp_s0": 22.0, "simvp_s1": 22.5, "simvp_s2": 21.9}
    _write_runs(folder, {name: [10.0, 12.0] for name in psnr})
    for name, value in psnr.items():
        kind = name.split("_")[0]
        methods = {
            kind: {"psnr": {"mean": value, "per_horizon": [value + 1, value - 1]}},
            "copy_last": {"psnr": {"mean": 20.0, "per_horizon": [21.0, 19.0]}},
        }
        out = folder / name / "eval" / "test"
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"kind": kind, "methods": methods}))

    plain = compare(folder, plots=False)
    assert all(r.arm is None for r in plain.runs) and "eval/psnr" not in plain.metrics

    result = compare(
        folder, plots=False, seeded=True, evaluation="test", primary_metric="eval/psnr", mode="max"
    )
    assert {r.arm for r in result.runs} == {"river", "simvp"}
    assert result.runs[0].final["eval/psnr"] == pytest.approx(25.4)
    [winner] = [w for w in result.winners if w.metric == "eval/psnr"]
    assert winner.winner == "river" and winner.clear
    assert winner.leads["simvp"].diff == pytest.approx(25.066666 - 22.133333, abs=1e-5)
    rows = list(csv.DictReader(open(result.files["arms_per_horizon"], newline="")))
    arms = {(r["arm"], r["metric"], r["horizon"]) for r in rows}
    assert {("river", "psnr", "1"), ("simvp", "psnr", "2"), ("copy_last", "psnr", "1")} <= arms

    args = ["compare", str(folder), "--seeded", "--evaluation", "test", "--no-plots"]
    assert main([*args, "--primary-metric", "eval/psnr", "--mode", "max"]) == 0
    assert "river (clear)" in capsys.readouterr().out


def test_runs_and_specs_from_before_the_stlpips_rename_still_compare(tmp_path):
    """``lpips`` was the name of the ST-LPIPS metric until 2026-12-03: a run's ``val/lpips``
    column, an evaluation's ``lpips`` and a spec's ``eval/lpips`` read as ``stlpips``."""
    import json

    from framecast.experiments.compare import compare
    from framecast.experiments.spec import SweepSpec

    folder = tmp_path / "runs"
    for name, value in {"a_s0": 0.05, "a_s1": 0.06}.items():
        (folder / name / "eval" / "test").mkdir(parents=True)
        (folder / name / "metrics.csv").write_text(f"step,val/lpips\n0,{value}\n")
        evaluation = {"kind": "river", "methods": {"river": {"lpips": {"mean": value}}}}
        (folder / name / "eval" / "test" / "metrics.json").write_text(json.dumps(evaluation))
    comparison = compare(folder, primary_metric="val/lpips", plots=False, evaluation="test")
    assert comparison.primary_metric == "val/stlpips"
    run = {r.name: r for r in comparison.runs}["a_s0"]
    assert run.final["val/stlpips"] == 0.05 and run.final["eval/stlpips"] == 0.05
    assert "val/lpips" not in run.final and "eval/lpips" not in run.final
    spec = SweepSpec.model_validate(
        {
            "base": "x.yaml",
            "primary_metric": "eval/lpips",
            "report_metrics": ["eval/psnr", "eval/lpips", "val/avg_val_lpips"],
        }
    )
    assert spec.primary_metric == "eval/stlpips"
    assert spec.report_metrics == ["eval/psnr", "eval/stlpips", "val/avg_val_lpips"]
