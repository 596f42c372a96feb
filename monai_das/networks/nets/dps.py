"""DPS: Deep Probabilistic Subsampling, a learned static sampling pattern."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from monai_das.networks.layers import gumbel_noise, straight_through_topk
from monai_das.networks.nets.sampler_base import FrameSampler, SamplerOutput, pickable_frames

__all__ = ["DPSampler"]


class DPSampler(FrameSampler):
    """Learns one set of logits over the T frames, shared by every input (`Huijben et al., ICLR 2020
    <https://openreview.net/forum?id=SJeq9JBFvH>`_).

    Training draws k frames without replacement by Gumbel top-k on ``(logits + G) / temperature``, with
    straight-through one-hot rows; eval takes the top-k of the logits. The pattern adapts to the task, not to the
    input.

    Args:
        num_samples: k, the frames to keep.
        num_frames: T, the length of every input (the logits have one entry per frame).
        temperature: the softmax temperature of the relaxation (> 0; divides the logits).
        init_std: standard deviation of the normal initialisation of the logits.
    """

    def __init__(self, num_samples: int, num_frames: int, temperature: float = 1.0, init_std: float = 0.5) -> None:
        super().__init__(num_samples)
        if num_frames < num_samples:
            raise ValueError(f"num_samples ({num_samples}) must be <= num_frames ({num_frames}).")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.num_frames = num_frames
        self.temperature = temperature
        self.logits = nn.Parameter(torch.randn(num_frames) * init_std)

    def forward(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> SamplerOutput:
        """``x``: ``(B, C, T, H, W)`` with ``T == num_frames``; ``frame_mask``: ``(B, T)`` bool, the real frames (see
        :py:class:`FrameSampler`: the logits of the other frames are set to ``-inf`` before the picks; the returned
        ``logits`` are those before this mask); returns a :py:class:`SamplerOutput`."""
        self.validate(x, frame_mask)
        if not torch.jit.is_tracing() and x.shape[2] != self.num_frames:
            raise ValueError(f"DPSampler was built for num_frames={self.num_frames}, got x with T={x.shape[2]}.")
        b = x.shape[0]
        logits = self.logits.to(x.dtype).expand(b, self.num_samples, self.num_frames)
        scores = logits
        if frame_mask is not None:
            scores = scores.masked_fill(~pickable_frames(frame_mask, self.num_samples)[:, None, :], float("-inf"))
        if self.training:
            scores = scores + gumbel_noise([b, 1, self.num_frames], scores)  # one draw shared by the k rows
        weights, indices = straight_through_topk(scores / self.temperature)
        return SamplerOutput(self.gather_frames(x, weights, indices), weights, indices, logits / self.temperature, None)
