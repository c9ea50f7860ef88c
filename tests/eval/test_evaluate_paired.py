"""evaluate's per-clip metrics, paired intervals over videos, and other trained runs scored
as baseline rows (``--baseline``), on the tiny river and vaegan runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from framecast.cli import main
from framecast.errors import CheckpointError
from framecast.eval.evaluate import PAIRED_METRICS, EvaluationResult, evaluate
from framecast.eval.stats import PairedInterval
from framecast.flow.sampling import SamplerConfig
from framecast.flow.solvers import SolverConfig

TINY_SAMPLER = SamplerConfig(solver=SolverConfig(method="euler", steps=2))
# The tiny vaegan predicts 3 frames from 3; the river run takes any context.
SETTINGS = dict(
    split="test",
    context=3,
    frames=3,
    sampler=TINY_SAMPLER,
    clips_per_video=2,  # 2 test videos -> 4 clips, 2 per video
    batch_size=3,  # a full and a partial batch
    progress=False,
    n_boot=500,
)


@pytest.fixture(scope="module")
def paired(tiny_river_run, tiny_vaegan_run, tiny_dataset, tmp_path_factory) -> EvaluationResult:
    """The river run with the vaegan run and itself as baseline runs."""
    out = tmp_path_factory.mktemp("paired")
    return evaluate(
        tiny_river_run,
        tiny_dataset,
        out=out,
        baselines=[tiny_vaegan_run, tiny_river_run],
        **SETTINGS,
    )


def test_baseline_runs_are_rows_beside_the_model(paired: EvaluationResult) -> None:
    data = json.loads((paired.out / "metrics.json").read_text())
    assert list(data["methods"]) == ["river", "copy_last", "autoencoder", "vaegan", "river:river"]
    assert data["baseline_runs"]["vaegan"]["kind"] == "vaegan"
    assert data["baseline_runs"]["river:river"]["nfe_per_frame"] == 2
    assert set(data["blowup"]["methods"]) == set(data["methods"])
    assert data["blowup"]["methods"]["vaegan"]["frames"] == 4
    # The same run with the same seed and batches scores exactly as the model's row: a
    # baseline run draws from a generator of its own.
    for name, values in paired.metrics["river"].items():
        if name != "psnr_best_of_k":
            np.testing.assert_array_equal(values, paired.metrics["river:river"][name])
    same = paired.paired["river"]["river:river"]["psnr"]
    assert same.mean == (0.0,) * 3 and same.low == same.high == (0.0,) * 3
    with open(paired.out / "per_horizon.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == set(data["methods"])
    nfe = {r["method"]: r["nfe_per_frame"] for r in rows}
    assert nfe["river:river"] == "2.0" and nfe["vaegan"] == "" and nfe["copy_last"] == "0"
    # below summaries for every pair; the old block unchanged in place.
    assert data["below_copy_last"] == data["below"]["river"]["copy_last"]
    assert set(data["below"]["vaegan"]) == {"copy_last"}
    assert set(data["below"]["river"]) == {"copy_last", "autoencoder", "vaegan", "river:river"}


def test_model_row_does_not_depend_on_the_baseline_runs(
    paired: EvaluationResult, tiny_river_run, tiny_dataset, tmp_path
) -> None:
    alone = evaluate(tiny_river_run, tiny_dataset, out=tmp_path, **SETTINGS)
    assert alone.metrics == {m: paired.metrics[m] for m in alone.metrics}
    assert list(alone.paired) == ["river"] and list(alone.paired["river"]) == [
        "copy_last",
        "autoencoder",
    ]


def test_per_clip_values_and_paired_intervals(paired: EvaluationResult) -> None:
    with open(paired.out / "per_clip.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * len(paired.metrics) * 3
    assert [c["video_index"] for c in paired.clips] == [0, 0, 1, 1]
    assert len({c["video_id"] for c in paired.clips}) == 2
    river = [r for r in rows if r["method"] == "river"]
    assert {r["samples"] for r in river} == {"1"}
    for h in range(3):  # the per-clip values average to the per-horizon table
        values = [float(r["psnr"]) for r in river if r["horizon"] == str(h + 1)]
        assert np.mean(values) == pytest.approx(paired.metrics["river"]["psnr"][h], rel=1e-6)
    data = json.loads((paired.out / "metrics.json").read_text())
    block = data["paired"]
    assert block["videos"] == 2 and block["clips"] == 4 and "95%" in block["interval"]
    assert set(block["comparisons"]) == {"river", "vaegan", "river:river"}
    for method, against in paired.paired.items():
        for baseline, by_metric in against.items():
            assert list(by_metric) == list(PAIRED_METRICS)
            for name, iv in by_metric.items():
                assert isinstance(iv, PairedInterval) and iv.clusters == 2 and iv.clips == 4
                table = np.subtract(paired.metrics[method][name], paired.metrics[baseline][name])
                assert iv.mean == pytest.approx(table.tolist(), rel=1e-5, abs=1e-9)
                assert all(lo <= m <= hi for lo, m, hi in zip(iv.low, iv.mean, iv.high))
    with open(paired.out / "paired_per_horizon.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (4 + 1 + 1) * len(PAIRED_METRICS) * 4  # pairs x metrics x (3 + all)
    row = next(
        r
        for r in rows
        if (r["method"], r["baseline"], r["metric"], r["horizon"])
        == ("river", "copy_last", "psnr", "all")
    )
    overall = paired.paired["river"]["copy_last"]["psnr"]
    assert float(row["mean"]) == overall.overall_mean and row["videos"] == "2"
    text = paired.format()
    assert "river − copy_last PSNR " in text and "vaegan − copy_last ST-LPIPS " in text
    assert "(95% cluster bootstrap over 2 videos)" in text
    assert "baseline run vaegan: vaegan" in text and "vaegan worse than copy_last" in text


def test_cli_baseline_flag(tiny_river_run, tiny_vaegan_run, tiny_dataset, tmp_path, capsys):
    common = [
        "evaluate",
        "--run",
        str(tiny_river_run),
        "--data",
        str(tiny_dataset),
        "--steps",
        "2",
        "--clips-per-video",
        "2",
        "--max-clips",
        "2",
        "--bootstraps",
        "100",
        "--no-progress",
    ]
    out = tmp_path / "cli"
    code = main([*common, "--context", "3", "--baseline", str(tiny_vaegan_run), "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "river − vaegan PSNR" in text and str(out / "paired_per_horizon.csv") in text
    # 2 clips of one video: no interval to give, and it says so.
    assert "no interval: 1 video" in text
    # A vaegan baseline at another context than it was trained with: one line, exit 2.
    assert main([*common, "--baseline", str(tiny_vaegan_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--baseline {tiny_vaegan_run}" in err and "context" in err


def test_baseline_runs_are_checked(tiny_river_run, tiny_autoencoder_run, tiny_dataset, tmp_path):
    with pytest.raises(CheckpointError, match="--baseline .*autoencoder"):
        evaluate(
            tiny_river_run, tiny_dataset, out=tmp_path, baselines=[tiny_autoencoder_run], **SETTINGS
        )
    with pytest.raises(CheckpointError, match="--baseline .*no_such_run.*does not exist"):
        evaluate(
            tiny_river_run,
            tiny_dataset,
            out=tmp_path,
            baselines=[tmp_path / "no_such_run"],
            **SETTINGS,
        )


def test_a_simvp_run_is_evaluated_alone_and_as_a_river_runs_baseline(
    tiny_river_run, tiny_simvp_run, tiny_dataset, tmp_path, capsys
):
    """The learned deterministic baseline of issue 22: `evaluate --run RIVER --baseline
    SIMVP` puts it in the same tables with paired intervals against copy-last."""
    import json

    common = ["evaluate", "--data", str(tiny_dataset), "--steps", "2", "--no-progress"]
    common += ["--context", "3", "--frames", "3", "--max-clips", "2"]
    out = tmp_path / "alone"
    assert main([*common, "--run", str(tiny_simvp_run), "--out", str(out)]) == 0
    alone = json.loads((out / "metrics.json").read_text())
    assert set(alone["methods"]) >= {"simvp", "copy_last"}
    out = tmp_path / "beside"
    argv = [*common, "--run", str(tiny_river_run), "--baseline", str(tiny_simvp_run)]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    beside = json.loads((out / "metrics.json").read_text())
    assert {"river", "simvp", "copy_last"} <= set(beside["methods"])
    assert "river − simvp PSNR" in printed and "simvp − copy_last PSNR" in printed
    # The simvp row is the same whether it is the run or a baseline: same clips, same model.
    for metric in ("psnr", "ssim"):
        assert beside["methods"]["simvp"][metric]["per_horizon"] == pytest.approx(
            alone["methods"]["simvp"][metric]["per_horizon"]
        )


def test_generate_with_a_simvp_run_rolls_out_past_its_chunk(tiny_simvp_run, tiny_dataset, tmp_path):
    gif = tmp_path / "simvp.gif"
    shard = tiny_dataset / "test" / "part-00000.fcshard"
    argv = ["generate", "--run", str(tiny_simvp_run), "--input", str(shard), "--out", str(gif)]
    assert main([*argv, "--context", "3", "--frames", "5", "--no-progress"]) == 0  # chunk: 3
    assert gif.is_file()
