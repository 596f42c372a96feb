"""A-DPS: Active Deep Probabilistic Subsampling, k sequential picks conditioned on what was already sampled."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from monai_das.networks.layers import gumbel_noise, sort_picks, straight_through_pick
from monai_das.networks.nets.sampler_base import FrameSampler, SamplerOutput, pickable_frames

__all__ = ["ADPSampler"]


class ADPSampler(FrameSampler):
    """Samples one frame per step, for k steps (`van Gorp et al., ICML 2021 <https://arxiv.org/abs/2103.12489>`_).

    An LSTM cell carries what was acquired so far; at step ``j`` a linear layer maps its state to logits over the
    T frames, a frame not yet taken is picked with Gumbel noise (training only) and a straight-through one-hot row,
    and the picked frame's measurement (the frame average-pooled to ``measurement_size`` squared pixels, seen
    through the one-hot row so the gradient flows) is fed to the cell. The first pick depends on nothing but the
    learned state, later ones on the frames already acquired.

    Args:
        num_samples: k, the frames to keep.
        num_frames: T, the length of every input.
        in_channels: channels of the input.
        hidden_size: LSTM state size.
        measurement_size: side of the pooled frame fed to the cell.
        temperature: softmax temperature (> 0; divides the logits).
    """

    def __init__(
        self,
        num_samples: int,
        num_frames: int,
        in_channels: int = 1,
        hidden_size: int = 64,
        measurement_size: int = 8,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(num_samples)
        if num_frames < num_samples:
            raise ValueError(f"num_samples ({num_samples}) must be <= num_frames ({num_frames}).")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if hidden_size < 1 or measurement_size < 1:
            raise ValueError(f"hidden_size and measurement_size must be >= 1, got {hidden_size}, {measurement_size}.")
        self.num_frames = num_frames
        self.in_channels = in_channels
        self.temperature = temperature
        self.measurement_size = measurement_size
        self.encode = nn.Sequential(nn.Linear(in_channels * measurement_size**2, hidden_size), nn.GELU())
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.to_logits = nn.Linear(hidden_size, num_frames)

    def forward(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> SamplerOutput:
        """``x``: ``(B, C, T, H, W)`` with ``T == num_frames``; ``frame_mask``: ``(B, T)`` bool, the real frames (see
        :py:class:`FrameSampler`: every step picks among them only, as among the frames not taken yet); returns a
        :py:class:`SamplerOutput`."""
        self.validate(x, frame_mask)
        if not torch.jit.is_tracing() and x.shape[2] != self.num_frames:
            raise ValueError(f"ADPSampler was built for num_frames={self.num_frames}, got x with T={x.shape[2]}.")
        b, c, t, h, w = x.shape
        pooled = F.adaptive_avg_pool2d(x.transpose(1, 2).reshape(b * t, c, h, w), self.measurement_size)
        measurements = self.encode(pooled.reshape(b, t, -1))  # (B, T, hidden)
        state = torch.zeros(b, self.cell.hidden_size, dtype=x.dtype, device=x.device)
        hidden, memory = state, state
        taken = torch.zeros(b, t, dtype=torch.bool, device=x.device)
        if frame_mask is not None:  # frames that may not be picked count as taken from the start
            taken = ~pickable_frames(frame_mask, self.num_samples)
        rows, picks, step_logits = [], [], []
        for _ in range(self.num_samples):
            logits = self.to_logits(hidden) / self.temperature  # (B, T)
            scores = logits + gumbel_noise([b, t], logits) / self.temperature if self.training else logits
            row, index = straight_through_pick(scores, taken)
            # a tensor source: a Python bool value makes torch.jit.trace fail on aten::scatter
            taken = taken.scatter(1, index.unsqueeze(1), torch.ones_like(taken[:, :1]))
            hidden, memory = self.cell(torch.einsum("bt,btd->bd", row, measurements), (hidden, memory))
            rows.append(row)
            picks.append(index)
            step_logits.append(logits)
        weights, indices = sort_picks(torch.stack(rows, dim=1), torch.stack(picks, dim=1))
        return SamplerOutput(self.gather_frames(x, weights, indices), weights, indices, torch.stack(step_logits, dim=1), None)
