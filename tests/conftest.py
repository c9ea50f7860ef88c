"""Shared fixtures: a tiny smoke-like dataset and a shrinker for every shipped config.

``shrink_config`` follows torchcfm's idea: any config in ``configs/`` is cut down to a
two-step CPU run on tiny frames, so every shipped config stays runnable in the suite.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from framecast.config import Config, apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.data.shard import write_shard
from framecast.hardware import CpuFlags, GpuInfo, MatmulProbe

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
TINY_SIZE = 32

# Per model kind: overrides that keep the architecture's shape but make it tiny.
TINY_MODEL = {
    "autoencoder": {
        "base_channels": 8,
        "norm_groups": 4,
        "num_res_blocks": 1,
        "codebook_size": 16,
        "discriminator.disc_channels": 8,
        "discriminator.disc_layers": 2,
        "discriminator.disc_start": 0,
    },
    # Latents of the tiny autoencoder (``tiny_autoencoder_run``): 8 channels on a 4×4 grid.
    "river": {
        "vector_field_regressor.state_size": 8,
        "vector_field_regressor.state_res": "[4, 4]",
        "vector_field_regressor.inner_dim": 32,
        "vector_field_regressor.num_heads": 2,
        "vector_field_regressor.depth": 1,
        "vector_field_regressor.mid_depth": 1,
    },
    "vaegan": {
        "latent_dim": 16,
        "gaad_num_regions": 4,
        "gaad_motion_num_regions": 2,
        "encoder_shallow_cnn_channels": 4,
        "encoder_roi_align_output": "[2, 2]",
        "encoder_initial_tangent_dim": 8,
        "temporal_hidden_dim": 8,
        "wubu_s.hyperbolic_dims": "[8, 4]",
        "wubu_s.output_dim": 4,
        "wubu_t.hyperbolic_dims": "[8]",
        "wubu_t.output_dim": 8,
        "wubu_m.hyperbolic_dims": "[4]",
        "wubu_m.output_dim": 4,
        "gen_base_channels": 8,
        "disc_base_disc_channels": 8,
        "disc_max_disc_channels": 16,
        "disc_gaad_condition_dim_disc": 8,
    },
    # 32×32 frames -> 8×8 latents (two halvings, as shipped), a narrow translator.
    "simvp": {
        "hid_channels": 4,
        "hid_translator": 8,
        "num_translator_blocks": 1,
        "attention_kernel_size": 7,
        "mlp_ratio": 2.0,
    },
    # Trained on ``tiny_motion_json`` (the shrunk data.root), not on frames.
    "motion": {"hidden_size": 8, "sequence_length": 4},
}


def blob_video(num_frames: int, size: int, seed: int) -> np.ndarray:
    """(T, size, size, 3) uint8: a soft bright blob rising on black, like a smoke plume."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0.3, 0.7) * size, rng.uniform(0.7, 0.9) * size
    radius = rng.uniform(0.1, 0.2) * size
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for t in range(num_frames):
        y = y0 - t * size / (2 * num_frames)
        density = np.exp(-((xx - x0) ** 2 + (yy - y) ** 2) / (2 * radius**2))
        frames.append(np.repeat((density * 230)[..., None], 3, axis=-1))
    return np.asarray(frames).astype(np.uint8)


def write_blob_dataset(
    root: Path, videos: dict[str, int], frames: int = 12, size: int = TINY_SIZE
) -> Path:
    """Shards of blob videos: ``videos`` maps split → count. Labels alternate 0/1."""
    index = 0
    for split, count in videos.items():
        entries = []
        for _ in range(count):
            entries.append(
                (f"blob-{index:03d}", blob_video(frames, size, index), {"label": index % 2})
            )
            index += 1
        write_shard(root / split / "part-00000.fcshard", entries)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """train/val/test shards of 6/2/2 blob videos, 12 frames of 32×32."""
    return write_blob_dataset(
        tmp_path_factory.mktemp("tiny_dataset"), {"train": 6, "val": 2, "test": 2}
    )


def tiny_run_overrides(data_root: Path, max_steps: int = 2) -> list[str]:
    """Data, training and logging overrides of a ``max_steps`` CPU run on tiny frames."""
    return [
        f"data.root={data_root}",
        f"data.image_size={TINY_SIZE}",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "data.num_workers=0",
        "data.clips_per_video=1",
        "data.eval_clips_per_video=1",
        f"training.max_steps={max_steps}",
        "training.max_epochs=null",
        f"training.val_every_n_steps={max_steps}",
        "training.limit_val_batches=1",
        "training.warmup_steps=0",
        "training.precision=32",
        "training.log_every_n_steps=1",
        "training.num_observations=4",
        "training.frames_to_generate=3",
        "logging.tensorboard=false",
        "logging.progress_bar=false",
    ]


