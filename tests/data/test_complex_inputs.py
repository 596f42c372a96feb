"""Complex-valued inputs are refused by name instead of losing their imaginary part in a cast to float."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_das.data.sequence_readers import read_array, read_nifti

nib = pytest.importorskip("nibabel")


def test_complex_nifti_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "complex.nii.gz"
    data = (np.random.default_rng(0).random((8, 8, 6)) * (1 + 1j)).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(ValueError, match=r"complex\.nii\.gz.*complex values \(complex64\)"):
        read_nifti(path)
    real = tmp_path / "real.nii.gz"
    nib.save(nib.Nifti1Image(np.abs(data).astype(np.float32), np.eye(4)), str(real))
    frames = read_nifti(real).frames  # the magnitude, saved as real, reads
    assert frames.dtype == torch.float32 and frames.shape[0] == 1 and frames.numel() == data.size


@pytest.mark.parametrize("array", [np.ones((4, 8, 8), np.complex128), torch.ones(4, 8, 8, dtype=torch.complex64)])
def test_complex_arrays_are_refused(array):
    with pytest.raises(ValueError, match="'scan' holds complex values"):
        read_array(array, name="scan")
    assert read_array(np.ones((4, 8, 8), np.float32), name="scan").frames.shape == (1, 4, 8, 8)
