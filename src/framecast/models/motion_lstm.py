"""MotionLSTM: raw tracking windows (B, T, 12) in, one corrected frame (B, 12) out.

Normalisation is part of the model (buffers ``mean`` and ``std``, fitted on the training
split), so an exported graph takes and returns the users' units. The forward pass has no
Python control flow on tensor values: normalise → (+ frame-to-frame differences) (+ fault
features) → LSTM → (attention pooling | last state) → fully connected head → (+ the anchor
frame when ``residual``) → de-normalise.

Per feature (``per_feature``): one LSTM shared by the 12 features, each feature its own
sequence (its value, difference, fault features, and a learned embedding of which feature
it is), predicting that feature's next value. Twelve times the sequences for the same
weights: on 42 training sessions one LSTM over all 12 features at once overfits (issue 6:
test MSE 0.035 → 0.0085 from this switch alone, normalised units). Cross-joint coupling is
then not modelled (the synthetic joints move independently).

Fault features (``fault_inputs``): tracking faults are a hold (a dropped joint repeats its
last value exactly; sensor jitter never does) and a one-frame spike (an outlier). Per
feature and frame the model gets a hold flag (1 where the value equals the previous frame's)
and the spike size, the value minus the causal median of three (this frame and the two
before). The anchor of the residual (``anchor``) is the last frame (``last``) or that
causal median of the last three frames (``median3``): one outlier in the last frame then
does not go straight into the prediction. Both use elementwise min/max/equal only, so they
are exported with the graph (ONNX opset ≥ 11) and work for any window length ≥ 1.
"""

from __future__ import annotations

from typing import Literal

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
        fault_inputs: bool = False,
        anchor: Literal["last", "median3"] = "last",
        per_feature: bool = False,
        feature_embedding: int = 8,
    ):
        super().__init__()
        if anchor not in ("last", "median3"):
            raise ValueError(f"anchor {anchor!r}: expected 'last' or 'median3'")
        self.attention = attention
        self.residual = residual
        self.deltas = deltas
        self.fault_inputs = fault_inputs
        self.anchor = anchor
        self.per_feature = per_feature
        channels = 1 + int(deltas) + 2 * int(fault_inputs)  # per feature and frame
        if per_feature:
            # One LSTM shared by the features, each feature its own sequence of `channels`
            # values plus a learned embedding of which feature it is (noise level, range).
            self.embedding = nn.Parameter(0.1 * torch.randn(input_size, feature_embedding))
            lstm_inputs, head_outputs = channels + feature_embedding, 1
        else:
            self.embedding = None
            lstm_inputs, head_outputs = input_size * channels, input_size
        self.lstm = nn.LSTM(
            lstm_inputs,
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
            nn.Linear(hidden_size, head_outputs),
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
            fault_inputs=cfg.fault_inputs,
            anchor=cfg.anchor,
            per_feature=cfg.per_feature,
        )

    @torch.no_grad()
    def set_normalisation(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    @staticmethod
    def causal_median3(x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) → (B, T, F): per frame the median of it and the two frames before (the
        first frame repeated before the window). med(a, b, c) = max(min(a, b), min(max(a, b), c))
        — no sort, so it exports as elementwise Min/Max."""
        first = x[:, :1]
        padded = torch.cat([first, first, x], dim=1)  # (B, T + 2, F)
        a, b, c = padded[:, :-2], padded[:, 1:-1], padded[:, 2:]
        return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))

    @staticmethod
    def hold_flags(x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) → (B, T, F) float: 1 where a value equals the previous frame's exactly
        (a dropped joint holds its last value; jittered tracking never repeats), 0 else."""
        same = (x[:, 1:] == x[:, :-1]).to(x.dtype)
        return torch.cat([torch.zeros_like(x[:, :1]), same], dim=1)

    def forward_normalised(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 12) normalised → (B, 12) normalised."""
        parts = [x]
        if self.deltas:  # frame-to-frame changes: jumps (outliers) and holds (dropouts) stand out
            parts.append(torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1))
        median = self.causal_median3(x) if self.fault_inputs or self.anchor == "median3" else None
        if self.fault_inputs:
            parts += [self.hold_flags(x), x - median]
        if self.embedding is None:
            features = torch.cat(parts, dim=-1)  # (B, T, C * F)
        else:
            B, T, F = x.shape
            per = torch.stack(parts, dim=-1).transpose(1, 2)  # (B, F, T, C)
            emb = self.embedding[None, :, None, :].expand(B, F, T, self.embedding.shape[1])
            features = torch.cat([per, emb], dim=-1).reshape(B * F, T, -1)  # (B * F, T, C + E)
        states, _ = self.lstm(features)  # (B, T, H), or (B * F, T, H) per feature
        if self.score is not None:
            weights = torch.softmax(self.score(states), dim=1)  # (B, T, 1)
            summary = (weights * states).sum(dim=1)
        else:
            summary = states[:, -1]
        out = self.head(summary)  # (B, F), or (B * F, 1) per feature
        if self.embedding is not None:
            out = out.reshape(x.shape[0], x.shape[2])
        if self.residual:
            out = out + (median[:, -1] if self.anchor == "median3" else x[:, -1])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 12) raw → (B, 12) raw."""
        return self.denormalise(self.forward_normalised(self.normalise(x)))
