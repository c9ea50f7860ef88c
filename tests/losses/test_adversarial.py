"""PatchGAN discriminator and the adversarial loss: known logits, adaptive weight, warm-up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framecast.config.autoencoder import DiscriminatorConfig
from framecast.losses.adversarial import (
    AdversarialLoss,
    adaptive_weight,
    discriminator_hinge,
    discriminator_non_saturating,
    generator_hinge,
    generator_non_saturating,
)
from framecast.models.discriminator import PatchDiscriminator

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


def test_hinge_losses_on_known_logits() -> None:
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3; relu(1 + fake) = [0, 1, 2.5] -> 3.5/3.
    assert discriminator_hinge(REAL, FAKE).item() == pytest.approx(0.5 * (2.5 / 3 + 3.5 / 3))
    assert generator_hinge(FAKE).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)


def test_non_saturating_losses_on_known_logits() -> None:
    def softplus(v: float) -> float:
        return float(torch.log1p(torch.exp(torch.tensor(v))))

    d_real = sum(softplus(-v) for v in REAL.tolist()) / 3
    d_fake = sum(softplus(v) for v in FAKE.tolist()) / 3
    assert discriminator_non_saturating(REAL, FAKE).item() == pytest.approx(0.5 * (d_real + d_fake))
    g = sum(softplus(-v) for v in FAKE.tolist()) / 3
    assert generator_non_saturating(FAKE).item() == pytest.approx(g)
    # At D = 0 everywhere both players sit at log 2.
    zero = torch.zeros(4)
    assert discriminator_non_saturating(zero, zero).item() == pytest.approx(
        float(torch.log(torch.tensor(2.0)))
    )


def test_adaptive_weight_matches_hand_computation() -> None:
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    a = torch.tensor([3.0, 4.0])
    b = torch.tensor([0.5, 0.0])
    rec = (w * a).sum()  # grad a, norm 5
    gan = 2.0 * (w * b).sum()  # grad 2b, norm 1
    weight = adaptive_weight(rec, gan, w)
    assert weight.item() == pytest.approx(5.0 / (1.0 + 1e-4))
    assert not weight.requires_grad
    # Graphs are retained for the caller's backward.
    (rec + gan).backward()
    assert torch.allclose(w.grad, a + 2 * b)


def test_adaptive_weight_is_clamped_when_gan_gradient_vanishes() -> None:
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    rec = (w * torch.tensor([3.0, 4.0])).sum()
    gan = (w * torch.zeros(2)).sum()
    assert adaptive_weight(rec, gan, w).item() == pytest.approx(1e4)


class _LinearDisc(nn.Module):
    """D(x) = sum of pixels times a scale: hand-checkable, counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.scale * x.sum(dim=(1, 2, 3))


def test_generator_loss_uses_adaptive_weight_times_disc_weight() -> None:
    adv = AdversarialLoss(_LinearDisc(), loss="hinge", disc_start=0, disc_weight=0.5)
    last = nn.Parameter(torch.tensor([[1.0, -1.0]]))
    source = torch.tensor([[2.0], [1.0]])
    fake = (last @ source).view(1, 1, 1, 1)  # G(z) = 2*1 + 1*(-1) = 1
    rec = (fake - 3.0).pow(2).mean()  # d rec / d fake = 2 (1 - 3) = -4
    loss, logs = adv.generator_loss(rec, fake, last, step=0)
    # d fake / d last = source^T; g_loss = -0.5 * fake -> d g / d fake = -0.5.
    rec_norm = 4.0 * source.norm()
    gan_norm = 0.5 * source.norm()
    weight = 0.5 * rec_norm / (gan_norm + 1e-4)
    assert logs["adaptive_weight"].item() == pytest.approx(weight.item())
    assert logs["g_loss"].item() == pytest.approx(-0.5)
    assert loss.item() == pytest.approx(weight.item() * -0.5)
    assert logs["disc_active"].item() == 1.0


def test_generator_loss_without_autograd_reports_zero_weight() -> None:
    adv = AdversarialLoss(_LinearDisc(), disc_start=0)
    with torch.no_grad():
        loss, logs = adv.generator_loss(torch.tensor(1.0), torch.ones(1, 1, 2, 2), torch.ones(2), 5)
    assert loss.item() == 0.0
    assert logs["adaptive_weight"].item() == 0.0
    assert logs["g_loss"].item() == pytest.approx(-2.0)


def test_disc_start_gates_both_losses() -> None:
    disc = _LinearDisc()
    adv = AdversarialLoss(disc, loss="non_saturating", disc_start=10)
    real = torch.randn(2, 1, 2, 2)
    fake = torch.randn(2, 1, 2, 2, requires_grad=True)
    rec = fake.pow(2).mean()
    assert not adv.active(9) and adv.active(10)

    g_loss, g_logs = adv.generator_loss(rec, fake, fake, step=9)
    d_loss, d_logs = adv.discriminator_loss(real, fake, step=9)
    assert g_loss.item() == 0.0 and d_loss.item() == 0.0
    assert g_logs["disc_active"].item() == 0.0
    assert not d_loss.requires_grad
    assert disc.calls == 0, "the discriminator must not run before disc_start"

    d_loss, d_logs = adv.discriminator_loss(real, fake, step=10)
    assert disc.calls == 2 and d_loss.item() > 0
    d_loss.backward()
    assert disc.scale.grad is not None
    assert fake.grad is None, "the discriminator step must not reach the generator"
    assert set(d_logs) == {"d_loss", "logits_real", "logits_fake"}


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_patch_discriminator_shapes_and_norms(spectral_norm: bool) -> None:
    torch.manual_seed(0)
    disc = PatchDiscriminator(in_channels=3, channels=8, num_layers=2, spectral_norm=spectral_norm)
    assert disc(torch.randn(2, 3, 16, 16)).shape == (2, 1, 2, 2)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in disc.modules())
    assert has_bn != spectral_norm
    # 64x64 with the default three layers: the 6x6 patch grid of pix2pix-style critics.
    assert PatchDiscriminator(channels=4, spectral_norm=spectral_norm)(
        torch.randn(1, 3, 64, 64)
    ).shape == (1, 1, 6, 6)


def test_adversarial_loss_from_config_and_state_dict_round_trip() -> None:
    cfg = DiscriminatorConfig(
        enabled=True,
        disc_channels=8,
        disc_layers=2,
        spectral_norm=True,
        loss="non_saturating",
        disc_start=3,
        disc_weight=0.7,
    )
    torch.manual_seed(0)
    adv = AdversarialLoss.from_config(cfg, image_channels=3)
    assert (adv.loss, adv.disc_start, adv.disc_weight) == ("non_saturating", 3, 0.7)
    x = torch.randn(2, 3, 16, 16)
    adv.train()
    adv.discriminator(x)  # advance the spectral-norm power iteration
    torch.manual_seed(1)
    other = AdversarialLoss.from_config(cfg, image_channels=3)
    other.load_state_dict(adv.state_dict())
    adv.eval()
    other.eval()
    with torch.no_grad():
        assert torch.equal(adv.discriminator(x), other.discriminator(x))


def test_adversarial_loss_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="hinge"):
        AdversarialLoss(_LinearDisc(), loss="wasserstein")  # type: ignore[arg-type]
