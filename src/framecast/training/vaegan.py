"""The WuBu-GAAD VAE-GAN in Lightning: a thin wrapper around :class:`WuBuGAADVAEGAN`.

One training step, top to bottom (two optimisers, stepped by hand):

1. clip (B, Tc + F, C, H, W) → context = first Tc frames, real = the next F frames;
2. encoder(context) → mu, logvar → z → generator → fake (B, F, C, H, W);
3. discriminator step: loss_d_real on D(real), loss_d_fake on D(fake.detach());
4. generator step: λ_recon·MSE(fake, real) + λ_KL·KL + λ_gan·adversarial(D(fake)).

Under DDP the module is wrapped in ``DistributedDataParallel`` with
``find_unused_parameters`` (each backward touches only one player's weights) and Lightning
prepares the reducer before every ``manual_backward``, so both players' gradients are
all-reduced across ranks (the users' script unwrapped ``.module`` and never synchronised;
``tests/training/test_vaegan.py`` checks that two ranks end with identical weights).

Logged as the users' script did: ``train/loss_recon``, ``loss_kl``, ``loss_g_adv``,
``loss_g_total``, ``loss_d_real``, ``loss_d_fake``, ``loss_d_total``, ``lr_gen``,
``lr_disc``; ``val/avg_val_psnr``, ``val/avg_val_ssim``, ``val/avg_val_lpips`` (ST-LPIPS),
``val/avg_val_recon_mse`` (the guide's names; and ``val/loss`` = λ_recon·recon_mse + λ_KL·KL); a sample panel (context | truth | prediction) and fixed-noise
generations at each validation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from framecast.config import Config
from framecast.config.vaegan import VAEGANConfig
from framecast.errors import ConfigError
from framecast.eval.lpips import load_stlpips
from framecast.eval.metrics import psnr, ssim
from framecast.eval.plots import save_image_grid, to_uint8_images
from framecast.losses.adversarial import discriminator_terms, generator_gan_loss
from framecast.models.vaegan.model import VAEGANOutput, WuBuGAADVAEGAN, kl_divergence
from framecast.training.callbacks import KLScheduleCallback
from framecast.training.datamodule import ClipDataModule, split_context_future
from framecast.training.kl_schedule import KLSchedule
from framecast.training.module import FramecastModule
from framecast.training.task import Task, refuse_auto

SAMPLE_CLIPS = 4  # clips in each validation panel
FIXED_NOISE_SAMPLES = 4  # fixed-noise generations per validation


def kl_schedule(cfg: VAEGANConfig) -> KLSchedule:
    """``model.kl_schedule`` with ``model.lambda_kl`` as the constant/target weight."""
    return KLSchedule.from_section(cfg.kl_schedule, cfg.lambda_kl)


class VAEGANModule(FramecastModule):
    kind = "vaegan"

    def __init__(self, config: Config):
        super().__init__(config)
        # model.image_channels follows data.channels, resolved from the dataset before
        # the module is built (Task.resolve_config).
        refuse_auto(config, "data.channels")
        cfg: VAEGANConfig = config.model
        t = config.training
        self.context_frames = t.condition_frames
        self.future_frames = t.frames_to_generate
        try:
            self.model = WuBuGAADVAEGAN(
                cfg, config.data.image_size, self.context_frames, self.future_frames
            )
        except ValueError as exc:
            raise ConfigError(f"model (kind vaegan): {exc}") from None
        self.automatic_optimization = False
        self.kl_weight = kl_schedule(cfg).value(0)
        self._sample_batch: torch.Tensor | None = None
        self._train_sample: torch.Tensor | None = None
        # Fixed noise: the same latents at every validation show how generation evolves.
        noise = torch.randn(
            FIXED_NOISE_SAMPLES, cfg.latent_dim, generator=torch.Generator().manual_seed(t.seed)
        )
        self.register_buffer("fixed_noise", noise, persistent=False)

    # -- data -----------------------------------------------------------------------
    def split_clip(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Tc + F, C, H, W) → context (B, Tc, ...), real future (B, F, ...)."""
        return split_context_future(
            batch["frames"], self.context_frames, self.future_frames, self.kind
        )

    # -- losses -----------------------------------------------------------------------
    def discriminator_loss(
        self, out: VAEGANOutput, real: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D on the real future (B, F, C, H, W) and on the detached fake → (loss_d_total, logs)."""
        d_real, d_fake = discriminator_terms(
            self.model.discriminate(real),
            self.model.discriminate(out.frames.detach()),
            self.config.model.gan_loss,
        )
        d_total = 0.5 * (d_real + d_fake)
        return d_total, {"loss_d_real": d_real, "loss_d_fake": d_fake, "loss_d_total": d_total}

    def generator_loss(
        self, out: VAEGANOutput, real: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """λ_recon·MSE + λ_KL·KL + λ_gan·adversarial → (loss_g_total, logs)."""
        cfg: VAEGANConfig = self.config.model
        recon = F.mse_loss(out.frames.float(), real.float())
        kl = kl_divergence(out.mu.float(), out.logvar.float())
        g_adv = generator_gan_loss(self.model.discriminate(out.frames), cfg.gan_loss)
        g_total = cfg.lambda_recon * recon + self.kl_weight * kl + cfg.lambda_gan * g_adv
        logs = {"loss_recon": recon, "loss_kl": kl, "loss_g_adv": g_adv, "loss_g_total": g_total}
        return g_total, logs

    # -- training -----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        context, real = self.split_clip(batch)
        out = self.model(context)

        # Discriminator step on real futures and detached fakes.
        self.toggle_optimizer(opt_d)
        d_total, d_logs = self.discriminator_loss(out, real)
        self.check_finite(d_total, d_logs)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_total)
        self.clip_grad_norm(opt_d, self.config.model.global_max_grad_norm)
        # The inner optimiser's step: the wrapped one would count a second global step.
        opt_d.optimizer.step()
        sched_d.step()
        self.untoggle_optimizer(opt_d)

        # Generator (encoder + generator) step; the discriminator is frozen meanwhile.
        self.toggle_optimizer(opt_g)
        g_total, g_logs = self.generator_loss(out, real)
        self.check_finite(g_total, g_logs)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_total)
        self.clip_grad_norm(opt_g, self.config.model.global_max_grad_norm)
        opt_g.step()
        sched_g.step()
        self.untoggle_optimizer(opt_g)

        if batch_idx == 0 or self._train_sample is None:  # the train_recon panel's clips
            n = min(SAMPLE_CLIPS, real.shape[0])
            self._train_sample = torch.cat([context[:n], real[:n], out.frames[:n]], dim=1)
            self._train_sample = self._train_sample.detach().float()

        logs = {k: v.detach() for k, v in {**g_logs, **d_logs}.items()}
        logs["lr_gen"] = opt_g.param_groups[0]["lr"]
        logs["lr_disc"] = opt_d.param_groups[0]["lr"]
        self.log_dict_prefixed("train", logs, on_step=True, on_epoch=False)
        self.log("train/loss", logs["loss_g_total"], prog_bar=True, on_step=True, on_epoch=False)

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        cfg: VAEGANConfig = self.config.model
        weight_decay = self.config.training.weight_decay
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=lr, momentum=cfg.sgd_momentum, weight_decay=weight_decay
            )
        return torch.optim.Adam(
            params, lr=lr, betas=(cfg.adam_beta1, 0.999), weight_decay=weight_decay
        )

    def configure_optimizers(self):
        opt_g = self._optimizer(self.model.generator_parameters(), self.config.training.lr)
        opt_d = self._optimizer(
            self.model.discriminator.parameters(), self.config.model.learning_rate_disc
        )
        return [opt_g, opt_d], [self.make_scheduler(opt_g), self.make_scheduler(opt_d)]

    # -- validation ---------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._sample_batch = None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        context, real = self.split_clip(batch)
        out = self.model(context, sample_posterior=False)
        fake = out.frames.float()
        # Metrics in fp32 even under bf16 autocast (SSIM and LPIPS convolutions).
        with torch.autocast(real.device.type, enabled=False):
            pred_frames, true_frames = fake.flatten(0, 1), real.float().flatten(0, 1)
            recon = F.mse_loss(pred_frames, true_frames)
            kl = kl_divergence(out.mu.float(), out.logvar.float())
            cfg: VAEGANConfig = self.config.model
            # The guide's names (document 004: val/avg_val_psnr, _ssim, _lpips, _recon_mse).
            metrics = {
                # The generator's objective without the adversarial term (comparable across
                # runs whatever the discriminator does).
                "loss": cfg.lambda_recon * recon + self.kl_weight * kl,
                "avg_val_psnr": psnr(pred_frames, true_frames).mean(),
                "avg_val_ssim": ssim(pred_frames, true_frames).mean(),
                "avg_val_lpips": load_stlpips("alex", real.device)(pred_frames, true_frames).mean(),
                "avg_val_recon_mse": recon,
                "loss_kl": kl,
            }
        self.log_dict_prefixed("val", metrics, on_epoch=True, batch_size=real.shape[0])
        if batch_idx == 0:
            n = min(SAMPLE_CLIPS, real.shape[0])
            self._sample_batch = torch.cat([context[:n], real[:n], fake[:n]], dim=1).float()

    def on_validation_epoch_end(self) -> None:
        # File stems are the guide's image keys (samples/val_reconstruction_samples,
        # samples/train_recon, samples/fixed_noise_generated in W&B: SampleMediaCallback).
        path = self.sample_path("val_reconstruction_samples")
        if self._sample_batch is None or path is None:
            return
        tc, f = self.context_frames, self.future_frames
        for batch, where in ((self._sample_batch, path), (self._train_sample, None)):
            if batch is None:
                continue
            rows = [to_uint8_images(clip) for clip in batch]
            labels = [
                f"clip {i}: {tc} context | {f} truth | {f} predicted" for i in range(len(rows))
            ]
            save_image_grid(rows, where or self.sample_path("train_recon"), labels=labels)
        # The generator's GAAD-FiLM reads context frames: every fixed latent gets the first
        # sample clip's context, so the panel still shows what the latent alone changes.
        noise = self.fixed_noise.to(self.device)
        context = self._sample_batch[:1, : self.context_frames].expand(len(noise), -1, -1, -1, -1)
        with torch.no_grad():
            generated = self.model.generate(noise, context.to(self.device)).float()
        noise_path = self.sample_path("fixed_noise_generated")
        save_image_grid(
            [to_uint8_images(clip) for clip in generated],
            noise_path,
            labels=[f"z{i}" for i in range(len(generated))],
        )

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"image_size": self.config.data.image_size}


def _callbacks(config: Config, run) -> list:
    cfg: VAEGANConfig = config.model
    callbacks: list = []
    q = cfg.q_controller
    if not (q.enabled and q.control_kl):
        callbacks.append(KLScheduleCallback(kl_schedule(cfg)))
    if q.enabled:
        from framecast.training.q_controller import QControllerCallback, QControllerConfig

        # The section holds QControllerConfig's keys plus when and whether to decide.
        settings = q.model_dump(exclude={"enabled", "every_n_steps", "control_kl"})
        controller = QControllerConfig(**settings)  # the guide's band: non-saturating loss
        callbacks.append(
            QControllerCallback(
                controller if config.model.gan_loss != "hinge" else controller.for_hinge(),
                every_n_steps=q.every_n_steps,
                gen_optimizer_index=0,
                disc_optimizer_index=1,
                control_kl=q.control_kl,
            )
        )
    return callbacks


def _datamodule(config: Config) -> ClipDataModule:
    t = config.training
    return ClipDataModule(config, num_frames=t.condition_frames + t.frames_to_generate)


TASK = Task(
    build_module=VAEGANModule,
    build_datamodule=_datamodule,
    build_callbacks=_callbacks,
    find_unused_parameters=True,
    fp16_supported=False,  # two optimisers stepped by hand
)
