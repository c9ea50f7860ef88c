"""The latent cache: every frame encoded once, ids aligned, other autoencoders refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from framecast.data.latent_cache import CACHE_DIR
from framecast.data.shard import ShardReader
from framecast.data.sources import open_split
from framecast.encode import encode_dataset
from framecast.errors import DataError


class MeanPoolEncoder(torch.nn.Module):
    """Stand-in autoencoder: 4×4 mean pooling, so expected latents are easy to compute."""

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = torch.nn.Parameter(torch.tensor(offset))

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 4) + self.offset


def copy_dataset(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(CACHE_DIR))
    return dst


def test_encode_writes_aligned_latents_and_stats(tiny_dataset, tmp_path):
    data = copy_dataset(tiny_dataset, tmp_path / "data")
    summary = encode_dataset(
        MeanPoolEncoder(), data, image_size=32, autoencoder_name="pool", progress=False
    )
    assert summary.videos == {"train": 6, "val": 2, "test": 2}
    assert summary.frames == {"train": 72, "val": 24, "test": 24}
    assert summary.latent_shape == (3, 8, 8)
    info = json.loads((data / CACHE_DIR / "cache.json").read_text())
    assert info["autoencoder"] == "pool" and info["latent_shape"] == [3, 8, 8]
    for split in ("train", "val", "test"):
        videos = {v.id: v for v in open_split(data / split)}
        reader = ShardReader(data / CACHE_DIR / split / "part-00000.fcshard")
        # Latent videos carry the frame dataset's ids, so clips line up by id.
        assert {v.id for v in reader.videos} == set(videos)
        for entry_index, entry in enumerate(reader.videos):
            frames = videos[entry.id].read()
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
            expected = torch.nn.functional.avg_pool2d(x, 4).numpy()
            np.testing.assert_allclose(reader.read(entry_index), expected, atol=1e-5)
            assert entry.meta["label"] in (0, 1)
    assert "mean" in summary.format() and len(summary.channel_mean) == 3
    assert "training.smoke_threshold: auto will use" in summary.format()
    assert info["smoke"]["suggested_smoke_threshold"] == summary.smoke["suggested_smoke_threshold"]
    assert info["smoke"]["mask_definition"] == "distance_from_black_frame"


def test_same_weights_reuse_other_weights_refused(tiny_dataset, tmp_path):
    data = copy_dataset(tiny_dataset, tmp_path / "data")
    encode_dataset(MeanPoolEncoder(), data, image_size=32, autoencoder_name="a", progress=False)
    assert encode_dataset(
        MeanPoolEncoder(), data, image_size=32, autoencoder_name="a", progress=False
    ).reused
    before = (data / CACHE_DIR / "train" / "part-00000.fcshard").read_bytes()
    with pytest.raises(DataError, match="latents of another autoencoder.*--overwrite"):
        encode_dataset(
            MeanPoolEncoder(0.5), data, image_size=32, autoencoder_name="b", progress=False
        )
    assert (data / CACHE_DIR / "train" / "part-00000.fcshard").read_bytes() == before
    summary = encode_dataset(
        MeanPoolEncoder(0.5),
        data,
        image_size=32,
        autoencoder_name="b",
        overwrite=True,
        progress=False,
    )
    assert not summary.reused
    assert json.loads((data / CACHE_DIR / "cache.json").read_text())["autoencoder"] == "b"


def test_failure_mid_encode_keeps_old_cache(tiny_dataset, tmp_path):
    data = copy_dataset(tiny_dataset, tmp_path / "data")
    encode_dataset(MeanPoolEncoder(), data, image_size=32, autoencoder_name="a", progress=False)
    before = sorted(p.relative_to(data) for p in (data / CACHE_DIR).rglob("*"))

    class Broken(MeanPoolEncoder):
        calls = 0

        def encode_latents(self, x):
            Broken.calls += 1
            if Broken.calls > 3:
                raise RuntimeError("boom")
            return super().encode_latents(x)

    with pytest.raises(RuntimeError, match="boom"):
        encode_dataset(
            Broken(1.0), data, image_size=32, autoencoder_name="c", overwrite=True, progress=False
        )
    assert sorted(p.relative_to(data) for p in (data / CACHE_DIR).rglob("*")) == before
    assert not any(p.name.startswith(".") for p in data.iterdir())


def test_encode_cli_with_trained_autoencoder(tiny_dataset, tmp_path, shrink, capsys):
    from framecast.cli import main
    from framecast.training.engine import train

    data = copy_dataset(tiny_dataset, tmp_path / "data")
    config = shrink(Path(__file__).resolve().parents[2] / "configs" / "ae_smoke.yaml", data)
    result = train(config, runs_dir=tmp_path / "runs", run_name="ae", progress=False)
    assert (
        main(["encode", "--autoencoder", str(result.run_dir), "--data", str(data), "--no-progress"])
        == 0
    )
    out = capsys.readouterr().out
    assert "latent shape per frame: (8, 4, 4)" in out
    assert main(["encode", "--autoencoder", str(result.run_dir), "--data", str(data)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_smoke_statistics_suggest_a_threshold_matching_the_frames():
    import torch

    from framecast.losses.latent_smoke import NoSmokeFoundError, threshold_statistics

    cells = torch.zeros(10, 4, 4, dtype=torch.bool)
    cells[:, :2] = True  # half of the cells are smoke
    norms = torch.where(cells, 3.0, 1.0) + 0.1 * torch.rand(10, 4, 4)
    with pytest.raises(NoSmokeFoundError, match="no smoke in 10 frames"):
        threshold_statistics(torch.zeros_like(cells), norms)
    stats = threshold_statistics(cells, norms)
    assert stats["frame_smoke_cell_share"] == 0.5
    assert 1.1 <= stats["suggested_smoke_threshold"] <= 3.0
    assert stats["suggested_threshold_iou"] == 1.0
    assert stats["smoke_ratio_at_0.1"] == 1.0  # every pixel counts at 0.1: the bad default


def test_flipped_bytes_in_frames_or_latent_cache_stop_the_read(tiny_dataset, tmp_path):
    """A corrupt frame shard or latent cache is named (file and video) when a clip of the
    damaged video is read, instead of being trained on."""
    from framecast.data.dataset import ClipDataset
    from framecast.data.latent_dataset import LatentClipDataset, latent_shard_path

    data = copy_dataset(tiny_dataset, tmp_path / "data")
    encode_dataset(MeanPoolEncoder(), data, image_size=32, autoencoder_name="pool", progress=False)
    for path in (data / "val" / "part-00000.fcshard", latent_shard_path(data, "val")):
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0x01  # one bit of the last video's last frame
        path.write_bytes(bytes(raw))
    frames = ClipDataset(data / "val", num_frames=4, train=False)
    latents = LatentClipDataset(latent_shard_path(data, "val"), num_frames=4, train=False)
    frames[0], latents[0]  # the first video is intact
    for dataset, name in ((frames, r"val/part-00000\.fcshard"), (latents, r"latents/val/")):
        with pytest.raises(DataError, match=name + r".*video .* does not match its checksum"):
            dataset[len(dataset) - 1]
