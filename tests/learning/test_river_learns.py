"""Learning test: RIVER, trained by ``framecast train``'s engine on a trained autoencoder's
latents, beats copy-last.

Data: greyscale videos of a soft bright blob moving in a straight line at 2.5-3.5 pixels per
frame on black (32×32), written as a framecast dataset (train/val/test shards). Both stages
are trained through :func:`framecast.training.engine.train`:

1. configs/ae_smoke.yaml shrunk to the suite's tiny widths (conftest ``TINY_MODEL``),
   greyscale and with two halvings instead of three, so that 32×32×1 frames become 8×8×8
   latents and a frame's step is most of a 4-pixel latent cell (under half of an 8-pixel
   one at three halvings);
2. configs/river_tiny.yaml shrunk onto that autoencoder (the kind's LightningModule: clips
   encoded online by the frozen autoencoder, ``smoke_threshold: auto`` derived from the
   training frames, the smoke-weighted flow-matching loss with the mask measured from the
   black frame's latent, gradient clipping, the optimiser and schedule, checkpoints).

The river run is then reloaded with ``load_river`` (the checkpoint carries the autoencoder)
and, from 2 frames of each held-out test clip, predicts the next 3: the predicted latents
must be clearly closer to the encoded true future than the last context latent is, and the
decoded frames clearly closer to the true frames than the last context frame. A loss that
teaches nothing (the untrained regressor's rollout is noise) fails both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.flow.pipeline import load_river
from framecast.training.engine import train

REPO = Path(__file__).resolve().parents[2]
AE_SMOKE = REPO / "configs" / "ae_smoke.yaml"
RIVER_TINY = REPO / "configs" / "river_tiny.yaml"

SIZE, VIDEO_FRAMES, SPEED = 32, 6, (2.5, 3.5)
CONTEXT, FUTURE = 2, 3
LATENT_RES = SIZE // 4  # two halvings
COUNTS = {"train": 48, "val": 4, "test": 32}
AE_STEPS, STEPS = 100, 300
# Over the 3 predicted frames of the 64 held-out test clips after STEPS (one thread, fp32;
# the seed sets the data, both runs' training.seed and the sampler's noise), measured:
#   latent MSE / copy-last latent MSE: seed 0 0.207, seed 1 0.228, seed 2 0.290, seed 3 0.196
#   pixel MSE / copy-last pixel MSE:   seed 0 0.081, seed 1 0.073, seed 2 0.113, seed 3 0.096
# (seed 0: 56 s for both stages and the scoring on a busy 2-core CPU). With the flow loss's
# gradient cut (loss * 0 + loss.detach()) the ratios are 1.39 (latent) and 0.87 (pixel: the
# decoded noise latents score near copy-last, far above the trained model). The ceilings
# leave a margin of 1.55 (latent) and 1.8 (pixel) over the worst seed.
LATENT_RATIO_CEILING = 0.45
PIXEL_RATIO_CEILING = 0.2


def autoencoder_config(shrink, data_root: Path, seed: int):
    """configs/ae_smoke.yaml at the suite's tiny widths, greyscale, 32×32 → 8×8×8 latents."""
    base = shrink(AE_SMOKE, data_root, max_steps=AE_STEPS)
    overrides = [
        "data.channels=1",
        "model.image_channels=1",
        "model.downsampling_steps=2",
        "model.channel_multipliers=[1, 2, 4]",
        "data.batch_size=8",  # clips of 4 frames: 32 frames a step
        "data.clips_per_video=2",
        "training.warmup_steps=10",
        "training.lr=3e-3",
        f"training.seed={seed}",
        "training.log_every_n_steps=10",
    ]
    return validate_config(apply_overrides(base.to_dict(), overrides), "tiny grey autoencoder")


def river_config(autoencoder: Path, data_root: Path, seed: int):
    """configs/river_tiny.yaml on ``autoencoder``'s 8×8×8 latents, 2 → 3 frames."""
    overrides = [
        f"model.autoencoder={autoencoder}",
        "model.vector_field_regressor.state_size=8",
        f"model.vector_field_regressor.state_res=[{LATENT_RES}, {LATENT_RES}]",
        f"data.root={data_root}",
        f"data.image_size={SIZE}",
        "data.channels=1",
        "data.num_workers=0",
        "data.eval_clips_per_video=1",
        f"training.num_observations={CONTEXT + FUTURE}",
        f"training.condition_frames={CONTEXT}",
        f"training.frames_to_generate={FUTURE}",
        f"training.max_steps={STEPS}",
        f"training.val_every_n_steps={STEPS}",
        "training.limit_val_batches=1",
        "training.precision=32",  # the ceilings were measured in fp32
        f"training.seed={seed}",
        "training.log_every_n_steps=10",
        "logging.tensorboard=false",
        "logging.progress_bar=false",
    ]
    return validate_config(apply_overrides(read_yaml(RIVER_TINY), overrides), str(RIVER_TINY))


