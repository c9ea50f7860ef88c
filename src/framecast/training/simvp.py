"""SimVP+gSTA in Lightning: a thin wrapper around the plain :class:`SimVP`.

One training step, top to bottom:

1. clip (B, T_in + T_out, C, H, W) from the :class:`ClipDataModule` → context = the first
   T_in frames (``training.condition_frames``), truth = the next T_out frames
   (``training.frames_to_generate``);
2. model(context) → prediction (B, T_out, C, H, W) in [-1, 1], all frames in one pass;
3. loss = MSE(prediction, truth) on the model's [-1, 1] scale (SimVP's objective), in fp32.

Logged: ``train/loss`` (the objective) and ``train/mse`` (the same error on the [0, 1]
scale that ``framecast evaluate`` reports, i.e. loss / 4); in validation ``val/loss``,
``val/mse``, ``val/psnr`` and ``val/ssim`` over all predicted frames, and a sample panel
(context | truth | prediction) per validation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from framecast.config import Config
from framecast.config.simvp import SimVPConfig
from framecast.eval.metrics import mse, psnr, ssim
from framecast.eval.plots import save_image_grid, to_uint8_images
from framecast.models.simvp import SimVP
from framecast.training.datamodule import ClipDataModule, split_context_future
from framecast.training.module import FramecastModule
from framecast.training.task import Task, refuse_auto

SAMPLE_CLIPS = 4  # clips in each validation panel


def build_simvp(config: Config) -> SimVP:
    """The plain model of a ``simvp`` run config: T_in = ``training.condition_frames``, T_out =
    ``training.frames_to_generate``, frames of ``data.image_size`` (ConfigError if it does not
    divide by the encoder's downsampling)."""
    cfg: SimVPConfig = config.model
    t = config.training
    return SimVP.from_config(cfg, config.data.image_size, t.condition_frames, t.frames_to_generate)


class SimVPModule(FramecastModule):
    kind = "simvp"

    def __init__(self, config: Config):
        super().__init__(config)
        # model.image_channels follows data.channels, resolved from the dataset before
        # the module is built (Task.resolve_config).
        refuse_auto(config, "data.channels")
        self.context_frames = config.training.condition_frames
        self.future_frames = config.training.frames_to_generate
        self.model = build_simvp(config)
        self._sample_batch: torch.Tensor | None = None

    # -- data -----------------------------------------------------------------------
    def split_clip(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T_in + T_out, C, H, W) → context (B, T_in, ...), true future (B, T_out, ...)."""
        return split_context_future(
            batch["frames"], self.context_frames, self.future_frames, self.kind
        )

    def compute_loss(
        self, context: torch.Tensor, truth: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, T_in, C, H, W), truth (B, T_out, C, H, W) → (prediction, MSE loss).

        The loss is taken in fp32 (under bf16 autocast the model's output is bf16)."""
        prediction = self.model(context)
        return prediction, F.mse_loss(prediction.float(), truth.float())

    # -- training -------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        context, truth = self.split_clip(batch)
        _, loss = self.compute_loss(context, truth)
        # On the [0, 1] scale of evaluate's per-horizon MSE: (a - b)² shrinks by 2² = 4.
        unit_mse = loss.detach() / 4
        self.check_finite(loss, {"mse": unit_mse})
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log("train/mse", unit_mse)
        return loss

    # -- validation -----------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._sample_batch = None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        context, truth = self.split_clip(batch)
        prediction, loss = self.compute_loss(context, truth)
        # Metrics in fp32 even under bf16 autocast: SSIM's convolutions would otherwise
        # round to bf16 (about 3 significant digits).
        with torch.autocast(truth.device.type, enabled=False):
            pred_frames = prediction.float().flatten(0, 1)
            true_frames = truth.float().flatten(0, 1)
            metrics = {
                "loss": loss,
                "mse": mse(pred_frames, true_frames).mean(),
                "psnr": psnr(pred_frames, true_frames).mean(),
                "ssim": ssim(pred_frames, true_frames).mean(),
            }
        self.log_dict_prefixed("val", metrics, on_epoch=True, batch_size=truth.shape[0])
        if batch_idx == 0:
            n = min(SAMPLE_CLIPS, truth.shape[0])
            self._sample_batch = torch.cat(
                [context[:n].float(), truth[:n].float(), prediction[:n].float()], dim=1
            ).detach()

    def on_validation_epoch_end(self) -> None:
        path = self.sample_path("simvp")
        if self._sample_batch is None or path is None:
            return
        rows = [to_uint8_images(clip) for clip in self._sample_batch]
        tc, f = self.context_frames, self.future_frames
        labels = [f"clip {i}: {tc} context | {f} truth | {f} predicted" for i in range(len(rows))]
        save_image_grid(rows, path, labels=labels)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"image_size": self.config.data.image_size}


def _datamodule(config: Config) -> ClipDataModule:
    t = config.training
    return ClipDataModule(config, num_frames=t.condition_frames + t.frames_to_generate)


TASK = Task(build_module=SimVPModule, build_datamodule=_datamodule)
