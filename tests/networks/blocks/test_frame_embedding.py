from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_das.networks.blocks import FrameEmbedding


@pytest.mark.parametrize(
    "c, out_features, input_size, shape",
    [(1, 16, 16, (2, 1, 5, 28, 28)), (3, 7, 8, (1, 3, 4, 10, 13)), (2, 1, 4, (3, 2, 2, 4, 4))],
)
def test_shape_and_gradient(c, out_features, input_size, shape):
    module = FrameEmbedding(in_channels=c, out_features=out_features, input_size=input_size)
    x = torch.rand(*shape)
    out = module(x)
    assert out.shape == (shape[0], shape[2], out_features)
    out.sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frames_are_embedded_independently():
    module = FrameEmbedding(in_channels=1, out_features=4).eval()
    x = torch.rand(1, 1, 3, 16, 16)
    full = module(x)
    for t in range(3):
        torch.testing.assert_close(module(x[:, :, t : t + 1]), full[:, t : t + 1])


@pytest.mark.parametrize("kwargs", [{"in_channels": 0}, {"out_features": 0}, {"input_size": 3}])
def test_bad_args(kwargs):
    with pytest.raises(ValueError, match="in_channels and out_features"):
        FrameEmbedding(**kwargs)


def test_frames_already_at_input_size_match_frames_pooled_to_it():
    """DAS hands over frames pooled to 16 x 16; the embedding must not depend on who pooled them."""
    module = FrameEmbedding(in_channels=1, out_features=8, input_size=16).eval()
    x = torch.rand(2, 1, 3, 28, 28)
    pooled = F.adaptive_avg_pool3d(x, (3, 16, 16))
    torch.testing.assert_close(module(pooled), module(x), rtol=0, atol=0)