@pytest.fixture(scope="session")
def tiny_run():
    """``tiny_run(data_root, max_steps=2)`` → :func:`tiny_run_overrides`."""
    return tiny_run_overrides


def shrink_config(
    path: Path, data_root: Path, max_steps: int = 2, autoencoder: Path | None = None
) -> Config:
    """A shipped config cut down to ``max_steps`` CPU steps on tiny frames.

    Stage-2 (river) configs need ``autoencoder``, a trained tiny autoencoder run.
    """
    raw = read_yaml(path)
    kind = raw["model"]["kind"]
    overrides = [f"model.{k}={v}" for k, v in TINY_MODEL.get(kind, {}).items()]
    if kind == "river":
        if autoencoder is None:
            raise ValueError(f"{path}: a river config needs a trained autoencoder run")
        overrides.append(f"model.autoencoder={autoencoder}")
    overrides += tiny_run_overrides(data_root, max_steps)
    # Configs that observe many frames (Moving MNIST: 10 -> 10) keep their shape at 3 -> 3.
    if raw.get("training", {}).get("condition_frames", 1) >= 4:
        overrides.append("training.condition_frames=3")
    return validate_config(apply_overrides(raw, overrides), str(path))


@pytest.fixture(scope="session")
def tiny_autoencoder_run(tmp_path_factory, tiny_dataset) -> Path:
    """A tiny autoencoder (ae_smoke shrunk: 32×32 frames → 8×4×4 latents) trained 4 steps."""
    from framecast.training.engine import train

    runs = tmp_path_factory.mktemp("tiny_ae_runs")
    config = shrink_config(REPO / "configs" / "ae_smoke.yaml", tiny_dataset, max_steps=4)
    return train(config, runs_dir=runs, run_name="ae", progress=False).run_dir


@pytest.fixture(scope="session")
def tiny_grey_autoencoder_run(tmp_path_factory, tiny_dataset) -> Path:
    """configs/reference_ae.yaml shrunk (greyscale: 32×32×1 frames) and trained 4 steps."""
    from framecast.training.engine import train

    runs = tmp_path_factory.mktemp("tiny_grey_ae_runs")
    config = shrink_config(REPO / "configs" / "reference_ae.yaml", tiny_dataset, max_steps=4)
    return train(config, runs_dir=runs, run_name="ae", progress=False).run_dir


@pytest.fixture(scope="session")
def tiny_river_run(tmp_path_factory, tiny_dataset, tiny_autoencoder_run) -> Path:
    """configs/river_tiny.yaml shrunk and trained 4 steps on the tiny dataset (online
    encoding: the tiny dataset has no latent cache)."""
    from framecast.training.engine import train

    runs = tmp_path_factory.mktemp("tiny_river_runs")
    config = shrink_config(
        REPO / "configs" / "river_tiny.yaml",
        tiny_dataset,
        max_steps=4,
        autoencoder=tiny_autoencoder_run,
    )
    return train(config, runs_dir=runs, run_name="river", progress=False).run_dir


@pytest.fixture(scope="session")
def tiny_vaegan_run(tmp_path_factory, tiny_dataset) -> Path:
    """configs/wubu_vaegan.yaml shrunk (3 context → 3 future frames of 32×32, motion branch
    on) and trained 2 steps on the tiny dataset."""
    from framecast.training.engine import train

    runs = tmp_path_factory.mktemp("tiny_vaegan_runs")
    config = shrink_config(REPO / "configs" / "wubu_vaegan.yaml", tiny_dataset, max_steps=2)
    return train(config, runs_dir=runs, run_name="vaegan", progress=False).run_dir


@pytest.fixture(scope="session")
def tiny_simvp_run(tmp_path_factory, tiny_dataset) -> Path:
    """configs/simvp_smoke.yaml shrunk (32×32 RGB like ``tiny_river_run``, so it can be that
    run's baseline; 3 context -> 3 frames) and trained 4 steps on the tiny dataset."""
    from framecast.training.engine import train

    runs = tmp_path_factory.mktemp("tiny_simvp_runs")
    config = shrink_config(REPO / "configs" / "simvp_smoke.yaml", tiny_dataset, max_steps=4)
    rgb = ["data.channels=3", "model.image_channels=3"]
    config = validate_config(apply_overrides(config.to_dict(), rgb), "tiny simvp")
    return train(config, runs_dir=runs, run_name="simvp", progress=False).run_dir


