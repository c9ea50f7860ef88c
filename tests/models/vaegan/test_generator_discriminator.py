"""VideoGenerator and VideoDiscriminator: shapes, ranges, FiLM starting as the identity,
spectral norm, gradients and errors. CPU, base_channels 8. (FiLM's dependence on region
content: test_film.py.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framecast.models.vaegan.discriminator import VideoDiscriminator
from framecast.models.vaegan.generator import VideoGenerator

LATENT = 16
REGIONS = 4
CONTEXT = 2


def _context(image_size: int, batch: int, seed: int = 0) -> torch.Tensor:
    """(batch, CONTEXT, 3, image_size, image_size) random frames in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, CONTEXT, 3, image_size, image_size, generator=gen) * 2 - 1


def _boxes(image_size: int, batch: int | None = None, seed: int = 0) -> torch.Tensor:
    """(REGIONS, 4) or (batch, REGIONS, 4) random valid pixel boxes."""
    gen = torch.Generator().manual_seed(seed)
    shape = (REGIONS,) if batch is None else (batch, REGIONS)
    corners = torch.rand(*shape, 2, 2, generator=gen) * image_size
    low, high = corners.min(dim=-2).values, corners.max(dim=-2).values
    return torch.cat([low, high], dim=-1)


def _generator(image_size: int, num_frames: int, use_gaad_film: bool = True) -> VideoGenerator:
    return VideoGenerator(
        latent_dim=LATENT,
        num_frames=num_frames,
        image_size=image_size,
        base_channels=8,
        num_regions=REGIONS,
        use_gaad_film=use_gaad_film,
        context_frames=CONTEXT,
    )


@pytest.mark.parametrize(("image_size", "num_frames"), [(16, 1), (16, 3), (32, 1), (32, 3)])
def test_generator_shape_and_range(image_size, num_frames):
    torch.manual_seed(0)
    generator = _generator(image_size, num_frames)
    context = _context(image_size, 2)
    clip = generator(torch.randn(2, LATENT), _boxes(image_size, batch=2), context)
    assert clip.shape == (2, num_frames, 3, image_size, image_size)
    assert clip.min() >= -1.0 and clip.max() <= 1.0
    # Shared (N, 4) boxes broadcast over the batch.
    assert generator(torch.randn(2, LATENT), _boxes(image_size), context).shape == clip.shape


def test_generator_film_is_identity_at_init_and_learns():
    torch.manual_seed(0)
    with_film = _generator(16, 2, use_gaad_film=True)
    without_film = _generator(16, 2, use_gaad_film=False)
    missing, unexpected = without_film.load_state_dict(with_film.state_dict(), strict=False)
    assert not missing and unexpected and all(key.startswith("film.") for key in unexpected)
    z = torch.randn(2, LATENT)
    boxes = _boxes(16, batch=2)
    out = with_film(z, boxes, _context(16, 2))
    torch.testing.assert_close(out, without_film(z))
    torch.testing.assert_close(out, with_film(z, _boxes(16, batch=2, seed=1), _context(16, 2, 1)))

    out.square().mean().backward()
    film_grads = {name: p.grad for name, p in with_film.film.named_parameters()}
    assert all(grad is not None for grad in film_grads.values())
    # Only the zero-initialised output layer can move first; once it does, the rest follows.
    assert film_grads["project.weight"].abs().sum() > 0


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="image_size.*got 24"):
        _generator(24, 2)
    with pytest.raises(ValueError, match="image_size.*got 4"):
        _generator(4, 2)
    with pytest.raises(ValueError, match="temporal_kernel_size"):
        VideoGenerator(LATENT, 2, 16, base_channels=8, temporal_kernel_size=2)
    generator = _generator(16, 2)
    with pytest.raises(ValueError, match="needs boxes"):
        generator(torch.randn(1, LATENT), None, _context(16, 1))
    with pytest.raises(ValueError, match="context frames"):
        generator(torch.randn(1, LATENT), _boxes(16))
    with pytest.raises(ValueError, match="FiLM frames must be"):
        generator(torch.randn(1, LATENT), _boxes(16), _context(16, 1)[:, :1])
    with pytest.raises(ValueError, match="N=4"):
        generator(torch.randn(1, LATENT), torch.zeros(5, 4), _context(16, 1))


