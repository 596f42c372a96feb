"""Hand-made per-frame features of DAS: intensity variance, Sobel and Laplacian edge energy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers import LaplaceFilter, apply_filter, separable_filtering
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
        sobel = SobelGradients(kernel_size=kernel_size)
        kernel_diff, kernel_smooth = sobel.kernel_diff, sobel.kernel_smooth
        self.register_buffer("kernel_diff", kernel_diff, persistent=False)
        self.register_buffer("kernel_smooth", kernel_smooth, persistent=False)
        self.laplace = LaplaceFilter(spatial_dims=2, size=kernel_size)
        self.log_scale = log_scale
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
        variance = frames.reshape(b * t, -1).var(dim=1, unbiased=False)
        diff, smooth = self.kernel_diff.to(x.dtype), self.kernel_smooth.to(x.dtype)
        grad_h = separable_filtering(frames, [diff, smooth], mode="replicate")
        grad_w = separable_filtering(frames, [smooth, diff], mode="replicate")
        sobel = torch.sqrt(grad_h**2 + grad_w**2 + self.eps).mean(dim=(1, 2, 3))
        # replicate padding as for Sobel: LaplaceFilter's zero "same" padding gives flat frames a border response
        pad = self.laplace.filter.shape[-1] // 2
        padded = F.pad(frames, [pad, pad, pad, pad], mode="replicate")
        laplace = apply_filter(padded, self.laplace.filter, padding=0).abs().mean(dim=(1, 2, 3))
        feats = torch.stack([variance, sobel, laplace], dim=-1).reshape(b, t, 3)
        return torch.log(feats + self.eps) if self.log_scale else feats
