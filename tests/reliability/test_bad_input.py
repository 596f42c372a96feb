"""Every sampler on random shapes and dtypes (hypothesis), and the bad inputs whose errors must say what was wrong.

What ``tests/networks/nets/test_samplers.py`` already checks is not repeated here: wrong ndim, B = 0, a non-tensor,
the error's prefix for NaN / Inf and for integer / bool dtypes, ``in_channels`` mismatch (message with the shape),
fixed-length samplers given another T, bad constructor arguments. Added here: random shapes and both float dtypes for
every sampler, T = 0, and that each message also carries the received value (the dtype, the shape and T).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monai_das.networks.nets import SAMPLER_NAMES, SamplerOutput, get_sampler

DTYPES = (torch.float32, torch.float64)


@st.composite
def sampler_inputs(draw):
    """(B, C, T, H, W, k, dtype, training, seed) in the ranges of the issue: B 1-3, C 1-3, T 1-20, H/W 4-12."""
    b, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    t = draw(st.integers(1, 20))
    h, w = draw(st.integers(4, 12)), draw(st.integers(4, 12))
    k = draw(st.integers(1, t))
    return b, c, t, h, w, k, draw(st.sampled_from(DTYPES)), draw(st.booleans()), draw(st.integers(0, 2**16))


def check_picks(out: SamplerOutput, x: torch.Tensor, k: int) -> None:
    b, c, t, h, w = x.shape
    assert out.frames.shape == (b, c, k, h, w) and out.frames.dtype == x.dtype
    assert out.weights.shape == (b, k, t)
    assert out.indices.shape == (b, k) and out.indices.dtype == torch.long
    idx = out.indices
    assert int(idx.min()) >= 0 and int(idx.max()) < t, idx
    assert bool(torch.all(idx[:, 1:] > idx[:, :-1])), f"picks not distinct and increasing: {idx.tolist()}"
    for name in ("frames", "weights", "logits", "temperature"):
        value = getattr(out, name)
        assert value is None or bool(torch.isfinite(value).all()), f"{name} is not finite"
    assert torch.equal(out.weights.detach().argmax(-1), idx)
    gathered = x[torch.arange(b)[:, None], :, idx].transpose(1, 2)  # (B, C, k, H, W)
    torch.testing.assert_close(out.frames.detach(), gathered, rtol=0, atol=0)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=sampler_inputs())
def test_random_shapes_and_dtypes(name, case):
    """A sampler in dtype ``d`` (``.to(d)``, as for any torch module) takes ``(B, C, T, H, W)`` input in ``d``; in
    training (straight-through product, gradient on) and in eval (gather, no gradient) it returns k distinct,
    increasing picks in [0, T) and finite outputs of the input's dtype."""
    b, c, t, h, w, k, dtype, training, seed = case
    torch.manual_seed(seed)
    sampler = get_sampler(name, k, num_frames=t, in_channels=c).to(dtype).train(training)
    x = torch.rand(b, c, t, h, w, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    if training:
        out = sampler(x)
    else:
        with torch.no_grad():
            out = sampler(x)
    check_picks(out, x, t if name == "full" else k)


# ---- the messages of bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_zero_frames_names_x_and_its_shape(name):
    with pytest.raises(ValueError, match=r"of x, got x of shape \(2, 1, 0, 8, 8\) \(T = 0\)"):
        get_sampler(name, 2, num_frames=6)(torch.rand(2, 1, 0, 8, 8))


@pytest.mark.parametrize("name", ["das", "uniform", "random"])  # dps/adps/full: see the next two tests
def test_fewer_frames_than_k_names_k_and_the_shape(name):
    with pytest.raises(ValueError, match=r"^num_samples \(5\) must be <= .* shape \(1, 1, 3, 8, 8\) \(T = 3\)"):
        get_sampler(name, 5)(torch.rand(1, 1, 3, 8, 8))


@pytest.mark.parametrize("name", ["dps", "adps"])
def test_fixed_length_samplers_reject_k_above_t_when_built(name):
    with pytest.raises(ValueError, match=r"^num_samples \(5\) must be <= num_frames \(3\)"):
        get_sampler(name, 5, num_frames=3)


def test_full_sequence_keeps_every_frame_whatever_k():
    out = get_sampler("full", 5)(torch.rand(1, 1, 3, 8, 8))
    assert out.indices.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.bool])
def test_integer_and_bool_dtypes_name_the_dtype(name, dtype):
    with pytest.raises(TypeError, match=rf"^x must be a floating point tensor, got dtype {dtype}\."):
        get_sampler(name, 2, num_frames=6)(torch.ones(1, 1, 6, 8, 8, dtype=dtype))


def test_non_finite_message_names_the_shape():
    x = torch.rand(1, 1, 6, 8, 8)
    x[0, 0, 2, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"\(1, 1, 6, 8, 8\)"):
        get_sampler("uniform", 2)(x)


@pytest.mark.parametrize("name", ["das", "adps"])
def test_dtype_other_than_the_parameters_names_x(name):
    sampler = get_sampler(name, 2, num_frames=6)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the sampler's parameters are torch.float32"):
        sampler(torch.rand(1, 1, 6, 8, 8, dtype=torch.float64))
