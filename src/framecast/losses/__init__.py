"""framecast.losses."""

from framecast.losses.adversarial import AdversarialLoss, adaptive_weight
from framecast.losses.autoencoder import autoencoder_loss, kl_divergence, smoke_class_labels

__all__ = [
    "AdversarialLoss",
    "adaptive_weight",
    "autoencoder_loss",
    "kl_divergence",
    "smoke_class_labels",
]
