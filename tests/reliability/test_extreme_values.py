"""Extreme input values never pass a sampler silently: beyond ``max_abs_input`` (where DAS's frame features overflow
to NaN and its top-k would return frames 0..k-1) every sampler refuses the input; up to it DAS's logits stay finite;
complex frames are refused instead of losing their imaginary part."""

from __future__ import annotations

import pytest
import torch

from monai_das.networks.nets import SAMPLER_NAMES, get_sampler
from monai_das.networks.nets.sampler_base import max_abs_input

K, T = 4, 16


def frames(scale: float, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Random frames with values in [-scale, scale]; frame 9 has a bright square, so a sensible DAS pick differs
    from 0..k-1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, T, 28, 28, generator=g, dtype=torch.float64) * 0.2
    x[:, :, 9, 8:20, 8:20] = 1.0
    return (x * 2 - 1).mul(scale).to(dtype)


def test_limit_values():
    assert max_abs_input(torch.float32) == pytest.approx(1.84467e17, rel=1e-4)
    assert max_abs_input(torch.float64) == pytest.approx(1.34078e152, rel=1e-4)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e20), (torch.float32, 3.4e38), (torch.float64, 1e160)])
def test_huge_values_are_refused(name, dtype, scale):
    sampler = get_sampler(name, K, num_frames=T, in_channels=1).to(dtype).eval()
    with pytest.raises(ValueError, match=rf"dtype {dtype} has values in .*need \|x\| <= .*Scale the frames"):
        sampler(frames(scale, dtype))


@pytest.mark.parametrize("name", ["das", "das_segments", "adps"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_up_to_the_limit_give_finite_logits(name, dtype):
    torch.manual_seed(0)
    sampler = get_sampler(name, K, num_frames=T, in_channels=1).to(dtype).eval()
    with torch.no_grad():
        out = sampler(frames(max_abs_input(dtype) * (1 - 1e-6), dtype))  # just below it in dtype
    assert torch.isfinite(out.logits).all()
    idx = out.indices
    assert bool(torch.all(idx[:, 1:] > idx[:, :-1])) and int(idx.max()) < T


def test_das_at_1e20_was_silently_picking_the_first_frames():
    """What the limit prevents, shown on the computation itself (the check skipped): NaN logits, picks 0..k-1."""
    sampler = get_sampler("das", K, num_frames=T, in_channels=1).eval()
    sampler.validate = lambda x: None
    with torch.no_grad():
        out = sampler(frames(1e20))
    assert not torch.isfinite(out.logits).all()
    assert out.indices.tolist() == [list(range(K))] * 2


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_complex_frames_are_refused(name):
    sampler = get_sampler(name, K, num_frames=T, in_channels=1).eval()
    x = torch.complex(frames(1.0), frames(1.0, seed=1))
    with pytest.raises(TypeError, match="floating point tensor, got dtype torch.complex64"):
        sampler(x)
