"""Local sweeps at tiny settings: phase1_4 end to end, crashes, phases, resume; compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from framecast.cli import main
from framecast.config.loader import read_yaml
from framecast.experiments.compare import compare
from framecast.experiments.rules import interval_verdict
from framecast.experiments.sweep import run_sweep
from framecast.training import engine
from framecast.training.loggers import read_metrics_csv

REPO = Path(__file__).resolve().parents[2]
F1 = REPO / "configs" / "f1_rgb_only.yaml"


def _status(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep_status.json").read_text())["runs"]


def _crash_on(monkeypatch, names: set[str]) -> list[str]:
    """Make engine.train raise for run names in ``names``; return the names it was called for."""
    real, called = engine.train, []

    def fake(config, runs_dir, run_name, *args, **kwargs):
        called.append(run_name)
        if run_name in names:
            raise RuntimeError(f"simulated crash of {run_name}")
        return real(config, runs_dir, run_name, *args, **kwargs)

    monkeypatch.setattr(engine, "train", fake)
    return called


@pytest.mark.slow
def test_phase1_4_end_to_end_compare_and_skip_finished(tmp_path, tiny_sweep_overrides, monkeypatch):
    """The shipped phase1_4 spec (3 arms x 3 seeds), each run shrunk to 2 CPU steps on tiny
    frames: every run trains, compare judges F2 and F3 against F1's seeds arm by arm."""
    spec = REPO / "configs" / "sweeps" / "phase1_4.yaml"
    result = run_sweep(spec, tmp_path, extra_overrides=tiny_sweep_overrides())
    arms = ["f1_rgb_only", "f2_rgb_seg", "f3_rgb_seg_cls"]
    names = [f"{arm}_s{seed}" for arm in arms for seed in (0, 1, 2)]
    assert list(result.runs) == names and not result.failed
    assert all(_status(result.sweep_dir)[n]["status"] == "done" for n in names)
    for name in names:
        assert (result.sweep_dir / name / "checkpoints" / "last.ckpt").is_file()
        assert (result.sweep_dir / "configs" / f"{name}.yaml").is_file()

    comparison = compare(result.sweep_dir)
    assert comparison.primary_metric == "val/mse"
    assert sorted(r.rank for r in comparison.runs) == list(range(1, 10))
    final = [r.final["val/mse"] for r in comparison.runs]  # ranked by final values
    assert final == sorted(final)
    assert [a.name for a in comparison.arms] == arms
    verdicts = {(v.rule, v.run): v for v in comparison.verdicts}
    judged = ("f2_rgb_seg", "f3_rgb_seg_cls")
    arm_rules = ("aux_losses_help", "converges_no_slower", "no_less_stable", "seg_head_accurate")
    assert set(verdicts) == {
        *((rule, arm) for rule in arm_rules for arm in judged),
        ("cls_head_accurate", "f3_rgb_seg_cls"),
        *((rule, run) for rule in ("finite_loss", "val_not_rising") for run in names),
    }
    finals = {a: [r.final["val/mse"] for r in comparison.runs if r.arm == a] for a in arms}
    f1 = np.mean(finals["f1_rgb_only"])
    for arm in judged:
        mse = verdicts[("aux_losses_help", arm)]
        assert mse.arm and mse.n == 3 and mse.n_reference == 3
        assert mse.value == pytest.approx(np.mean(finals[arm]))  # final values, mean of seeds
        assert mse.reference_value == pytest.approx(f1)
        assert mse.threshold == pytest.approx(1.02 * f1)
        assert mse.low <= mse.difference <= mse.high
        assert mse.verdict == interval_verdict("<=", mse.low, mse.high)
        speed = verdicts[("converges_no_slower", arm)]
        assert speed.measure == f"steps to reach val/mse <= {1.05 * f1:.5g}"
        if speed.verdict == "fail" and speed.low is None:  # a seed never got there
            assert "never reached" in speed.reason
        else:
            assert speed.verdict == interval_verdict("<=", speed.low, speed.high)
        # One validation per 2-step run: no second half of a curve to be rough in.
        stable = verdicts[("no_less_stable", arm)]
        assert stable.verdict == "n/a" and "roughness needs 3" in stable.reason
    accuracy = verdicts[("cls_head_accurate", "f3_rgb_seg_cls")]
    f3 = [r.final["val/cls_accuracy"] for r in comparison.runs if r.arm == "f3_rgb_seg_cls"]
    assert accuracy.value == pytest.approx(np.mean(f3)) and accuracy.threshold == 0.8
    assert accuracy.verdict in ("pass", "fail", "inconclusive")
    assert all(verdicts[("finite_loss", run)].verdict == "pass" for run in names)
    text = comparison.format()
    assert "aux_losses_help" in text and "best run:" in text and "Decision rules over seeds" in text
    markdown = (result.sweep_dir / "compare" / "comparison.md").read_text()
    assert "| aux_losses_help | f2_rgb_seg (n=3) | val/mse |" in markdown
    csv_text = (result.sweep_dir / "compare" / "comparison.csv").read_text()
    assert csv_text.startswith("rank,run,status,steps,val/mse best,val/mse final")
    assert (result.sweep_dir / "compare" / "verdicts.csv").is_file()
    for png in ("curves.png", "samples.png"):
        assert (result.sweep_dir / "compare" / png).read_bytes()[:4] == b"\x89PNG"

    # Re-running skips every finished run: nothing is trained again.
    called = _crash_on(monkeypatch, set(names))
    again = run_sweep(spec, tmp_path, extra_overrides=tiny_sweep_overrides())
    assert called == [] and not again.failed
    assert not any(entry.get("config_changed") for entry in again.runs.values())


