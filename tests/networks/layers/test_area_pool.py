from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from monai_das.networks.layers import area_downsample


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    out_height=st.integers(1, 20),
    out_width=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_matches_adaptive_avg_pool(height, width, out_height, out_width, seed):
    x = torch.rand(2, 3, 4, height, width, generator=torch.Generator().manual_seed(seed))
    expected = F.adaptive_avg_pool3d(x, (4, out_height, out_width))
    torch.testing.assert_close(area_downsample(x, (out_height, out_width)), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(5, 8, 8), (2, 1, 3, 8, 8)])
def test_frames_of_the_target_size_come_back_unchanged(shape):
    x = torch.rand(shape)
    assert area_downsample(x, (8, 8)) is x


def test_each_output_is_the_mean_of_its_bin():
    # 5 -> 2 cells: bins [0, 3) and [2, 5) overlap at cell 2, as in adaptive_avg_pool
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    torch.testing.assert_close(area_downsample(x, (1, 2)), torch.tensor([[2.0, 4.0]]))


def test_gradient_reaches_every_input_cell():
    x = torch.rand(1, 1, 2, 9, 7, requires_grad=True)
    area_downsample(x, (4, 3)).sum().backward()
    assert x.grad is not None and bool((x.grad > 0).all())
