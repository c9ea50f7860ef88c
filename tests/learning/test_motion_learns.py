"""Learning test: the motion LSTM, trained briefly, beats copying the last tracked frame.

Data: synthetic tracking sessions (data/motion.py: smooth joint motion plus jitter, held
joints and one-frame spikes; the clean track is the target). The model is the shipped
configuration of configs/motion_lstm.yaml (per-feature LSTM, fault inputs, median-of-3
residual anchor) at hidden size 16, trained on the training module's objective (MSE to the
clean next frame in normalised units, as ``MotionModule.training_step``). Held-out sessions
must come out well below copy-last's error; an untrained model sits at about copy-last.
"""

from __future__ import annotations

import torch

from framecast.data.motion import Normalisation, stack_windows, synthetic_sessions
from framecast.eval.motion import baseline_predictions, motion_errors, predict
from framecast.models.motion_lstm import MotionLSTM

SEQUENCE, STEPS, BATCH, LR = 10, 150, 64, 3e-3
# Model MSE / copy-last MSE (normalised units, 3 held-out sessions) after STEPS, measured
# (one thread; each seed also draws its own sessions): seed 0 0.280, 1 0.278, 2 0.400,
# 3 0.359, 4 0.250. Untrained, the model is 1.2-2.9x copy-last's error (its random head
# adds to the median-of-3 anchor). The ceiling leaves a margin of 1.5 over the worst seed.
RATIO_CEILING = 0.6


def train_motion(seed: int) -> tuple[float, float, float, list[float]]:
    """Train ``STEPS`` steps; return held-out normalised MSE of (untrained model, trained
    model, copy-last) and the loss curve."""
    sessions = synthetic_sessions(12, length=120, seed=seed)
    train_sessions, test_sessions = sessions[:9], sessions[9:]
    norm = Normalisation.fit(train_sessions)
    x_train, y_train = map(torch.from_numpy, stack_windows(train_sessions, SEQUENCE, "next"))
    x_test, y_test = map(torch.from_numpy, stack_windows(test_sessions, SEQUENCE, "next"))

    torch.manual_seed(seed)
    model = MotionLSTM(
        hidden_size=16,
        num_layers=2,
        dropout=0.0,
        residual=True,
        deltas=True,
        fault_inputs=True,
        anchor="median3",
        per_feature=True,
    )
    model.set_normalisation(norm.mean, norm.std)
    std = model.std.clone()

    def test_mse() -> float:
        return float(motion_errors(predict(model, x_test), y_test, std)["mse_norm"])

    untrained = test_mse()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(STEPS):
        index = torch.randint(len(x_train), (BATCH,), generator=generator)
        pred = model.forward_normalised(model.normalise(x_train[index]))
        loss = torch.nn.functional.mse_loss(pred, model.normalise(y_train[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    copy_last = baseline_predictions(x_test)["copy_last"]
    copy_mse = float(motion_errors(copy_last, y_test, std)["mse_norm"])
    return untrained, test_mse(), copy_mse, losses


def test_motion_lstm_beats_copy_last() -> None:
    untrained, trained, copy_mse, _ = train_motion(seed=0)
    assert trained < RATIO_CEILING * copy_mse, (untrained, trained, copy_mse)
    assert trained < 0.5 * untrained, (untrained, trained)
