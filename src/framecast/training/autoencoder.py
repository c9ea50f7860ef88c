"""Stage 1 in Lightning: a thin wrapper around the plain :class:`Autoencoder`.

One training step, top to bottom: frames → model → weighted losses (RGB, seg, cls, KL,
VQ) → [adversarial generator term] → backward. With a discriminator the step is done by
hand: generator (autoencoder) step, then discriminator step, each with its own optimiser
and learning rate. Each of those backward passes reaches one player only, so under DDP the
task asks for ``find_unused_parameters`` and both players' gradients are all-reduced
(``tests/training/test_ddp.py`` checks identical weights on two ranks).
"""

from __future__ import annotations

from typing import Any

import torch

from framecast.config import Config
from framecast.config.autoencoder import AutoencoderConfig
from framecast.data.augment import FrameAugment
from framecast.eval.lpips import load_stlpips
from framecast.eval.metrics import psnr, ssim
from framecast.eval.plots import save_image_grid, to_uint8_images
from framecast.losses.adversarial import AdversarialLoss
from framecast.losses.autoencoder import autoencoder_loss, smoke_class_labels
from framecast.models.autoencoder import Autoencoder
from framecast.models.autoencoder.autoencoder import ChannelMoments
from framecast.training.callbacks import KLScheduleCallback
from framecast.training.datamodule import ClipDataModule
from framecast.training.kl_schedule import KLSchedule
from framecast.training.module import FramecastModule
from framecast.training.task import Task, refuse_auto

SAMPLE_FRAMES = 8  # frames shown in each reconstruction grid


