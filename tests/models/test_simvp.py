"""SimVP+gSTA (framecast.models.simvp) and its config: shapes, rollout, range, gradients,
and config errors that name the key."""

from __future__ import annotations

import pytest
import torch

from framecast.config import validate_config
from framecast.config.simvp import SimVPConfig
from framecast.errors import ConfigError
from framecast.models.autoencoder.autoencoder import CLAMP_GRADIENT_LEAK, bounded_frames
from framecast.models.simvp import GSTABlock, SimVP

SIZE = 16


def tiny(
    t_in: int = 3, t_out: int = 2, channels: int = 1, output_activation: str = "clamp", **kw
) -> SimVP:
    cfg = SimVPConfig(
        image_channels=channels,
        hid_channels=4,
        hid_translator=8,
        num_encoder_layers=kw.pop("num_encoder_layers", 4),
        num_translator_blocks=2,
        attention_kernel_size=7,
        attention_dilation=2,
        mlp_ratio=2.0,
        output_activation=output_activation,
        **kw,
    )
    torch.manual_seed(0)
    return SimVP.from_config(cfg, SIZE, t_in, t_out)


def clips(batch: int, frames: int, channels: int = 1) -> torch.Tensor:
    return (
        torch.rand(batch, frames, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
        * 2
        - 1
    )


@pytest.mark.parametrize(("t_in", "t_out", "channels"), [(3, 2, 1), (2, 5, 3), (4, 4, 1)])
def test_forward_predicts_t_out_frames(t_in, t_out, channels):
    model = tiny(t_in, t_out, channels)
    out = model(clips(2, t_in, channels))
    assert out.shape == (2, t_out, channels, SIZE, SIZE)
    assert model.latent_size == SIZE // 4  # two halvings at num_encoder_layers=4


@pytest.mark.parametrize("layers", [1, 2, 3, 5])
def test_any_number_of_encoder_layers_keeps_the_frame_size(layers):
    model = tiny(num_encoder_layers=layers)
    assert model.latent_size == SIZE // 2 ** (layers // 2)
    assert model(clips(1, 3)).shape == (1, 2, 1, SIZE, SIZE)


def test_rollout_reaches_any_horizon_and_feeds_back_the_newest_frames():
    model = tiny(t_in=3, t_out=2).eval()
    context = clips(2, 5)  # longer than T_in: the newest 3 frames are read
    calls = []
    with torch.no_grad():
        out = model.rollout(context, 7, progress=calls.append)
        assert out.shape == (2, 7, 1, SIZE, SIZE)
        assert calls == list(range(7))
        # Chunk by chunk, by hand: 2 + 2 + 2 + 1 frames.
        window, expected = context[:, -3:], []
        for _ in range(4):
            chunk = model(window)
            expected.append(chunk)
            window = torch.cat([window, chunk], dim=1)[:, -3:]
        assert torch.equal(out, torch.cat(expected, dim=1)[:, :7])
        assert torch.equal(model.rollout(context, 1), expected[0][:, :1])


def test_rollout_refuses_too_short_a_context():
    model = tiny(t_in=3).eval()
    with pytest.raises(ValueError, match=r"at least 3 frames"):
        model.rollout(clips(1, 2), 4)
    with pytest.raises(ValueError, match=r"T = 3 frames, got \(1, 2, 1, 16, 16\)"):
        model(clips(1, 2))
    with pytest.raises(ValueError, match=r"\(B, T, 1, 16, 16\)"):
        model(clips(1, 3, channels=3))


@pytest.mark.parametrize("activation", ["clamp", "tanh"])
def test_predictions_stay_in_frame_range(activation):
    model = tiny(output_activation=activation)
    with torch.no_grad():  # make the readout overshoot on purpose
        model.decoder.readout.bias.fill_(5.0)
        high = model.eval()(clips(2, 3))
        model.decoder.readout.bias.fill_(-5.0)
        low = model(clips(2, 3))
    assert high.max() <= 1 and low.min() >= -1
    if activation == "clamp":  # exactly black, as the autoencoder's clamp
        assert (low == -1).all() and (high == 1).all()


def test_clamp_leaks_gradient_in_training_only():
    raw = torch.tensor([-3.0, 0.5, 2.0], requires_grad=True)
    frames = bounded_frames(raw, "clamp", training=True)
    assert frames.tolist() == pytest.approx([-1.0, 0.5, 1.0])
    frames.sum().backward()
    assert raw.grad.tolist() == pytest.approx([CLAMP_GRADIENT_LEAK, 1.0, CLAMP_GRADIENT_LEAK])


def test_gsta_block_keeps_its_shape_and_starts_near_identity():
    block = GSTABlock(12, kernel_size=21, dilation=3, mlp_ratio=4.0).eval()
    x = torch.randn(2, 12, 9, 11)
    y = block(x)
    assert y.shape == x.shape
    # Layer scale 1e-2 on both branches: a fresh block moves its input only a little.
    assert (y - x).abs().mean() < 0.1 * x.abs().mean()
    # The decomposed large kernel: 5×5 depthwise, then 7×7 depthwise of dilation 3.
    assert block.gating.local.kernel_size == (5, 5)
    assert block.gating.dilated.kernel_size == (7, 7) and block.gating.dilated.dilation == (3, 3)


def test_gradient_reaches_every_parameter():
    model = tiny(t_in=3, t_out=2, drop_path=0.1).train()
    target = clips(3, 2)
    loss = (model(clips(3, 3)) - target).square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_skip_starts_as_the_last_context_frame():
    model = tiny(t_in=3, t_out=2)
    skips = torch.randn(1, 3 * 4, SIZE, SIZE)
    mixed = model.skip(skips).reshape(1, 2, 4, SIZE, SIZE)
    last = skips.reshape(1, 3, 4, SIZE, SIZE)[:, -1]
    for frame in range(2):
        assert torch.allclose(mixed[:, frame], last)


def test_eval_is_deterministic_and_batch_independent():
    model = tiny().eval()
    x = clips(4, 3)
    with torch.no_grad():
        whole = model(x)
        halves = torch.cat([model(x[:2]), model(x[2:])])
    assert torch.allclose(whole, halves, atol=1e-6)


# -- config -------------------------------------------------------------------------------
def _raw(**model) -> dict:
    return {"model": {"kind": "simvp", **model}, "data": {"channels": 1}}


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ({"hid_chanels": 8}, "model.hid_chanels"),  # typo: unknown key
        ({"hid_channels": 0}, "model.hid_channels"),
        ({"drop_path": 1.0}, "model.drop_path"),
        ({"mlp_ratio": 0}, "model.mlp_ratio"),
        ({"output_activation": "relu"}, "model.output_activation"),
        ({"kernel_size": 4}, "kernel_size=4"),
        ({"attention_kernel_size": 20}, "attention_kernel_size=20"),
        ({"attention_dilation": 11}, "attention_dilation=11"),
        ({"hid_channels": 5, "norm_groups": 2}, "norm_groups=2"),
    ],
)
def test_bad_config_names_the_key(model, key):
    with pytest.raises(ConfigError) as info:
        validate_config(_raw(**model), "s.yaml")
    assert key in str(info.value) and "s.yaml" in str(info.value)


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'model.depth'.*hid_translator"):
        validate_config(_raw(depth=3))


def test_image_channels_follow_data_channels():
    assert validate_config(_raw()).model.image_channels == 1
    with pytest.raises(ConfigError, match=r"model.image_channels=3 disagrees with data.channels=1"):
        validate_config(_raw(image_channels=3))


def test_image_size_that_does_not_divide_is_a_config_error():
    cfg = SimVPConfig(num_encoder_layers=4)
    with pytest.raises(ConfigError, match=r"'data.image_size' has value 30.*multiple of 4"):
        SimVP.from_config(cfg, 30, 3, 7)


def test_shipped_config_sizes():
    """configs/simvp_smoke.yaml: the size its header states, at 64×64×1, 3 -> 7."""
    from pathlib import Path

    from framecast.config import load_config
    from framecast.training.simvp import build_simvp

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "simvp_smoke.yaml")
    model = build_simvp(config)
    assert (model.input_frames, model.output_frames, model.image_channels) == (3, 7, 1)
    assert model.latent_size == 16
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 1.46
