"""``load_video`` holds only the frames it returns: a long video read with ``max_frames`` stays within a memory bound
(measured with tracemalloc), with or without a frame count in the file's header, and gives exactly the frames a full
decode would give; a video over ``max_voxels`` is refused with a message naming the file and the limit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from monai_das.transforms import load_video, uniform_frame_indices

av = pytest.importorskip("av")

H = W = 128
N = 300


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The same 300 frames of 128 x 128 as mp4 (frame count in the header) and mkv (no count)."""
    folder = tmp_path_factory.mktemp("videos")
    yy, xx = np.mgrid[0:H, 0:W]
    paths = {}
    for ext in ("mp4", "mkv"):
        path = folder / f"long.{ext}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            for t in range(N):  # a bright disc that moves: every frame differs
                disc = ((yy - 64 - 40 * np.sin(t / 9)) ** 2 + (xx - 64 - 40 * np.cos(t / 7)) ** 2) < 400
                grey = (30 + 200 * disc).astype(np.uint8)
                rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        paths[ext] = path
    with av.open(str(paths["mp4"])) as c:
        assert c.streams.video[0].frames == N
    with av.open(str(paths["mkv"])) as c:
        assert c.streams.video[0].frames == 0  # the second-pass path
    return paths


def full_decode(path, max_frames, stride, grayscale) -> np.ndarray:
    """What load_video returned before it learned to skip frames: every frame decoded and kept, then picked."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="gray" if grayscale else "rgb24") for f in container.decode(video=0)]
    frames = frames[::stride]
    if max_frames is not None and len(frames) > max_frames:
        frames = [frames[i] for i in uniform_frame_indices(len(frames), max_frames)]
    stacked = np.stack(frames)
    stacked = stacked[None] if grayscale else np.moveaxis(stacked, -1, 0)
    return np.ascontiguousarray(stacked, dtype=np.float32)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
@pytest.mark.parametrize("max_frames, stride, grayscale", [(8, 1, True), (16, 3, False), (None, 7, True),
                                                           (500, 1, True), (1, 2, True)])
def test_same_frames_as_a_full_decode(videos, ext, max_frames, stride, grayscale):
    frames, meta = load_video(videos[ext], max_frames=max_frames, frame_stride=stride, grayscale=grayscale)
    np.testing.assert_array_equal(frames, full_decode(videos[ext], max_frames, stride, grayscale))
    assert meta["total_frames"] == N


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_memory_holds_only_the_kept_frames(videos, ext):
    all_frames = N * H * W  # bytes of every grey uint8 frame: what a decode that keeps them all holds at once
    tracemalloc.start()
    try:
        frames, _ = load_video(videos[ext], max_frames=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames.shape == (1, 8, H, W)
    assert peak < all_frames / 5, f"peak {peak} bytes for 8 kept frames of {H} x {W} (all frames: {all_frames})"


def test_over_the_size_limit_is_refused(videos):
    path = videos["mp4"]
    with pytest.raises(ValueError, match=rf"'{path}': 300 frames of 128 x 128 x 1 are 4915200 values, over the limit "
                                         r"of 1000000; pass a smaller max_frames, or raise max_voxels"):
        load_video(path, max_voxels=10**6)
    with pytest.raises(ValueError, match=r"over the limit of 1000000"):  # no count in the header: while decoding
        load_video(videos["mkv"], max_voxels=10**6)
    assert load_video(path, max_frames=50, max_voxels=10**6)[0].shape == (1, 50, H, W)  # 819200 values
    assert load_video(path, max_voxels=None)[0].shape == (1, N, H, W)
    with pytest.raises(ValueError, match="`max_voxels` must be an int >= 1, got 0"):
        load_video(path, max_voxels=0)
