"""Stage-1 autoencoder: config schema, shapes for every flag combination, latent
normalisation, state-dict round trip, and the reconstruction/KL/seg/cls loss."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from framecast.config import validate_config
from framecast.config.autoencoder import AutoencoderConfig
from framecast.errors import ConfigError
from framecast.losses import autoencoder_loss, kl_divergence, smoke_class_labels
from framecast.models.autoencoder import Autoencoder

IMAGE = 16
TINY: dict[str, Any] = {
    "latent_channels": 4,
    "base_channels": 8,
    "norm_groups": 4,
    "downsampling_steps": 2,
    "num_res_blocks": 1,
    "codebook_size": 16,
}


def _cfg(**overrides: Any) -> AutoencoderConfig:
    return AutoencoderConfig(**{**TINY, **overrides})


def _model(**overrides: Any) -> Autoencoder:
    torch.manual_seed(0)
    return Autoencoder.from_config(_cfg(**overrides), IMAGE)


def _frames(batch: int = 2, size: int = IMAGE) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


# --- config -----------------------------------------------------------------------------


def test_config_defaults_and_derived_multipliers() -> None:
    cfg = AutoencoderConfig()
    assert cfg.kind == "autoencoder"
    assert cfg.resolved_channel_multipliers == (1, 2, 4, 4)
    assert cfg.latent_resolution(64) == 8
    assert not cfg.discriminator.enabled
    assert not cfg.has_seg_head and not cfg.has_cls_head


def test_config_registered_and_unknown_keys_named() -> None:
    cfg = validate_config({"model": {"kind": "autoencoder", **TINY}})
    assert isinstance(cfg.model, AutoencoderConfig)
    with pytest.raises(ConfigError, match="model.discriminator.bogus"):
        validate_config({"model": {"kind": "autoencoder", "discriminator": {"bogus": 1}}})
    with pytest.raises(ConfigError, match="model.latent_chanels"):
        validate_config({"model": {"kind": "autoencoder", "latent_chanels": 4}})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantizer": "fsq"}, "quantizer"),
        ({"latent_channels": 0}, "latent_channels"),
        ({"downsampling_steps": 0}, "downsampling_steps"),
        ({"mse_weight": -1.0}, "mse_weight"),
        ({"channel_multipliers": [1, 2]}, "needs 3"),
        ({"norm_groups": 3}, "norm_groups"),
        ({"kl_weight": 1e-3}, "variational"),
        ({"kl_schedule": {"mode": "linear", "warmup_steps": 10}}, "variational"),
        ({"cls_weight": 1.0}, "num_classes"),
        ({"num_classes": 1}, "num_classes"),
        ({"seg_classes": 1}, "seg_classes"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"discriminator": {"loss": "wasserstein"}}, "discriminator.loss"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config({"model": {"kind": "autoencoder", **TINY, **overrides}})


def test_latent_resolution_checks_divisibility() -> None:
    cfg = _cfg(downsampling_steps=3)
    assert cfg.latent_resolution(32) == 4
    with pytest.raises(ConfigError, match="data.image_size"):
        cfg.latent_resolution(36)
    with pytest.raises(ConfigError, match="data.image_size"):
        Autoencoder.from_config(cfg, 20)


# --- shapes -----------------------------------------------------------------------------

FLAGS = list(
    itertools.product([False, True], ["none", "vq"], [False, True], [False, True], [False, True])
)


@pytest.mark.parametrize(("variational", "quantizer", "attention", "seg", "cls"), FLAGS)
def test_shapes_for_every_flag_combination(
    variational: bool, quantizer: str, attention: bool, seg: bool, cls: bool
) -> None:
    model = _model(
        variational=variational,
        quantizer=quantizer,
        attention=attention,
        seg_weight=1.0 if seg else 0.0,
        seg_classes=3,
        cls_weight=1.0 if cls else 0.0,
        num_classes=5 if cls else None,
    ).train()
    x = _frames()
    out = model(x)
    latent = (2, 4, 4, 4)
    assert out.rgb.shape == x.shape
    assert out.rgb.abs().max() <= 1.0
    assert out.latents_prequant.shape == latent
    assert (out.seg_logits is not None) == seg
    assert (out.cls_logits is not None) == cls
    if seg:
        assert out.seg_logits.shape == (2, 3, IMAGE, IMAGE)
    if cls:
        assert out.cls_logits.shape == (2, 5)
    if variational:
        assert out.mu.shape == latent and out.logvar.shape == latent
    else:
        assert out.mu is None and out.logvar is None
    if quantizer == "vq":
        assert out.vq_loss.shape == ()
        assert set(out.vq_stats) == {"perplexity", "usage", "restarted"}
    else:
        assert out.vq_loss is None and out.vq_stats == {}
    assert model.encode_latents(x).shape == latent
    assert model.decode_latents(torch.randn(latent)).shape == x.shape
    total, _ = autoencoder_loss(
        out,
        x,
        cls_target=torch.tensor([0, 4]) if cls else None,
        seg_weight=1.0 if seg else 0.0,
        cls_weight=1.0 if cls else 0.0,
        kl_weight=1e-3 if variational else 0.0,
    )
    total.backward()
    assert model.encoder.conv_in.weight.grad is not None


def test_three_downsamplings_and_explicit_multipliers() -> None:
    cfg = _cfg(downsampling_steps=3, channel_multipliers=[1, 1, 2, 2])
    model = Autoencoder.from_config(cfg, 32)
    x = _frames(size=32)
    assert model.encode_latents(x).shape == (2, 4, 4, 4)
    assert model(x).rgb.shape == x.shape


def test_last_layer_weight_is_rgb_head() -> None:
    model = _model()
    assert model.last_layer_weight is model.rgb_head.weight
    F.mse_loss(model(_frames()).rgb, _frames()).backward()
    assert model.last_layer_weight.grad is not None


def test_vae_samples_in_training_and_decodes_mu_in_eval() -> None:
    model = _model(variational=True)
    x = _frames()
    model.train()
    a, b = model(x), model(x)
    assert not torch.equal(a.latents_prequant, b.latents_prequant)
    assert torch.equal(a.mu, b.mu)
    model.eval()
    c = model(x)
    assert torch.equal(c.latents_prequant, c.mu)
    assert not torch.equal(model(x, sample_posterior=True).latents_prequant, c.mu)


def test_vae_logvar_is_clamped() -> None:
    model = _model(variational=True)
    with torch.no_grad():
        model.encoder.conv_out.bias[4:] = 1e3  # logvar half of the encoder output
    out = model(_frames())
    assert out.logvar.max() <= 20.0
    assert torch.isfinite(out.latents_prequant).all()


def test_straight_through_reaches_encoder_from_reconstruction_only() -> None:
    model = _model(quantizer="vq", commitment_weight=0.0).train()
    out = model(_frames())
    F.mse_loss(out.rgb, _frames()).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0


# --- latent normalisation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("variational", "quantizer"), [(False, "none"), (True, "none"), (False, "vq")]
)
def test_latent_normalisation_round_trip(variational: bool, quantizer: str) -> None:
    model = _model(variational=variational, quantizer=quantizer).eval()
    x = torch.rand(8, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        raw = model.encode_prequant(x)
        model.fit_latent_normalization(raw)
        z = model.encode_latents(x)
        assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
        assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4)
        assert torch.allclose(model.denormalize_latents(z), raw, atol=1e-5)
        # decode_latents undoes the normalisation: same frames as decoding mu / the codes.
        expected = model(x, sample_posterior=False).rgb
        assert torch.allclose(model.decode_latents(z), expected, atol=1e-5)


def test_fit_latent_normalisation_guards() -> None:
    model = _model()
    with pytest.raises(ValueError, match="raw latents"):
        model.fit_latent_normalization(torch.randn(4, 3, 4, 4))
    model.fit_latent_normalization(torch.ones(4, 4, 4, 4))  # constant channels
    assert (model.latent_scale > 0).all()


# --- state dict -------------------------------------------------------------------------


def test_state_dict_round_trip_gives_identical_outputs() -> None:
    overrides = dict(
        variational=True, quantizer="vq", seg_weight=1.0, cls_weight=1.0, num_classes=3
    )
    model = _model(**overrides).train()
    x = _frames()
    model(x)  # move the EMA codebook away from its initial state
    with torch.no_grad():
        model.fit_latent_normalization(model.encode_prequant(x))
    state = model.state_dict()
    for key in (
        "latent_shift",
        "latent_scale",
        "quantizer.codebook",
        "quantizer.cluster_size",
        "quantizer.embed_sum",
    ):
        assert key in state
    torch.manual_seed(123)  # a different initialisation, overwritten by the load
    reloaded = Autoencoder.from_config(_cfg(**overrides), IMAGE)
    reloaded.load_state_dict(state)
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        a, b = model(x), reloaded(x)
        for name in ("rgb", "seg_logits", "cls_logits", "mu", "logvar", "latents_prequant"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert torch.equal(model.encode_latents(x), reloaded.encode_latents(x))
        z = model.encode_latents(x)
        assert torch.equal(model.decode_latents(z), reloaded.decode_latents(z))


# --- losses -----------------------------------------------------------------------------


def test_smoke_mask_thresholds_channel_mean_intensity() -> None:
    frames = torch.full((1, 3, 2, 2), -1.0)
    frames[0, :, 0, 0] = 1.0  # white
    frames[0, :, 0, 1] = -0.7  # intensity 0.15
    frames[0, :, 1, 0] = -0.9  # intensity 0.05
    mask = smoke_class_labels(frames, brightness=0.1)
    assert mask.dtype == torch.long
    assert mask.tolist() == [[[1, 1], [0, 0]]]
    assert smoke_class_labels(frames.unsqueeze(0), 0.1).shape == (1, 1, 2, 2)  # (B, T, C, H, W) too


def test_kl_divergence_known_values() -> None:
    zeros = torch.zeros(2, 4, 2, 2)
    assert kl_divergence(zeros, zeros).item() == 0.0
    mu = torch.full((1, 1, 1, 1), 2.0)
    logvar = torch.full((1, 1, 1, 1), 1.0)
    expected = 0.5 * (4.0 + torch.e - 1.0 - 1.0)
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected)


def test_autoencoder_loss_weighted_sum_and_components() -> None:
    model = _model(variational=True, quantizer="vq", seg_weight=1.0, cls_weight=1.0, num_classes=3)
    x = _frames()
    out = model(x)
    cls_target = torch.tensor([0, 2])
    calls = []

    def perceptual(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append(a.shape)
        return (a - b).abs().mean()

    total, parts = autoencoder_loss(
        out,
        x,
        cls_target=cls_target,
        mse_weight=2.0,
        seg_weight=0.5,
        cls_weight=0.25,
        kl_weight=0.1,
        perceptual_weight=3.0,
        perceptual=perceptual,
        smoke_brightness=0.2,
    )
    assert set(parts) == {"mse", "perceptual", "seg_ce", "cls_ce", "kl", "vq"}
    assert calls == [x.shape]
    assert parts["seg_ce"] == pytest.approx(
        F.cross_entropy(out.seg_logits, smoke_class_labels(x, 0.2)).item()
    )
    assert parts["cls_ce"] == pytest.approx(F.cross_entropy(out.cls_logits, cls_target).item())
    expected = (
        2.0 * parts["mse"]
        + 3.0 * parts["perceptual"]
        + 0.5 * parts["seg_ce"]
        + 0.25 * parts["cls_ce"]
        + 0.1 * parts["kl"]
        + parts["vq"]
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert total.requires_grad and not parts["mse"].requires_grad


def test_autoencoder_loss_plain_model_has_mse_only() -> None:
    model = _model()
    x = _frames()
    out = model(x)
    total, parts = autoencoder_loss(out, x)
    assert set(parts) == {"mse"}
    assert total.item() == pytest.approx(F.mse_loss(out.rgb, x).item())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seg_weight": 1.0}, "segmentation head"),
        ({"cls_weight": 1.0}, "classification head"),
        ({"kl_weight": 1.0}, "not variational"),
        ({"perceptual_weight": 1.0}, "perceptual callable"),
    ],
)
def test_autoencoder_loss_rejects_weights_without_their_parts(
    kwargs: dict[str, float], message: str
) -> None:
    model = _model()
    x = _frames()
    with pytest.raises(ValueError, match=message):
        autoencoder_loss(model(x), x, **kwargs)


def test_autoencoder_loss_needs_cls_target_when_weighted() -> None:
    model = _model(cls_weight=1.0, num_classes=3)
    x = _frames()
    with pytest.raises(ValueError, match="cls_target"):
        autoencoder_loss(model(x), x, cls_weight=1.0)
