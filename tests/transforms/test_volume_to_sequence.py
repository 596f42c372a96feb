"""Tests for VolumeToSequence / VolumeToSequenced / volume_to_sequence."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_das.transforms import (
    VolumeToSequence,
    VolumeToSequenceD,
    VolumeToSequenced,
    VolumeToSequenceDict,
    volume_to_sequence,
)

# (C, X, Y, Z) = (2, 3, 4, 5)
VOL = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)

TEST_CASES = [
    # frame_axis, expected shape, expected permutation of the input axes
    [0, (2, 3, 4, 5), (0, 1, 2, 3)],
    [1, (2, 4, 3, 5), (0, 2, 1, 3)],
    [2, (2, 5, 3, 4), (0, 3, 1, 2)],  # NIfTI (C, H, W, D) -> (C, D, H, W)
    [-1, (2, 5, 3, 4), (0, 3, 1, 2)],
    [-2, (2, 4, 3, 5), (0, 2, 1, 3)],
    [-3, (2, 3, 4, 5), (0, 1, 2, 3)],
]


class TestVolumeToSequence(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_numpy(self, axis, shape, perm):
        out = VolumeToSequence(frame_axis=axis)(VOL)
        self.assertIsInstance(out, np.ndarray)
        self.assertEqual(out.shape, shape)
        np.testing.assert_array_equal(out, VOL.transpose(perm))

    @parameterized.expand(TEST_CASES)
    def test_torch(self, axis, shape, perm):
        out = VolumeToSequence(frame_axis=axis)(torch.as_tensor(VOL))
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(tuple(out.shape), shape)
        np.testing.assert_array_equal(out.numpy(), VOL.transpose(perm))

    def test_slice_values(self):
        # slice k along the last axis becomes frame k
        out = VolumeToSequence(frame_axis=2)(VOL)
        for k in range(VOL.shape[3]):
            np.testing.assert_array_equal(out[:, k], VOL[:, :, :, k])

    def test_metatensor_meta_and_affine(self):
        affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0], dtype=torch.float64))
        affine[:3, 3] = torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64)
        img = MetaTensor(torch.as_tensor(VOL), affine=affine, meta={"filename_or_obj": "vol.nii.gz"})
        out = VolumeToSequence(frame_axis=2)(img)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.meta["filename_or_obj"], "vol.nii.gz")
        # new voxel axes (D, H, W) are the old axes (2, 0, 1): the affine's columns are permuted alike
        np.testing.assert_allclose(out.affine.numpy()[:3, :3], [[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [4.0, 0.0, 0.0]])
        np.testing.assert_allclose(out.affine.numpy()[:3, 3], [10.0, 20.0, 30.0])
        np.testing.assert_allclose(img.affine.numpy(), affine.numpy())  # input not modified
        # the same voxel maps to the same world point before and after
        x, y, z = 1, 2, 3
        before = img.affine.numpy() @ np.array([x, y, z, 1.0])
        after = out.affine.numpy() @ np.array([z, x, y, 1.0])
        np.testing.assert_allclose(before, after)

    def test_dict(self):
        self.assertIs(VolumeToSequenceD, VolumeToSequenced)
        self.assertIs(VolumeToSequenceDict, VolumeToSequenced)
        data = {"image": VOL, "label": VOL + 1, "other": 1}
        out = VolumeToSequenced(keys=["image", "label"], frame_axis=2)(data)
        np.testing.assert_array_equal(out["image"], VOL.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(out["label"], VOL.transpose(0, 3, 1, 2) + 1)
        self.assertEqual(out["other"], 1)

    def test_functional(self):
        np.testing.assert_array_equal(volume_to_sequence(VOL, 1), VOL.transpose(0, 2, 1, 3))

    @parameterized.expand([[3], [-4], [5]])
    def test_bad_axis(self, axis):
        with self.assertRaises(ValueError):
            VolumeToSequence(frame_axis=axis)

    def test_bad_axis_type(self):
        with self.assertRaises(TypeError):
            VolumeToSequence(frame_axis=1.0)

    @parameterized.expand([[(3, 4, 5)], [(1, 2, 3, 4, 5)]])
    def test_bad_ndim(self, shape):
        with self.assertRaises(ValueError) as ctx:
            VolumeToSequence()(np.zeros(shape))
        self.assertIn(str(shape), str(ctx.exception))
        self.assertIn("img", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
