"""Hand-made per-frame features of DAS: intensity variance, Sobel and Laplacian edge energy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers import LaplaceFilter
from monai.transforms import SobelGradients
from torch import nn

__all__ = ["FrameFeatures"]


class FrameFeatures(nn.Module):
    """Per-frame variance, Sobel gradient magnitude and Laplacian magnitude (no learned weights).

    These are the DAS feature cues (`Deep Attention-guided Adaptive Subsampling <https://arxiv.org/abs/2510.12376>`_):
    the variance of a frame over channels and pixels (temporal dynamics) and the mean edge energy of the frame
    (anatomical boundaries), computed with MONAI's Sobel kernels and :py:class:`monai.networks.layers.LaplaceFilter`.

    Args:
        kernel_size: size of the Sobel and Laplacian kernels (odd, >= 3).
        log_scale: return ``log(eps + feature)`` instead of the raw values, so features of very different magnitudes
            (a dark frame, a bright edge) stay comparable.
        eps: the small constant of ``log_scale``.

    Shape:
        input ``(B, C, T, H, W)``, output ``(B, T, 3)`` ordered (variance, Sobel, Laplacian).
    """

    num_features: int = 3

    def __init__(self, kernel_size: int = 3, log_scale: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 3, got {kernel_size}.")
        # MONAI's Sobel kernels (the outer products of its derivative and smoothing 1D kernels, d/dH then d/dW) and
        # MONAI's Laplace filter (all -1 but the centre, size**2 - 1), stacked into one (3, 1, size, size) kernel so
        # that one convolution computes all three responses
        sobel = SobelGradients(kernel_size=kernel_size)
        diff, smooth = sobel.kernel_diff.float(), sobel.kernel_smooth.float()
        laplace = LaplaceFilter(spatial_dims=2, size=kernel_size).filter.float()
        kernels = torch.stack([torch.outer(diff, smooth), torch.outer(smooth, diff), laplace])[:, None]
        self.register_buffer("kernels", kernels, persistent=False)
        self.pad = kernel_size // 2
        # frames filtered per convolution call: oneDNN's single-channel convolution slows down several-fold per frame
        # past a few thousand frames (measured on CPU at 1 thread: 2048 frames of 18 x 18 in 6 ms, 4096 in 33 ms)
        self.chunk_frames = 1024
        self.log_scale = log_scale
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
        variance = frames.reshape(b * t, -1).var(dim=1, unbiased=False)
        p = self.pad
        # replicate padding: zero padding would give a flat frame an edge response at its border
        padded = F.pad(frames.reshape(b * t * c, 1, h, w), [p, p, p, p], mode="replicate")  # (B*T*C, 1, H+2p, W+2p)
        edges = []
        for chunk in padded.split(self.chunk_frames * c):  # whole frames per chunk (all C channels of each)
            out = F.conv2d(chunk, self.kernels.to(chunk.dtype)).reshape(-1, c, 3, h, w)  # (n, C, 3, H, W)
            sobel = torch.sqrt(out[:, :, 0] ** 2 + out[:, :, 1] ** 2 + self.eps).mean(dim=(1, 2, 3))
            laplace = out[:, :, 2].abs().mean(dim=(1, 2, 3))
            edges.append(torch.stack([sobel, laplace], dim=-1))
        feats = torch.cat([variance[:, None], torch.cat(edges)], dim=-1).reshape(b, t, 3)
        return torch.log(feats + self.eps) if self.log_scale else feats