def test_crash_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_sweep_overrides, monkeypatch):
    spec = tmp_path / "crashy.yaml"
    spec.write_text(f"base: {F1}\nexperiments: {{bad: [], good: [training.lr=1.0e-4]}}\n")
    called = _crash_on(monkeypatch, {"bad"})
    result = run_sweep(spec, tmp_path / "runs", extra_overrides=tiny_sweep_overrides())
    assert called == ["bad", "good"]
    status = _status(result.sweep_dir)
    assert status["bad"]["status"] == "failed"
    assert status["bad"]["error"] == "RuntimeError: simulated crash of bad"
    assert "simulated crash" in (result.sweep_dir / "bad" / "sweep_error.txt").read_text()
    assert status["good"]["status"] == "done" and result.failed == ["bad"]

    comparison = compare(result.sweep_dir, primary_metric="val/loss")
    bad = next(r for r in comparison.runs if r.name == "bad")
    assert bad.status == "failed" and bad.rank is None and comparison.runs[-1] is bad
    assert "failed" in comparison.format()
    # The command line reports a sweep with failed runs with exit status 1.
    assert main(["compare", str(result.sweep_dir), "--no-plots"]) == 0


@pytest.mark.slow
def test_phases_chain_missing_predecessor_and_resume(tmp_path, tiny_sweep_overrides, monkeypatch):
    spec = tmp_path / "phased.yaml"
    spec.write_text(
        f"name: phased\nbase: {F1}\n"
        "phases: [{name: p1}, {name: p2, from: best, overrides: [training.lr=1.0e-4]}]\n"
    )
    runs = tmp_path / "runs"
    # p1 crashes: p2 has no checkpoint to start from and fails with a message naming p1.
    _crash_on(monkeypatch, {"p1"})
    first = run_sweep(spec, runs, extra_overrides=tiny_sweep_overrides())
    status = _status(first.sweep_dir)
    assert status["p1"]["status"] == "failed" and status["p2"]["status"] == "failed"
    assert "starts from the best checkpoint of run p1" in status["p2"]["error"]
    assert not (first.sweep_dir / "p2" / "checkpoints").exists()
    monkeypatch.undo()

    # Fixed: both phases train, p2 from p1's best weights.
    second = run_sweep(spec, runs, extra_overrides=tiny_sweep_overrides())
    assert not second.failed
    config = read_yaml(second.sweep_dir / "p2" / "config.yaml")
    assert config["training"]["init_from"] == str(second.sweep_dir / "p1")

    # Longer runs requested: both resume from last.ckpt to the new step count, no duplicated rows.
    third = run_sweep(spec, runs, extra_overrides=tiny_sweep_overrides(max_steps=3))
    for name in ("p1", "p2"):
        assert third.runs[name]["status"] == "done" and third.runs[name]["global_step"] == 3
        steps = [row["step"] for row in read_metrics_csv(third.sweep_dir / name / "metrics.csv")]
        assert len(steps) == len(set(steps)) and steps == sorted(steps)  # no duplicated rows
        assert max(steps) > 1  # the resumed step was logged


