"""Variable-length videos: the policy is "resample every video to T frames" (``PadOrCropFramesd`` with
``pad_mode="repeat"``: a short video repeats frames, a long one keeps evenly spread frames), so a batch never holds a
zero frame. The repeats are marked in ``image_frame_mask``, which the bundle's ``prepare_batch`` gives the network as
``frame_mask``: the sampler never spends two picks on one source frame. Checked on a 7-frame and a 101-frame video
(the shortest and longest of COVID-BLUES) through the COVID-BLUES bundle's own preprocessing, prepare_batch and
network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import list_data_collate
from test_bundles import bundle_dir

from monai_das.transforms.functional import pad_or_crop_frame_indices

LENGTHS = (7, 101)
SIZE = 32  # half the bundle's frame_size (64): the "area" resize then copies every pixel to 2 x 2, keeping the mean


def video(num_frames: int, seed: int) -> np.ndarray:
    """``(1, n, 32, 32)`` frames in the 8-bit units the datasets yield, whose mean after the bundle's scaling encodes
    their index: frame i has mean 0.06 + 0.88 (i + 1) / (n + 1) exactly, plus a zero-mean texture that differs per frame
    (so the sampler has something to choose between); every pixel stays inside [0, 1] (the scaling clips)."""
    rng = np.random.default_rng(seed)
    texture = rng.uniform(-0.05, 0.05, size=(num_frames, SIZE, SIZE))
    texture -= texture.mean(axis=(1, 2), keepdims=True)
    levels = 0.06 + 0.88 * (np.arange(num_frames) + 1) / (num_frames + 1)
    return (255.0 * (levels[:, None, None] + texture))[None].astype(np.float32)


def source_index(frame: torch.Tensor, num_frames: int) -> int:
    """The index of the source frame a preprocessed frame ``(C, H, W)`` came from (decoded from its mean)."""
    return int(round((float(frame.double().mean()) - 0.06) * (num_frames + 1) / 0.88)) - 1


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

    items = [preprocessing({"image": video(n, seed=n), "label": 0}) for n in LENGTHS]
    for item in items:
        assert tuple(item["image"].shape) == (1, num_frames, size, size)
    batch = list_data_collate(items)
    image, _, args, kwargs = covid_blues.get_parsed_content("prepare_batch")(batch)
    assert not args and list(kwargs) == ["frame_mask"] and kwargs["frame_mask"].shape == (2, num_frames)

    torch.manual_seed(0)
    network = covid_blues.get_parsed_content("network_def").train(training)
    assert type(network.sampler).__name__ == "DASampler"
    with torch.no_grad():
        network(image, *args, **kwargs)
    out = network.last_sampler_output
    k = network.sampler.num_samples

    for row, n in enumerate(LENGTHS):
        index_map, _ = pad_or_crop_frame_indices(n, num_frames, mode="resample", pad_mode="repeat")
        assert (index_map >= 0).all() and (index_map < n).all(), "a padded (non-video) frame exists"
        picks = out.indices[row].tolist()
        sources = [int(index_map[j]) for j in picks]
        # what the sampler returned is the real source frame the index map names (the frames' means say so)
        decoded = [source_index(out.frames[row, :, i], n) for i in range(k)]
        assert decoded == sources, (n, picks, sources, decoded)
        real = kwargs["frame_mask"][row, out.indices[row]]
        if n >= k:  # k distinct source frames, in order
            assert real.all() and sources == sorted(set(sources)), sources
        else:  # k = 16 > 7 frames: every frame once; the padding picks are left out of the pooling
            real_sources = [s for s, r in zip(sources, real.tolist()) if r]
            assert real_sources == list(range(n)), sources
