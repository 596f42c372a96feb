from __future__ import annotations

import pytest
import torch
from parameterized import parameterized

from monai_das.networks.blocks import SamplingAttention
from monai_das.networks.blocks.sampling_attention import DEFAULT_TAU0
from monai_das.networks.nets import DASampler

CONFIGS = [
    # in_features, k, heads, hidden, base_score, temporal_context, row_queries, B, T
    (3, 4, 4, 32, "learned", "conv", True, 2, 12),
    (19, 1, 1, 8, "learned", "none", False, 1, 5),
    (3, 6, 2, 16, "variance", "conv", True, 3, 6),
    (5, 3, 4, 16, "variance", "none", False, 2, 9),
]


@parameterized.expand(CONFIGS)
def test_shapes_and_temperature_range(d, k, heads, hidden, base, context, queries, b, t):
    tau0 = 2.5
    module = SamplingAttention(
        d, k, num_heads=heads, hidden_size=hidden, tau0=tau0, base_score=base, temporal_context=context,
        row_queries=queries,
    )
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(b, t, d, generator=gen) * 3
    raw_var = torch.rand(b, t, generator=gen)
    logits, tau = module(feats, raw_var)
    assert logits.shape == (b, k, t)
    assert tau.shape == (b,)
    assert torch.isfinite(logits).all()
    assert torch.all(tau > 0.5 * tau0) and torch.all(tau < 1.5 * tau0)


def test_temperature_range_under_extreme_inputs():
    module = SamplingAttention(3, 2, tau0=1.0)
    for scale in (1e3, -1e3):
        _, tau = module(torch.full((2, 6, 3), scale), torch.rand(2, 6))
        assert torch.all(tau >= 0.5) and torch.all(tau <= 1.5)


def test_literal_form_rows_are_positive_multiples_of_variance():
    # base_score="variance", row_queries=False: A[:, j, :] = s_j * var / max(var), s_j > 0
    module = SamplingAttention(3, 4, base_score="variance", row_queries=False, temporal_context="none")
    raw_var = torch.tensor([[0.5, 2.0, 0.1, 1.0, 4.0, 0.3]])
    logits, _ = module(torch.randn(1, 6, 3), raw_var)
    ratio = logits / (raw_var / raw_var.max())[:, None, :]
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))  # one positive scale per row
    assert torch.all(ratio > 0)
    for j in range(4):
        assert torch.equal(logits[0, j].argsort(), raw_var[0].argsort())


def test_default_rows_can_rank_frames_differently():
    # the per-row queries make the k rows prefer different frames (the fix of the literal form's trap)
    torch.manual_seed(0)
    module = SamplingAttention(3, 4)
    features, variance = torch.randn(2, 10, 3), torch.rand(2, 10)
    with torch.no_grad():  # without the query term every row ranks frames the same way ...
        module.queries.zero_()
    logits, _ = module(features, variance)
    assert all(len(set(logits[b].argmax(-1).tolist())) == 1 for b in range(2))
    with torch.no_grad():  # ... and a learned query per row makes the rows differ
        module.queries.normal_(0, 3.0)
    logits, _ = module(features, variance)
    assert any(len(set(logits[b].argmax(-1).tolist())) > 1 for b in range(2))


def test_variance_prior_starts_from_the_variance_ranking():
    module = SamplingAttention(3, 2, row_queries=False)
    variance = torch.tensor([[0.5, 2.0, 0.1, 1.0, 4.0, 0.3]])
    logits, _ = module(torch.randn(1, 6, 3), variance)
    assert torch.equal(logits[0, 0].argsort(), variance[0].argsort())
    free = SamplingAttention(3, 2, row_queries=False, base_prior="none")
    assert free.base.weight.abs().sum() > 0


def test_das_literal_form_picks_topk_variance_in_eval():
    """Documents the paper's literal-form trap: with ``a_base`` = variance, every row ranks frames by variance, so
    eval picks are simply the top-k variance frames (sorted), whatever the learned weights."""
    k, t = 4, 10
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.3, 2.0, 0.05, 1.1, 0.7, 3.0, 0.2, 1.6, 0.9, 0.4])  # distinct variance per frame
    x = torch.randn(3, 2, t, 12, 12, generator=gen) * scales[None, None, :, None, None]
    x[1] = x[1].flip(2)  # a second input with another ranking
    x[2] = x[2][:, torch.randperm(t, generator=gen)]
    for seed in (0, 1, 2):
        torch.manual_seed(seed)  # different learned weights: same picks
        sampler = DASampler(
            k, in_channels=2, base_score="variance", row_queries=False, temporal_context="none", embedding_size=0
        ).eval()
        with torch.no_grad():
            out = sampler(x)
        variance = x.transpose(1, 2).reshape(3, t, -1).var(dim=-1, unbiased=False)
        expected = variance.topk(k, dim=-1).indices.sort(dim=-1).values
        assert torch.equal(out.indices, expected)