def train_and_compare(
    tmp_path, blob_dataset, windows, shrink, seed: int
) -> tuple[float, float, float, float]:
    """Train both stages with the engine; on the test videos return (model latent MSE,
    copy-last latent MSE, model pixel MSE, copy-last pixel MSE)."""
    data = tmp_path / "data"
    test_videos = blob_dataset(seed, counts=COUNTS, frames=VIDEO_FRAMES, size=SIZE, speed=SPEED)[
        "test"
    ]
    runs = tmp_path / "runs"
    ae_run = train(
        autoencoder_config(shrink, data, seed), runs_dir=runs, run_name="ae", progress=False
    ).run_dir
    river_run = train(
        river_config(ae_run, data, seed), runs_dir=runs, run_name="river", progress=False
    ).run_dir

    pipeline = load_river(river_run, which="last")
    clips = windows(test_videos, CONTEXT + FUTURE)
    context, future = clips[:, :CONTEXT], clips[:, CONTEXT:]
    predicted = pipeline.predict(context, FUTURE, generator=torch.Generator().manual_seed(seed))
    future_latents = pipeline.encode(future)
    last_latent = pipeline.encode(context[:, -1:])
    latent_mse = float((predicted.latents[:, 0] - future_latents).square().mean())
    copy_latent_mse = float((last_latent - future_latents).square().mean())
    pixel_mse = float((predicted.frames[:, 0] - future).square().mean())
    copy_pixel_mse = float((context[:, -1:] - future).square().mean())
    return latent_mse, copy_latent_mse, pixel_mse, copy_pixel_mse


def test_river_beats_copy_last_on_moving_blobs(tmp_path, blob_dataset, windows, shrink) -> None:
    latent, copy_latent, pixel, copy_pixel = train_and_compare(
        tmp_path, blob_dataset, windows, shrink, seed=0
    )
    assert latent < LATENT_RATIO_CEILING * copy_latent, (latent, copy_latent, latent / copy_latent)
    assert pixel < PIXEL_RATIO_CEILING * copy_pixel, (pixel, copy_pixel, pixel / copy_pixel)


# Distillation (framecast distill): the river run above distilled into a one-step student,
# DISTILL_STEPS steps of the engine (model.distill: Euler 10 from warm start 0.1 as the
# teacher, Euler 1 as the student). On the 3 predicted frames of the test clips at 1 NFE per
# frame (Euler 1 from s = 0.1), latent MSE, measured (one thread, fp32; 115-164 s each on a
# busy 2-core CPU, both stages and the distillation):
#   student / copy-last:                  seed 0 0.217, seed 1 0.223, seed 2 0.285
#   student / the teacher itself at 1 NFE: seed 0 0.840, seed 1 0.930, seed 2 0.898
# The teacher's flow is nearly straight on these blobs, so even its own one step beats
# copy-last; what distillation adds is the second ratio. With the loss's gradient cut the
# student keeps the teacher's weights and that ratio is 1.0 exactly (same noise), so the
# ceiling 0.97 fails it; its margin over the worst seed is thin (1.04), over seed 0 (the
# one run here, deterministic on one thread) 1.15.
DISTILL_STEPS = 150
STUDENT_RATIO_CEILING = 0.4
STUDENT_VS_UNDISTILLED_CEILING = 0.97


def one_step_latent_mse(run: Path, context: torch.Tensor, future: torch.Tensor, seed: int):
    """Latent MSE of ``run``'s prediction at 1 NFE per frame (Euler 1 from warm start 0.1)."""
    from framecast.flow.sampling import SamplerConfig
    from framecast.flow.solvers import SolverConfig

    pipeline = load_river(run, which="last")
    sampler = SamplerConfig(SolverConfig("euler", 1), warm_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    predicted = pipeline.predict(context, FUTURE, sampler, generator=generator)
    assert predicted.nfe_per_frame == 1
    return float((predicted.latents[:, 0] - pipeline.encode(future)).square().mean())


def distill_and_compare(tmp_path, blob_dataset, windows, shrink, seed: int):
    """(student latent MSE, teacher's at 1 NFE, copy-last latent MSE) on the test clips."""
    from framecast.training.river import distill_config

    data = tmp_path / "data"
    test_videos = blob_dataset(seed, counts=COUNTS, frames=VIDEO_FRAMES, size=SIZE, speed=SPEED)[
        "test"
    ]
    runs = tmp_path / "runs"
    ae = train(autoencoder_config(shrink, data, seed), runs_dir=runs, run_name="ae", progress=False)
    teacher = train(
        river_config(ae.run_dir, data, seed), runs_dir=runs, run_name="river", progress=False
    ).run_dir
    overrides = [
        f"training.max_steps={DISTILL_STEPS}",
        f"training.val_every_n_steps={DISTILL_STEPS}",
        "training.warmup_steps=10",
        "training.lr=1e-3",
        "model.distill.teacher_precision=fp32",
        f"training.seed={seed}",
    ]
    config = distill_config(teacher, overrides, which="last")
    student = train(config, runs_dir=runs, run_name="student", progress=False).run_dir

    clips = windows(test_videos, CONTEXT + FUTURE)
    context, future = clips[:, :CONTEXT], clips[:, CONTEXT:]
    pipeline = load_river(teacher, which="last")
    last = pipeline.encode(context[:, -1:])
    copy_last = float((last - pipeline.encode(future)).square().mean())
    return (
        one_step_latent_mse(student, context, future, seed),
        one_step_latent_mse(teacher, context, future, seed),
        copy_last,
    )


def test_one_step_student_beats_copy_last_and_the_undistilled_teacher(
    tmp_path, blob_dataset, windows, shrink
) -> None:
    student, teacher, copy_last = distill_and_compare(
        tmp_path, blob_dataset, windows, shrink, seed=0
    )
    assert student < STUDENT_RATIO_CEILING * copy_last, (student, copy_last, student / copy_last)
    assert student < STUDENT_VS_UNDISTILLED_CEILING * teacher, (student, teacher, student / teacher)
