"""The shared optimiser: fused AdamW wherever no loss scaler runs, gradients clipped by torch.

Lightning refuses gradient clipping with any fused optimiser under mixed precision (bf16
too); FramecastModule clips itself, so ``training.grad_clip`` and the fused step go
together. These tests pin that the clipping and the fused step compute what Lightning's
own clipping and the unfused AdamW compute.
"""

from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from framecast.training.engine import train
from framecast.training.module import FramecastModule

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LR, BETAS, WEIGHT_DECAY, CLIP = 0.05, (0.9, 0.99), 0.01, 0.05


def training_config(precision: str) -> SimpleNamespace:
    training = SimpleNamespace(
        precision=precision,
        lr=LR,
        betas=BETAS,
        weight_decay=WEIGHT_DECAY,
        max_steps=6,
        warmup_steps=0,
        lr_schedule="constant",
    )
    return SimpleNamespace(training=training)


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


class Ours(FramecastModule):
    kind = "test"

    def __init__(self, precision: str = "32"):
        super().__init__(training_config(precision))
        self.net = tiny_net()

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)


class LightningReference(pl.LightningModule):
    """Unfused AdamW, clipped by Lightning's own path."""

    def __init__(self):
        super().__init__()
        self.net = tiny_net()

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, foreach=False
        )


def fit(module: pl.LightningModule, precision: str) -> list[float]:
    """Train 6 steps with gradient_clip_val=CLIP; the gradient norm each step used."""
    torch.manual_seed(1)
    data = TensorDataset(torch.randn(24, 4), 10 * torch.randn(24, 1))  # large: clipping bites
    norms: list[float] = []
    trainer = pl.Trainer(
        max_steps=6,
        precision=precision,
        gradient_clip_val=CLIP,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )

    class RecordNorm(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            def record(optimizer, *_):  # after the step: the closure ran inside it
                grads = [p.grad for g in optimizer.param_groups for p in g["params"]]
                norms.append(float(torch.nn.utils.get_total_norm(grads)))

            trainer.optimizers[0].register_step_post_hook(record)

    trainer.callbacks.append(RecordNorm())
    trainer.fit(module, DataLoader(data, batch_size=4))
    return norms


def test_fused_adamw_except_under_a_loss_scaler():
    assert Ours("32").fused_optimizer and Ours("bf16-mixed").fused_optimizer
    assert not Ours("16-mixed").fused_optimizer
    optimizer = Ours("bf16-mixed").make_optimizer(Ours().parameters())
    assert optimizer.param_groups[0]["fused"] is True


def test_own_clipping_and_fused_step_match_lightning_and_unfused_adamw():
    ours, reference = Ours("32"), LightningReference()
    ours_norms = fit(ours, "32")
    reference_norms = fit(reference, "32")
    assert all(n <= CLIP * (1 + 1e-5) for n in ours_norms)
    assert max(reference_norms) > 0.5 * CLIP  # the clip was reached, not idle
    torch.testing.assert_close(ours_norms, reference_norms, rtol=1e-5, atol=1e-7)
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bf16_mixed_with_grad_clip_trains_with_the_fused_optimiser():
    """The combination Lightning refuses (fused optimiser + clipping under bf16-mixed)."""
    module = Ours("bf16-mixed")
    norms = fit(module, "bf16-mixed")
    assert len(norms) == 6 and all(n <= CLIP * (1 + 1e-3) for n in norms)


@pytest.mark.parametrize("config", ["reference_ae", "river_tiny", "wubu_vaegan"])
def test_shipped_config_trains_under_bf16_with_grad_clip(config, tmp_path, tiny_dataset, shrink):
    """Shipped configs as they run (bf16-mixed, grad_clip on): automatic optimisation
    (autoencoder, river) and two optimisers stepped by hand (vaegan). The tiny runs of the
    other tests use fp32, which Lightning's refusal never reached."""
    shrunk = shrink(REPO_CONFIGS / f"{config}.yaml", tiny_dataset, max_steps=2)
    training = shrunk.training.model_copy(update={"precision": "bf16-mixed"})
    shrunk = shrunk.model_copy(update={"training": training})
    result = train(shrunk, runs_dir=tmp_path, run_name="r", progress=False)
    assert (result.run_dir / "checkpoints" / "last.ckpt").is_file()
