"""MotionLSTM: shapes, normalisation inside the model, de-normalised outputs."""

from __future__ import annotations

import pytest
import torch

from framecast.models.motion_lstm import MotionLSTM


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"attention": True},
        {"deltas": False},
        {"fault_inputs": True, "anchor": "median3"},
        {"per_feature": True, "fault_inputs": True, "anchor": "median3"},
        {"per_feature": True, "attention": True, "deltas": False},
    ],
)
def test_shapes_any_batch_and_sequence_length(options):
    torch.manual_seed(0)
    model = MotionLSTM(hidden_size=16, **options).eval()
    for b, t in [(1, 10), (3, 4), (2, 1), (2, 2)]:
        assert model(torch.randn(b, t, 12)).shape == (b, 12)


def test_fault_features_flag_holds_and_measure_spikes():
    x = torch.tensor([0.0, 1.0, 2.0, 2.0, 2.0, 30.0, 6.0]).reshape(1, 7, 1)
    holds = MotionLSTM.hold_flags(x).flatten().tolist()
    assert holds == [0, 0, 0, 1, 1, 0, 0]
    # causal median of 3 (first frame repeated before the window): the spike at frame 5
    # (30) is replaced by a neighbour; a sort-free formula, the same as torch.median
    median = MotionLSTM.causal_median3(x).flatten().tolist()
    assert median == [0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 6.0]
    y = torch.randn(4, 9, 12)
    padded = torch.cat([y[:, :1], y[:, :1], y], dim=1)
    reference = torch.stack([padded[:, i : i + 3] for i in range(9)], 1).median(dim=2).values
    assert torch.equal(MotionLSTM.causal_median3(y), reference)


def test_median_anchor_keeps_a_last_frame_outlier_out_of_the_prediction():
    torch.manual_seed(0)
    model = MotionLSTM(hidden_size=16, fault_inputs=True, anchor="median3").eval()
    torch.nn.init.zeros_(model.head[-1].weight)
    torch.nn.init.zeros_(model.head[-1].bias)
    x = torch.linspace(0, 1, 10).reshape(1, 10, 1).repeat(1, 1, 12)
    x[0, -1, 4] += 25.0  # one-frame outlier on the last frame of hips y
    with torch.no_grad():
        out = model(x)
    assert torch.allclose(out, x[:, -2], atol=1e-5)  # the median of (0.78, 0.89, 26): 0.89


def test_per_feature_model_treats_features_alike_but_knows_which_is_which():
    torch.manual_seed(0)
    model = MotionLSTM(hidden_size=16, per_feature=True, fault_inputs=True).eval()
    x = torch.randn(3, 10, 1).repeat(1, 1, 12)
    with torch.no_grad():
        out = model(x)
        torch.nn.init.zeros_(model.embedding)
        same = model(x)
    # a feature's prediction depends on its own sequence and its embedding only
    assert torch.allclose(same, same[:, :1].expand(-1, 12), atol=1e-6)
    assert not torch.allclose(out, out[:, :1].expand(-1, 12), atol=1e-4)


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