@parameterized.expand(
    [
        ({"in_features": 0, "num_samples": 2}, "in_features"),
        ({"in_features": 3, "num_samples": 0}, "num_samples"),
        ({"in_features": 3, "num_samples": 2, "num_heads": 0}, "num_heads"),
        ({"in_features": 3, "num_samples": 2, "num_heads": 3, "hidden_size": 16}, "hidden_size"),
        ({"in_features": 3, "num_samples": 2, "num_heads": 4, "hidden_size": 2}, "hidden_size"),
        ({"in_features": 3, "num_samples": 2, "tau0": 0.0}, "tau0"),
        ({"in_features": 3, "num_samples": 2, "context_kernel": 4}, "context_kernel"),
        ({"in_features": 3, "num_samples": 2, "base_score": "entropy"}, "learned"),
        ({"in_features": 3, "num_samples": 2, "temporal_context": "lstm"}, "conv"),
    ]
)
def test_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingAttention(**kwargs)


def _per_head_logits(module: SamplingAttention, features: torch.Tensor, raw_variance: torch.Tensor) -> torch.Tensor:
    """The specification's order of operations: every head's MLP on its own, ``A_h = s_h a_base + q_h . key_h /
    sqrt(dh)`` ``(B, H, k, T)``, then the mean over the heads (the module stacks the heads' weights instead)."""
    b, t, _ = features.shape
    ctx = module.embed(features)
    if module.temporal_context == "conv":
        ctx = ctx + torch.nn.functional.gelu(module.context(ctx.transpose(1, 2)).transpose(1, 2))
    pooled = torch.cat([ctx.mean(dim=1), ctx.amax(dim=1)], dim=-1)
    log_var = torch.log(raw_variance + 1e-6)
    prior = (log_var - log_var.mean(1, keepdim=True)) / (log_var.std(1, keepdim=True, unbiased=False) + 1e-3)
    a_base = torch.nn.functional.softplus(module.base(ctx).squeeze(-1) + prior)
    scales = torch.stack([torch.nn.functional.softplus(mlp(pooled)) for mlp in module.scales], dim=1)  # (B, H, k)
    logits = scales.unsqueeze(-1) * a_base[:, None, None, :]
    keys = module.keys(ctx).reshape(b, t, module.num_heads, module.head_dim).transpose(1, 2)
    logits = logits + torch.einsum("hkd,bhtd->bhkt", module.queries, keys) / module.head_dim**0.5
    return logits.mean(dim=1)


@pytest.mark.parametrize("heads, hidden, k", [(4, 32, 14), (1, 8, 3), (2, 16, 32)])
def test_stacked_heads_give_the_per_head_formula(heads, hidden, k):
    torch.manual_seed(heads)
    module = SamplingAttention(7, k, num_heads=heads, hidden_size=hidden, base_prior="variance")
    with torch.no_grad():  # trained-looking weights: the query term and the learned base score matter
        module.queries.normal_(0, 1.0)
        module.base.weight.normal_(0, 0.5)
    features, variance = torch.randn(3, 40, 7), torch.rand(3, 40)
    logits, _ = module(features, variance)
    torch.testing.assert_close(logits, _per_head_logits(module, features, variance), rtol=1e-5, atol=1e-6)
    # the gradient reaches every head's parameters as in the per-head form
    logits.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad()
    _per_head_logits(module, features, variance).square().sum().backward()
    for name, p in module.named_parameters():
        if name.startswith(("scales.", "queries", "keys.")):
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5)


def test_one_tau0_default_for_das_and_its_attention():
    # DASampler always passed 3.0; the attention block's own default used to be 1.0
    assert SamplingAttention(3, 2).tau0 == DEFAULT_TAU0 == 3.0
    assert DASampler(2).attention.tau0 == DEFAULT_TAU0


def test_variance_prior_given_equals_the_one_computed_from_the_raw_variance():
    torch.manual_seed(0)
    module = SamplingAttention(3, 4)
    with torch.no_grad():
        module.base.weight.normal_()
    feats, raw = torch.randn(2, 9, 3), torch.rand(2, 9) + 0.01
    log_var = torch.log(raw + 1e-6)
    prior = (log_var - log_var.mean(1, keepdim=True)) / (log_var.std(1, keepdim=True, unbiased=False) + 1e-3)
    own, given = module(feats, raw), module(feats, raw, prior)
    torch.testing.assert_close(given[0], own[0], rtol=0, atol=0)
    shifted = module(feats, raw, prior + torch.linspace(0, 3, 9))  # the given prior is what is used
    assert not torch.allclose(shifted[0], own[0])
