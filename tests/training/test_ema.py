"""ForeachEMA averages exactly as Lightning's per-parameter EMAWeightAveraging."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch.utils.data import DataLoader, TensorDataset

from framecast.training.callbacks import ForeachEMA


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def averaged_after_training(callback) -> list[torch.Tensor]:
    torch.manual_seed(1)
    data = TensorDataset(torch.randn(24, 4), torch.randn(24, 1))
    model = Tiny()
    trainer = pl.Trainer(
        max_steps=5,
        callbacks=[callback],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(data, batch_size=4))
    return [p.detach().clone() for p in model.parameters()]  # averaged weights swapped in


def test_foreach_ema_matches_lightning_ema():
    ours = averaged_after_training(ForeachEMA(decay=0.9))
    reference = averaged_after_training(EMAWeightAveraging(decay=0.9))
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    plain = Tiny()  # and the average did move away from the initial weights
    assert any(not torch.allclose(a, b) for a, b in zip(ours, plain.parameters(), strict=True))
