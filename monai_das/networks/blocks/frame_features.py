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

    The features are raw (DAS log-scales and standardises them itself, and reads the raw variance for its prior).

    Args:
        kernel_size: size of the Sobel and Laplacian kernels (odd, >= 3).
        eps: added under the square root of the Sobel magnitude (its gradient stays finite on flat frames).

    Shape:
        input ``(B, C, T, H, W)``, output ``(B, T, 3)`` ordered (variance, Sobel, Laplacian).
    """

    num_features: int = 3

    def __init__(self, kernel_size: int = 3, eps: float = 1e-6) -> None:
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
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return self.frame_features(x.transpose(1, 2).reshape(b * t, c, h, w)).reshape(b, t, 3)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """The features of ``N`` frames ``(N, C, H, W)`` as ``(N, 3)``."""
        n, c, h, w = frames.shape
        flat = frames.reshape(n, -1)
        # two passes by hand: Tensor.var is an order of magnitude slower on many short rows (1024 frames of 16 x 16 at
        # 1 thread: 1.6 ms against 0.09 ms)
        variance = (flat - flat.mean(dim=1, keepdim=True)).square().mean(dim=1)
        p = self.pad
        # replicate padding: zero padding would give a flat frame an edge response at its border
        padded = F.pad(frames.reshape(n * c, 1, h, w), [p, p, p, p], mode="replicate")  # (N*C, 1, H+2p, W+2p)
        # contiguous: a model moved to channels_last (as the bundles train) makes this buffer channels_last too, and
        # oneDNN then takes a slower path for these one-channel frames
        kernels = self.kernels.to(dtype=frames.dtype, memory_format=torch.contiguous_format)
        chunks = [padded] if n <= self.chunk_frames else padded.split(self.chunk_frames * c)
        sobel, laplace = [], []
        for chunk in chunks:  # whole frames per chunk (all C channels of each)
            out = F.conv2d(chunk, kernels).reshape(-1, c, 3, h, w)  # (n, C, 3, H, W)
            sobel.append(torch.sqrt(out[:, :, :2].square().sum(dim=2) + self.eps).mean(dim=(1, 2, 3)))
            laplace.append(out[:, :, 2].abs().mean(dim=(1, 2, 3)))
        if len(chunks) > 1:
            sobel, laplace = [torch.cat(sobel)], [torch.cat(laplace)]
        return torch.stack([variance, sobel[0], laplace[0]], dim=-1)
