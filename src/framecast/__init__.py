"""framecast: train generative models of image sequences.

Pipeline: videos → dataset → autoencoder (stage 1) → RIVER flow matching in latent
space (stage 2) → generation and evaluation. See DESIGN.md and README.md.
"""

__version__ = "0.1.0"