def _discriminator(**overrides) -> VideoDiscriminator:
    options = dict(
        num_frames=3, image_size=16, base_channels=8, max_channels=16, num_regions=REGIONS
    )
    options.update(overrides)
    return VideoDiscriminator(**options)


@pytest.mark.parametrize("apply_spectral_norm", [False, True])
@pytest.mark.parametrize("use_gaad_film", [False, True])
def test_discriminator_logits_and_gradients(apply_spectral_norm, use_gaad_film):
    torch.manual_seed(0)
    discriminator = _discriminator(
        apply_spectral_norm=apply_spectral_norm, use_gaad_film=use_gaad_film, image_size=32
    )
    clip = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    logits = discriminator(clip, _boxes(32, batch=2) if use_gaad_film else None)
    assert logits.shape == (2,)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    first_conv = discriminator.blocks[0].conv
    weight = (
        first_conv.parametrizations.weight.original if apply_spectral_norm else first_conv.weight
    )
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    if use_gaad_film:
        assert discriminator.film.project.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("apply_spectral_norm", [False, True])
def test_discriminator_spectral_norm_iff_enabled(apply_spectral_norm):
    discriminator = _discriminator(apply_spectral_norm=apply_spectral_norm, use_gaad_film=True)
    layers = [m for m in discriminator.modules() if isinstance(m, nn.Conv3d | nn.Linear)]
    normalised = [hasattr(m, "parametrizations") for m in layers]
    batch_norms = [m for m in discriminator.modules() if isinstance(m, nn.BatchNorm3d)]
    if apply_spectral_norm:
        # Every Conv3d and Linear but FiLM's zero-initialised output layer (0 / 0 under SN).
        assert sum(normalised) == len(layers) - 1
        assert not hasattr(discriminator.film.project, "parametrizations")
        assert not batch_norms
    else:
        assert not any(normalised)
        assert batch_norms


def test_discriminator_rejects_bad_inputs():
    discriminator = _discriminator(use_gaad_film=True)
    with pytest.raises(ValueError, match="clip must be"):
        discriminator(torch.zeros(1, 2, 3, 16, 16), _boxes(16))
    with pytest.raises(ValueError, match="needs boxes"):
        discriminator(torch.zeros(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match="image_size.*got 20"):
        _discriminator(image_size=20)


def test_generator_feeds_discriminator():
    torch.manual_seed(0)
    generator = _generator(16, 3)
    discriminator = _discriminator(use_gaad_film=True)
    boxes = _boxes(16)
    logits = discriminator(generator(torch.randn(2, LATENT), boxes, _context(16, 2)), boxes)
    logits.mean().backward()
    assert generator.project.weight.grad.abs().sum() > 0


def test_generator_clamp_output_reaches_black_and_tanh_does_not():
    """``gen_output_activation: clamp`` (issue 23 item 7): a readout pushed far below -1
    gives exactly -1 (black) with clamp; tanh stays above it. The guide's tanh is the default."""
    from framecast.config import validate_config

    assert validate_config({"model": {"kind": "vaegan"}}).model.gen_output_activation == "tanh"
    outputs = {}
    for activation in ("tanh", "clamp"):
        torch.manual_seed(0)
        generator = VideoGenerator(
            latent_dim=8, num_frames=2, image_size=8, channels=1, base_channels=8,
            use_gaad_film=False, output_activation=activation,
        )  # fmt: skip
        torch.nn.init.zeros_(generator.to_pixels.weight)  # a readout of -3 everywhere: black
        torch.nn.init.constant_(generator.to_pixels.bias, -3.0)
        generator.eval()
        outputs[activation] = generator(torch.randn(2, 8))
    assert outputs["clamp"].shape == (2, 2, 1, 8, 8)
    assert (outputs["clamp"] == -1.0).all()
    assert torch.allclose(outputs["tanh"], torch.tanh(torch.tensor(-3.0)))  # 0.0025 above black
    with pytest.raises(ValueError, match=r"output_activation must be one of .*'sigmoid'"):
        VideoGenerator(latent_dim=8, num_frames=2, image_size=8, output_activation="sigmoid")
