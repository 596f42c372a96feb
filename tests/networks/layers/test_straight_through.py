from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from monai_das.networks.layers import gumbel_noise, hard_topk, sort_picks, straight_through_pick, straight_through_topk

EULER_GAMMA = 0.5772156649


def _assert_one_hot(p: torch.Tensor) -> None:
    """Every value of ``p`` is 0 or 1 (within 1e-6) and every row sums to 1."""
    assert torch.all((p - 0).abs().le(1e-6) | (p - 1).abs().le(1e-6)), p
    torch.testing.assert_close(p.sum(-1), torch.ones_like(p.sum(-1)), atol=1e-6, rtol=0)


def _reference_topk_loss(scores: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The soft surrogate the straight-through estimator must differentiate: sum_j <softmax(masked row j), w_j>,
    with the rows put in temporal order of their picks."""
    taken = torch.zeros(scores.shape[0], scores.shape[2], dtype=torch.bool)
    softs, picks = [], []
    for j in range(scores.shape[1]):
        masked = scores[:, j].masked_fill(taken, float("-inf"))
        idx = masked.argmax(-1)
        taken = taken | F.one_hot(idx, scores.shape[2]).bool()
        softs.append(F.softmax(masked, -1))
        picks.append(idx)
    order = torch.stack(picks, 1).argsort(1)
    soft = torch.stack(softs, 1).gather(1, order.unsqueeze(-1).expand(-1, -1, scores.shape[2]))
    return (soft * weight).sum()


# ---- gumbel_noise -----------------------------------------------------------------------------------------------


def test_gumbel_noise_shape_dtype_and_moments():
    like = torch.zeros(1, dtype=torch.float64)
    g = gumbel_noise([200_000], like, generator=torch.Generator().manual_seed(0))
    assert g.shape == (200_000,) and g.dtype == torch.float64
    assert torch.isfinite(g).all()
    # Gumbel(0, 1): mean = Euler's gamma, variance = pi^2 / 6
    assert g.mean().item() == pytest.approx(EULER_GAMMA, abs=0.02)
    assert g.var().item() == pytest.approx(math.pi**2 / 6, abs=0.05)


def test_gumbel_noise_generator_is_reproducible():
    like = torch.zeros(1)
    a = gumbel_noise([3, 5], like, generator=torch.Generator().manual_seed(7))
    b = gumbel_noise([3, 5], like, generator=torch.Generator().manual_seed(7))
    c = gumbel_noise([3, 5], like, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gumbel_noise_finite_at_extremes():
    # u == 0 would give log(0); the clamps must keep the draw finite
    like = torch.zeros(1)
    g = gumbel_noise([100_000], like, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(g).all()


# ---- straight_through_pick --------------------------------------------------------------------------------------


def test_pick_skips_taken_frames_and_is_one_hot():
    scores = torch.tensor([[5.0, 1.0, 3.0, 0.0], [0.0, 2.0, 9.0, 1.0]])
    taken = torch.tensor([[True, False, False, False], [False, False, True, True]])
    row, index = straight_through_pick(scores, taken)
    assert index.tolist() == [2, 1]
    assert index.dtype == torch.long
    _assert_one_hot(row)
    assert row.argmax(-1).tolist() == [2, 1]


def test_pick_gradient_is_softmax_gradient_on_free_frames():
    scores = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    taken = torch.zeros(3, 6, dtype=torch.bool)
    taken[:, 0] = True
    w = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    row, _ = straight_through_pick(scores, taken)
    (row * w).sum().backward()
    ref_scores = scores.detach().clone().requires_grad_(True)
    (F.softmax(ref_scores.masked_fill(taken, float("-inf")), -1) * w).sum().backward()
    torch.testing.assert_close(scores.grad, ref_scores.grad)
    assert torch.all(scores.grad[:, 0] == 0)  # taken frames get no gradient
    assert scores.grad[:, 1:].abs().sum() > 0


# ---- sort_picks -------------------------------------------------------------------------------------------------


def test_sort_picks_reorders_rows_consistently():
    indices = torch.tensor([[4, 0, 2], [1, 3, 0]])
    rows = F.one_hot(indices, 5).float() * torch.tensor([1.0, 2.0, 3.0])[None, :, None]  # tag each row
    sorted_rows, sorted_idx = sort_picks(rows, indices)
    assert sorted_idx.tolist() == [[0, 2, 4], [0, 1, 3]]
    # each row still points at its own index and carries its own tag
    assert sorted_rows.argmax(-1).tolist() == sorted_idx.tolist()
    assert sorted_rows.amax(-1).tolist() == [[2.0, 3.0, 1.0], [3.0, 1.0, 2.0]]


# ---- straight_through_topk --------------------------------------------------------------------------------------


def test_topk_with_equal_rows_is_topk_of_scores():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 10, generator=gen)
    k = 4
    p, idx = straight_through_topk(base[:, None, :].expand(4, k, 10))
    expected = base.topk(k, dim=-1).indices.sort(-1).values
    assert torch.equal(idx, expected)
    _assert_one_hot(p)
    assert torch.equal(p.argmax(-1), idx)


def test_topk_k_equals_t_picks_everything():
    scores = torch.randn(2, 5, 5)
    p, idx = straight_through_topk(scores)
    assert torch.equal(idx, torch.arange(5).expand(2, 5))
    torch.testing.assert_close(p, torch.eye(5).expand(2, 5, 5), atol=1e-6, rtol=0)


def test_topk_rows_that_agree_still_pick_distinct_frames():
    # every row prefers frame 3: later rows must fall back to their next best free frame
    scores = torch.tensor([[[0.0, 1.0, 2.0, 9.0], [0.0, 2.0, 1.0, 9.0], [5.0, 0.0, 1.0, 9.0]]])
    _, idx = straight_through_topk(scores)
    assert idx.tolist() == [[0, 1, 3]]


def test_topk_gradient_flows_and_matches_soft_surrogate():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 4, 7, generator=gen, requires_grad=True)
    w = torch.randn(3, 4, 7, generator=gen)
    p, _ = straight_through_topk(scores)
    (p * w).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    ref = scores.detach().clone().requires_grad_(True)
    _reference_topk_loss(ref, w).backward()
    torch.testing.assert_close(scores.grad, ref.grad)
    # softmax is shift invariant: each row's gradient sums to zero
    torch.testing.assert_close(scores.grad.sum(-1), torch.zeros(3, 4), atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    t=st.integers(1, 12),
    data=st.data(),
)
def test_topk_property_distinct_sorted_one_hot(b, t, data):
    k = data.draw(st.integers(1, t))
    seed = data.draw(st.integers(0, 2**16))
    scores = torch.randn(b, k, t, generator=torch.Generator().manual_seed(seed))
    p, idx = straight_through_topk(scores)
    assert p.shape == (b, k, t) and idx.shape == (b, k)
    if k > 1:
        assert torch.all(idx[:, 1:] > idx[:, :-1])
    assert idx.min() >= 0 and idx.max() < t
    _assert_one_hot(p)
    assert torch.equal(p.argmax(-1), idx)


# ---- hard_topk (the inference path) -------------------------------------------------------------------------------


def _random_scores(case: int, generator: torch.Generator) -> torch.Tensor:
    """Scores of many kinds: continuous, heavily tied (small integers), identical rows, rows masked with -inf."""
    b = int(torch.randint(1, 9, (1,), generator=generator))
    t = int(torch.randint(1, 70, (1,), generator=generator))
    k = int(torch.randint(1, t + 1, (1,), generator=generator))
    kind = case % 4
    if kind == 0:
        return torch.randn(b, k, t, generator=generator)
    if kind == 1:
        return torch.randint(0, 3, (b, k, t), generator=generator).float()
    if kind == 2:
        row = torch.randn(b, 1, t, generator=generator)
        return (row * torch.rand(b, k, 1, generator=generator).add(0.5)).expand(b, k, t).contiguous()
    scores = torch.randn(b, k, t, generator=generator)
    from monai_das.networks.nets.das import segment_mask

    return scores.masked_fill(segment_mask(k, t), float("-inf"))


def test_hard_topk_gives_exactly_the_picks_of_straight_through_topk():
    generator = torch.Generator().manual_seed(0)
    for case in range(400):
        scores = _random_scores(case, generator)
        expected_p, expected = straight_through_topk(scores)
        p, indices = hard_topk(scores)
        assert torch.equal(indices, expected), (case, scores.shape)
        assert torch.equal(p, F.one_hot(expected, scores.shape[-1]).float())
        torch.testing.assert_close(p, expected_p, atol=1e-6, rtol=0)
        assert p.dtype == scores.dtype and indices.dtype == torch.long


def test_hard_topk_carries_no_gradient():
    scores = torch.randn(2, 3, 5, requires_grad=True)
    p, _ = hard_topk(scores)
    assert not p.requires_grad


@pytest.mark.parametrize("b, k, t", [(1, 1, 1), (3, 1, 9), (2, 9, 9), (4, 7, 7), (5, 32, 64), (2, 64, 64)])
@pytest.mark.parametrize("kind", ["continuous", "integers", "identical rows", "one tied value"])
def test_hard_topk_extreme_shapes_and_ties(b, k, t, kind):
    # k = 1, k = T, rows that all rank alike (every row competes for the same frames) and fully tied rows
    generator = torch.Generator().manual_seed(k * 100 + t)
    if kind == "continuous":
        scores = torch.randn(b, k, t, generator=generator)
    elif kind == "integers":
        scores = torch.randint(-2, 2, (b, k, t), generator=generator).float()
    elif kind == "identical rows":
        scores = torch.randn(b, 1, t, generator=generator).expand(b, k, t).contiguous()
    else:
        scores = torch.full((b, k, t), 0.5)
    _, expected = straight_through_topk(scores)
    p, indices = hard_topk(scores)
    assert torch.equal(indices, expected)
    assert torch.equal(p, F.one_hot(expected, t).float())


def test_hard_topk_scripted_gives_the_same_picks():
    scripted = torch.jit.script(hard_topk)
    generator = torch.Generator().manual_seed(5)
    for case in range(40):
        scores = _random_scores(case, generator)
        assert torch.equal(scripted(scores)[1], straight_through_topk(scores)[1])
