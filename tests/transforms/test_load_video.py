"""Tests for LoadVideo / LoadVideod / load_video on small videos written with PyAV."""

from __future__ import annotations

import os
import tempfile
import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.meta_obj import set_track_meta
from monai.utils import optional_import
from parameterized import parameterized

from monai_das.transforms import LoadVideo, LoadVideoD, LoadVideod, LoadVideoDict, load_video

av, has_av = optional_import("av")

NUM_FRAMES = 12
SIZE = 32
# frame i has grey level GREY[i]: strictly increasing brightness
GREY = [int(round(20 + i * 200 / (NUM_FRAMES - 1))) for i in range(NUM_FRAMES)]


def write_video(path, values, height=SIZE, width=SIZE, container_format=None, options=None, colour=False):
    """Write one flat frame per entry of ``values`` (mpeg4, yuv420p, 10 fps)."""
    with av.open(path, "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for v in values:
            rgb = np.full((height, width, 3), v, dtype=np.uint8)
            if colour:  # red falls, green rises, blue fixed
                rgb[..., 0], rgb[..., 1], rgb[..., 2] = 240 - v, v, 128
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@unittest.skipUnless(has_av, "PyAV is required")
class TestLoadVideo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        d = cls._tmp.name
        cls.mp4 = os.path.join(d, "grey.mp4")
        cls.avi = os.path.join(d, "grey.avi")
        cls.rgb = os.path.join(d, "colour.mp4")
        write_video(cls.mp4, GREY)
        write_video(cls.avi, GREY)
        write_video(cls.rgb, GREY, colour=True)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _path(self, name):
        return os.path.join(self._tmp.name, name)

    @parameterized.expand([["mp4"], ["avi"]])
    def test_grey_shape_order_and_values(self, kind):
        out = LoadVideo()(self.mp4 if kind == "mp4" else self.avi)
        self.assertIsInstance(out, MetaTensor)
        self.assertEqual(tuple(out.shape), (1, NUM_FRAMES, SIZE, SIZE))  # (C, T, H, W)
        self.assertEqual(out.dtype, torch.float32)
        self.assertGreaterEqual(float(out.min()), 0.0)
        self.assertLessEqual(float(out.max()), 255.0)  # the decoded 8-bit values
        self.assertTrue(torch.equal(out, out.round()))
        means = out.mean(dim=(0, 2, 3)).numpy()
        self.assertTrue(np.all(np.diff(means) > 0), f"frame brightness not increasing: {means}")
        np.testing.assert_allclose(means, np.array(GREY), atol=0.03 * 255)

    def test_rgb(self):
        out = LoadVideo(grayscale=False)(self.rgb)
        self.assertEqual(tuple(out.shape), (3, NUM_FRAMES, SIZE, SIZE))
        means = out.mean(dim=(2, 3)).numpy()  # (3, T)
        self.assertTrue(np.all(np.diff(means[0]) < 0), f"red not falling: {means[0]}")
        self.assertTrue(np.all(np.diff(means[1]) > 0), f"green not rising: {means[1]}")
        np.testing.assert_allclose(means[2], 128, atol=0.03 * 255)
        np.testing.assert_allclose(means[1], np.array(GREY), atol=0.04 * 255)

    def test_grayscale_default_single_channel(self):
        self.assertEqual(LoadVideo()(self.rgb).shape[0], 1)

    @parameterized.expand(
        [
            # max_frames, frame_stride, expected original frame indices
            [4, 1, [1, 4, 7, 10]],  # floor((i + 0.5) * 12 / 4)
            [None, 3, [0, 3, 6, 9]],
            [None, 5, [0, 5, 10]],
            [3, 2, [2, 6, 10]],  # stride 2 -> 6 frames, then evenly spread 3 of them: 1, 3, 5
            [50, 1, list(range(NUM_FRAMES))],  # max_frames is a cap, not a target
            [1, 1, [6]],
        ]
    )
    def test_max_frames_and_stride(self, max_frames, stride, expected):
        full = LoadVideo()(self.mp4)
        out = LoadVideo(max_frames=max_frames, frame_stride=stride)(self.mp4)
        self.assertEqual(tuple(out.shape), (1, len(expected), SIZE, SIZE))
        np.testing.assert_allclose(out.numpy(), full.numpy()[:, expected])
        self.assertEqual(out.meta["total_frames"], NUM_FRAMES)

    def test_meta(self):
        out = LoadVideo()(self.mp4)
        self.assertEqual(out.meta["filename_or_obj"], self.mp4)
        self.assertAlmostEqual(out.meta["fps"], 10.0)

    def test_track_meta_off_gives_plain_tensor(self):
        set_track_meta(False)
        try:
            out = LoadVideo()(self.mp4)
        finally:
            set_track_meta(True)
        self.assertIsInstance(out, torch.Tensor)
        self.assertNotIsInstance(out, MetaTensor)

    def test_functional_returns_numpy_and_meta(self):
        frames, meta = load_video(self.mp4, max_frames=6)
        self.assertIsInstance(frames, np.ndarray)
        self.assertEqual(frames.shape, (1, 6, SIZE, SIZE))
        self.assertEqual(meta["total_frames"], NUM_FRAMES)

    def test_dict_version_and_aliases(self):
        self.assertIs(LoadVideoD, LoadVideod)
        self.assertIs(LoadVideoDict, LoadVideod)
        data = {"video": self.mp4, "label": 3}
        out = LoadVideod(keys="video", max_frames=4)(data)
        self.assertEqual(out["label"], 3)
        self.assertEqual(data["video"], self.mp4)  # input dict untouched
        self.assertEqual(tuple(out["video"].shape), (1, 4, SIZE, SIZE))
        self.assertEqual(out["video"].meta["filename_or_obj"], self.mp4)

    def test_missing_file(self):
        path = self._path("does_not_exist.mp4")
        with self.assertRaises(ValueError) as ctx:
            LoadVideo()(path)
        self.assertIn(path, str(ctx.exception))

    def test_random_bytes(self):
        path = self._path("noise.mp4")
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).bytes(4096))
        with self.assertRaises(ValueError) as ctx:
            LoadVideo()(path)
        self.assertIn(path, str(ctx.exception))

    @parameterized.expand([["mp4"], ["avi"]])
    def test_truncated(self, kind):
        src = self.mp4 if kind == "mp4" else self.avi
        path = self._path(f"truncated.{kind}")
        with open(src, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        with self.assertRaises(ValueError) as ctx:
            LoadVideo()(path)
        self.assertIn(path, str(ctx.exception))

    def test_truncated_with_header_first_warns(self):
        # with the index at the front FFmpeg still opens a truncated mp4 and decodes fewer frames
        src, path = self._path("faststart.mp4"), self._path("faststart_cut.mp4")
        rng = np.random.default_rng(1)
        write_video(src, rng.integers(0, 255, 30).tolist(), options={"movflags": "faststart"})
        with open(src, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: int(len(data) * 0.6)])
        with self.assertWarns(UserWarning) as ctx:
            out = LoadVideo()(path)
        self.assertIn(path, str(ctx.warning))
        self.assertLess(out.shape[1], 30)

    def test_zero_frames(self):
        path = self._path("empty.avi")
        with av.open(path, "w") as container:
            stream = container.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
            container.start_encoding()
        with self.assertRaises(ValueError) as ctx:
            LoadVideo()(path)
        self.assertIn(path, str(ctx.exception))
        self.assertIn("zero", str(ctx.exception))

    def test_varying_frame_size(self):
        # two raw MPEG-4 elementary streams of different sizes, back to back
        a, b, path = self._path("a.m4v"), self._path("b.m4v"), self._path("varying.m4v")
        write_video(a, GREY[:3], container_format="m4v")
        write_video(b, GREY[3:6], height=16, width=24, container_format="m4v")
        with open(path, "wb") as f:
            for part in (a, b):
                with open(part, "rb") as g:
                    f.write(g.read())
        with self.assertRaises(ValueError) as ctx:
            LoadVideo()(path)
        self.assertIn(path, str(ctx.exception))
        self.assertIn("varying size", str(ctx.exception))

    @parameterized.expand([[{"max_frames": 0}], [{"frame_stride": 0}], [{"frame_stride": -2}]])
    def test_bad_arguments(self, kwargs):
        with self.assertRaises(ValueError):
            LoadVideo(**kwargs)

    @parameterized.expand([[{"max_frames": 2.5}], [{"frame_stride": "2"}], [{"max_frames": True}]])
    def test_bad_argument_types(self, kwargs):
        with self.assertRaises(TypeError):
            LoadVideo(**kwargs)


if __name__ == "__main__":
    unittest.main()
