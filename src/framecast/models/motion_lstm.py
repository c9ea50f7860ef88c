"""MotionLSTM: raw tracking windows (B, T, 12) in, one corrected frame (B, 12) out.

Normalisation is part of the model (buffers ``mean`` and ``std``, fitted on the training
split), so an exported graph takes and returns the users' units. The forward pass has no
Python control flow on tensor values: normalise → (+ frame-to-frame differences) → LSTM → (attention pooling | last state) →
fully connected head → (+ last input frame when ``residual``) → de-normalise.
"""

from __future__ import annotations

import torch
from torch import nn

from framecast.data.motion import NUM_FEATURES


class MotionLSTM(nn.Module):
    def __init__(
        self,
        input_size: int = NUM_FEATURES,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        attention: bool = False,
        residual: bool = True,
        deltas: bool = True,
    ):
        super().__init__()
        self.attention = attention
        self.residual = residual
        self.deltas = deltas
        self.lstm = nn.LSTM(
            input_size * (2 if deltas else 1),
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        # Attention over the sequence: a score per time step, softmax, weighted sum.
        self.score = nn.Linear(hidden_size, 1) if attention else None
        self.head = nn.Sequential(
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, input_size),
        )
        self.register_buffer("mean", torch.zeros(input_size))
        self.register_buffer("std", torch.ones(input_size))

    @classmethod
    def from_config(cls, cfg) -> MotionLSTM:
        return cls(
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout,
            attention=cfg.attention,
            residual=cfg.residual,
            deltas=cfg.deltas,
        )

    @torch.no_grad()
    def set_normalisation(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def forward_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 12) normalised → (B, 12) normalised."""
        features = x
        if self.deltas:  # frame-to-frame changes: jumps (outliers) and holds (dropouts) stand out
            steps = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)
            features = torch.cat([x, steps], dim=-1)
        states, _ = self.lstm(features)  # (B, T, H)
        if self.score is not None:
            weights = torch.softmax(self.score(states), dim=1)  # (B, T, 1)
            summary = (weights * states).sum(dim=1)
        else:
            summary = states[:, -1]
        out = self.head(summary)
        if self.residual:
            out = out + x[:, -1]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 12) raw → (B, 12) raw."""
        return self.denormalise(self.forward_normalised(self.normalise(x)))