def flatten_frames(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clips (B, T, C, H, W) → frames (B·T, C, H, W); per-video labels repeated per frame."""
    clips = batch["frames"]
    frames = clips.flatten(0, 1)
    labels = batch.get("label")
    if labels is not None:
        labels = labels.repeat_interleave(clips.shape[1])
    return frames, labels


class AutoencoderModule(FramecastModule):
    kind = "autoencoder"

    def __init__(self, config: Config):
        super().__init__(config)
        # model.image_channels follows data.channels, resolved from the dataset before
        # the module is built (Task.resolve_config).
        refuse_auto(config, "data.channels")
        cfg: AutoencoderConfig = config.model
        self.model = Autoencoder.from_config(cfg, config.data.image_size)
        self.adversarial = (
            AdversarialLoss.from_config(cfg.discriminator, cfg.image_channels)
            if cfg.discriminator.enabled
            else None
        )
        # Two optimisers (generator, then discriminator) need a hand-written step.
        self.automatic_optimization = self.adversarial is None
        self.kl_weight = KLSchedule.from_config(cfg).value(0)
        self.augment = FrameAugment(**cfg.augment.model_dump())
        self._latent_moments = ChannelMoments()
        self._sample_batch: torch.Tensor | None = None

    # -- losses ---------------------------------------------------------------------
    def perceptual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean ST-LPIPS. The frozen network is cached by ``load_stlpips``, not registered
        here, so it stays out of this module's checkpoints."""
        return load_stlpips("alex", x.device)(x.float(), y.float()).mean()

    def compute_loss(
        self,
        frames: torch.Tensor,
        labels: torch.Tensor | None,
        sample_posterior: bool | None = None,
        inputs: torch.Tensor | None = None,
    ):
        """Loss of reconstructing ``frames`` (B, C, H, W) from ``inputs`` (default: frames)."""
        cfg: AutoencoderConfig = self.config.model
        output = self.model(frames if inputs is None else inputs, sample_posterior=sample_posterior)
        total, parts = autoencoder_loss(
            output,
            frames,
            cls_target=labels if cfg.has_cls_head else None,
            mse_weight=cfg.mse_weight,
            seg_weight=cfg.seg_weight,
            cls_weight=cfg.cls_weight,
            kl_weight=self.kl_weight,
            perceptual_weight=cfg.perceptual_weight,
            perceptual=self.perceptual if cfg.perceptual_weight > 0 else None,
            smoke_brightness=cfg.smoke_brightness,
        )
        parts.update(output.vq_stats)
        return output, total, parts

    # -- training ---------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int):
        frames, labels = flatten_frames(batch)
        inputs = None
        if self.augment.enabled:  # training only: validation sees the data as it is
            inputs, frames = self.augment(frames)
        output, loss, parts = self.compute_loss(frames, labels, inputs=inputs)
        if self.adversarial is None:
            self.check_finite(loss, parts)
            self.log_dict_prefixed("train", parts)
            self.log("train/loss", loss.detach(), prog_bar=True)
            return loss

        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        step = self.global_step  # counts autoencoder steps only (see the discriminator step)
        # Generator step: the discriminator is frozen so its weights collect no gradients.
        self.toggle_optimizer(opt_g)
        g_term, g_logs = self.adversarial.generator_loss(
            loss, output.rgb, self.model.last_layer_weight, step
        )
        total = loss + g_term
        self.check_finite(total, {**parts, **g_logs})
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        self.clip_grad_norm(opt_g, self.config.training.grad_clip)
        opt_g.step()
        sched_g.step()
        self.untoggle_optimizer(opt_g)

        d_loss, d_logs = self.adversarial.discriminator_loss(frames, output.rgb, step)
        if self.adversarial.active(step):
            self.check_finite(d_loss, d_logs)
            self.toggle_optimizer(opt_d)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self.clip_grad_norm(opt_d, self.config.training.grad_clip)
            # The wrapped optimiser's step would advance global_step a second time per batch;
            # stepping the inner optimiser keeps max_steps and disc_start in autoencoder steps.
            opt_d.optimizer.step()
            sched_d.step()
            self.untoggle_optimizer(opt_d)
        self.log_dict_prefixed("train", {"total": total.detach(), **parts, **g_logs, **d_logs})
        self.log("train/loss", loss.detach(), prog_bar=True)

    def configure_optimizers(self):
        if self.adversarial is None:
            return super().configure_optimizers()
        opt_g = self.make_optimizer(self.model.parameters())
        opt_d = self.make_optimizer(
            self.adversarial.parameters(), lr=self.config.model.discriminator.disc_lr
        )
        return [opt_g, opt_d], [self.make_scheduler(opt_g), self.make_scheduler(opt_d)]

    # -- validation ---------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._latent_moments = ChannelMoments()
        self._sample_batch = None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        cfg: AutoencoderConfig = self.config.model
        frames, labels = flatten_frames(batch)
        output, loss, parts = self.compute_loss(frames, labels, sample_posterior=False)
        rgb = output.rgb.float()
        # Metrics in fp32 even under bf16 autocast: SSIM's and LPIPS's convolutions would
        # otherwise round to bf16 (about 3 significant digits).
        with torch.autocast(frames.device.type, enabled=False):
            metrics = {
                "loss": loss,
                **parts,
                "psnr": psnr(rgb, frames).mean(),
                "ssim": ssim(rgb, frames).mean(),
                "stlpips": self.perceptual(rgb, frames),
            }
        if output.seg_logits is not None:
            target = smoke_class_labels(frames, cfg.smoke_brightness)
            predicted = output.seg_logits.argmax(dim=1)
            metrics["seg_accuracy"] = (predicted == target).float().mean()
            union = ((predicted == 1) | (target == 1)).sum()
            metrics["seg_iou"] = ((predicted == 1) & (target == 1)).sum() / union.clamp_min(1)
        if output.cls_logits is not None and labels is not None:
            metrics["cls_accuracy"] = (output.cls_logits.argmax(dim=1) == labels).float().mean()
        self.log_dict_prefixed("val", metrics, on_epoch=True, batch_size=frames.shape[0])
        self._latent_moments.update(output.latents_prequant.float())
        if batch_idx == 0:
            self._sample_batch = torch.stack([frames[:SAMPLE_FRAMES], rgb[:SAMPLE_FRAMES]])
            if output.seg_logits is not None:
                seg = output.seg_logits[:SAMPLE_FRAMES].argmax(dim=1, keepdim=True).float() * 2 - 1
                self._sample_batch = torch.cat(
                    [self._sample_batch, seg.expand_as(rgb[:SAMPLE_FRAMES])[None]]
                )

    def on_validation_epoch_end(self) -> None:
        # Latent normalisation follows the weights it belongs to: every checkpoint written
        # after this validation stores the shift/scale of its own encoder.
        moments = self._latent_moments
        if moments.count > 1:
            reduce = self.trainer.strategy.reduce  # sums over ranks under DDP
            count = torch.tensor(float(moments.count), device=moments.total.device)
            moments.total = reduce(moments.total, reduce_op="sum")
            moments.squares = reduce(moments.squares, reduce_op="sum")
            moments.count = int(reduce(count, reduce_op="sum"))
            self.model.set_latent_normalization(*moments.mean_std())
        path = self.sample_path("recon")
        if self._sample_batch is not None and path is not None:
            rows = [to_uint8_images(images) for images in self._sample_batch]
            labels = ["input", "reconstruction", "segmentation"][: len(rows)]
            save_image_grid(rows, path, labels=labels)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"image_size": self.config.data.image_size}


def _callbacks(config: Config, run) -> list:
    model_cfg: AutoencoderConfig = config.model
    if not model_cfg.variational:
        return []
    return [KLScheduleCallback(KLSchedule.from_config(model_cfg))]


TASK = Task(
    build_module=AutoencoderModule,
    # The autoencoder sees frames: single-frame clips give the most varied batches.
    build_datamodule=lambda config: ClipDataModule(config, num_frames=1),
    build_callbacks=_callbacks,
    # With the discriminator, training_step does two backward passes by hand, each
    # reaching one player only: DDP must mark the other's parameters ready, or it stops
    # at the second backward (both players' gradients are all-reduced; test_ddp.py).
    find_unused_parameters=lambda config: config.model.discriminator.enabled,
    fp16_supported=lambda config: not config.model.discriminator.enabled,
)
