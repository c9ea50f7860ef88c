"""Greyscale end to end (issue 14, item 2): simulated smoke -> 1-channel autoencoder ->
latent cache -> river -> evaluate / generate / reconstruct, all through the CLI.

Smoke has no colour: with ``data.channels: auto`` a smoke dataset gives a one-channel
model, and every frame it reads, predicts or writes has one channel (or, in RGB files,
R = G = B), so no tint can appear.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageSequence

from framecast.cli import main
from framecast.data.dataset import ClipDataset, split_dir

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # frames; the tiny autoencoder makes 8×4×4 latents of them

# Tiny sizes for configs/ae_smoke.yaml and configs/river_tiny.yaml (as tests/conftest.py).
TINY_AE = [
    "model.base_channels=8",
    "model.norm_groups=4",
    "model.num_res_blocks=1",
]
TINY_RIVER = [
    "model.vector_field_regressor.state_size=8",
    "model.vector_field_regressor.state_res=[4, 4]",
    "model.vector_field_regressor.inner_dim=32",
    "model.vector_field_regressor.num_heads=2",
]


def _is_grey(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


@pytest.fixture(scope="module")
def grey_pipeline(tmp_path_factory, tiny_run) -> dict[str, Path]:
    """Simulated smoke, a 1-channel autoencoder (data.channels: auto), its latent cache
    and a river run on it, each made by the CLI (2 training steps each)."""
    root = tmp_path_factory.mktemp("grey")
    data, runs = root / "smoke", root / "runs"
    smoke = ["data", "smoke", str(data), "--videos", "4", "--frames", "6", "--size", str(SIZE)]
    assert main([*smoke, "--splits", "0.5,0.25,0.25", "--workers", "1", "--no-progress"]) == 0
    train = ["train", "--data", str(data), "--runs-dir", str(runs), "--max-steps", "2"]
    ae_config = str(REPO / "configs" / "ae_smoke.yaml")
    # data.channels=auto: the simulated smoke's dataset.json says phiflow-smoke -> 1, and
    # model.image_channels (not in ae_smoke.yaml) follows it.
    ae = [*train, "--config", ae_config, "--run-name", "ae", *TINY_AE, *tiny_run(data, 2)]
    assert main([*ae, "data.channels=auto"]) == 0
    assert main(["encode", "--autoencoder", str(runs / "ae"), "--data", str(data)]) == 0
    river_config = str(REPO / "configs" / "river_tiny.yaml")
    river = [*train, "--config", river_config, "--run-name", "river"]
    extra = [f"model.autoencoder={runs / 'ae'}", "data.channels=auto"]
    assert main([*river, *TINY_RIVER, *tiny_run(data, 2), *extra]) == 0
    return {"data": data, "ae": runs / "ae", "river": runs / "river", "root": root}


def test_autoencoder_follows_the_data_channels(grey_pipeline):
    from framecast.models.autoencoder.loading import load_autoencoder

    stored = yaml.safe_load((grey_pipeline["ae"] / "config.yaml").read_text())
    assert stored["data"]["channels"] == 1 and stored["model"]["image_channels"] == 1
    loaded = load_autoencoder(grey_pipeline["ae"])
    frames = torch.zeros(2, 1, SIZE, SIZE)
    assert loaded.model(frames).rgb.shape == (2, 1, SIZE, SIZE)  # one channel: no tint possible
    with pytest.raises(ValueError, match=r"takes \(B, 1, H, W\) frames"):
        loaded.model(torch.zeros(2, 3, SIZE, SIZE))


def test_cache_and_river_are_greyscale(grey_pipeline):
    info = json.loads((grey_pipeline["data"] / "latents" / "cache.json").read_text())
    assert info["latent_shape"] == [8, 4, 4]
    stored = yaml.safe_load((grey_pipeline["river"] / "config.yaml").read_text())
    assert stored["data"]["channels"] == 1  # auto, resolved when the run started

    from framecast.eval.evaluate import load_predictor

    predictor = load_predictor(grey_pipeline["river"])
    clip = ClipDataset(
        split_dir(grey_pipeline["data"], "test"), num_frames=4, image_size=SIZE, channels=1
    )[0]["frames"]
    futures, _ = predictor.predict(clip[None, :1], 2, 1, torch.Generator().manual_seed(0))
    assert futures.shape == (1, 1, 2, 1, SIZE, SIZE)
    assert set(predictor.baselines(clip[None, :1], clip[None, 1:3])) == {"copy_last", "autoencoder"}
    assert predictor.baselines(clip[None, :1], clip[None, 1:3])["autoencoder"].shape[2] == 1


def test_evaluate_generate_reconstruct_on_grey_frames(grey_pipeline, capsys):
    data, river, out = grey_pipeline["data"], grey_pipeline["river"], grey_pipeline["root"]
    sampling = ["--run", str(river), "--steps", "2", "--no-progress"]
    assert main(["evaluate", *sampling, "--data", str(data), "--out", str(out / "eval")]) == 0
    methods = json.loads((out / "eval" / "metrics.json").read_text())["methods"]
    for method in ("river", "copy_last", "autoencoder"):  # SSIM/PSNR on 1 channel, LPIPS on 3 equal
        for name in ("psnr", "ssim", "stlpips"):
            mean = methods[method][name]["mean"]
            assert mean is not None and np.isfinite(mean), (method, name, mean)

    gif = out / "grey.gif"
    shard = data / "test" / "part-00000.fcshard"
    args = [*sampling, "--input", str(shard), "--out", str(gif), "--frames", "2"]
    assert main(["generate", *args]) == 0
    with Image.open(gif) as image:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
    assert len(frames) == 3 and all(_is_grey(f) for f in frames)
    with Image.open(gif.with_name("grey_strip.png")) as strip:
        assert _is_grey(np.asarray(strip.convert("RGB")))

    png = out / "recon.png"
    recon = ["reconstruct", "--run", str(grey_pipeline["ae"]), "--data", str(data)]
    assert main([*recon, "--clips", "1", "--frames", "2", "--out", str(png)]) == 0
    with Image.open(png) as grid:
        assert _is_grey(np.asarray(grid.convert("RGB")))
    assert "stlpips=" in capsys.readouterr().out


def test_varied_smoke_records_one_channel(tmp_path):
    from framecast.data.dataset import dataset_channels
    from framecast.data.smoke import simulate_smoke_dataset

    out = tmp_path / "varied"
    tiny = {"videos": 1, "frames": 2, "size": 16, "warmup_frames": 0, "splits": (1, 0, 0)}
    simulate_smoke_dataset(out, preset="varied", workers=1, progress=False, **tiny)
    assert json.loads((out / "dataset.json").read_text())["channels"] == 1
    assert dataset_channels(out) == 1  # what data.channels: auto reads
    frames = ClipDataset(split_dir(out, "train"), num_frames=2, channels=1)[0]["frames"]
    assert frames.shape == (2, 1, 16, 16)


def test_lpips_of_grey_frames_is_that_of_the_grey_rgb_image():
    from framecast.eval.lpips import load_stlpips

    generator = torch.Generator().manual_seed(0)
    x, y = (torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1 for _ in range(2))
    lpips = load_stlpips("alex")
    grey = lpips(x, y)
    rgb = lpips(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1))
    torch.testing.assert_close(grey, rgb)
    assert (grey > 0).all()


def test_grey_video_frames_make_a_grey_gif(tmp_path):
    from framecast.eval.video import write_video

    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    path = write_video(frames, tmp_path / "g.gif")
    with Image.open(path) as image:
        back = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
    assert len(back) == 3 and all(_is_grey(f) for f in back)
    # 256 distinct greys fit the palette exactly: the values survive unchanged.
    np.testing.assert_array_equal(np.stack(back)[..., 0], frames[..., 0])


@pytest.mark.parametrize("coloured", [False, True])
def test_import_records_whether_the_frames_are_grey(tmp_path, coloured):
    from framecast.data.dataset import dataset_channels
    from framecast.data.importer import import_dataset

    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    frames = np.repeat(frames, 3, axis=-1)
    if coloured:
        frames[2, 5, 5] = (10, 200, 30)  # one coloured pixel makes it an RGB dataset
    folder = tmp_path / "src" / "clip"
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    out = tmp_path / "out"
    import_dataset(tmp_path / "src", out, size=16, splits=(1, 0, 0), progress=False)
    assert json.loads((out / "dataset.json").read_text())["channels"] == (3 if coloured else 1)
    assert dataset_channels(out) == (3 if coloured else 1)


def test_greyscale_shards_read_as_grey_rgb(tmp_path):
    from framecast.data.shard import write_shard

    grey = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    write_shard(tmp_path / "train" / "g.fcshard", [("g", grey, {})])
    rgb = ClipDataset(tmp_path / "train", num_frames=5, channels=3)[0]["frames"]
    luma = ClipDataset(tmp_path / "train", num_frames=5, channels=1)[0]["frames"]
    expected = torch.from_numpy(grey).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(rgb, expected.expand(-1, 3, -1, -1))
    torch.testing.assert_close(luma, expected, atol=1e-5, rtol=0)  # luma of a grey pixel: itself
