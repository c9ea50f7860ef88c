"""SimVP with the gSTA translator: a deterministic video predictor, our own implementation.

From the papers (no code copied): SimVP (Gao et al., "SimVP: Simpler yet Better Video
Prediction", CVPR 2022) for the encoder / translator / decoder layout, and the gated
spatiotemporal attention (gSTA) translator block of SimVPv2 (Tan et al., "SimVP: Towards
Simple yet Powerful Spatiotemporal Predictive Learning", 2023), the "SimVP+gSTA" rows of
OpenSTL's tables.

One forward pass, shapes for B clips of T_in context frames of C x H x W, predicting T_out
frames, hidden widths C_s (``hid_channels``) and C_t (``hid_translator``):

1. spatial encoder, applied to every frame on its own: (B·T_in, C, H, W) -> (B·T_in, C_s,
   h, w), ``num_encoder_layers`` conv blocks (conv, GroupNorm, SiLU), every second one with
   stride 2, so h = H / 2**(num_encoder_layers // 2); the first block's output (full
   resolution) is kept as the skip;
2. translator: the frames are stacked along channels, (B, T_in·C_s, h, w); a 1x1 conv to C_t,
   ``num_translator_blocks`` gSTA blocks, a 1x1 conv to T_out·C_s;
3. decoder, per predicted frame: (B·T_out, C_s, h, w) -> upsampling conv blocks (conv to
   4·C_s, PixelShuffle(2)) -> the skip is added before the last block -> 1x1 readout to C,
   then the output activation into [-1, 1] -> (B, T_out, C, H, W).

Departures from the papers, each for a reason:

- The skip. SimVP adds input frame t's first-layer features to output frame t, which only
  works when T_out = T_in. Here a 1x1 conv maps the stacked skips (B, T_in·C_s, H, W) to
  (B, T_out·C_s, H, W), so any T_in -> T_out works; it starts as "every output frame gets the
  last context frame's features" (the nearest frame in time; on smoke, where the black
  background and the plume base stay put), and learns any other mix.
- The translator's norm. SimVPv2 uses BatchNorm; here GroupNorm with one group (a LayerNorm
  over C, H, W), which behaves the same in training and evaluation, at any batch size, and
  needs no synchronisation across DDP ranks.
- The translator's widths. Here one 1x1 conv projects the stacked frames in (T_in·C_s ->
  C_t), every gSTA block runs at C_t, and one 1x1 conv projects out (C_t -> T_out·C_s), so
  T_out need not equal T_in; blocks that themselves change width are not used.
- The output. The papers read out linearly; here ``output_activation`` bounds the frames to
  [-1, 1] as framecast's autoencoder does (:func:`bounded_frames`): ``clamp`` (linear inside the
  range, exact black backgrounds) or ``tanh``.

Longer horizons than T_out: :meth:`SimVP.rollout` predicts T_out frames at a time and feeds
the newest T_in frames back (SimVP's own recursive protocol).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from framecast.config.simvp import SimVPConfig
from framecast.errors import ConfigError
from framecast.models.autoencoder.autoencoder import OUTPUT_ACTIVATIONS, bounded_frames

LAYER_SCALE_INIT = 1e-2
"""Initial per-channel scale of each gSTA block's two residual branches (as in VAN/gSTA):
every block starts close to the identity, so a deep translator trains from the start."""


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random share ``p`` of the
    samples and scale the others by 1 / (1 - p); the identity in evaluation or at p = 0."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, ...) -> (B, ...)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class ConvBlock(nn.Module):
    """conv (k x k) -> GroupNorm -> SiLU, with one of three resolutions out:

    - ``resample=None``: same resolution;
    - ``"down"``: stride 2, (B, C_in, H, W) -> (B, C_out, H/2, W/2);
    - ``"up"``: conv to 4·C_out, then PixelShuffle(2): (B, C_in, H, W) -> (B, C_out, 2H, 2W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        norm_groups: int,
        resample: str | None = None,
    ) -> None:
        super().__init__()
        stride = 2 if resample == "down" else 1
        widen = 4 if resample == "up" else 1
        self.conv = nn.Conv2d(
            in_channels, out_channels * widen, kernel_size, stride, padding=kernel_size // 2
        )
        self.shuffle = nn.PixelShuffle(2) if resample == "up" else nn.Identity()
        self.norm = nn.GroupNorm(norm_groups, out_channels)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W'), H' = H, H/2 or 2H (see the class)."""
        return self.act(self.norm(self.shuffle(self.conv(x))))


def encoder_resampling(num_layers: int) -> list[str | None]:
    """Per encoder layer: None or "down"; every second layer halves, starting with the second
    (the first stays at full resolution: it makes the skip)."""
    return ["down" if i % 2 else None for i in range(num_layers)]


class SpatialEncoder(nn.Module):
    """Per-frame encoder: (N, C, H, W) -> latents (N, C_s, h, w) and skip (N, C_s, H, W)."""

    def __init__(
        self, in_channels: int, hid_channels: int, num_layers: int, kernel: int, groups: int
    ) -> None:
        super().__init__()
        widths = [in_channels] + [hid_channels] * num_layers
        self.layers = nn.ModuleList(
            ConvBlock(widths[i], widths[i + 1], kernel, groups, resample)
            for i, resample in enumerate(encoder_resampling(num_layers))
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) -> (latents (N, C_s, h, w), skip (N, C_s, H, W))."""
        x = skip = self.layers[0](x)
        for layer in self.layers[1:]:
            x = layer(x)
        return x, skip


