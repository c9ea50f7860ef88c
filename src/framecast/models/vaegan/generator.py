"""3-D convolutional video generator of the WuBu-GAAD VAE-GAN, with GAAD-FiLM conditioning.

A latent vector becomes a whole clip at once: a linear layer makes a (C0, T, 4, 4) seed
volume, transposed 3-D convolutions double its height and width per block while their
temporal kernels mix neighbouring frames, and a last 3-D convolution maps to pixels.

GAAD-FiLM tells every block what the context frames hold in each golden-ratio (GAAD)
region: :class:`~framecast.models.vaegan.film.RegionFiLM` pools the context frames per box
with RoIAlign and turns each box's content into a per-channel scale and shift, applied as
``x * (1 + gamma) + beta`` on the cells the box covers. (Box coordinates alone are fixed per
frame size and gave one constant modulation.) Its output layer starts at zero, so a fresh
generator ignores the context there and the conditioning is learned from the identity.
"""

from __future__ import annotations

from torch import Tensor, nn

from framecast.models.autoencoder.autoencoder import OUTPUT_ACTIVATIONS, bounded_frames
from framecast.models.vaegan.film import RegionFiLM, apply_film


def size_doublings(image_size: int) -> int:
    """k such that image_size == 4 * 2**k, k >= 1 (the generator's up-blocks from a 4x4
    seed, the discriminator's down-blocks to 4x4); ValueError otherwise."""
    k = 0
    size = image_size
    while size > 4 and size % 2 == 0:
        size //= 2
        k += 1
    if size != 4 or k < 1:
        raise ValueError(
            f"image_size must be 4 * 2**k with k >= 1 (8, 16, 32, 64, ...), got {image_size}"
        )
    return k


def check_temporal_kernel_size(temporal_kernel_size: int) -> None:
    """ValueError unless the temporal kernel is odd and positive."""
    # An odd kernel with padding k // 2 keeps the frame count ('same' padding in time).
    if temporal_kernel_size < 1 or temporal_kernel_size % 2 == 0:
        raise ValueError(f"temporal_kernel_size must be odd and >= 1, got {temporal_kernel_size}")


