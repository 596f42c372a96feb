"""A learned per-frame embedding: a tiny CNN on each downsampled frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FrameEmbedding"]


class FrameEmbedding(nn.Module):
    """Embeds every frame with a tiny CNN, the learnable feature path DAS names as future work.

    Each frame is average-pooled to ``input_size x input_size``, then two strided 3x3 convolutions and a global
    average pool give ``out_features`` numbers per frame.

    Args:
        in_channels: channels of a frame.
        out_features: embedding size per frame (>= 1).
        input_size: side of the downsampled frame.

    Shape:
        input ``(B, C, T, H, W)``, output ``(B, T, out_features)``.
    """

    def __init__(self, in_channels: int = 1, out_features: int = 16, input_size: int = 16) -> None:
        super().__init__()
        if in_channels < 1 or out_features < 1 or input_size < 4:
            raise ValueError(
                f"in_channels and out_features must be >= 1 and input_size >= 4, got {in_channels}, {out_features}, "
                f"{input_size}."
            )
        self.in_channels = in_channels
        self.input_size = input_size
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, out_features // 2 + 1, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(out_features // 2 + 1, out_features, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return self.embed_frames(x.transpose(1, 2).reshape(b * t, c, h, w)).reshape(b, t, -1)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The embedding of ``N`` frames ``(N, C, H, W)`` as ``(N, out_features)``."""
        if frames.shape[-2:] != (self.input_size, self.input_size):  # DAS hands over frames already pooled to this
            frames = F.adaptive_avg_pool2d(frames, self.input_size)
        # self.net[3], the global average pool, as one reduction
        return self.net[2](self.net[1](self.net[0](frames))).mean(dim=(2, 3))
