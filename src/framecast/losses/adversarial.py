"""Adversarial loss for the autoencoder, taming-transformers style.

One module owns the discriminator, the warm-up (``disc_start``) and the adaptive
generator weight ``disc_weight * ||grad_last L_rec|| / (||grad_last L_gan|| + 1e-4)``
(clamped to [0, 1e4]) measured at the decoder's last layer, which balances the two
losses without hand tuning (Esser et al. 2021, eq. 7).

Training calls, with two optimisers::

    loss_rec, _ = autoencoder_loss(...)
    loss_gan, logs = adv.generator_loss(loss_rec, out.rgb, model.last_layer_weight, step)
    (loss_rec + loss_gan).backward(); opt_ae.step()
    if adv.active(step):
        loss_d, logs_d = adv.discriminator_loss(x, out.rgb, step)
        loss_d.backward(); opt_disc.step()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framecast.models.discriminator import PatchDiscriminator

if TYPE_CHECKING:
    from framecast.config.autoencoder import DiscriminatorConfig

GanLossKind = Literal["hinge", "non_saturating"]
# Keeps the ratio finite when the GAN gradient vanishes (taming-transformers' constant).
ADAPTIVE_EPS = 1e-4
ADAPTIVE_MAX = 1e4


def discriminator_hinge(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(G(z))))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def discriminator_non_saturating(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """0.5 * (mean -log sigmoid(D(x)) + mean -log(1 - sigmoid(D(G(z)))))."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def generator_hinge(logits_fake: Tensor) -> Tensor:
    """-mean D(G(z))."""
    return -logits_fake.mean()


def generator_non_saturating(logits_fake: Tensor) -> Tensor:
    """mean -log sigmoid(D(G(z)))."""
    return F.softplus(-logits_fake).mean()


def generator_gan_loss(logits_fake: Tensor, kind: GanLossKind) -> Tensor:
    """The generator's GAN loss of ``kind`` on D(G(z))."""
    if kind == "hinge":
        return generator_hinge(logits_fake)
    return generator_non_saturating(logits_fake)


def discriminator_terms(
    logits_real: Tensor, logits_fake: Tensor, kind: GanLossKind
) -> tuple[Tensor, Tensor]:
    """The real and fake halves of the discriminator loss of ``kind``; their mean is
    :func:`discriminator_hinge` / :func:`discriminator_non_saturating`."""
    if kind == "hinge":
        return F.relu(1.0 - logits_real).mean(), F.relu(1.0 + logits_fake).mean()
    return F.softplus(-logits_real).mean(), F.softplus(logits_fake).mean()


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor) -> Tensor:
    """||grad_last rec_loss|| / (||grad_last gan_loss|| + 1e-4), clamped to [0, 1e4], detached.

    Both graphs are retained: the caller still backpropagates through them.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + ADAPTIVE_EPS)
    return weight.clamp(0.0, ADAPTIVE_MAX).detach()


class AdversarialLoss(nn.Module):
    """Discriminator + GAN losses with warm-up and adaptive generator weight.

    Before ``disc_start`` both losses are constant zeros (no discriminator pass, no graph)
    and :meth:`active` is False: the caller skips the discriminator step.
    """

    def __init__(
        self,
        discriminator: nn.Module,
        loss: GanLossKind = "hinge",
        disc_start: int = 0,
        disc_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if loss not in ("hinge", "non_saturating"):
            raise ValueError(f"loss must be 'hinge' or 'non_saturating', got {loss!r}")
        self.discriminator = discriminator
        self.loss = loss
        self.disc_start = disc_start
        self.disc_weight = disc_weight

    @classmethod
    def from_config(cls, cfg: DiscriminatorConfig, image_channels: int = 3) -> AdversarialLoss:
        """Build from ``model.discriminator`` (``disc_lr`` is for the caller's optimiser)."""
        discriminator = PatchDiscriminator(
            in_channels=image_channels,
            channels=cfg.disc_channels,
            num_layers=cfg.disc_layers,
            spectral_norm=cfg.spectral_norm,
        )
        return cls(discriminator, cfg.loss, cfg.disc_start, cfg.disc_weight)

    def active(self, step: int) -> bool:
        """Whether the discriminator trains and the GAN term counts at ``step``."""
        return step >= self.disc_start

    def generator_loss(
        self, rec_loss: Tensor, fake: Tensor, last_layer: Tensor, step: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted GAN loss for the autoencoder step.

        rec_loss: scalar reconstruction loss with its graph (the total autoencoder loss
            works: only its image terms reach the RGB head's weight).
        fake: (B, C, H, W) reconstructions, with graph.
        last_layer: the decoder's last weight (``Autoencoder.last_layer_weight``).
        Returns ``(adaptive_weight * g_loss, logs)``; logs: g_loss, adaptive_weight,
        disc_active. Without autograd (validation) the adaptive weight is reported as 0.
        """
        zero = torch.zeros((), device=fake.device)
        if not self.active(step):
            return zero, {"g_loss": zero, "adaptive_weight": zero, "disc_active": zero}
        g_loss = generator_gan_loss(self.discriminator(fake), self.loss)
        if torch.is_grad_enabled() and g_loss.requires_grad and rec_loss.requires_grad:
            weight = self.disc_weight * adaptive_weight(rec_loss, g_loss, last_layer)
        else:
            weight = zero
        logs = {
            "g_loss": g_loss.detach(),
            "adaptive_weight": weight.detach(),
            "disc_active": torch.ones((), device=fake.device),
        }
        return weight * g_loss, logs

    def discriminator_loss(
        self, real: Tensor, fake: Tensor, step: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator loss on real (B, C, H, W) and fake (detached here) frames.

        Returns ``(d_loss, logs)``; logs: d_loss, logits_real, logits_fake (means).
        """
        if not self.active(step):
            zero = torch.zeros((), device=real.device)
            return zero, {"d_loss": zero, "logits_real": zero, "logits_fake": zero}
        logits_real = self.discriminator(real.detach())
        logits_fake = self.discriminator(fake.detach())
        if self.loss == "hinge":
            d_loss = discriminator_hinge(logits_real, logits_fake)
        else:
            d_loss = discriminator_non_saturating(logits_real, logits_fake)
        logs = {
            "d_loss": d_loss.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
        }
        return d_loss, logs
