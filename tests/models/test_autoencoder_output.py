"""The autoencoder's output activation: clamp reaches exact black, tanh cannot."""

import pytest
import torch

from framecast.config.autoencoder import AutoencoderConfig
from framecast.models.autoencoder.autoencoder import CLAMP_GRADIENT_LEAK, Autoencoder


def tiny(output_activation: str) -> Autoencoder:
    cfg = AutoencoderConfig(
        image_channels=1,
        latent_channels=2,
        base_channels=8,
        channel_multipliers=[1, 1],
        downsampling_steps=1,
        num_res_blocks=1,
        norm_groups=4,
        attention=False,
        output_activation=output_activation,
    )
    return Autoencoder.from_config(cfg, 8)


def test_clamp_outputs_exact_black_and_tanh_never_does():
    raw = torch.tensor([-5.0, -1.0, 0.3, 4.0])
    clamp, tanh = tiny("clamp").eval(), tiny("tanh").eval()
    assert clamp.to_frames(raw).tolist() == pytest.approx([-1.0, -1.0, 0.3, 1.0])
    assert clamp.to_frames(raw)[0].item() == -1.0  # exactly black, not approximately
    assert tanh.to_frames(raw)[0].item() > -1.0


def test_clamp_in_training_keeps_value_and_leaks_gradient_outside_range():
    model = tiny("clamp").train()
    raw = torch.tensor([-3.0, 0.5, 2.0], requires_grad=True)
    frames = model.to_frames(raw)
    assert frames.tolist() == pytest.approx([-1.0, 0.5, 1.0])  # forward is the clipped value
    frames.sum().backward()
    assert raw.grad.tolist() == pytest.approx([CLAMP_GRADIENT_LEAK, 1.0, CLAMP_GRADIENT_LEAK])


def test_a_clamped_autoencoder_decodes_in_range():
    model = tiny("clamp").eval()
    frames = torch.rand(2, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        out = model(frames).rgb
    assert out.shape == (2, 1, 8, 8)
    assert out.min() >= -1 and out.max() <= 1


def test_unknown_output_activation_is_refused_by_name():
    with pytest.raises(ValueError, match="output_activation"):
        AutoencoderConfig(output_activation="relu")
