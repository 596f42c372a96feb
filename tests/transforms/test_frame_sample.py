"""Tests for UniformFrameSample(d), RandFrameSample(d) and their index functions."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import set_determinism
from parameterized import parameterized

from monai_das.transforms import (
    RandFrameSample,
    RandFrameSampleD,
    RandFrameSampled,
    RandFrameSampleDict,
    UniformFrameSample,
    UniformFrameSampleD,
    UniformFrameSampled,
    UniformFrameSampleDict,
    random_frame_indices,
    select_frames,
    uniform_frame_indices,
)


def make_frames(t, c=1, h=3, w=4, torch_out=False):
    """(C, T, H, W) image whose frame i is filled with the value i (all channels)."""
    img = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None, None], (c, t, h, w)).copy()
    return torch.as_tensor(img) if torch_out else img


def frame_ids(img):
    """Recover frame identities from an image built by make_frames."""
    arr = img.numpy() if isinstance(img, torch.Tensor) else img
    return arr[0, :, 0, 0].astype(int).tolist()


class TestUniformFrameIndices(unittest.TestCase):
    @parameterized.expand(
        [
            [10, 4, [1, 3, 6, 8]],
            [12, 4, [1, 4, 7, 10]],
            [12, 3, [2, 6, 10]],
            [5, 5, [0, 1, 2, 3, 4]],
            [7, 1, [3]],
            [28, 8, [1, 5, 8, 12, 15, 19, 22, 26]],
            [3, 6, [0, 0, 1, 1, 2, 2]],  # more than T: nearest-neighbour repetition
        ]
    )
    def test_exact(self, t, k, expected):
        out = uniform_frame_indices(t, k)
        self.assertEqual(out.tolist(), expected)
        self.assertEqual(out.tolist(), [int(np.floor((i + 0.5) * t / k)) for i in range(k)])

    @parameterized.expand([[0, 3], [5, 0], [-1, 2]])
    def test_bad(self, t, k):
        with self.assertRaises(ValueError):
            uniform_frame_indices(t, k)


class TestUniformFrameSample(unittest.TestCase):
    @parameterized.expand([[False], [True]])
    def test_values(self, use_torch):
        img = make_frames(10, c=2, torch_out=use_torch)
        out = UniformFrameSample(4)(img)
        self.assertIsInstance(out, torch.Tensor if use_torch else np.ndarray)
        self.assertEqual(tuple(out.shape), (2, 4, 3, 4))
        self.assertEqual(frame_ids(out), [1, 3, 6, 8])

    def test_metatensor_preserved(self):
        img = MetaTensor(make_frames(9, torch_out=True), meta={"filename_or_obj": "clip.mp4", "fps": 25.0})
        out = UniformFrameSample(3)(img)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.meta["filename_or_obj"], "clip.mp4")
        self.assertEqual(out.meta["fps"], 25.0)
        self.assertEqual(frame_ids(out), [1, 4, 7])

    def test_too_many_frames(self):
        with self.assertRaises(ValueError) as ctx:
            UniformFrameSample(11)(make_frames(10))
        self.assertIn("11", str(ctx.exception))
        self.assertIn("10", str(ctx.exception))

    @parameterized.expand([[0], [-3]])
    def test_bad_num_frames(self, k):
        with self.assertRaises(ValueError):
            UniformFrameSample(k)

    @parameterized.expand([[(10, 3, 4)], [(1, 1, 10, 3, 4)]])
    def test_bad_ndim(self, shape):
        with self.assertRaises(ValueError) as ctx:
            UniformFrameSample(2)(np.zeros(shape))
        self.assertIn(str(shape), str(ctx.exception))

    def test_dict(self):
        self.assertIs(UniformFrameSampleD, UniformFrameSampled)
        self.assertIs(UniformFrameSampleDict, UniformFrameSampled)
        data = {"image": make_frames(12), "label": make_frames(12, torch_out=True) + 100, "y": 2}
        out = UniformFrameSampled(keys=["image", "label"], num_frames=3)(data)
        self.assertEqual(frame_ids(out["image"]), [2, 6, 10])
        self.assertEqual(frame_ids(out["label"]), [102, 106, 110])
        self.assertEqual(out["y"], 2)


class TestRandFrameSample(unittest.TestCase):
    def test_distinct_sorted_and_values(self):
        sampler = RandFrameSample(5).set_random_state(0)
        img = make_frames(20, c=2)
        for _ in range(20):
            out = sampler(img)
            ids = frame_ids(out)
            self.assertEqual(out.shape, (2, 5, 3, 4))
            self.assertEqual(len(set(ids)), 5)
            self.assertEqual(ids, sorted(ids))
            self.assertTrue(all(0 <= i < 20 for i in ids))
            self.assertEqual(ids, sampler.indices.tolist())
            np.testing.assert_array_equal(out, img[:, ids])

    def test_reproducible_with_seed(self):
        img = make_frames(30, torch_out=True)
        a = [frame_ids(RandFrameSample(6).set_random_state(123)(img)) for _ in range(2)]
        self.assertEqual(a[0], a[1])
        s1, s2 = RandFrameSample(6).set_random_state(7), RandFrameSample(6).set_random_state(7)
        seq1 = [frame_ids(s1(img)) for _ in range(5)]
        seq2 = [frame_ids(s2(img)) for _ in range(5)]
        self.assertEqual(seq1, seq2)
        self.assertGreater(len({tuple(s) for s in seq1}), 1)  # successive draws differ

    def test_draws_only_from_own_state(self):
        img = make_frames(30)
        set_determinism(seed=0)
        a = frame_ids(RandFrameSample(6).set_random_state(5)(img))
        set_determinism(seed=1)
        np.random.rand(17)
        b = frame_ids(RandFrameSample(6).set_random_state(5)(img))
        set_determinism(seed=None)
        self.assertEqual(a, b)

    def test_replays_numpy_random_state(self):
        # expected draw replayed with np.random: one draw for `prob`, then a choice without replacement
        rng = np.random.RandomState(42)
        rng.rand()
        expected = sorted(rng.choice(15, size=4, replace=False).tolist())
        out = RandFrameSample(4).set_random_state(42)(make_frames(15))
        self.assertEqual(frame_ids(out), expected)
        self.assertEqual(random_frame_indices(15, 4, np.random.RandomState(0)).dtype, np.int64)

    def test_all_frames(self):
        out = RandFrameSample(8).set_random_state(0)(make_frames(8))
        self.assertEqual(frame_ids(out), list(range(8)))

    def test_metatensor_preserved(self):
        img = MetaTensor(make_frames(10, torch_out=True), meta={"filename_or_obj": "a.mp4"})
        out = RandFrameSample(3).set_random_state(0)(img)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(out.meta["filename_or_obj"], "a.mp4")

    def test_randomize_false_reuses(self):
        sampler = RandFrameSample(4).set_random_state(3)
        first = frame_ids(sampler(make_frames(12)))
        again = frame_ids(sampler(make_frames(12), randomize=False))
        self.assertEqual(first, again)

    def test_randomize_false_before_draw(self):
        with self.assertRaises(RuntimeError):
            RandFrameSample(2)(make_frames(5), randomize=False)

    def test_errors(self):
        with self.assertRaises(ValueError):
            RandFrameSample(6)(make_frames(5))
        with self.assertRaises(ValueError):
            RandFrameSample(0)
        with self.assertRaises(ValueError):
            RandFrameSample(2)(np.zeros((5, 3, 4)))

    def test_dict_same_indices_for_all_keys(self):
        self.assertIs(RandFrameSampleD, RandFrameSampled)
        self.assertIs(RandFrameSampleDict, RandFrameSampled)
        t = RandFrameSampled(keys=["image", "label"], num_frames=5).set_random_state(11)
        self.assertIsInstance(t, RandFrameSampled)
        for _ in range(10):
            data = {"image": make_frames(25), "label": make_frames(25, torch_out=True) + 1000}
            out = t(data)
            ids = frame_ids(out["image"])
            self.assertEqual([i + 1000 for i in ids], frame_ids(out["label"]))
            self.assertEqual(len(set(ids)), 5)
            self.assertEqual(ids, sorted(ids))

    def test_dict_matches_array_with_same_seed(self):
        img = make_frames(25)
        arr = RandFrameSample(5).set_random_state(9)
        dct = RandFrameSampled(keys="image", num_frames=5).set_random_state(9)
        for _ in range(3):
            self.assertEqual(frame_ids(arr(img)), frame_ids(dct({"image": img})["image"]))

    def test_dict_mismatched_lengths(self):
        t = RandFrameSampled(keys=["image", "label"], num_frames=3).set_random_state(0)
        with self.assertRaises(ValueError) as ctx:
            t({"image": make_frames(10), "label": make_frames(9)})
        self.assertIn("label", str(ctx.exception))

    def test_dict_missing_key_allowed(self):
        t = RandFrameSampled(keys=["image", "label"], num_frames=3, allow_missing_keys=True).set_random_state(0)
        out = t({"image": make_frames(10)})
        self.assertEqual(out["image"].shape[1], 3)
        self.assertNotIn("label", out)

    def test_select_frames_out_of_range(self):
        with self.assertRaises(ValueError):
            select_frames(make_frames(4), [0, 4])


if __name__ == "__main__":
    unittest.main()


def test_evenly_spaced_indices_equal_the_float_formula_and_uniform_frame_indices():
    from monai_das.transforms import evenly_spaced_indices, uniform_frame_indices

    for t in range(1, 130):
        for k in range(1, 2 * t):
            expected = (torch.arange(k, dtype=torch.float64) + 0.5).mul(t).div(k).floor().long()
            assert torch.equal(evenly_spaced_indices(t, k), expected), (t, k)
            assert uniform_frame_indices(t, k).tolist() == expected.tolist()
