"""3-D convolutional video discriminator of the WuBu-GAAD VAE-GAN.

Judges a whole clip with one logit: 3-D convolutions see space and time together, so
temporal incoherence (flicker, objects that jump) is as visible to it as blurry frames.
Optionally conditioned through GAAD-FiLM on what the judged clip holds in each golden-ratio
region (the same :class:`~framecast.models.vaegan.film.RegionFiLM` the generator uses, here
reading the clip itself): every block's features are scaled and shifted per region by
what RoIAlign pooled from that region's pixels, so the discriminator can treat a plume
region differently from empty background.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from framecast.models.vaegan.film import RegionFiLM, apply_film
from framecast.models.vaegan.generator import check_temporal_kernel_size, size_doublings


class _DownBlock(nn.Module):
    """(B, C_in, T, H, W) -> (B, C_out, T, H/2, W/2): conv, optional BatchNorm, FiLM, LeakyReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temporal_kernel_size: int,
        apply_spectral_norm: bool,
        use_batch_norm: bool,
    ) -> None:
        super().__init__()
        conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=(temporal_kernel_size, 4, 4),
            stride=(1, 2, 2),
            padding=(temporal_kernel_size // 2, 1, 1),
            bias=not use_batch_norm,  # BatchNorm's shift makes a bias redundant
        )
        self.conv = _spectral_norm(conv) if apply_spectral_norm else conv
        self.norm = nn.BatchNorm3d(out_channels) if use_batch_norm else nn.Identity()
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.norm(self.conv(x))
        if film is not None:
            x = apply_film(x, *film)
        return self.activation(x)


class VideoDiscriminator(nn.Module):
    """Video clip (+ GAAD boxes) -> one realness logit per clip.

    Architecture for ``image_size = 4 * 2**k``: k blocks ``Conv3d(kernel (kt, 4, 4),
    stride (1, 2, 2), padding (kt // 2, 1, 1))`` -> [BatchNorm3d] -> [FiLM] -> LeakyReLU(0.2),
    widths ``min(base_channels * 2**i, max_channels)``, bringing the frames to 4x4 with the
    frame count unchanged; then global average pooling over (T, H, W) and ``Linear(C, 1)``.

    Normalisation: with ``apply_spectral_norm`` every Conv3d and Linear is spectrally
    normalised (``torch.nn.utils.parametrizations.spectral_norm``) and there is no
    BatchNorm: spectral norm already bounds the Lipschitz constant, and BatchNorm would mix
    real- and fake-batch statistics. Without it, BatchNorm3d follows every conv but the
    first (the DCGAN convention: normalising raw pixels' features helps nothing).
    The one Linear left unnormalised is FiLM's zero-initialised output layer, whose spectral
    norm would be 0 / 0; its input, FiLM's embedding, is spectrally normalised.

    Args:
        channels: image channels C of the clip.
        num_frames: frames T per clip (checked in ``forward``).
        image_size: clip height and width, ``4 * 2**k`` with k >= 1.
        base_channels: width of the first block.
        max_channels: cap on block widths.
        temporal_kernel_size: odd temporal extent kt of every kernel.
        apply_spectral_norm: spectral norm instead of BatchNorm.
        use_gaad_film: modulate every block with FiLM parameters from the clip's box contents.
        num_regions: GAAD boxes per sample (N).
        condition_dim: width of FiLM's per-box embedding.
        film_roi_output: RoIAlign bins ``(oh, ow)`` per box and frame.
    """

    def __init__(
        self,
        num_frames: int,
        image_size: int,
        channels: int = 3,
        base_channels: int = 64,
        max_channels: int = 512,
        temporal_kernel_size: int = 3,
        apply_spectral_norm: bool = False,
        use_gaad_film: bool = False,
        num_regions: int = 12,
        condition_dim: int = 64,
        film_roi_output: tuple[int, int] = (2, 2),
    ) -> None:
        super().__init__()
        num_blocks = size_doublings(image_size)
        check_temporal_kernel_size(temporal_kernel_size)
        self.num_frames = num_frames
        self.image_size = image_size
        self.channels = channels

        widths = [min(base_channels * 2**i, max_channels) for i in range(num_blocks)]
        self.blocks = nn.ModuleList(
            _DownBlock(
                c_in,
                c_out,
                temporal_kernel_size,
                apply_spectral_norm=apply_spectral_norm,
                use_batch_norm=not apply_spectral_norm and index > 0,
            )
            for index, (c_in, c_out) in enumerate(
                zip([channels, *widths[:-1]], widths, strict=True)
            )
        )
        wrap = _spectral_norm if apply_spectral_norm else None
        self.film = (
            RegionFiLM(
                in_channels=channels,
                num_frames=num_frames,
                num_regions=num_regions,
                image_size=image_size,
                block_channels=widths,
                block_sizes=[image_size // 2 ** (k + 1) for k in range(num_blocks)],
                roi_output=film_roi_output,
                hidden_dim=condition_dim,
                wrap_linear=wrap,
            )
            if use_gaad_film
            else None
        )
        to_logit = nn.Linear(widths[-1], 1)
        self.to_logit = _spectral_norm(to_logit) if apply_spectral_norm else to_logit

    def forward(self, clip: Tensor, boxes: Tensor | None = None) -> Tensor:
        """Score clips.

        Args:
            clip: (B, T, C, H, W) in [-1, 1], T = num_frames, H = W = image_size.
            boxes: (B, N, 4) or (N, 4) ``[x1, y1, x2, y2]`` pixel GAAD boxes; required when
                ``use_gaad_film``, ignored otherwise.

        Returns:
            (B,) logits, higher meaning "real".
        """
        expected = (self.num_frames, self.channels, self.image_size, self.image_size)
        if clip.ndim != 5 or tuple(clip.shape[1:]) != expected:
            raise ValueError(
                f"clip must be (B, {', '.join(map(str, expected))}), got {tuple(clip.shape)}"
            )
        film_params: list[tuple[Tensor, Tensor] | None] = [None] * len(self.blocks)
        if self.film is not None:
            if boxes is None:
                raise ValueError("use_gaad_film=True needs boxes (B, N, 4) or (N, 4), got None")
            film_params = self.film(clip, boxes)

        x = clip.permute(0, 2, 1, 3, 4)  # Conv3d wants (B, C, T, H, W)
        for block, film in zip(self.blocks, film_params, strict=True):
            x = block(x, film)
        return self.to_logit(x.mean(dim=(2, 3, 4))).squeeze(1)