@pytest.fixture(scope="session")
def tiny_motion_json(tmp_path_factory) -> Path:
    """A JSON session file of 8 synthetic tracking sessions of about 24 frames."""
    from framecast.data.motion import save_sessions, synthetic_sessions

    path = tmp_path_factory.mktemp("tiny_motion") / "sessions.json"
    return save_sessions(synthetic_sessions(8, length=24, seed=0), path)


@pytest.fixture(scope="session")
def tiny_motion_run(tmp_path_factory, tiny_motion_json) -> Path:
    """configs/motion_lstm.yaml shrunk and trained 2 steps on the tiny session file."""
    from framecast.training.engine import train

    runs = tmp_path_factory.mktemp("tiny_motion_runs")
    config = shrink_config(REPO / "configs" / "motion_lstm.yaml", tiny_motion_json, max_steps=2)
    return train(config, runs_dir=runs, run_name="motion", progress=False).run_dir


@pytest.fixture
def shrink(request):
    """``shrink(path, data_root, max_steps=2)``; river configs get the tiny autoencoder,
    motion configs the tiny session file instead of ``data_root``."""

    def _shrink(path: Path, data_root: Path, max_steps: int = 2) -> Config:
        autoencoder = None
        kind = read_yaml(path)["model"]["kind"]
        if kind == "river":  # an autoencoder of the config's channels (1: greyscale)
            grey = read_yaml(path).get("data", {}).get("channels") == 1
            autoencoder = request.getfixturevalue(
                "tiny_grey_autoencoder_run" if grey else "tiny_autoencoder_run"
            )
        if kind == "motion":
            data_root = request.getfixturevalue("tiny_motion_json")
        return shrink_config(path, data_root, max_steps, autoencoder)

    return _shrink


def _write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Encode (T, H, W, 3) uint8 as H.264 with the index up front (``faststart``)."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def write_mp4():
    """Helper (path, (T, H, W, 3) uint8 frames) -> an H.264 mp4 at path."""
    return _write_mp4


class FakeHardware:
    """The hardware :mod:`framecast.hardware` sees, for tests of every precision branch.

    ``fake_hardware.use(cpu=..., gpu=..., probe=...)`` installs a machine class (the
    constants below); ``probe=None`` makes any matmul probe fail the test, since the flags
    alone must decide there. ``probes`` lists the devices probed.
    """

    AMX_XEON = CpuFlags("AVX512", amx=True, avx512_bf16=True)
    BF16_EPYC = CpuFlags("AVX512", amx=False, avx512_bf16=True)  # Zen 4
    AVX2_EPYC = CpuFlags("AVX2", amx=False, avx512_bf16=False)
    AVX512_NO_BF16 = CpuFlags("AVX512", amx=False, avx512_bf16=False)  # Skylake-SP
    OLD_TORCH = CpuFlags("AVX512", amx=None, avx512_bf16=None)
    ARM = CpuFlags("SVE256", amx=False, avx512_bf16=False)
    CAPPED = CpuFlags("AVX2", amx=False, avx512_bf16=True)  # ATEN_CPU_CAPABILITY=avx2
    ISA_LIMIT = CpuFlags("AVX512", amx=True, avx512_bf16=True, isa_limit="ONEDNN_MAX_CPU_ISA=AVX2")
    H200 = GpuInfo("NVIDIA H200", (9, 0))
    A100 = GpuInfo("NVIDIA A100-SXM4-80GB", (8, 0))
    V100 = GpuInfo("Tesla V100-SXM2-32GB", (7, 0))
    P100 = GpuInfo("Tesla P100-PCIE-16GB", (6, 0))
    EMULATED = MatmulProbe(fp32_gflops=61.0, bf16_gflops=0.9)  # the AVX2 EPYC of issue 21
    NATIVE = MatmulProbe(fp32_gflops=78.0, bf16_gflops=210.0)

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.probes: list[str] = []

    def use(
        self,
        cpu: CpuFlags = AVX2_EPYC,
        gpu: GpuInfo | None = None,
        probe: MatmulProbe | None = None,
    ) -> FakeHardware:
        from framecast import hardware

        def measured(device="cpu"):
            self.probes.append(str(device))
            if probe is None:
                raise AssertionError("the flags are clear: no probe expected")
            return probe

        self.monkeypatch.setattr(hardware, "read_cpu_flags", lambda: cpu)
        self.monkeypatch.setattr(hardware, "read_gpu_info", lambda index: gpu)
        self.monkeypatch.setattr(hardware, "probe_matmul", measured)
        hardware.announce.cache_clear()  # each test sees its own announcement
        return self


@pytest.fixture
def fake_hardware(monkeypatch) -> FakeHardware:
    """:class:`FakeHardware` for this test."""
    return FakeHardware(monkeypatch)
