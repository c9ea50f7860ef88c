"""``framecast reconstruct``: how well a trained autoencoder reproduces held-out clips.

Writes a PNG grid (per clip: input row, reconstruction row) and returns one line of
metrics (MSE, PSNR, SSIM, ST-LPIPS) averaged over every frame shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from framecast.data.dataset import ClipDataset, check_frame_size, split_dir
from framecast.eval.lpips import load_stlpips
from framecast.eval.metrics import mse, psnr, ssim
from framecast.eval.plots import save_image_grid, to_uint8_images
from framecast.models.autoencoder.loading import load_autoencoder


@dataclass
class ReconstructResult:
    metrics: dict[str, float]
    grid: Path
    frames: int

    def format(self) -> str:
        line = "  ".join(f"{k}={v:.5g}" for k, v in self.metrics.items())
        return f"{self.frames} frames  {line}\ngrid: {self.grid}"


@torch.no_grad()
def reconstruct(
    run: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    split: str = "test",
    num_clips: int = 8,
    frames_per_clip: int = 8,
    out: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> ReconstructResult:
    """Reconstruct ``num_clips`` evaluation clips of ``split`` with the run's best checkpoint.

    Frames are read with the autoencoder's channels (a greyscale one sees their luma) and
    resized to its size; square frames of another size are refused unless the autoencoder
    was trained on such frames (:func:`~framecast.data.dataset.check_frame_size`).
    """
    loaded = load_autoencoder(run)
    root = data_root if data_root is not None else loaded.config.data.root
    where = split_dir(root, split)
    dataset = ClipDataset(
        where,
        num_frames=frames_per_clip,
        frame_stride=loaded.config.data.frame_stride,
        image_size=loaded.image_size,
        train=False,
        clips_per_video=1,
        skip_short=True,
        channels=loaded.model.image_channels,
    )
    check_frame_size(
        dataset.videos,
        loaded.image_size,
        where,
        f"the autoencoder {loaded.checkpoint}",
        trained_on=loaded.config.data.root,
    )
    clips = torch.stack(
        [dataset[i]["frames"] for i in range(min(num_clips, len(dataset)))]
    )  # (N, T, C, H, W)
    frames = clips.flatten(0, 1)
    recon = torch.cat([loaded.model(chunk).rgb for chunk in frames.split(batch_size)]).clamp(-1, 1)
    lpips = load_stlpips("alex")
    metrics = {
        "mse": mse(recon, frames).mean().item(),
        "psnr": psnr(recon, frames).mean().item(),
        "ssim": ssim(recon, frames).mean().item(),
        "stlpips": torch.cat(
            [lpips(a, b) for a, b in zip(recon.split(batch_size), frames.split(batch_size))]
        )
        .mean()
        .item(),
    }
    rows = []
    for clip, rec in zip(clips, recon.view_as(clips)):
        rows += [to_uint8_images(clip), to_uint8_images(rec)]
    run_dir = loaded.checkpoint.parent.parent  # RUN/checkpoints/best.ckpt
    grid = Path(out) if out is not None else run_dir / "samples" / f"reconstruct_{split}.png"
    save_image_grid(rows, grid, labels=[s for _ in range(len(clips)) for s in ("input", "recon")])
    return ReconstructResult(metrics, grid, frames.shape[0])
