"""Bad input (issue 14): a smoke preset that does not exist, channels that disagree between
data and autoencoder, and 128×128-style frames into a smaller autoencoder all stop with
exit code 2 and one line that names the values and what is expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from framecast.cli import main
from framecast.config import load_config, validate_config
from framecast.config.loader import read_yaml
from framecast.data.dataset import check_frame_size, dataset_channels, resolve_data_channels
from framecast.data.shard import write_shard
from framecast.data.sources import open_split
from framecast.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def _one_line_exit_2(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _grey_blob_dataset(root: Path, size: int, videos: int = 2, frames: int = 6) -> Path:
    """Shards of a bright square moving on black, R = G = B, at ``size``×``size``."""
    for split in ("train", "val", "test"):
        entries = []
        for v in range(videos):
            clip = np.zeros((frames, size, size, 3), dtype=np.uint8)
            for t in range(frames):
                top = (t + v) % (size // 2)
                clip[t, top : top + size // 4, size // 4 : size // 2] = 200
            entries.append((f"{split}-{v}", clip, {}))
        write_shard(root / split / "part-00000.fcshard", entries)
    return root


# -- presets ------------------------------------------------------------------------------
def test_unknown_smoke_preset_names_it_and_the_allowed_ones(tmp_path, capsys):
    err = _one_line_exit_2(["data", "smoke", str(tmp_path / "out"), "--preset", "nonesuch"], capsys)
    assert "'nonesuch'" in err and "simple" in err and "varied" in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


# -- channels -----------------------------------------------------------------------------
def _ae_raw(**data) -> dict:
    return {"model": {"kind": "autoencoder"}, "data": data}


def test_image_channels_follow_data_channels_when_left_out():
    assert validate_config(_ae_raw(channels=1)).model.image_channels == 1
    assert validate_config(_ae_raw()).model.image_channels == 3  # existing configs unchanged
    vaegan = validate_config({"model": {"kind": "vaegan"}, "data": {"channels": 1}})
    assert vaegan.model.image_channels == 1


@pytest.mark.parametrize("kind", ["autoencoder", "vaegan"])
def test_explicit_image_channels_that_disagree_are_refused(kind):
    raw = {"model": {"kind": kind, "image_channels": 3}, "data": {"channels": 1}}
    with pytest.raises(ConfigError) as info:
        validate_config(raw, "c.yaml")
    message = str(info.value)
    assert "model.image_channels=3" in message and "data.channels=1" in message
    assert "c.yaml" in message


@pytest.mark.parametrize("value", [2, 4, "grey", True])
def test_channels_other_than_1_3_auto_are_refused(value):
    with pytest.raises(ConfigError, match=r"data\.channels.*expected 1 \(greyscale\), 3 \(RGB\)"):
        validate_config(_ae_raw(channels=value))


def test_cli_train_with_disagreeing_channels_exits_2(tmp_path, capsys):
    config = str(REPO / "configs" / "ae_smoke.yaml")
    argv = ["train", "--config", config, "data.channels=1", "model.image_channels=3"]
    err = _one_line_exit_2(argv, capsys)
    assert "model.image_channels=3" in err and "data.channels=1" in err


def test_auto_channels_come_from_dataset_json(tmp_path):
    def dataset(name: str, record: dict | None) -> Path:
        root = tmp_path / name
        root.mkdir()
        if record is not None:
            (root / "dataset.json").write_text(json.dumps(record))
        return root

    assert dataset_channels(dataset("declared", {"channels": 1, "source": "x"})) == 1
    assert dataset_channels(dataset("smoke", {"source": "phiflow-smoke"})) == 1  # simple preset
    assert dataset_channels(dataset("rgb", {"source": "import"})) == 3
    assert dataset_channels(dataset("none", None)) == 3
    with pytest.raises(DataError, match=r"'channels' has value 2; expected 1 .* or 3"):
        dataset_channels(dataset("bad", {"channels": 2}))

    config = validate_config(_ae_raw(channels="auto", root=str(tmp_path / "declared")))
    assert config.model.image_channels == 3  # not resolved yet: a run resolves it at its start
    assert resolve_data_channels(config) == 1
    assert config.data.channels == 1 and config.model.image_channels == 1
    with pytest.raises(ConfigError, match="data.channels=auto .* set data.root"):
        resolve_data_channels(validate_config(_ae_raw(channels="auto")))
    explicit = {"model": {"kind": "autoencoder", "image_channels": 3}}
    config = validate_config(
        {**explicit, "data": {"channels": "auto", "root": str(tmp_path / "smoke")}}
    )
    with pytest.raises(ConfigError, match=r"model.image_channels=3 disagrees with data.channels=1"):
        resolve_data_channels(config)


@pytest.mark.parametrize("content", ["", '{"framecast_dataset": 1, "chan'], ids=["empty", "cut"])
def test_explicit_channels_do_not_hide_a_damaged_dataset_json(tmp_path, content):
    (tmp_path / "dataset.json").write_text(content)
    config = validate_config(_ae_raw(channels=1, root=str(tmp_path)))
    with pytest.raises(DataError, match=r"dataset\.json: unreadable dataset record"):
        resolve_data_channels(config)


def test_river_refuses_data_channels_other_than_the_autoencoders(
    tiny_autoencoder_run, tiny_dataset, tmp_path, capsys
):
    argv = [
        "train",
        "--config",
        str(REPO / "configs" / "river_tiny.yaml"),
        "--data",
        str(tiny_dataset),
        "--runs-dir",
        str(tmp_path),
        f"model.autoencoder={tiny_autoencoder_run}",
        "data.image_size=32",
        "data.channels=1",  # the tiny autoencoder is RGB
    ]
    err = _one_line_exit_2(argv, capsys)
    assert "data.channels=1" in err and "model.image_channels=3" in err
    assert "set data.channels=3" in err


# -- frame sizes --------------------------------------------------------------------------
def test_encode_refuses_frames_of_another_size(tiny_autoencoder_run, tmp_path, capsys):
    data = _grey_blob_dataset(tmp_path / "big", size=64)  # the tiny autoencoder sees 32×32
    err = _one_line_exit_2(
        ["encode", "--autoencoder", str(tiny_autoencoder_run), "--data", str(data)], capsys
    )
    assert "64×64" in err and "32×32" in err and "data.image_size=32" in err
    assert not (data / "latents").exists()


def test_evaluate_and_reconstruct_refuse_frames_of_another_size(
    tiny_river_run, tiny_autoencoder_run, tmp_path, capsys
):
    data = _grey_blob_dataset(tmp_path / "big", size=64)
    argv = ["evaluate", "--run", str(tiny_river_run), "--data", str(data), "--no-progress"]
    err = _one_line_exit_2(argv, capsys)
    assert "64×64" in err and "32×32" in err
    argv = ["reconstruct", "--run", str(tiny_autoencoder_run), "--data", str(data), "--frames", "4"]
    err = _one_line_exit_2(argv, capsys)
    assert "64×64" in err and "32×32" in err


def test_resizing_stays_allowed_where_the_model_was_trained_so(tmp_path):
    small, big = _grey_blob_dataset(tmp_path / "s", 16), _grey_blob_dataset(tmp_path / "b", 64)
    videos = open_split(big / "test")
    check_frame_size(open_split(small / "test"), 16, small, "m")  # same size: fine
    with pytest.raises(DataError, match="64×64, but m sees 32×32"):
        check_frame_size(videos, 32, big, "m", trained_on=small)
    check_frame_size(videos, 32, big, "m", trained_on=big)  # trained on 64×64 resized to 32
    rect = tmp_path / "rect"
    write_shard(rect / "test" / "p.fcshard", [("r", np.zeros((2, 40, 64, 3), np.uint8), {})])
    check_frame_size(open_split(rect / "test"), 32, rect, "m")  # non-square: crop + resize


def test_shipped_configs_keep_their_channels():
    """Configs that do not name data.channels stay RGB (the default did not change); those
    that do (the greyscale reference configs) get a model of that many channels."""
    for path in sorted((REPO / "configs").glob("*.yaml")):
        raw = read_yaml(path)
        config = load_config(path)
        expected = (raw.get("data") or {}).get("channels", 3)
        assert config.data.channels == expected, path
        if hasattr(config.model, "image_channels"):
            assert config.model.image_channels == expected, path


# -- issue 23 items 14-15: values that used to end in a traceback or pass silently -----------
RANGE_CASES = [
    ("training.betas=[.nan, 0.9]", "training.betas", "[0, 1)"),
    ("training.betas=[1.5, -1.0]", "training.betas", "[0, 1)"),
    (f"training.seed={2**70}", "training.seed", "4294967295"),
    ("data.image_size=100000", "data.image_size", "4096"),
    ("model.base_channels=100000", "model.base_channels", "4096"),
    (f"data.batch_size={10**12}", "data.batch_size", "65536"),
    ("training.grad_clip=.inf", "training.grad_clip", "finite"),
    ("data.frame_stride=1000", "data.frame_stride=1000", "single frames"),  # was ignored
]


@pytest.mark.parametrize(("override", "key", "expected"), RANGE_CASES)
def test_out_of_range_values_exit_2_naming_the_key(override, key, expected, tmp_path, capsys):
    """Adam's ValueError, Lightning's seed bound, a 27.9 GiB frame batch, a 360 GB model,
    one batch of everything, no clipping at all: each is refused before anything is built."""
    config = str(REPO / "configs" / "ae_smoke.yaml")
    argv = ["train", "--config", config, "--runs-dir", str(tmp_path), override]
    err = _one_line_exit_2(argv, capsys)
    assert key in err and expected in err, err


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("model:\n  kind: autoencoder\ntraining:\n  lr: 1.0e-3\n  lr: 1.0e-2\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: key 'lr' is given twice .*lines 4 and 5"):
        read_yaml(path)
    path.write_text("model: {kind: autoencoder}\nmodel: {kind: river}\n")
    with pytest.raises(ConfigError, match=r"key 'model' is given twice .*lines 1 and 2"):
        read_yaml(path)
    path.write_text("model: {kind: autoencoder, kind: river}\n")
    with pytest.raises(ConfigError, match=r"key 'kind' is given twice .*lines 1 and 1"):
        read_yaml(path)
    path.write_text("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n")  # YAML merge keys stay allowed
    assert read_yaml(path) == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}


def test_a_yaml_file_nested_thousands_deep_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("model: " + "[" * 20000 + "]" * 20000 + "\n")
    argv = ["train", "--config", str(path), "--runs-dir", str(tmp_path)]
    err = _one_line_exit_2(argv, capsys)
    assert "deep.yaml" in err and "nested too deeply" in err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h.pop("frame_shape"), "'frame_shape' is '(missing)'"),
        (lambda h: h.update(videos="oops"), "'videos' is 'oops'"),
        (lambda h: h["videos"][0].update(num_frames=10_000), "past the end of the shard"),
    ],
)
def test_a_bad_shard_header_is_a_data_error_naming_the_file(tmp_path, edit, message):
    """A header without frame_shape (was KeyError), with "videos": "oops" (TypeError), or a
    video claiming 10 000 frames past the end of the data (trained 2 steps on garbage)."""
    import struct

    from framecast.data.shard import MAGIC, read_shard_header

    path = write_shard(tmp_path / "a.fcshard", [("v", np.zeros((3, 4, 4, 3), np.uint8), {})])
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[8:16])
    header = json.loads(raw[16 : 16 + length])
    edit(header)
    blob = json.dumps(header).encode()
    assert len(blob) <= header["data_offset"] - 16  # fits in the padding before the data
    padded = blob + b" " * (length - len(blob)) if len(blob) <= length else blob
    rest = raw[16 + length :] if len(blob) <= length else raw[16 + len(blob) :]
    path.write_bytes(MAGIC + struct.pack("<Q", len(padded)) + padded + rest)
    with pytest.raises(DataError, match="a.fcshard: shard header") as info:
        read_shard_header(path)
    assert message in str(info.value)
