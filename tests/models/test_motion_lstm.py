"""MotionLSTM: shapes, normalisation inside the model, de-normalised outputs."""

from __future__ import annotations

import pytest
import torch

from framecast.models.motion_lstm import MotionLSTM


@pytest.mark.parametrize("attention, deltas", [(False, True), (True, True), (False, False)])
def test_shapes_any_batch_and_sequence_length(attention, deltas):
    torch.manual_seed(0)
    model = MotionLSTM(hidden_size=16, attention=attention, deltas=deltas).eval()
    for b, t in [(1, 10), (3, 4)]:
        assert model(torch.randn(b, t, 12)).shape == (b, 12)


def test_normalisation_is_stored_and_outputs_are_de_normalised():
    torch.manual_seed(0)
    model = MotionLSTM(hidden_size=16).eval()
    mean, std = torch.linspace(-50, 50, 12), torch.linspace(1, 30, 12)
    model.set_normalisation(mean, std)
    assert {"mean", "std"} <= set(model.state_dict())
    x = torch.randn(2, 10, 12)
    with torch.no_grad():
        raw = model(x * std + mean)
        normalised = model.forward_normalised(x)
    assert torch.allclose(raw, normalised * std + mean, atol=1e-4)
    # a zero head with the residual path copies the last frame, in the users' units
    torch.nn.init.zeros_(model.head[-1].weight)
    torch.nn.init.zeros_(model.head[-1].bias)
    with torch.no_grad():
        assert torch.allclose(model(x * std + mean), x[:, -1] * std + mean, atol=1e-4)
    copy = MotionLSTM(hidden_size=16)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.mean, mean) and torch.equal(copy.std, std)
