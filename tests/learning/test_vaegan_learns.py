"""Learning test: the WuBu-GAAD VAE-GAN, trained by ``framecast train``'s engine, predicts
moving blobs.

Data: greyscale videos of a soft bright blob moving in a straight line at 2-3 pixels per
frame on black (32×32), written as a framecast dataset (train/val/test shards). The model is
configs/wubu_vaegan.yaml shrunk to the suite's tiny sizes (conftest ``TINY_MODEL``: 3 context
→ 3 future frames, motion branch on), trained through
:func:`framecast.training.engine.train` (the kind's LightningModule with its two optimisers
stepped by hand, the data module, the schedule, gradient clipping, checkpoints); the run is
then reloaded with ``load_vaegan`` and scored on the held-out test videos: from 3 frames its
prediction of the next 3 (the posterior mean's) must have a clearly lower MSE than repeating
the last frame, and than the mean future of the training clips, which ignores the context.
An untrained model, or a loss that teaches nothing, scores about ten times worse.
"""

from __future__ import annotations

from pathlib import Path

from framecast.config import apply_overrides, validate_config
from framecast.models.vaegan.loading import load_vaegan
from framecast.training.engine import train

REPO = Path(__file__).resolve().parents[2]
VAEGAN = REPO / "configs" / "wubu_vaegan.yaml"

SIZE, VIDEO_FRAMES = 32, 8
CONTEXT, FUTURE = 3, 3
SPEED = (2.0, 3.0)
STEPS = 300
# Held-out MSE of the 48 test clips' 3 predicted frames after STEPS (one thread, fp32; the
# seed sets the data and training.seed), measured: model / copy-last: seed 0 0.588, seed 1
# 0.551, seed 2 0.645, seed 3 0.624; model / context-blind mean future: seed 0 0.761, seed 1
# 0.743, seed 2 0.770, seed 3 0.768 (model MSE 0.047-0.059; the test about 60 s on one core
# of a busy 2-core CPU). At 2-3 px per frame copy-last (0.086-0.093) is barely better than an
# all-black output (0.095-0.105) and worse than the mean future of the training clips
# (0.064-0.077), which ignores the context: beating that one too shows the context reaches
# the prediction. The untrained model scores 0.80-1.13 (9-13 times copy-last); with the
# generator loss's gradient cut (loss * 0 + loss.detach()) the run ends there (seed 0 0.796,
# seed 1 1.130). lambda_gan 0.1 instead of the shipped 1.0: with 1.0 the ratios were
# 0.52-0.67 to copy-last but 0.67-0.88 to the mean future, too close to 1 for a ceiling.
# The ceilings leave a margin of 1.24 and 1.17 over the worst seed.
COPY_RATIO_CEILING = 0.8
BLIND_RATIO_CEILING = 0.9


def config(shrink, data_root: Path, seed: int):
    base = shrink(VAEGAN, data_root, max_steps=STEPS)
    overrides = [
        "data.channels=1",
        "model.image_channels=1",
        "data.batch_size=16",
        "data.clips_per_video=4",
        "data.eval_clips_per_video=1",
        f"training.num_observations={CONTEXT + FUTURE}",
        f"training.condition_frames={CONTEXT}",
        f"training.frames_to_generate={FUTURE}",
        "model.lambda_gan=0.1",
        "training.lr=3e-3",
        "training.warmup_steps=10",
        "training.precision=32",  # the ceiling was measured in fp32
        f"training.seed={seed}",
        "training.log_every_n_steps=10",
    ]
    return validate_config(apply_overrides(base.to_dict(), overrides), "vaegan learning test")


def mse(a, b) -> float:
    return float((a - b).square().mean())


def train_and_compare(
    tmp_path, shrink, blob_dataset, windows, seed: int
) -> tuple[float, float, float]:
    """Train ``STEPS`` steps with the engine; on the test videos' clips, the MSE of the
    model, of copy-last and of the mean future of the training clips (context-blind)."""
    videos = blob_dataset(seed, frames=VIDEO_FRAMES, size=SIZE, speed=SPEED)
    result = train(
        config(shrink, tmp_path / "data", seed),
        runs_dir=tmp_path / "runs",
        run_name="vaegan",
        progress=False,
    )
    run = load_vaegan(result.run_dir, which="last")
    clips = windows(videos["test"], CONTEXT + FUTURE)
    context, future = clips[:, :CONTEXT], clips[:, CONTEXT:]
    predicted = run.predict(context)[:, 0]  # the posterior mean's future (B, F, 1, H, W)
    mean_future = windows(videos["train"], CONTEXT + FUTURE)[:, CONTEXT:].mean(0)
    return mse(predicted, future), mse(context[:, -1:], future), mse(mean_future, future)


def test_vaegan_beats_copy_last_on_moving_blobs(tmp_path, shrink, blob_dataset, windows) -> None:
    model_mse, copy_mse, blind_mse = train_and_compare(
        tmp_path, shrink, blob_dataset, windows, seed=0
    )
    report = (model_mse, copy_mse, blind_mse)
    assert model_mse < COPY_RATIO_CEILING * copy_mse, report
    assert model_mse < BLIND_RATIO_CEILING * blind_mse, report
