import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from framecast.errors import CheckpointError, ConfigError, DataError
from framecast.eval.generate import generate, select_video
from framecast.eval.video import write_video
from framecast.flow.sampling import SamplerConfig
from framecast.flow.solvers import SolverConfig

FAST = SamplerConfig(solver=SolverConfig("euler", steps=2))


def blob_frames(num_frames, height, width):
    """(T, H, W, 3) uint8: a soft blob rising on black."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(num_frames):
        density = np.exp(-((xx - width / 2) ** 2 + (yy - height * 0.8 + 3 * t) ** 2) / 30.0)
        frames.append(np.repeat((density * 230)[..., None], 3, axis=-1))
    return np.asarray(frames).astype(np.uint8)


def gif_frames(path):
    with Image.open(path) as image:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)])


def test_shard_video_gif_and_strip_seeded(tiny_river_run, tiny_dataset, tmp_path):
    shard = tiny_dataset / "test" / "part-00000.fcshard"
    kwargs = dict(context=2, frames=3, sampler=FAST, video=1, seed=3, progress=False)
    result = generate(tiny_river_run, shard, tmp_path / "a.gif", **kwargs)
    assert result.video_id.endswith(":blob-009")
    assert result.ground_truth == 3 and result.predicted.shape == (1, 3, 32, 32, 3)
    assert result.nfe_per_frame == 2
    animation = gif_frames(result.out)
    assert len(animation) == 2 + 3
    assert animation.shape[2] > 2 * 32  # truth and prediction side by side
    assert result.strip == tmp_path / "a_strip.png" and result.strip.is_file()
    text = result.format()
    assert "blob-009" in text and "NFE" in text and str(result.out) in text

    again = generate(tiny_river_run, shard, tmp_path / "b.gif", **kwargs)
    assert np.array_equal(again.predicted, result.predicted)
    assert (tmp_path / "b.gif").read_bytes() == (tmp_path / "a.gif").read_bytes()
    other = generate(tiny_river_run, shard, tmp_path / "c.gif", **{**kwargs, "seed": 4})
    assert not np.array_equal(other.predicted, result.predicted)


def test_frame_folder_with_samples(tiny_river_run, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(blob_frames(4, 40, 48)):  # not square: centre-cropped
        Image.fromarray(frame).save(folder / f"frame_{i}.png")
    result = generate(
        tiny_river_run,
        folder,
        tmp_path / "out.gif",
        context=2,
        frames=3,
        sampler=FAST,
        samples=2,
        progress=False,
    )
    assert result.ground_truth == 2  # only 2 frames after the context
    assert result.predicted.shape == (2, 3, 32, 32, 3)
    animation = gif_frames(result.out)
    assert len(animation) == 5
    assert animation.shape[2] == 3 * 32 + 2 * 2  # truth + 2 samples, 2-pixel gaps
    assert result.strip.is_file()


def test_gif_input_to_mp4(tiny_river_run, tmp_path):
    source = write_video(blob_frames(6, 32, 32), tmp_path / "in.gif")
    result = generate(
        tiny_river_run,
        source,
        tmp_path / "out.mp4",
        context=3,
        frames=2,
        sampler=FAST,
        progress=False,
    )
    with av.open(str(result.out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
    assert result.video_id == "in.gif" and result.strip.is_file()


def test_too_short_video_is_a_data_error(tiny_river_run, tmp_path):
    source = write_video(blob_frames(2, 32, 32), tmp_path / "short.gif")
    with pytest.raises(DataError, match=r"short\.gif.*has 2 frames.*at least 4 context"):
        generate(tiny_river_run, source, tmp_path / "o.gif", context=4, sampler=FAST)
    assert not (tmp_path / "o.gif").exists()


def test_bad_suffix_and_wrong_run(tiny_river_run, tiny_autoencoder_run, tiny_dataset, tmp_path):
    shard = tiny_dataset / "test" / "part-00000.fcshard"
    with pytest.raises(ConfigError, match=r"\.avi"):
        generate(tiny_river_run, shard, tmp_path / "o.avi", sampler=FAST)
    with pytest.raises(CheckpointError):
        generate(tiny_autoencoder_run, shard, tmp_path / "o.gif", sampler=FAST)


def test_select_video_by_id_and_index(tiny_dataset):
    split = tiny_dataset / "test"
    assert select_video(split).id.endswith(":blob-008")
    assert select_video(split, "blob-009").id == "part-00000.fcshard:blob-009"
    assert select_video(split, "1").id.endswith(":blob-009")
    with pytest.raises(DataError, match="index 5 out of range"):
        select_video(split, 5)
    with pytest.raises(DataError, match="'nope' not found"):
        select_video(split, "nope")
