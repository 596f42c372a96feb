"""Tests for PadOrCropFrames / PadOrCropFramesd / pad_or_crop_frames."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from monai_das.transforms import (
    PadOrCropFrames,
    PadOrCropFramesD,
    PadOrCropFramesd,
    PadOrCropFramesDict,
    pad_or_crop_frame_indices,
    pad_or_crop_frames,
)


def make_frames(t, torch_out=False):
    """(1, T, 2, 2) image whose frame i is filled with i + 1 (so 0 means a zero-padded frame)."""
    img = np.broadcast_to(np.arange(1, t + 1, dtype=np.float32)[None, :, None, None], (1, t, 2, 2)).copy()
    return torch.as_tensor(img) if torch_out else img


def frame_values(img):
    arr = img.numpy() if isinstance(img, torch.Tensor) else img
    return arr[0, :, 0, 0].astype(int).tolist()


TEST_CASES = [
    # T, num_frames, mode, pad_mode, expected frame values, expected mask
    [6, 6, "resample", "repeat", [1, 2, 3, 4, 5, 6], [True] * 6],
    [12, 4, "resample", "repeat", [2, 5, 8, 11], [True] * 4],  # indices 1, 4, 7, 10
    [10, 4, "center", "repeat", [4, 5, 6, 7], [True] * 4],  # indices 3..6
    [9, 4, "center", "zeros", [3, 4, 5, 6], [True] * 4],  # (9 - 4) // 2 = 2
    [3, 6, "resample", "repeat", [1, 1, 2, 2, 3, 3], [True, False, True, False, True, False]],
    [3, 5, "center", "repeat", [1, 1, 2, 3, 3], [True, False, True, True, False]],  # 0, 0, 1, 2, 2
    [3, 6, "resample", "zeros", [1, 2, 3, 0, 0, 0], [True, True, True, False, False, False]],
    [1, 3, "resample", "repeat", [1, 1, 1], [True, False, False]],
]


class TestPadOrCropFrames(unittest.TestCase):
    @parameterized.expand(TEST_CASES)
    def test_numpy(self, t, k, mode, pad_mode, values, mask):
        out, m = PadOrCropFrames(k, mode=mode, pad_mode=pad_mode, return_mask=True)(make_frames(t))
        self.assertIsInstance(out, np.ndarray)
        self.assertEqual(out.shape, (1, k, 2, 2))
        self.assertEqual(frame_values(out), values)
        self.assertEqual(m.dtype, bool)
        self.assertEqual(m.tolist(), mask)

    @parameterized.expand(TEST_CASES)
    def test_torch(self, t, k, mode, pad_mode, values, mask):
        out, m = PadOrCropFrames(k, mode=mode, pad_mode=pad_mode, return_mask=True)(make_frames(t, True))
        self.assertIsInstance(out, torch.Tensor)
        self.assertEqual(tuple(out.shape), (1, k, 2, 2))
        self.assertEqual(frame_values(out), values)
        self.assertEqual(m.dtype, torch.bool)
        self.assertEqual(m.tolist(), mask)

    @parameterized.expand([[10, 4], [3, 7], [5, 5]])
    def test_mask_counts_real_distinct_frames(self, t, k):
        for pad_mode in ("repeat", "zeros"):
            out, m = PadOrCropFrames(k, pad_mode=pad_mode, return_mask=True)(make_frames(t))
            kept = [v for v, keep in zip(frame_values(out), m.tolist()) if keep]
            self.assertEqual(len(kept), min(t, k))
            self.assertEqual(len(set(kept)), len(kept))  # every True frame is a distinct real frame
            self.assertNotIn(0, kept)

    def test_no_mask_returns_array(self):
        out = PadOrCropFrames(5)(make_frames(8))
        self.assertIsInstance(out, np.ndarray)
        self.assertEqual(out.shape, (1, 5, 2, 2))

    def test_input_not_modified(self):
        img = make_frames(3, torch_out=True)
        PadOrCropFrames(6, pad_mode="zeros")(img)
        self.assertEqual(frame_values(img), [1, 2, 3])

    def test_metatensor_preserved(self):
        img = MetaTensor(make_frames(3, torch_out=True), meta={"filename_or_obj": "x.mp4"})
        out, m = PadOrCropFrames(5, pad_mode="zeros", return_mask=True)(img)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.meta["filename_or_obj"], "x.mp4")
        self.assertNotIsInstance(m, MetaTensor)
        self.assertEqual(frame_values(out), [1, 2, 3, 0, 0])

    def test_dict_with_mask(self):
        self.assertIs(PadOrCropFramesD, PadOrCropFramesd)
        self.assertIs(PadOrCropFramesDict, PadOrCropFramesd)
        data = {"image": make_frames(3), "label": make_frames(3, torch_out=True) * 10}
        out = PadOrCropFramesd(keys=["image", "label"], num_frames=5, pad_mode="zeros", return_mask=True)(data)
        self.assertEqual(frame_values(out["image"]), [1, 2, 3, 0, 0])
        self.assertEqual(frame_values(out["label"]), [10, 20, 30, 0, 0])
        self.assertEqual(out["image_frame_mask"].tolist(), [True, True, True, False, False])
        self.assertEqual(out["label_frame_mask"].tolist(), [True, True, True, False, False])
        self.assertIsInstance(out["label_frame_mask"], torch.Tensor)

    def test_dict_custom_postfix_and_no_mask(self):
        out = PadOrCropFramesd(keys="image", num_frames=2, return_mask=True, mask_key_postfix="_valid")(
            {"image": make_frames(6)}
        )
        self.assertEqual(frame_values(out["image"]), [2, 5])
        self.assertEqual(out["image_valid"].tolist(), [True, True])
        out = PadOrCropFramesd(keys="image", num_frames=2)({"image": make_frames(6)})
        self.assertEqual(set(out), {"image"})

    def test_functional(self):
        idx, mask = pad_or_crop_frame_indices(4, 6, pad_mode="zeros")
        self.assertEqual(idx.tolist(), [0, 1, 2, 3, -1, -1])
        self.assertEqual(mask.tolist(), [True] * 4 + [False] * 2)
        out, m = pad_or_crop_frames(make_frames(4), 2, mode="center")
        self.assertEqual(frame_values(out), [2, 3])

    def test_bad_options(self):
        with self.assertRaises(ValueError) as ctx:
            PadOrCropFrames(4, mode="middle")
        self.assertIn("middle", str(ctx.exception))
        with self.assertRaises(ValueError):
            PadOrCropFrames(4, pad_mode="reflect")
        with self.assertRaises(ValueError):
            PadOrCropFrames(0)
        with self.assertRaises(ValueError):
            PadOrCropFramesd(keys="image", num_frames=2, mask_key_postfix="")

    def test_bad_ndim(self):
        with self.assertRaises(ValueError) as ctx:
            PadOrCropFrames(4)(torch.zeros(2, 3))
        self.assertIn("(2, 3)", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
