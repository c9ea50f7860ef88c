"""`framecast demo --quick`: the whole pipeline that `make demo` runs, at toy size."""

from __future__ import annotations

import pytest

from framecast.cli import main


@pytest.mark.slow
def test_quick_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| psnr |" in report and "| stlpips |" in report
    assert (out / "autoencoder" / "samples" / "reconstruct_test.png").is_file()
    assert (out / "autoencoder" / "loss_curves.png").is_file()
    assert "## Stage 2: RIVER" in report and "| copy_last |" in report and "| river |" in report
    assert (out / "prediction.gif").is_file()
    assert (out / "river" / "eval" / "test" / "metrics.json").is_file()
    assert "## Few-step sampling" in report and "| one-step student | 1 |" in report
    printed = capsys.readouterr()
    assert f"results: {out / 'report.md'}" in printed.out
    # The report says what each stage took, on which hardware class, in which precision.
    assert "| train autoencoder |" in report and "| **total** |" in report
    assert "Machine: CPU with" in report and "Training precision: autoencoder" in report
    assert "precision auto ->" in printed.err  # each training run said its choice once
