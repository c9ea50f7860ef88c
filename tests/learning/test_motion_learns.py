"""Learning test: the motion LSTM, trained by ``framecast train``'s engine, beats copying the
last tracked frame.

Data: synthetic tracking sessions (data/motion.py: smooth joint motion plus jitter, held
joints and one-frame spikes) written as the users' JSON session file (the raw tracks, as a
recording has them) and given as ``data.root``. The model is configs/motion_lstm.yaml
(per-feature LSTM, fault inputs, median-of-3 residual anchor, speed augmentation) at hidden
size 16, trained through :func:`framecast.training.engine.train` (the kind's data module
with its session split and normalisation, ``MotionModule.training_step``, AdamW with
gradient clipping, checkpoints). The run is reloaded from its last checkpoint with
``load_motion_model`` (the loader ``framecast export`` uses) and scored on sessions it never
saw, against their clean tracks: its error must be well below copy-last's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from framecast.config import apply_overrides, validate_config
from framecast.config.loader import read_yaml
from framecast.data.motion import save_sessions, stack_windows, synthetic_sessions
from framecast.eval.motion import baseline_predictions, motion_errors, predict
from framecast.export.onnx import load_motion_model
from framecast.training.engine import train

REPO = Path(__file__).resolve().parents[2]
MOTION_LSTM = REPO / "configs" / "motion_lstm.yaml"

SESSIONS, HELD_OUT, LENGTH = 40, 16, 120
STEPS = 150
# Model MSE / copy-last MSE (normalised units, the clean next frame of the HELD_OUT sessions)
# after STEPS (one thread, fp32; the seed sets the sessions and training.seed), measured:
# seed 0 0.294, seed 1 0.219, seed 2 0.200, seed 3 0.211 (seed 0: 12 s on a busy 2-core CPU).
# With the loss's gradient cut (loss * 0 + loss.detach()) only weight decay moves the weights
# and the ratio is 1.19 (the random head adds to the median-of-3 anchor). The ceiling leaves
# a margin of 1.5 over the worst seed.
RATIO_CEILING = 0.45


def config(sessions: Path, seed: int):
    overrides = [
        f"data.root={sessions}",
        "model.hidden_size=16",
        f"training.max_steps={STEPS}",
        "training.max_epochs=null",
        f"training.val_every_n_steps={STEPS}",
        "training.lr=3e-3",
        "training.precision=32",  # the ceiling was measured in fp32
        f"training.seed={seed}",
        "training.log_every_n_steps=10",
        "logging.tensorboard=false",
        "logging.progress_bar=false",
    ]
    return validate_config(apply_overrides(read_yaml(MOTION_LSTM), overrides), str(MOTION_LSTM))


def train_and_compare(tmp_path: Path, seed: int) -> tuple[float, float]:
    """Train ``STEPS`` steps with the engine; (model MSE, copy-last MSE) in normalised units
    on ``HELD_OUT`` sessions drawn apart from the training file."""
    sessions = save_sessions(
        synthetic_sessions(SESSIONS, length=LENGTH, seed=seed), tmp_path / "sessions.json"
    )
    result = train(
        config(sessions, seed), runs_dir=tmp_path / "runs", run_name="motion", progress=False
    )
    model, cfg, _ = load_motion_model(result.run_dir, which="last")
    held_out = synthetic_sessions(HELD_OUT, length=LENGTH, seed=1000 + seed)
    x, y = map(torch.from_numpy, stack_windows(held_out, cfg.sequence_length, cfg.target))
    model_mse = float(motion_errors(predict(model, x), y, model.std)["mse_norm"])
    copy_last = baseline_predictions(x)["copy_last"]
    copy_mse = float(motion_errors(copy_last, y, model.std)["mse_norm"])
    return model_mse, copy_mse


def test_motion_lstm_beats_copy_last(tmp_path) -> None:
    model_mse, copy_mse = train_and_compare(tmp_path, seed=0)
    assert model_mse < RATIO_CEILING * copy_mse, (model_mse, copy_mse, model_mse / copy_mse)