class SpatialDecoder(nn.Module):
    """Per-frame decoder, the encoder mirrored: (N, C_s, h, w) + skip (N, C_s, H, W) ->
    readout (N, C, H, W) (before the output activation)."""

    def __init__(
        self, hid_channels: int, out_channels: int, num_layers: int, kernel: int, groups: int
    ) -> None:
        super().__init__()
        resampling = ["up" if r == "down" else None for r in encoder_resampling(num_layers)]
        self.layers = nn.ModuleList(
            ConvBlock(hid_channels, hid_channels, kernel, groups, resample)
            for resample in reversed(resampling)
        )
        self.readout = nn.Conv2d(hid_channels, out_channels, 1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """(N, C_s, h, w), (N, C_s, H, W) -> (N, C, H, W)."""
        for layer in self.layers[:-1]:
            x = layer(x)
        # SimVPv2 adds the skip (SimVP v1 concatenated it) before the last block.
        return self.readout(self.layers[-1](x + skip))


class GatedSpatialAttention(nn.Module):
    """The gating unit of gSTA: a large-kernel depthwise conv decomposed into a small
    depthwise conv, a depthwise dilated conv and a 1x1 conv (VAN's large-kernel attention),
    whose 2·C outputs split into a value f and a gate g: out = sigmoid(g) * f.

    A kernel K with dilation d becomes a (2d - 1)² depthwise conv and a ⌈K/d⌉² (made odd)
    depthwise conv of dilation d: receptive field about K x K at a cost linear in K.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        local = 2 * dilation - 1
        dilated = kernel_size // dilation
        dilated += 1 - dilated % 2  # odd, so "same" padding is symmetric
        self.local = nn.Conv2d(channels, channels, local, padding=local // 2, groups=channels)
        self.dilated = nn.Conv2d(
            channels,
            channels,
            dilated,
            padding=(dilated // 2) * dilation,
            groups=channels,
            dilation=dilation,
        )
        self.mix = nn.Conv2d(channels, 2 * channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        value, gate = self.mix(self.dilated(self.local(x))).chunk(2, dim=1)
        return torch.sigmoid(gate) * value


class GSTABlock(nn.Module):
    """One gated spatiotemporal attention block on stacked frames (B, C_t, h, w):

    x + drop_path(scale_1 * attention(norm(x))), then x + drop_path(scale_2 * ffn(norm(x))),
    where attention = 1x1 conv -> GELU -> :class:`GatedSpatialAttention` -> 1x1 conv, with
    its own residual around the gating unit, and ffn = 1x1 conv to mlp_ratio·C_t -> 3x3
    depthwise conv -> GELU -> 1x1 conv back to C_t. Time lives in the channels, so the 1x1
    convs mix frames and the depthwise convs move content in space.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 21,
        dilation: int = 3,
        mlp_ratio: float = 8.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.act = nn.GELU()
        self.gating = GatedSpatialAttention(channels, kernel_size, dilation)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.norm2 = nn.GroupNorm(1, channels)
        hidden = max(1, int(round(channels * mlp_ratio)))
        self.ffn = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 1),
        )
        self.scale1 = nn.Parameter(torch.full((channels, 1, 1), LAYER_SCALE_INIT))
        self.scale2 = nn.Parameter(torch.full((channels, 1, 1), LAYER_SCALE_INIT))
        self.drop_path = DropPath(drop_path)

    def attention(self, x: Tensor) -> Tensor:
        """(B, C_t, h, w) -> (B, C_t, h, w)."""
        h = self.act(self.proj_in(x))
        return self.proj_out(self.gating(h) + h)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_t, h, w) -> (B, C_t, h, w)."""
        x = x + self.drop_path(self.scale1 * self.attention(self.norm1(x)))
        return x + self.drop_path(self.scale2 * self.ffn(self.norm2(x)))


class Translator(nn.Module):
    """Stacked frames (B, T_in·C_s, h, w) -> (B, T_out·C_s, h, w) through gSTA blocks at C_t."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hid_channels: int,
        num_blocks: int,
        kernel_size: int,
        dilation: int,
        mlp_ratio: float,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(in_channels, hid_channels, 1)
        # Stochastic depth grows linearly with depth (0 at the first block), as in the papers.
        rates = torch.linspace(0.0, drop_path, num_blocks).tolist()
        self.blocks = nn.Sequential(
            *(GSTABlock(hid_channels, kernel_size, dilation, mlp_ratio, p) for p in rates)
        )
        self.proj_out = nn.Conv2d(hid_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T_in·C_s, h, w) -> (B, T_out·C_s, h, w)."""
        return self.proj_out(self.blocks(self.proj_in(x)))


class SimVP(nn.Module):
    """SimVP+gSTA: context (B, T_in, C, H, W) in [-1, 1] -> (B, T_out, C, H, W) in [-1, 1].

    Build it with :meth:`from_config`; ``forward`` predicts one chunk of T_out frames,
    :meth:`rollout` any number of frames.
    """

    def __init__(
        self,
        image_channels: int,
        image_size: int,
        input_frames: int,
        output_frames: int,
        hid_channels: int = 16,
        hid_translator: int = 256,
        num_encoder_layers: int = 4,
        num_translator_blocks: int = 4,
        kernel_size: int = 3,
        attention_kernel_size: int = 21,
        attention_dilation: int = 3,
        mlp_ratio: float = 8.0,
        drop_path: float = 0.0,
        norm_groups: int = 2,
        output_activation: str = "clamp",
    ) -> None:
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
            )
        factor = 2 ** (num_encoder_layers // 2)
        if image_size <= 0 or image_size % factor:
            raise ValueError(
                f"image_size {image_size} must be a positive multiple of {factor} "
                f"(2**(num_encoder_layers // 2) with num_encoder_layers={num_encoder_layers})"
            )
        self.image_channels = image_channels
        self.image_size = image_size
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.hid_channels = hid_channels
        self.output_activation = output_activation
        self.latent_size = image_size // factor
        self.encoder = SpatialEncoder(
            image_channels, hid_channels, num_encoder_layers, kernel_size, norm_groups
        )
        self.translator = Translator(
            input_frames * hid_channels,
            output_frames * hid_channels,
            hid_translator,
            num_translator_blocks,
            attention_kernel_size,
            attention_dilation,
            mlp_ratio,
            drop_path,
        )
        self.skip = nn.Conv2d(input_frames * hid_channels, output_frames * hid_channels, 1)
        self._init_skip_from_last_frame()
        self.decoder = SpatialDecoder(
            hid_channels, image_channels, num_encoder_layers, kernel_size, norm_groups
        )

    @classmethod
    def from_config(
        cls, cfg: SimVPConfig, image_size: int, input_frames: int, output_frames: int
    ) -> SimVP:
        """Build from ``model`` (kind simvp), ``data.image_size``, ``training.condition_frames``
        (T_in) and ``training.frames_to_generate`` (T_out); ConfigError naming
        ``data.image_size`` when it does not divide by the encoder's downsampling."""
        factor = cfg.downsampling_factor
        if image_size <= 0 or image_size % factor:
            raise ConfigError(
                f"key 'data.image_size' has value {image_size}: must be a positive multiple of "
                f"{factor} (2**(model.num_encoder_layers // 2) with model.num_encoder_layers="
                f"{cfg.num_encoder_layers})"
            )
        return cls(
            image_channels=cfg.image_channels,
            image_size=image_size,
            input_frames=input_frames,
            output_frames=output_frames,
            hid_channels=cfg.hid_channels,
            hid_translator=cfg.hid_translator,
            num_encoder_layers=cfg.num_encoder_layers,
            num_translator_blocks=cfg.num_translator_blocks,
            kernel_size=cfg.kernel_size,
            attention_kernel_size=cfg.attention_kernel_size,
            attention_dilation=cfg.attention_dilation,
            mlp_ratio=cfg.mlp_ratio,
            drop_path=cfg.drop_path,
            norm_groups=cfg.norm_groups,
            output_activation=cfg.output_activation,
        )

    def _init_skip_from_last_frame(self) -> None:
        """Skip mix = copy the last context frame's channels to every output frame."""
        c, t_in = self.hid_channels, self.input_frames
        weight = torch.zeros(self.output_frames * c, t_in * c)
        eye = torch.eye(c)
        for out in range(self.output_frames):
            weight[out * c : (out + 1) * c, (t_in - 1) * c :] = eye
        with torch.no_grad():
            self.skip.weight.copy_(weight[:, :, None, None])
            self.skip.bias.zero_()

    def _check_context(self, context: Tensor, at_least: bool) -> None:
        c, s = self.image_channels, self.image_size
        frames_ok = (
            context.shape[1] >= self.input_frames
            if at_least
            else context.shape[1] == self.input_frames
        )
        if context.ndim != 5 or not frames_ok or tuple(context.shape[2:]) != (c, s, s):
            need = f"{'at least ' if at_least else ''}{self.input_frames}"
            raise ValueError(
                f"SimVP takes context (B, T, {c}, {s}, {s}) with T = {need} frames, "
                f"got {tuple(context.shape)}"
            )

    def forward(self, context: Tensor) -> Tensor:
        """Context (B, T_in, C, H, W) in [-1, 1] -> the next T_out frames (B, T_out, C, H, W)
        in [-1, 1]."""
        self._check_context(context, at_least=False)
        b, t_in = context.shape[:2]
        latents, skip = self.encoder(context.flatten(0, 1))  # (B·T_in, C_s, h, w), (.., H, W)
        h, w = latents.shape[-2:]
        z = self.translator(latents.reshape(b, t_in * self.hid_channels, h, w))
        z = z.reshape(b * self.output_frames, self.hid_channels, h, w)
        skip = self.skip(skip.reshape(b, t_in * self.hid_channels, *skip.shape[-2:]))
        skip = skip.reshape(b * self.output_frames, self.hid_channels, *skip.shape[-2:])
        raw = self.decoder(z, skip)  # (B·T_out, C, H, W)
        frames = bounded_frames(raw, self.output_activation, self.training)
        return frames.reshape(b, self.output_frames, *frames.shape[1:])

    def rollout(
        self,
        context: Tensor,
        num_frames: int,
        progress: Callable[[int], None] | None = None,
    ) -> Tensor:
        """Context (B, T, C, H, W) in [-1, 1], T >= T_in -> the next ``num_frames`` frames
        (B, num_frames, C, H, W) in [-1, 1].

        The newest T_in frames predict T_out frames; those join the window and the newest
        T_in frames of it predict the next chunk, until ``num_frames`` are there (the last
        chunk is cut). ``progress`` is called with each predicted frame's index as its
        chunk comes out.
        """
        self._check_context(context, at_least=True)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        window = context[:, -self.input_frames :]
        chunks: list[Tensor] = []
        done = 0
        while done < num_frames:
            chunk = self(window)[:, : num_frames - done]
            chunks.append(chunk)
            if progress is not None:
                for index in range(done, done + chunk.shape[1]):
                    progress(index)
            done += chunk.shape[1]
            window = torch.cat([window, chunk], dim=1)[:, -self.input_frames :]
        return torch.cat(chunks, dim=1)
