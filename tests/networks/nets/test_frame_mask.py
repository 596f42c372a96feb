"""Samplers and classifier with a ``frame_mask``: short sequences padded to T by ``PadOrCropFrames`` (repeated
frames) never get two picks of one source frame; k above the real frames picks every real frame once and the
classifier pools over them only; an all-real mask changes nothing."""

from __future__ import annotations

import pytest
import torch
from monai.utils import convert_to_tensor
from torch import nn

from monai_das.networks.nets import FrameSampler, SubsampledClassifier, get_sampler
from monai_das.networks.nets.sampler_base import pickable_frames
from monai_das.transforms import PadOrCropFrames
from monai_das.transforms.functional import pad_or_crop_frame_indices

NAMES = ["das", "das_segments", "dps", "adps", "uniform", "random", "full"]
PICKING = [n for n in NAMES if n != "full"]
T = 28
LENGTHS = (25, 10)  # real frames of the two inputs of the batch, padded to T by repeating frames


def build(name: str, k: int) -> FrameSampler:
    kwargs = {"hidden_size": 16} if name in ("das", "das_segments", "adps") else {}
    return get_sampler(name, k, num_frames=T, **kwargs)


def padded_batch(pad_mode: str = "repeat", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` ``(2, 1, T, 9, 9)``, ``frame_mask`` ``(2, T)`` from ``PadOrCropFrames``, and ``source`` ``(2, T)``: the
    source frame of each of the T frames (-1 for a zero frame)."""
    g = torch.Generator().manual_seed(seed)
    pad = PadOrCropFrames(T, pad_mode=pad_mode, return_mask=True)
    images, masks, sources = [], [], []
    for n in LENGTHS:
        image, mask = pad(torch.rand(1, n, 9, 9, generator=g))
        images.append(image)
        masks.append(mask)
        sources.append(torch.as_tensor(pad_or_crop_frame_indices(n, T, pad_mode=pad_mode)[0]))
    x = convert_to_tensor(torch.stack(images), track_meta=False)  # a plain tensor, as a scripted module is given
    return x, torch.stack(masks), torch.stack(sources)


def run(sampler: FrameSampler, x: torch.Tensor, mask: torch.Tensor | None, training: bool, grad: bool = False):
    sampler.train(training)
    torch.manual_seed(0)
    with torch.set_grad_enabled(grad):
        return sampler(x, mask)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", PICKING)
@pytest.mark.parametrize("k", [8, 14])
def test_picks_are_distinct_source_frames(name, k, training):
    x, mask, source = padded_batch()
    out = run(build(name, k), x, mask, training)
    idx = out.indices
    assert idx.shape == (2, k) and torch.all(idx[:, 1:] > idx[:, :-1])
    assert torch.equal(out.frames, x[torch.arange(2)[:, None], :, idx].transpose(1, 2))
    for row, n in enumerate(LENGTHS):
        picked = source[row, idx[row]].tolist()
        real = mask[row, idx[row]]
        if k <= n:
            assert real.all() and len(set(picked)) == k, (n, idx[row].tolist(), picked)
        else:  # every real frame once, then the first k - n padding frames
            assert sorted(set(picked)) == list(range(n)) and int(real.sum()) == n, (n, picked)
            padding = (~mask[row]).nonzero().flatten()[: k - n]
            assert idx[row][~real].tolist() == padding.tolist()


@pytest.mark.parametrize("name", PICKING)
def test_zero_padding_is_never_picked(name):
    x, mask, source = padded_batch(pad_mode="zeros")
    out = run(build(name, 8), x, mask, training=True)
    assert (source.gather(1, out.indices) >= 0).all()


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_an_all_real_mask_changes_nothing(name, training):
    x = torch.rand(3, 1, T, 9, 9, generator=torch.Generator().manual_seed(3))
    outs = []
    for mask in (None, torch.ones(3, T, dtype=torch.bool)):
        torch.manual_seed(1)  # the same weights, and a fresh RandomSampler generator
        outs.append(run(build(name, 7), x, mask, training))
    plain, masked = outs
    assert torch.equal(plain.indices, masked.indices)
    assert torch.equal(plain.frames, masked.frames)


def test_segments_split_the_real_frames():
    x, mask, _ = padded_batch()
    k = 8
    out = run(build("das_segments", k), x, mask, training=True)
    for row, n in enumerate(LENGTHS):
        rank = torch.cumsum(mask[row].long(), 0) - 1  # rank of each real frame among the real ones
        assert (rank[out.indices[row]] * k // n).tolist() == list(range(k))


@pytest.mark.parametrize("name", ["das", "das_segments", "dps", "adps"])
def test_straight_through_gradient_is_finite_with_padding_picks(name):
    x, mask, _ = padded_batch()
    sampler = build(name, 14)
    out = run(sampler, x.requires_grad_(), mask, training=True, grad=True)
    out.frames.square().sum().backward()
    grads = [p.grad for p in sampler.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("coverage", ["none", "segments"])
def test_das_inference_picks_equal_the_straight_through_picks(coverage):
    x, mask, _ = padded_batch(seed=5)
    sampler = build("das" if coverage == "none" else "das_segments", 14).eval()
    for p in sampler.parameters():  # trained-looking weights
        p.data.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    with torch.enable_grad():
        reference = sampler(x, mask)
    assert reference.weights.requires_grad
    with torch.no_grad():
        fast = sampler(x, mask)
    assert torch.equal(fast.indices, reference.indices)


def test_pickable_frames():
    mask = torch.tensor([[True, False, True, False, False], [False, True, False, False, True]])
    assert pickable_frames(mask, 2).tolist() == mask.tolist()
    assert pickable_frames(mask, 4).tolist() == [[True, True, True, True, False], [True, True, True, False, True]]


@pytest.mark.parametrize(
    "mask, error, match",
    [
        (torch.ones(2, T), TypeError, "bool"),
        (torch.ones(2, T - 1, dtype=torch.bool), ValueError, r"\(2, 28\)"),
        (torch.ones(2, 1, T, dtype=torch.bool), ValueError, r"\(2, 28\)"),
        (torch.tensor([[True] * T, [False] * T]), ValueError, r"no real frame for the input\(s\) \[1\]"),
        ([[True] * T] * 2, TypeError, "list"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_frame_mask(name, mask, error, match):
    with pytest.raises(error, match=match):
        build(name, 4)(torch.rand(2, 1, T, 9, 9), mask)


# ---- classifier: pooling over the real frames only ---------------------------------------------------------------


def classifier(name: str, k: int, pooling: str) -> SubsampledClassifier:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return SubsampledClassifier(build(name, k), backbone, 3, feature_dim=8, pooling=pooling).eval()


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
@pytest.mark.parametrize("name, k", [("full", 1), ("uniform", 14), ("random", 12), ("das", 14)])
def test_prediction_on_padded_frames_equals_the_prediction_on_the_real_frames(name, k, pooling):
    """With the mask, a 10-frame sequence padded to 28 (repeats) gives the logits of its 10 frames seen once each
    (every real frame is picked when k >= 10); without the mask the repeats weigh in and the logits differ."""
    g = torch.Generator().manual_seed(2)
    short = torch.rand(1, 1, 10, 9, 9, generator=g) ** 3
    image, mask = PadOrCropFrames(T, pad_mode="repeat", return_mask=True)(short[0])
    net, reference = classifier(name, k, pooling), classifier("full", 1, pooling)
    reference.load_state_dict({key: v for key, v in net.state_dict().items() if not key.startswith("sampler.")})
    with torch.no_grad():
        masked = net(image[None], mask[None])
        expected = reference(short)
        unmasked = net(image[None])
    torch.testing.assert_close(masked, expected, rtol=1e-5, atol=1e-6)
    if pooling == "mean":  # max pooling is blind to repeats; the others weigh them
        assert not torch.allclose(unmasked, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["das", "das_segments", "dps", "adps", "uniform", "full"])
def test_scripted_classifier_takes_the_mask(name):
    """As ``ckpt_export`` scripts it (the MONAI model-zoo verifier): same logits and picks with and without mask."""
    net = classifier(name, 14, "mean")
    scripted = torch.jit.script(net)
    x, mask, _ = padded_batch()
    with torch.no_grad():
        for m in (mask, None):
            torch.testing.assert_close(scripted(x, m), net(x, m))
            assert torch.equal(scripted.sampler(x, m)[2], net.last_sampler_output.indices)
        assert not torch.allclose(scripted(x, mask), scripted(x))  # the mask reaches the scripted module
        if name != "full":
            assert not torch.equal(scripted.sampler(x, mask)[2], scripted.sampler(x)[2])
