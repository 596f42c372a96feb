from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai.transforms import SobelGradients

from monai_das.networks.blocks import FrameFeatures

EPS = 1e-6
SQRT_EPS = math.sqrt(EPS)


def _sequence(*frames: torch.Tensor) -> torch.Tensor:
    """Stack ``(H, W)`` frames into a ``(1, 1, T, H, W)`` sequence."""
    return torch.stack(frames)[None, None]


@pytest.mark.parametrize("b, c, t, h, w", [(2, 1, 5, 16, 16), (1, 3, 4, 12, 9), (3, 2, 1, 8, 8)])
def test_shape(b, c, t, h, w):
    out = FrameFeatures()(torch.rand(b, c, t, h, w))
    assert out.shape == (b, t, 3)
    assert torch.isfinite(out).all()
    assert FrameFeatures.num_features == 3


@pytest.mark.parametrize("value", [0.0, 1.0, 3.7, -2.5])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_constant_frame_has_no_variance_or_edges(value, kernel_size):
    # a flat frame has no edges whatever its brightness: Sobel is sqrt(eps), the Laplacian 0 (no border artefact)
    x = torch.full((2, 2, 3, 10, 12), value)
    out = FrameFeatures(kernel_size=kernel_size, eps=EPS)(x)
    torch.testing.assert_close(out[..., 0], torch.zeros(2, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[..., 1], torch.full((2, 3), SQRT_EPS), atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(out[..., 2], torch.zeros(2, 3), atol=1e-4, rtol=0)  # float32 rounding of 24 * value


def test_variance_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 7, 5, generator=gen) * 4 - 1
    out = FrameFeatures()(x)
    expected = np.var(x.numpy().transpose(0, 2, 1, 3, 4).reshape(2, 4, -1), axis=-1)  # over C, H, W per frame
    np.testing.assert_allclose(out[..., 0].numpy(), expected, rtol=1e-5, atol=1e-7)


def test_ramp_known_sobel_and_laplacian():
    # f(h, w) = a * w: MONAI's normalised Sobel gives exactly a inside and a / 2 on the two replicated border
    # columns; the 3x3 Laplacian is 0 inside and 3a in magnitude on those border columns.
    h, w, a = 12, 16, 0.1
    ramp = (torch.arange(w, dtype=torch.float32) * a).expand(h, w)
    out = FrameFeatures(eps=EPS)(_sequence(ramp))[0, 0]
    sobel = ((w - 2) * math.sqrt(a**2 + EPS) + 2 * math.sqrt((a / 2) ** 2 + EPS)) / w
    assert out[1].item() == pytest.approx(sobel, rel=1e-5)
    assert out[2].item() == pytest.approx(6 * a / w, rel=1e-5)
    # same ramp along H gives the same features (the two directions are symmetric)
    out_t = FrameFeatures(eps=EPS)(_sequence(ramp.T.contiguous()))[0, 0]
    torch.testing.assert_close(out_t[1:], torch.tensor([sobel, 6 * a / w]), rtol=1e-5, atol=0)


def _reference_features(x: np.ndarray, kernel_size: int, eps: float = EPS) -> np.ndarray:
    """Variance, Sobel and Laplacian features of ``(B, C, T, H, W)`` in float64 numpy: every frame and channel
    edge-padded, correlated with MONAI's 1D Sobel kernels and the size x size Laplacian window by explicit sums."""
    sobel = SobelGradients(kernel_size=kernel_size)
    diff, smooth = sobel.kernel_diff.double().numpy(), sobel.kernel_smooth.double().numpy()
    laplace = -np.ones((kernel_size, kernel_size))
    laplace[kernel_size // 2, kernel_size // 2] = kernel_size**2 - 1
    b, c, t, h, w = x.shape
    p = kernel_size // 2
    padded = np.pad(x.astype(np.float64), [(0, 0)] * 3 + [(p, p), (p, p)], mode="edge")
    grad_h, grad_w, lap = (np.zeros((b, c, t, h, w)) for _ in range(3))
    for i in range(kernel_size):
        for j in range(kernel_size):
            window = padded[..., i : i + h, j : j + w]
            grad_h += diff[i] * smooth[j] * window
            grad_w += smooth[i] * diff[j] * window
            lap += laplace[i, j] * window
    frames = x.transpose(0, 2, 1, 3, 4).reshape(b, t, -1)
    edges = np.sqrt(grad_h**2 + grad_w**2 + eps).mean(axis=(1, 3, 4)), np.abs(lap).mean(axis=(1, 3, 4))
    return np.stack([frames.var(axis=-1), *edges], axis=-1)


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("shape", [(2, 1, 5, 16, 16), (1, 3, 4, 12, 9)])
def test_fused_convolution_matches_explicit_sums(kernel_size, shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(kernel_size)) * 3 - 1
    out = FrameFeatures(kernel_size=kernel_size, eps=EPS)(x)
    np.testing.assert_allclose(out.numpy(), _reference_features(x.numpy(), kernel_size), rtol=2e-5, atol=1e-6)


def test_chunked_convolution_gives_the_same_features():
    x = torch.rand(3, 2, 7, 10, 10, generator=torch.Generator().manual_seed(1))
    whole = FrameFeatures()
    chunked = FrameFeatures()
    chunked.chunk_frames = 4  # 21 frames in chunks of 4, the last one short
    torch.testing.assert_close(chunked(x), whole(x), rtol=0, atol=0)


def test_torchscript():
    module = FrameFeatures(kernel_size=5)
    scripted = torch.jit.script(module)
    x = torch.rand(2, 3, 4, 11, 13, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(scripted(x), module(x), rtol=0, atol=0)


def test_sharp_square_has_more_edge_energy_than_smooth_gradient():
    h = w = 16
    smooth = torch.linspace(0, 1, w).expand(h, w).contiguous()
    square = torch.zeros(h, w)
    square[4:12, 4:12] = 1.0
    out = FrameFeatures()(_sequence(smooth, square))[0]
    assert out[1, 1] > 1.5 * out[0, 1]  # Sobel
    assert out[1, 2] > 5 * out[0, 2]  # Laplacian


def test_log_scale_is_gone():
    # DAS takes the log of the raw features itself: the option that did nothing for it was removed
    with pytest.raises(TypeError, match="log_scale"):
        FrameFeatures(log_scale=True)


def test_no_parameters_and_gradient_to_input():
    module = FrameFeatures()
    assert len(list(module.parameters())) == 0
    x = torch.rand(1, 1, 2, 8, 8, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel_size", [1, 2, 4])
def test_bad_kernel_size(kernel_size):
    with pytest.raises(ValueError, match="kernel_size"):
        FrameFeatures(kernel_size=kernel_size)