def test_cli_sweep_and_compare(tmp_path, capsys):
    spec = REPO / "configs" / "sweeps" / "kl_annealing.yaml"
    assert (
        main(["sweep", str(spec), "--runs-dir", str(tmp_path), "--launcher", "slurm", "--dry-run"])
        == 0
    )
    assert "submit with: bash" in capsys.readouterr().out
    assert (tmp_path / "kl_annealing" / "jobs" / "2c.slurm").is_file()
    assert main(["sweep", str(spec), "--submit"]) == 2
    assert "--submit needs --launcher" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {F1}\nphase: []\n")
    assert main(["sweep", str(bad), "--runs-dir", str(tmp_path)]) == 2
    assert "unknown key 'phase'" in capsys.readouterr().err

    # compare on hand-written runs: ranking by a max metric, a rule with a failed reference.
    folder = tmp_path / "runs"
    for name, psnr in {"a": [20.0, 25.0], "b": [22.0, 21.0], "c": [10.0]}.items():
        (folder / name).mkdir(parents=True)
        rows = "\n".join(f"{i},{v}" for i, v in enumerate(psnr))
        (folder / name / "metrics.csv").write_text(f"step,val/psnr\n{rows}\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"base: {F1}\nexperiments: {{a: [], b: [], c: []}}\nprimary_metric: val/psnr\nmode: max\n"
        "decision_rules: [{name: close_to_a, rule: '>= a - 4'}]\n"
    )
    assert main(["compare", str(folder), "--spec", str(rules), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "best run: a" in out
    cmp = compare(folder, spec=rules, plots=False)
    assert [r.name for r in cmp.runs] == ["a", "b", "c"]
    assert [r.best["val/psnr"] for r in cmp.runs] == [25.0, 22.0, 10.0]
    assert cmp.runs[1].final["val/psnr"] == 21.0
    assert {v.run: v.verdict for v in cmp.verdicts} == {"b": "pass", "c": "fail"}
    assert (tmp_path / "o" / "curves.png").is_file()

    # Stability rules on whole curves: a NaN anywhere, a rising tail, a run stopped on a
    # non-finite loss (fails) and one that crashed otherwise (no verdict).
    stab = tmp_path / "stab"
    curves = {"ok": "1.0,0.8,0.7,0.6", "nan": "1.0,nan,0.7,0.6", "up": "1.0,0.5,0.7,0.9"}
    for name, values in curves.items():
        (stab / name).mkdir(parents=True)
        rows = "\n".join(f"{i},{v}" for i, v in enumerate(values.split(",")))
        (stab / name / "metrics.csv").write_text(f"step,val/mse\n{rows}\n")
    for name in ("diverged", "oom"):
        (stab / name).mkdir()
        (stab / name / "metrics.csv").write_text("step,val/mse\n0,1.0\n")
    (stab / "sweep_status.json").write_text(
        json.dumps(
            {
                "runs": {
                    **{n: {"status": "done"} for n in curves},
                    "diverged": {
                        "status": "failed",
                        "error": "TrainingError: non-finite loss nan at step 3",
                    },
                    "oom": {"status": "failed", "error": "RuntimeError: out of memory"},
                }
            }
        )
    )
    stability = tmp_path / "stability.yaml"
    stability.write_text(
        f"base: {F1}\nprimary_metric: val/mse\n"
        "decision_rules: [{name: finite, rule: finite},"
        " {name: flat, rule: 'not rising over 3'}]\n"
    )
    cmp = compare(stab, spec=stability, plots=False)
    got = {(v.rule, v.run): v.verdict for v in cmp.verdicts}
    assert got == {
        ("finite", "ok"): "pass",
        ("finite", "nan"): "fail",
        ("finite", "up"): "pass",
        ("finite", "diverged"): "fail",
        ("finite", "oom"): "n/a",
        ("flat", "ok"): "pass",
        ("flat", "nan"): "fail",
        ("flat", "up"): "fail",
        ("flat", "diverged"): "fail",
        ("flat", "oom"): "n/a",
    }
