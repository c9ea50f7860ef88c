"""Stage-1 frame augmentations: analytic cases, black stays black, the config reaches them."""

from __future__ import annotations

import pytest
import torch

from framecast.config import apply_overrides, validate_config
from framecast.data.augment import (
    FrameAugment,
    random_blur,
    random_hflip,
    random_intensity,
    random_rotate,
)
from framecast.errors import ConfigError


def plume_frames(count: int = 6, size: int = 16) -> torch.Tensor:
    """(count, 1, size, size) black frames with one off-centre grey block each."""
    frames = torch.full((count, 1, size, size), -1.0)
    frames[:, :, 5:9, 3:6] = 0.2
    return frames


def test_defaults_are_off_and_return_the_frames_unchanged():
    augment = FrameAugment()
    frames = plume_frames()
    inputs, target = augment(frames)
    assert not augment.enabled
    assert inputs is frames and target is frames


def test_hflip_probability_one_mirrors_and_zero_keeps():
    frames = plume_frames()
    assert torch.equal(random_hflip(frames, 1.0), frames.flip(-1))
    assert torch.equal(random_hflip(frames, 0.0), frames)
    mixed = random_hflip(frames, 0.5, torch.Generator().manual_seed(0))
    flipped = [torch.equal(m, f.flip(-1)) for m, f in zip(mixed, frames, strict=True)]
    assert 0 < sum(flipped) < len(flipped)  # per frame, not per batch


def test_rotation_by_zero_is_identity():
    frames = plume_frames()
    assert torch.allclose(random_rotate(frames, 0.0), frames, atol=1e-6)


def test_rotation_quarter_turn_matches_rot90(monkeypatch):
    frames = plume_frames(2)
    monkeypatch.setattr(
        "framecast.data.augment._per_frame", lambda count, generator, device: torch.ones(count)
    )
    rotated = random_rotate(frames, 90.0)
    # A quarter turn of a square frame loses nothing: exactly rot90 (anticlockwise on screen).
    assert torch.allclose(rotated, torch.rot90(frames, k=1, dims=(-2, -1)), atol=1e-5)


@pytest.mark.parametrize(
    "transform",
    [
        lambda f, g: random_rotate(f, 40.0, g),
        lambda f, g: random_intensity(f, (0.3, 3.0), g),
        lambda f, g: random_blur(f, 1.0, (0.5, 2.0), g),
        lambda f, g: random_hflip(f, 1.0, g),
    ],
    ids=["rotate", "intensity", "blur", "hflip"],
)
def test_black_stays_black_and_values_stay_in_range(transform):
    black = torch.full((3, 1, 16, 16), -1.0)
    generator = torch.Generator().manual_seed(1)
    assert torch.equal(transform(black, generator), black)
    out = transform(plume_frames(), generator)
    assert out.min() >= -1 and out.max() <= 1


def test_intensity_scales_the_smoke_above_black():
    frames = plume_frames(1)
    halved = random_intensity(frames, (0.5, 0.5))
    assert torch.allclose(halved + 1, (frames + 1) * 0.5)
    doubled = random_intensity(frames, (4.0, 4.0))
    assert doubled.max() == 1.0  # 1.2 * 4 - 1 clips at white


def test_blur_keeps_the_mass_away_from_the_border_and_spreads_it():
    frames = plume_frames(1, size=24)
    blurred = random_blur(frames, 1.0, (1.0, 1.0))
    assert torch.allclose((blurred + 1).sum(), (frames + 1).sum(), rtol=1e-5)
    assert (blurred > -1).sum() > (frames > -1).sum()
    assert torch.equal(random_blur(frames, 0.0, (1.0, 1.0)), frames)


def test_input_noise_reaches_the_input_only():
    augment = FrameAugment(input_noise_std=0.1)
    frames = plume_frames()
    inputs, target = augment(frames, torch.Generator().manual_seed(0))
    assert torch.equal(target, frames)
    assert 0.08 < (inputs - frames).std() < 0.12


def test_same_generator_state_gives_the_same_batch():
    augment = FrameAugment(hflip=0.5, rotate_degrees=20, intensity_scale=(0.5, 2), blur_prob=0.5)
    frames = plume_frames()
    a = augment(frames, torch.Generator().manual_seed(3))
    b = augment(frames, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_config_validates_ranges_and_names_the_key():
    base = {"model": {"kind": "autoencoder"}}
    config = validate_config(
        apply_overrides(base, ["model.augment.hflip=0.5", "model.augment.intensity_scale=[0.5,2]"])
    )
    assert FrameAugment(**config.model.augment.model_dump()).enabled
    with pytest.raises(ConfigError, match="intensity_scale"):
        validate_config(apply_overrides(base, ["model.augment.intensity_scale=[2,0.5]"]))
    with pytest.raises(ConfigError, match="hflip"):
        validate_config(apply_overrides(base, ["model.augment.hflip=1.5"]))
    with pytest.raises(ConfigError, match="flip_vertical"):
        validate_config(apply_overrides(base, ["model.augment.flip_vertical=0.5"]))


def test_training_step_reconstructs_the_augmented_frame_from_the_noised_input(monkeypatch):
    """The module feeds the noised frame to the encoder and scores against the clean,
    transformed one; validation sees the data untouched."""
    from framecast.training.autoencoder import AutoencoderModule

    config = validate_config(
        apply_overrides(
            {"model": {"kind": "autoencoder"}},
            [
                "model.image_channels=1",
                "model.base_channels=8",
                "model.norm_groups=4",
                "model.num_res_blocks=1",
                "data.channels=1",
                "data.image_size=16",
                "data.root=unused",
                "model.augment.hflip=1.0",
                "model.augment.input_noise_std=0.2",
            ],
        )
    )
    module = AutoencoderModule(config)
    seen = {}
    original = AutoencoderModule.compute_loss

    def spy(self, frames, labels, sample_posterior=None, inputs=None):
        seen["frames"], seen["inputs"] = frames, inputs
        return original(self, frames, labels, sample_posterior, inputs)

    monkeypatch.setattr(AutoencoderModule, "compute_loss", spy)
    monkeypatch.setattr(AutoencoderModule, "log", lambda *a, **k: None)
    monkeypatch.setattr(AutoencoderModule, "log_dict_prefixed", lambda *a, **k: None)
    clips = plume_frames(4)[:, None]  # (B, T=1, C, H, W)
    loss = module.training_step({"frames": clips}, 0)
    assert torch.isfinite(loss)
    assert torch.equal(seen["frames"], clips[:, 0].flip(-1))
    noise = seen["inputs"] - seen["frames"]
    assert 0.15 < noise.std() < 0.25
