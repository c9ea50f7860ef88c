import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from framecast.errors import ConfigError
from framecast.eval.video import tile_videos, write_video


def smooth_clip(num_frames=5, height=31, width=33):
    """(T, H, W, 3) uint8: a soft moving blob in two colours, few distinct values like smoke."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(num_frames):
        density = np.exp(-((xx - 8 - 3 * t) ** 2 + (yy - height / 2) ** 2) / 40.0)
        frames.append(np.stack([density * 230, density * 180, density * 120], axis=-1))
    return np.asarray(frames).astype(np.uint8)


def test_gif_round_trip(tmp_path):
    clip = smooth_clip()
    path = write_video(clip, tmp_path / "clip.gif", fps=10)
    with Image.open(path) as image:
        assert image.info["loop"] == 0
        back = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)])
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip).max() <= 8


def test_mp4_round_trip_pads_odd_sizes(tmp_path):
    clip = smooth_clip(num_frames=6)
    path = write_video(clip, tmp_path / "clip.mp4", fps=8)
    with av.open(str(path)) as container:
        back = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(back) == 6
    assert back[0].shape == (32, 34, 3)  # padded to even sizes for yuv420p
    assert np.abs(back[3][:31, :33].astype(int) - clip[3]).mean() < 6
    assert not list(tmp_path.glob(".*.tmp"))


def test_unknown_suffix_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"\.webm.*\.gif, \.mp4"):
        write_video(smooth_clip(), tmp_path / "clip.webm")
    assert not list(tmp_path.iterdir())


def test_tile_videos_with_labels():
    a, b = smooth_clip(4, 16, 10), smooth_clip(4, 16, 12)
    tiled = tile_videos([a, b], gap=2)
    assert tiled.shape == (4, 16, 24, 3)
    assert np.array_equal(tiled[:, :, 12:], b)
    labelled = tile_videos([a, b], labels=["truth", "pred"], gap=2)
    assert labelled.shape[0] == 4 and labelled.shape[2] == 24 and labelled.shape[1] > 16
    assert np.array_equal(labelled[:, -16:], tiled)
    with pytest.raises(ValueError, match="must match"):
        tile_videos([a, smooth_clip(3, 16, 10)])
