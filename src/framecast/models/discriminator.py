"""PatchGAN discriminator (pix2pix / taming-transformers ``NLayerDiscriminator``).

Each output logit judges one overlapping patch of the input, so the adversarial loss
sharpens local texture without a global real/fake decision.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


class PatchDiscriminator(nn.Module):
    """(B, in_channels, H, W) -> patch logits (B, 1, H', W').

    ``num_layers`` stride-2 4x4 convs (widths ``channels * min(2**n, 8)``), one stride-1
    conv, then a 1-channel conv; for 64x64 inputs and 3 layers H' = W' = 6.
    With ``spectral_norm`` every conv is spectrally normalised and there is no
    normalisation layer (spectral norm already bounds the Lipschitz constant, and
    BatchNorm statistics would mix real and fake batches); otherwise BatchNorm follows
    every inner conv.
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 64,
        num_layers: int = 3,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.spectral_norm = spectral_norm

        def conv(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1, bias=bias)
            return _spectral_norm(layer) if spectral_norm else layer

        def inner(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            if spectral_norm:
                return [conv(c_in, c_out, stride, bias=True), nn.LeakyReLU(0.2)]
            return [conv(c_in, c_out, stride, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]

        layers: list[nn.Module] = [conv(in_channels, channels, 2, bias=True), nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, num_layers):
            next_width = channels * min(2**n, 8)
            layers += inner(width, next_width, 2)
            width = next_width
        next_width = channels * min(2**num_layers, 8)
        layers += inner(width, next_width, 1)
        layers.append(conv(next_width, 1, 1, bias=True))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _init_weights(module: nn.Module) -> None:
    """DCGAN init (N(0, 0.02) convs, N(1, 0.02) BatchNorm scales), as pix2pix and taming use."""
    if isinstance(module, nn.Conv2d):
        # Under spectral norm the raw weight lives in the parametrization's ``original``.
        weight = (
            module.parametrizations.weight.original
            if hasattr(module, "parametrizations")
            else module.weight
        )
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
