"""The WuBu-GAAD hybrid VAE-GAN: golden-ratio regions (GAAD), nested hyperbolic levels
(WuBu), an optical-flow motion branch, a 3-D generator and a 3-D discriminator.

Plain ``nn.Module`` code; the Lightning wrapper is ``framecast.training.vaegan``.
"""
