"""Extreme input values never pass a sampler silently: beyond ``max_abs_input`` (where DAS's frame features overflow
to NaN and its top-k would return frames 0..k-1) every sampler refuses the input; up to it DAS's logits stay finite;
complex frames are refused instead of losing their imaginary part; NIfTI voxels at +-3.4e38 are preprocessed like
any other value."""

from __future__ import annotations

import numpy as np
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
    sampler.validate = lambda x, frame_mask=None: None
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


@pytest.fixture(scope="module")
def vessel_predictor(tmp_path_factory):
    pytest.importorskip("nibabel")
    from apps_testing import VESSEL_BUNDLE, build_network, save_checkpoint

    from monai_das.apps.bundle_predictor import BundlePredictor

    ckpt = save_checkpoint(build_network(), tmp_path_factory.mktemp("ckpt") / "model.pt")
    return BundlePredictor(VESSEL_BUNDLE, ckpt=ckpt)


@pytest.mark.parametrize("case", ["half at 3.4e38", "background at -3.4e38"])
def test_extreme_voxels_are_mapped_like_any_8_bit_value(vessel_predictor, tmp_path, case):
    """A NIfTI with half its voxels at 3.4e38 (once reported as a "constant input"), or a -3.4e38 background (once an
    error blaming NaN made by the resize), is preprocessed like any other input: the bundle's 8-bit mapping clips it
    into [0, 1], finite, and the image is not taken for a constant."""
    from apps_testing import write_nifti

    volume = np.random.default_rng(0).random((28, 28, 28)).astype(np.float32) * 200 + 20
    extreme = np.zeros(volume.shape, bool)
    if case == "half at 3.4e38":
        extreme[:, :, :14] = True
        volume[extreme] = 3.4e38
    else:
        extreme[volume < 60] = True
        volume[extreme] = -3.4e38
    out = vessel_predictor.prepare(write_nifti(tmp_path / "extreme.nii.gz", volume))
    image = torch.as_tensor(out["image"])
    assert image.shape == (1, 28, 28, 28) and bool(torch.isfinite(image).all())
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert float(image.std()) > 0.1  # not a constant
