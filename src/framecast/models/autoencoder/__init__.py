"""Stage-1 autoencoder (AE / VAE / VQ-VAE) as plain nn.Modules."""

from framecast.models.autoencoder.autoencoder import Autoencoder, AutoencoderOutput
from framecast.models.autoencoder.encoder_decoder import Decoder, Encoder
from framecast.models.autoencoder.quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "Autoencoder",
    "AutoencoderOutput",
    "Decoder",
    "Encoder",
    "QuantizerOutput",
    "VectorQuantizer",
]
