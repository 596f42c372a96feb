"""The six frame samplers under one interface: shapes, picks, determinism, gradients and input checks."""

from __future__ import annotations

import pytest
import torch
from parameterized import parameterized

from monai_das.networks.nets import (
    get_sampler,
    ADPSampler,
    DASampler,
    DPSampler,
    FrameSampler,
    FullSequence,
    RandomSampler,
    SamplerOutput,
    UniformSampler,
)

NAMES = ["das", "das_segments", "dps", "adps", "uniform", "random", "full"]
LEARNED = ["das", "das_segments", "dps", "adps"]
# (C, T, k): several channel counts, k < T, k == T, k == 1
SHAPES = [(1, 12, 4), (3, 7, 7), (2, 5, 1), (1, 16, 6)]


def build(name: str, k: int, t: int, c: int = 1, seed: int | None = 0) -> FrameSampler:
    if name == "das":
        return DASampler(k, in_channels=c, hidden_size=16)
    if name == "das_segments":
        return DASampler(k, in_channels=c, hidden_size=16, coverage="segments")
    if name == "dps":
        return DPSampler(k, t)
    if name == "adps":
        return ADPSampler(k, t, in_channels=c, hidden_size=16)
    if name == "uniform":
        return UniformSampler(k)
    if name == "random":
        return RandomSampler(k, seed=seed)
    return FullSequence()