def _group_count(channels: int, max_groups: int = 8) -> int:
    """Largest group count <= max_groups that divides channels (GroupNorm needs a divisor)."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


class _UpBlock(nn.Module):
    """(B, C_in, T, H, W) -> (B, C_out, T, 2H, 2W): transposed conv, GroupNorm, FiLM, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose3d(
            in_channels,
            out_channels,
            kernel_size=(temporal_kernel_size, 4, 4),
            stride=(1, 2, 2),
            padding=(temporal_kernel_size // 2, 1, 1),
            bias=False,  # GroupNorm's shift makes a bias redundant
        )
        # GroupNorm, not BatchNorm: batch-independent, so batch 1 and eval mode behave alike.
        self.norm = nn.GroupNorm(_group_count(out_channels), out_channels)
        self.activation = nn.SiLU()

    def forward(self, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.norm(self.conv(x))
        if film is not None:
            x = apply_film(x, *film)
        return self.activation(x)


class VideoGenerator(nn.Module):
    """Latent vector (+ context frames and GAAD boxes) -> video clip.

    Architecture for ``image_size = 4 * 2**k``:

    - ``Linear(latent_dim, C0 * num_frames * 16)`` reshaped to (B, C0, num_frames, 4, 4),
      then GroupNorm + SiLU, with ``C0 = base_channels * 2**(k-1)``.
    - k up-blocks ``ConvTranspose3d(kernel (kt, 4, 4), stride (1, 2, 2), padding
      (kt // 2, 1, 1))`` -> GroupNorm -> [GAAD-FiLM from the context frames' regions] -> SiLU. Spatial size doubles per block;
      width halves per block but not below ``base_channels`` (so the last block maps
      base_channels to base_channels).
    - ``Conv3d(base_channels, channels, kernel (kt, 3, 3), 'same' padding)`` -> tanh, or
      a clamp to [-1, 1] (``output_activation``; see ``bounded_frames``).

    Time: the seed volume already has ``num_frames`` frames and every layer keeps that
    count (stride 1 in time, odd temporal kernel with padding kt // 2); temporal kernels
    mix neighbouring frames, so the frames are generated jointly, not independently.

    Args:
        latent_dim: size of z.
        num_frames: frames per generated clip (>= 1).
        image_size: output height and width, ``4 * 2**k`` with k >= 1.
        channels: output image channels.
        base_channels: width of the last up-block.
        num_regions: GAAD boxes per sample (N).
        use_gaad_film: condition every up-block on the context frames' box contents.
        temporal_kernel_size: odd temporal extent kt of every 3-D kernel.
        context_frames: context frames Tc FiLM reads (with ``use_gaad_film``).
        film_roi_output: RoIAlign bins ``(oh, ow)`` per box and context frame.
        film_hidden_dim: width of FiLM's per-box embedding.
        output_activation: ``tanh`` or ``clamp`` (exact black; straight-through leak).
    """

    def __init__(
        self,
        latent_dim: int,
        num_frames: int,
        image_size: int,
        channels: int = 3,
        base_channels: int = 64,
        num_regions: int = 12,
        use_gaad_film: bool = True,
        temporal_kernel_size: int = 3,
        context_frames: int = 1,
        film_roi_output: tuple[int, int] = (2, 2),
        film_hidden_dim: int = 64,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
            )
        self.output_activation = output_activation
        num_blocks = size_doublings(image_size)
        check_temporal_kernel_size(temporal_kernel_size)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.latent_dim = latent_dim
        self.num_frames = num_frames
        self.image_size = image_size

        widths = [base_channels * 2 ** (num_blocks - 1)]
        for _ in range(num_blocks):
            widths.append(max(widths[-1] // 2, base_channels))
        self.seed_channels = widths[0]
        self.project = nn.Linear(latent_dim, widths[0] * num_frames * 4 * 4)
        self.seed_norm = nn.GroupNorm(_group_count(widths[0]), widths[0])
        self.seed_activation = nn.SiLU()
        self.blocks = nn.ModuleList(
            _UpBlock(c_in, c_out, temporal_kernel_size)
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.to_pixels = nn.Conv3d(
            widths[-1],
            channels,
            kernel_size=(temporal_kernel_size, 3, 3),
            padding=(temporal_kernel_size // 2, 1, 1),
        )
        self.film = (
            RegionFiLM(
                in_channels=channels,
                num_frames=context_frames,
                num_regions=num_regions,
                image_size=image_size,
                block_channels=widths[1:],
                block_sizes=[4 * 2 ** (k + 1) for k in range(num_blocks)],
                roi_output=film_roi_output,
                hidden_dim=film_hidden_dim,
            )
            if use_gaad_film
            else None
        )

    def forward(
        self, z: Tensor, boxes: Tensor | None = None, context: Tensor | None = None
    ) -> Tensor:
        """Generate clips.

        Args:
            z: (B, latent_dim) latent vectors.
            boxes: (B, N, 4) or (N, 4) ``[x1, y1, x2, y2]`` pixel GAAD boxes; required when
                ``use_gaad_film``, ignored otherwise.
            context: (B, Tc, C, H, W) context frames in [-1, 1] whose box contents FiLM
                reads; required when ``use_gaad_film``, ignored otherwise.

        Returns:
            (B, num_frames, channels, image_size, image_size) in [-1, 1].
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (B, {self.latent_dim}), got shape {tuple(z.shape)}")
        batch = z.shape[0]
        film_params: list[tuple[Tensor, Tensor] | None] = [None] * len(self.blocks)
        if self.film is not None:
            if boxes is None or context is None:
                raise ValueError(
                    "use_gaad_film=True needs boxes (B, N, 4) or (N, 4) and context frames "
                    f"(B, Tc, C, H, W), got boxes={_shape(boxes)}, context={_shape(context)}"
                )
            if context.shape[0] != batch:
                raise ValueError(f"context batch {context.shape[0]} != z batch {batch}")
            film_params = self.film(context.to(z.device), boxes)

        x = self.project(z).view(batch, self.seed_channels, self.num_frames, 4, 4)
        x = self.seed_activation(self.seed_norm(x))
        for block, film in zip(self.blocks, film_params, strict=True):
            x = block(x, film)
        clip = bounded_frames(self.to_pixels(x), self.output_activation, self.training)
        return clip.permute(0, 2, 1, 3, 4).contiguous()


def _shape(x: Tensor | None) -> str:
    return "None" if x is None else str(tuple(x.shape))
