"""Hand-made per-frame features of DAS: intensity variance, Sobel and Laplacian edge energy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers import LaplaceFilter
from monai.transforms import SobelGradients
from torch import nn

__all__ = ["FrameFeatures"]


def _box_laplacian(size: int) -> torch.Tensor:
    kernel = -torch.ones(size, size)
    kernel[size // 2, size // 2] = size * size - 1
    return kernel


def _filter_1d(x: torch.Tensor, kernel: list[float], dim: int) -> torch.Tensor:
    """Valid 1D correlation of ``x`` with ``kernel`` along ``dim``, as a weighted sum of shifted views."""
    length = x.shape[dim] - len(kernel) + 1
    out = x.narrow(dim, 0, length) * kernel[0]
    for i in range(1, len(kernel)):
        out = out + x.narrow(dim, i, length) * kernel[i]
    return out


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
        # MONAI's Sobel kernels (a derivative and a smoothing 1D kernel) and MONAI's Laplace filter (all -1 but the
        # centre, size**2 - 1), i.e. size**2 * centre - (size x size box sum). All three are separable, so they are
        # applied as weighted sums of shifted views: on CPU this is several times faster than a convolution.
        sobel = SobelGradients(kernel_size=kernel_size)
        laplace = LaplaceFilter(spatial_dims=2, size=kernel_size).filter
        if not torch.equal(laplace, _box_laplacian(kernel_size)):
            raise RuntimeError("MONAI's LaplaceFilter kernel changed; FrameFeatures needs updating.")
        self.register_buffer("kernel_diff", sobel.kernel_diff.float(), persistent=False)
        self.register_buffer("kernel_smooth", sobel.kernel_smooth.float(), persistent=False)
        self.kernel_size = kernel_size
        self.log_scale = log_scale
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
        variance = frames.reshape(b * t, -1).var(dim=1, unbiased=False)
        k, pad = self.kernel_size, self.kernel_size // 2
        # replicate padding: zero padding would give a flat frame an edge response at its border
        padded = F.pad(frames, [pad, pad, pad, pad], mode="replicate")  # (B*T, C, H + 2p, W + 2p)
        diff, smooth = self.kernel_diff.tolist(), self.kernel_smooth.tolist()
        grad_h = _filter_1d(_filter_1d(padded, diff, 2), smooth, 3)
        grad_w = _filter_1d(_filter_1d(padded, smooth, 2), diff, 3)
        box = _filter_1d(_filter_1d(padded, [1.0] * k, 2), [1.0] * k, 3)
        centre = padded[:, :, pad : pad + h, pad : pad + w]
        sobel = torch.sqrt(grad_h**2 + grad_w**2 + self.eps).mean(dim=(1, 2, 3))
        laplace = (k * k * centre - box).abs().mean(dim=(1, 2, 3))
        feats = torch.stack([variance, sobel, laplace], dim=-1).reshape(b, t, 3)
        return torch.log(feats + self.eps) if self.log_scale else feats