def data(b: int, c: int, t: int, h: int = 10, w: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def check_output(out: SamplerOutput, x: torch.Tensor, k: int) -> None:
    """Shapes, one-hot rows, distinct increasing picks, and frames == x gathered at the picks."""
    b, c, t, h, w = x.shape
    assert isinstance(out, SamplerOutput)
    assert out.frames.shape == (b, c, k, h, w)
    assert out.weights.shape == (b, k, t)
    assert out.indices.shape == (b, k) and out.indices.dtype == torch.long
    idx = out.indices
    assert idx.min() >= 0 and idx.max() < t
    if k > 1:
        assert torch.all(idx[:, 1:] > idx[:, :-1]), idx  # distinct and strictly increasing
    p = out.weights.detach()
    assert torch.all((p.abs() <= 1e-6) | ((p - 1).abs() <= 1e-6)), "rows of P must be one-hot"
    torch.testing.assert_close(p.sum(-1), torch.ones(b, k), atol=1e-6, rtol=0)
    assert torch.equal(p.argmax(-1), idx)
    gathered = x[torch.arange(b)[:, None], :, idx].transpose(1, 2)  # (B, C, k, H, W)
    torch.testing.assert_close(out.frames.detach(), gathered, atol=1e-6, rtol=1e-6)


def pick(sampler: FrameSampler, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return sampler(x).indices


# ---- shapes, picks, P -------------------------------------------------------------------------------------------


@parameterized.expand([(n, *s) for n in NAMES for s in SHAPES])
def test_output_train_and_eval(name, c, t, k):
    torch.manual_seed(0)
    x = data(3, c, t)
    sampler = build(name, k, t, c)
    kk = t if name == "full" else k
    sampler.train()
    check_output(sampler(x), x, kk)
    sampler.eval()
    check_output(sampler(x), x, kk)  # eval with autograd on: P goes through the einsum path
    with torch.no_grad():
        out = sampler(x)
    check_output(out, x, kk)
    gathered = x[torch.arange(3)[:, None], :, out.indices].transpose(1, 2)
    assert torch.equal(out.frames, gathered)  # no-grad path gathers exactly


@parameterized.expand([(n,) for n in NAMES])
def test_non_square_frames_and_batch_of_one(name):
    x = data(1, 2, 9, h=13, w=6)
    check_output(build(name, 3, 9, 2)(x), x, 9 if name == "full" else 3)


def test_full_sequence_is_identity():
    x = data(2, 3, 6)
    out = FullSequence()(x)
    assert out.frames is x
    assert torch.equal(out.indices, torch.arange(6).expand(2, 6))
    assert torch.equal(out.weights, torch.eye(6).expand(2, 6, 6))
    assert out.logits is None and out.temperature is None
    assert FullSequence()(data(1, 1, 2)).indices.tolist() == [[0, 1]]


@parameterized.expand([(10, 4, [1, 3, 6, 8]), (8, 8, list(range(8))), (7, 1, [3]), (16, 5, [1, 4, 8, 11, 14])])
def test_uniform_known_indices(t, k, expected):
    out = UniformSampler(k)(data(2, 1, t))
    assert out.indices.tolist() == [expected, expected]


def test_dps_eval_is_topk_of_logits():
    sampler = DPSampler(3, 8).eval()
    with torch.no_grad():
        sampler.logits.copy_(torch.tensor([0.1, 2.0, -1.0, 0.5, 3.0, 0.0, 1.5, -2.0]))
    out = sampler(data(2, 1, 8))
    assert out.indices.tolist() == [[1, 4, 6], [1, 4, 6]]


def test_optional_fields():
    x = data(2, 1, 8)
    das = DASampler(3)(x)
    assert das.logits.shape == (2, 3, 8) and das.temperature.shape == (2,)
    assert DPSampler(3, 8)(x).logits.shape == (2, 3, 8)
    assert ADPSampler(3, 8)(x).logits.shape == (2, 3, 8)
    for sampler in (UniformSampler(3), RandomSampler(3)):
        out = sampler(x)
        assert out.logits is None and out.temperature is None


@parameterized.expand([(n,) for n in LEARNED])
def test_constant_input_is_finite_and_distinct(name):
    # flat frames: zero variance, no edges, all frames tie; picks must still be k distinct frames
    x = torch.zeros(2, 1, 6, 8, 8)
    for mode in (True, False):
        sampler = build(name, 3, 6).train(mode)
        out = sampler(x)
        check_output(out, x, 3)
        if out.logits is not None:
            assert torch.isfinite(out.logits).all()


# ---- determinism --------------------------------------------------------------------------------------------------


@parameterized.expand([(n,) for n in NAMES])
def test_eval_is_deterministic(name):
    x = data(4, 2, 12)
    sampler = build(name, 4, 12, 2).eval()
    with torch.no_grad():
        torch.manual_seed(1)
        a = sampler(x)
        torch.manual_seed(2)
        b = sampler(x)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.frames, b.frames)
    assert torch.equal(a.weights, b.weights)


@parameterized.expand([(n,) for n in ["das", "dps", "adps", "random"]])
def test_training_picks_follow_the_global_seed(name):
    x = data(4, 1, 16)
    torch.manual_seed(0)
    sampler = build(name, 4, 16, seed=None).train()

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return pick(sampler, x)

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


@parameterized.expand([(n,) for n in LEARNED])
def test_training_noise_changes_picks_across_calls(name):
    x = data(4, 1, 16)
    torch.manual_seed(0)
    sampler = build(name, 4, 16).train()
    draws = [pick(sampler, x) for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_random_sampler_seeded_sequence():
    x = data(3, 1, 20)
    a, b, c = RandomSampler(5, seed=3), RandomSampler(5, seed=3), RandomSampler(5, seed=4)
    torch.manual_seed(0)
    seq_a = [pick(a, x) for _ in range(3)]
    torch.manual_seed(99)  # the global generator does not matter when seed is set
    seq_b = [pick(b, x) for _ in range(3)]
    seq_c = [pick(c, x) for _ in range(3)]
    for ia, ib in zip(seq_a, seq_b):
        assert torch.equal(ia, ib)
    assert not torch.equal(seq_a[0], seq_a[1])  # new draws at every training call
    assert not all(torch.equal(ia, ic) for ia, ic in zip(seq_a, seq_c))
    a.eval()
    first, second = pick(a, x), pick(a, x)
    assert torch.equal(first, second)  # eval repeatable
    assert not all(torch.equal(first[0], first[i]) for i in range(1, 3))  # while differing per input
    assert torch.equal(first, pick(RandomSampler(5, seed=3).eval(), x))


def test_das_picks_adapt_to_the_input():
    torch.manual_seed(0)
    sampler = DASampler(4).eval()
    picks = pick(sampler, data(6, 1, 16, seed=1))
    assert len({tuple(p) for p in picks.tolist()}) > 1


@parameterized.expand([(12, 4), (10, 3), (7, 7), (9, 1)])
def test_das_segments_pick_one_frame_per_segment(t, k):
    torch.manual_seed(0)
    sampler = DASampler(k, coverage="segments")
    x = data(5, 1, t, seed=2)
    segments = torch.arange(t) * k // t  # segment of each frame
    for training in (True, False):
        picks = pick(sampler.train(training), x)
        assert torch.equal(segments[picks], torch.arange(k).expand(5, k)), (training, picks)
    if k < t:  # adaptive within the segments, not one fixed pattern
        assert len({tuple(p) for p in pick(sampler.eval(), data(8, 1, t, seed=3)).tolist()}) > 1


def test_bad_coverage_is_refused():
    with pytest.raises(ValueError, match="coverage"):
        DASampler(2, coverage="windows")


# ---- gradients ----------------------------------------------------------------------------------------------------


@parameterized.expand([(n,) for n in LEARNED])
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    c, t, k = 2, 12, 4
    x = data(3, c, t)
    sampler = build(name, k, t, c).train()
    out = sampler(x)
    target = torch.randn_like(out.frames)
    ((out.frames - target) ** 2).mean().backward()
    for pname, p in sampler.named_parameters():
        assert p.grad is not None, f"{name}: {pname} has no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has a zero gradient"


def test_adps_first_step_state_is_zero():
    """A finding, documented: the LSTM starts from a zero state, so with k = 2 the recurrent weights ``weight_hh``
    never see a non-zero hidden state and get no gradient; with k = 1 the cell and the encoder are not used at all and
    ``to_logits.weight`` multiplies a zero state (ADPS degenerates to static logits, its bias).
    Every parameter is trained for k >= 3 (see the test above)."""
    x = data(2, 1, 8)
    unused_k1 = {"encode.0.weight", "encode.0.bias", "cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"}
    for k, dead in ((1, unused_k1 | {"to_logits.weight"}), (2, {"cell.weight_hh"}), (3, set())):
        torch.manual_seed(0)
        sampler = ADPSampler(k, 8, hidden_size=8)
        sampler(x).frames.sum().backward()
        no_grad = {n for n, p in sampler.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}
        assert no_grad == dead, (k, no_grad)


# ---- bad input ----------------------------------------------------------------------------------------------------


@parameterized.expand([(n,) for n in NAMES if n != "full"])
def test_num_samples_greater_than_t(name):
    sampler = build(name, 6, 6)
    with pytest.raises(ValueError, match="num_samples"):
        sampler(data(1, 1, 5))


@parameterized.expand([(n, s) for n in NAMES for s in [(1, 6, 8, 8), (1, 1, 1, 6, 8, 8), (6,)]])
def test_wrong_ndim(name, shape):
    with pytest.raises(ValueError, match=r"^x must be 5-D"):
        build(name, 2, 6)(torch.rand(*shape))


@parameterized.expand([(n, v) for n in NAMES for v in [float("nan"), float("inf"), float("-inf")]])
def test_non_finite_input(name, value):
    x = data(1, 1, 6)
    x[0, 0, 3, 2, 2] = value
    with pytest.raises(ValueError, match=r"^x of shape \(1, 1, 6, 10, 9\) contains 1 NaN or Inf values \(first \(batch, frame\) pairs: \[\[0, 3\]\]\)"):
        build(name, 2, 6)(x)


@parameterized.expand([(n, d) for n in NAMES for d in [torch.int64, torch.uint8, torch.bool]])
def test_non_float_input(name, dtype):
    with pytest.raises(TypeError, match=r"^x must be a floating point tensor"):
        build(name, 2, 6)(torch.ones(1, 1, 6, 4, 4, dtype=dtype))


@parameterized.expand([(n,) for n in NAMES])
def test_non_tensor_input(name):
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor"):
        build(name, 2, 6)(data(1, 1, 6).numpy())


@parameterized.expand([(n,) for n in NAMES])
def test_empty_input(name):
    with pytest.raises(ValueError, match=r"^x must not be empty"):
        build(name, 2, 6)(torch.rand(0, 1, 6, 4, 4))


@parameterized.expand([("dps", 10), ("dps", 14), ("adps", 10), ("adps", 14)])
def test_fixed_length_samplers_reject_other_t(name, t):
    with pytest.raises(ValueError, match="num_frames=12"):
        build(name, 4, 12)(data(1, 1, t))


@parameterized.expand(
    [(cls, k) for cls in (DASampler, UniformSampler, RandomSampler) for k in (0, -1, 2.0, True, "3")]
)
def test_bad_num_samples(cls, k):
    with pytest.raises(ValueError, match="num_samples"):
        cls(k)


@parameterized.expand(
    [
        (DPSampler, {"num_samples": 5, "num_frames": 4}, "num_samples"),
        (DPSampler, {"num_samples": 2, "num_frames": 4, "temperature": 0.0}, "temperature"),
        (DPSampler, {"num_samples": 0, "num_frames": 4}, "num_samples"),
        (ADPSampler, {"num_samples": 5, "num_frames": 4}, "num_samples"),
        (ADPSampler, {"num_samples": 2, "num_frames": 4, "temperature": -1.0}, "temperature"),
        (ADPSampler, {"num_samples": 2, "num_frames": 4, "hidden_size": 0}, "hidden_size"),
        (ADPSampler, {"num_samples": 2, "num_frames": 4, "measurement_size": 0}, "measurement_size"),
        (DASampler, {"num_samples": 2, "embedding_size": -1}, "embedding_size"),
        (DASampler, {"num_samples": 2, "tau0": 0.0}, "tau0"),
        (DASampler, {"num_samples": 2, "kernel_size": 4}, "kernel_size"),
        (DASampler, {"num_samples": 2, "base_score": "foo"}, "learned"),
    ]
)
def test_bad_constructor_args(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("name", ["das", "adps"])
def test_channel_mismatch_names_in_channels(name):
    sampler = get_sampler(name, 2, num_frames=6, in_channels=1)
    with pytest.raises(ValueError, match=r"in_channels=1.*\(2, 3, 6, 8, 8\)"):
        sampler(torch.rand(2, 3, 6, 8, 8))


@parameterized.expand(
    [
        ({},),
        ({"coverage": "segments"},),
        ({"base_score": "variance", "row_queries": False, "temporal_context": "none", "embedding_size": 0},),
        ({"tau0": 1.0, "num_heads": 2, "hidden_size": 8, "feature_size": 0},),
    ]
)
def test_das_inference_picks_equal_the_straight_through_picks(kwargs):
    """Without gradient, DAS in eval picks through ``hard_topk``; with gradient enabled it runs the k-step
    straight-through loop of training. Both must pick exactly the same frames, on many random inputs and weights."""
    generator = torch.Generator().manual_seed(0)
    for trial in range(12):
        torch.manual_seed(trial)
        t = int(torch.randint(4, 40, (1,), generator=generator))
        k = int(torch.randint(1, t + 1, (1,), generator=generator))
        sampler = DASampler(k, **kwargs).eval()
        with torch.no_grad():  # trained-looking weights: the rows rank frames differently
            for p in sampler.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.3 * (trial % 3))
        x = torch.rand(3, 1, t, 20, 18, generator=generator) ** (1 + trial % 4)
        with torch.enable_grad():
            reference = sampler(x)
        assert reference.weights.requires_grad  # the straight-through path
        with torch.no_grad():
            fast = sampler(x)
        assert torch.equal(fast.indices, reference.indices), (trial, t, k)
        assert torch.equal(fast.weights, torch.nn.functional.one_hot(fast.indices, t).float())
        torch.testing.assert_close(fast.frames, reference.frames.detach(), atol=1e-6, rtol=0)
        assert torch.equal(fast.logits, reference.logits.detach())
