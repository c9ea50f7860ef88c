"""``model.kind: motion`` in Lightning: the LSTM motion-correction model on tracking windows.

Data: a JSON session file or folder (``data.root``), or generated sessions when
``data.root`` is unset and ``model.synthetic.enabled``; sessions too short for one window
are skipped and counted, and so are bad frames unless ``model.strict``; split by session
70/15/15 (``training.seed``), or by time within each session when there are fewer than 3
(with a note); normalisation fitted on the training split and stored in the model's buffers.

One training step: raw windows (B, T, 12) → (+ Gaussian noise, training only, the same
along a dropout's held values; speed resampling happens in the dataset) → normalise → LSTM → MSE to the normalised target.
Validation logs ``val/loss`` (normalised MSE) and MSE/MAE per feature group in original and
normalised units, for the model and the copy-last and moving-average baselines. At the end
of fitting, the best checkpoint is evaluated on val and test into ``RUN/eval/``.

Optimiser: AdamW (``training.lr``, ``training.weight_decay``) with ReduceLROnPlateau on
``training.monitor`` (``model.plateau``), stepped once per epoch; ``training.lr_schedule``
and ``warmup_steps`` do not apply to this kind.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from framecast.config import Config
from framecast.config.motion import MotionConfig
from framecast.data.motion import (
    Normalisation,
    Session,
    make_window,
    read_sessions,
    split_for_training,
    stack_windows,
    synthetic_sessions,
    usable_sessions,
    window_starts,
)
from framecast.errors import ConfigError, DataError
from framecast.eval.motion import (
    baseline_predictions,
    evaluate_motion,
    motion_errors,
    plot_motion_tracks,
    predict,
    write_motion_metrics,
)
from framecast.models.motion_lstm import MotionLSTM
from framecast.training.module import FramecastModule
from framecast.training.task import Task, keep_config

BASELINE_LOGGED = ("mse", "mae", "mse_norm", "mae_norm")


def held_noise(x: torch.Tensor) -> torch.Tensor:
    """Standard Gaussian noise shaped like raw windows ``x`` (B, T, F), repeated along held
    values (a value equal to the previous frame's gets that frame's noise), so that noisy
    inputs still show a dropout's hold exactly (the model's hold flags read it)."""
    noise = torch.randn_like(x)
    held = x[:, 1:] == x[:, :-1]  # (B, T - 1, F)
    steps = [noise[:, 0]]
    for t in range(1, x.shape[1]):  # holds are runs, so each frame takes the previous' noise
        steps.append(torch.where(held[:, t - 1], steps[-1], noise[:, t]))
    return torch.stack(steps, dim=1)


class MotionWindows(Dataset):
    """Windows of sessions as dicts ``inputs`` (T, 12) raw, ``target`` (12,) clean.

    With ``augment`` (training), a share of windows is resampled at a random speed."""

    def __init__(self, sessions: list[Session], cfg: MotionConfig, augment: bool):
        self.sessions = sessions
        self.cfg = cfg
        self.augment = augment
        self.starts = window_starts(sessions, cfg.sequence_length)
        if not augment:
            x, y = stack_windows(sessions, cfg.sequence_length, cfg.target)
            self.inputs, self.targets = torch.from_numpy(x), torch.from_numpy(y)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not self.augment:
            return {"inputs": self.inputs[index], "target": self.targets[index]}
        cfg, T = self.cfg, self.cfg.sequence_length
        session_index, start = self.starts[index]
        session = self.sessions[session_index]
        speed = 1.0
        if float(torch.rand(())) < cfg.augment.speed_prob:
            lo, hi = cfg.augment.speed_range
            speed = lo + (hi - lo) * float(torch.rand(()))
            last_start = int(np.floor(len(session) - 1 - speed * T))
            if last_start < 0:
                speed = 1.0
            else:
                start = min(start, last_start)
        x, y = make_window(session, start, T, cfg.target, speed)
        return {"inputs": torch.from_numpy(np.ascontiguousarray(x)), "target": torch.from_numpy(y)}


class MotionDataModule(pl.LightningDataModule):
    """Loads (or generates) the sessions once, splits them and fits the normalisation."""

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        cfg: MotionConfig = config.model
        root = config.data.root
        self.skipped_frames = 0
        self.split_note: str | None = None
        if root is not None:
            loaded = read_sessions(root, strict=cfg.strict)
            sessions, self.source = loaded.sessions, str(root)
            self.skipped_frames = len(loaded.skipped_frames)
            if loaded.skipped_frames:
                warnings.warn(f"{root}: {loaded.summary()}", stacklevel=2)
        elif cfg.synthetic.enabled:
            s = cfg.synthetic
            sessions = synthetic_sessions(s.num_sessions, s.length, s.seed)
            self.source = f"synthetic ({s.num_sessions} sessions, seed {s.seed})"
        else:
            raise ConfigError(
                "no dataset: set data.root (a JSON session file or folder), pass --data, "
                "or set model.synthetic.enabled=true"
            )
        kept, self.skipped = usable_sessions(sessions, cfg.sequence_length)
        if self.skipped:
            warnings.warn(
                f"{self.source}: skipped {self.skipped} of {len(sessions)} sessions shorter "
                f"than sequence_length + 1 = {cfg.sequence_length + 1} frames",
                stacklevel=2,
            )
        if not kept:
            raise DataError(
                f"{self.source}: no session has sequence_length + 1 = "
                f"{cfg.sequence_length + 1} frames"
            )
        self.splits, self.split_note = split_for_training(
            kept, config.training.seed, cfg.sequence_length + 1
        )
        if self.split_note:
            warnings.warn(f"{self.source}: {self.split_note}", stacklevel=2)
        self.normalisation = Normalisation.fit(self.splits["train"])
        self.datasets = {
            split: MotionWindows(sessions, cfg, augment=split == "train")
            for split, sessions in self.splits.items()
        }

    def _loader(self, split: str) -> DataLoader:
        data = self.config.data
        train = split == "train"
        return DataLoader(
            self.datasets[split],
            batch_size=data.batch_size if train else (data.eval_batch_size or data.batch_size),
            shuffle=train,
            num_workers=data.num_workers,
            persistent_workers=data.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader("train")

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")


class MotionModule(FramecastModule):
    kind = "motion"

    def __init__(self, config: Config):
        super().__init__(config)
        self.model = MotionLSTM.from_config(config.model)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        norm = getattr(datamodule, "normalisation", None)
        if norm is not None:  # a resumed run then loads the same values from its checkpoint
            self.model.set_normalisation(norm.mean, norm.std)

    def configure_optimizers(self):
        t, p = self.config.training, self.config.model.plateau
        optimizer = self.make_optimizer(self.parameters())
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=t.monitor_mode, factor=p.factor, patience=p.patience, min_lr=p.min_lr
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": t.monitor,
                "interval": "epoch",
                "strict": False,  # no validation yet at the end of a short first epoch
            },
        }

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        x, y = batch["inputs"], batch["target"]
        noise = self.config.model.augment.noise_std
        if noise > 0:
            x = x + noise * self.model.std * held_noise(x)
        pred = self.model.forward_normalised(self.model.normalise(x))
        loss = torch.nn.functional.mse_loss(pred, self.model.normalise(y))
        self.check_finite(loss)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x, y = batch["inputs"], batch["target"]
        std = self.model.std
        errors = motion_errors(self.model(x), y, std)
        values: dict[str, torch.Tensor] = {"loss": errors["mse_norm"], **errors}
        for name, pred in baseline_predictions(x).items():
            base = motion_errors(pred, y, std)
            values.update({f"{name}/{k}": base[k] for k in BASELINE_LOGGED})
        values = {k: v.float() for k, v in values.items()}
        self.log_dict_prefixed("val", values, on_epoch=True, batch_size=x.shape[0])

    def on_validation_epoch_end(self) -> None:
        path = self.sample_path("tracks")
        datamodule = getattr(self.trainer, "datamodule", None)
        if path is None or datamodule is None:
            return
        session = datamodule.splits["val"][0]
        T = self.config.model.sequence_length
        x, _ = stack_windows([session], T, self.config.model.target)
        predicted = predict(self.model, torch.from_numpy(x)).numpy()
        offset = T if self.config.model.target == "next" else T - 1
        plot_motion_tracks(
            session.raw,
            session.clean,
            predicted,
            offset,
            path,
            title=f"{session.name}, step {self.global_step}",
        )

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            "normalisation": {
                "mean": self.model.mean.tolist(),
                "std": self.model.std.tolist(),
            }
        }


def evaluate_run(
    module: MotionModule, datamodule: MotionDataModule, out_dir: Path, checkpoint: Path | None
) -> dict[str, dict[str, dict[str, float]]]:
    """Evaluate the model (the ``checkpoint``'s weights when given) on val and test windows;
    writes ``motion_metrics.json`` and ``.csv`` into ``out_dir``."""
    model = copy.deepcopy(module.model).cpu()
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(
            {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        )
    results = {}
    for split in ("val", "test"):
        data = datamodule.datasets[split]
        results[split] = evaluate_motion(model, data.inputs, data.targets, model.std.cpu())
    cfg: MotionConfig = module.config.model
    extra = {
        "checkpoint": str(checkpoint) if checkpoint else None,
        "data": datamodule.source,
        "target": cfg.target,
        "sequence_length": cfg.sequence_length,
        "sessions": {k: len(v) for k, v in datamodule.splits.items()},
        "windows": {k: len(v) for k, v in datamodule.datasets.items()},
        "skipped_short_sessions": datamodule.skipped,
        "skipped_bad_frames": datamodule.skipped_frames,
        "split": datamodule.split_note or "by session (70/15/15, training.seed)",
        "units": "mse/mae: the data's units; *_norm: divided by the training split's std",
    }
    write_motion_metrics(results, out_dir, extra)
    return results


class MotionEvalCallback(pl.Callback):
    """After fitting: the best checkpoint on val and test → ``RUN/eval/motion_metrics.*``."""

    def __init__(self, run):
        self.run = run
        self.results: dict | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run or trainer.datamodule is None:
            return
        best = self.run.best_checkpoint
        out_dir = self.run.root / "eval"
        self.results = evaluate_run(
            pl_module, trainer.datamodule, out_dir, best if best.is_file() else None
        )
        test = self.results["test"]
        print(
            f"motion evaluation (test mse_norm: model {test['model']['mse_norm']:.4g}, "
            f"copy-last {test['copy_last']['mse_norm']:.4g}, moving average "
            f"{test['moving_average']['mse_norm']:.4g}): {out_dir / 'motion_metrics.json'}"
        )


TASK = Task(
    build_module=MotionModule,
    build_datamodule=MotionDataModule,
    build_callbacks=lambda config, run: [MotionEvalCallback(run)],
    resolve_config=keep_config,  # reads JSON sessions, not frames: no data.channels to settle
)
