"""Variable-length videos: the policy is "resample every video to T frames" (``PadOrCropFramesd`` with
``pad_mode="repeat"``: a short video repeats frames, a long one keeps evenly spread frames), so a batch never holds a
padded frame and the sampler cannot pick one. Checked on a 7-frame and a 101-frame video (the shortest and longest of
COVID-BLUES) through the COVID-BLUES bundle's own preprocessing and sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_bundles import bundle_dir

from monai_das.transforms.functional import pad_or_crop_frame_indices

LENGTHS = (7, 101)
SIZE = 32  # half the bundle's frame_size (64): the "area" resize then copies every pixel to 2 x 2, keeping the mean


def video(num_frames: int, seed: int) -> np.ndarray:
    """``(1, n, 32, 32)`` frames whose mean encodes their index: frame i has mean 0.9 (i + 1) / (n + 1) exactly, plus
    a zero-mean texture that differs per frame (so the sampler has something to choose between)."""
    rng = np.random.default_rng(seed)
    texture = rng.uniform(-0.05, 0.05, size=(num_frames, SIZE, SIZE))
    texture -= texture.mean(axis=(1, 2), keepdims=True)
    levels = 0.9 * (np.arange(num_frames) + 1) / (num_frames + 1)
    return (levels[:, None, None] + texture)[None].astype(np.float32)


def source_index(frame: torch.Tensor, num_frames: int) -> int:
    """The index of the source frame a preprocessed frame ``(C, H, W)`` came from (decoded from its mean)."""
    return int(round(float(frame.double().mean()) * (num_frames + 1) / 0.9)) - 1


@pytest.fixture(scope="module")
def covid_blues():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir("covid_blues") / "configs" / "train.json"))
    return parser


@pytest.mark.parametrize("training", [False, True])
def test_every_pick_is_a_real_frame(covid_blues, training):
    num_frames, size = covid_blues.get_parsed_content("num_frames"), covid_blues.get_parsed_content("frame_size")
    assert size == 2 * SIZE
    preprocessing = covid_blues.get_parsed_content("validate#preprocessing")
    pad = next(t for t in preprocessing.transforms if type(t).__name__ == "PadOrCropFramesd")
    policy = (pad.padder.mode, pad.padder.pad_mode)
    assert policy == ("resample", "repeat"), f"the bundle's policy changed to {policy}: update this test"

    images = [preprocessing({"image": video(n, seed=n)})["image"] for n in LENGTHS]
    for image in images:
        assert tuple(image.shape) == (1, num_frames, size, size)
    batch = torch.stack([torch.as_tensor(image) for image in images])  # (2, 1, T, H, W)

    torch.manual_seed(0)
    sampler = covid_blues.get_parsed_content("sampler").train(training)
    assert type(sampler).__name__ == "DASampler"
    with torch.no_grad():
        out = sampler(batch)
    k = sampler.num_samples

    for row, n in enumerate(LENGTHS):
        index_map, _ = pad_or_crop_frame_indices(n, num_frames, mode="resample", pad_mode="repeat")
        assert (index_map >= 0).all() and (index_map < n).all(), "a padded (non-video) frame exists"
        picks = out.indices[row].tolist()
        sources = [int(index_map[j]) for j in picks]
        # what the sampler returned is the real source frame the index map names (the frames' means say so)
        decoded = [source_index(out.frames[row, :, i], n) for i in range(k)]
        assert decoded == sources, (n, picks, sources, decoded)
        assert all(0 <= s < n for s in sources)
        if n >= num_frames:  # cropped by even spreading: distinct picks are distinct source frames, in order
            assert sources == sorted(set(sources)), sources
        else:  # repeated frames: order kept; with k = 16 > 7 frames some picks are necessarily copies
            assert sources == sorted(sources) and len(set(sources)) <= n, sources
