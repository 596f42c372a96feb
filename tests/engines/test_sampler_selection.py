"""The rule that keeps a learned sampler only when validation says it beats its prior by more than chance."""

from __future__ import annotations

import pytest
import torch

from monai_das.engines import keep_learned_sampler, paired_bootstrap_auc


def probabilities(scores):
    scores = torch.as_tensor(scores, dtype=torch.float32)
    return torch.stack([1 - scores, scores], dim=1)


def cases(n, seed, separation):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 2).long()
    return probabilities(torch.sigmoid(separation * (labels * 2 - 1) + torch.randn(n, generator=g))), labels


def test_a_clearly_better_model_wins_almost_every_draw_and_is_kept():
    strong, labels = cases(200, 0, 2.0)
    weak, _ = cases(200, 1, 0.2)
    stats = paired_bootstrap_auc(strong, weak, labels, num_bootstrap=200)
    assert stats["difference"] > 0.3 and stats["win_rate"] > 0.99
    keep, info = keep_learned_sampler(strong, weak, labels, num_bootstrap=200)
    assert keep and info["rule"] == "bootstrap" and info["confidence"] == 0.9


def test_a_gain_inside_the_noise_keeps_the_prior_where_best_epoch_selection_would_not():
    prior, labels = cases(60, 2, 0.5)
    # the same model with a little noise: a higher validation AUC here, by chance
    g = torch.Generator().manual_seed(3)
    for seed in range(20):
        noisy = probabilities(prior[:, 1] + 0.05 * torch.randn(60, generator=g))
        stats = paired_bootstrap_auc(noisy, prior, labels, num_bootstrap=200, seed=seed)
        if stats["difference"] > 0:
            break
    assert 0 < stats["difference"] < 0.05 and stats["win_rate"] < 0.9
    assert keep_learned_sampler(noisy, prior, labels, "best", num_bootstrap=200, seed=seed)[0]
    assert not keep_learned_sampler(noisy, prior, labels, "bootstrap", num_bootstrap=200, seed=seed)[0]
    # the same model: never better, never kept
    assert not keep_learned_sampler(prior, prior, labels, "bootstrap", num_bootstrap=50)[0]
    assert not keep_learned_sampler(prior, prior, labels, "best", num_bootstrap=50)[0]


def test_bad_arguments_are_refused():
    p, labels = cases(10, 0, 1.0)
    with pytest.raises(ValueError, match="every class needs a validation case"):
        paired_bootstrap_auc(p, p, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="same cases"):
        paired_bootstrap_auc(p, p[:5], labels)
    with pytest.raises(ValueError, match="confidence"):
        keep_learned_sampler(p, p, labels, confidence=1.0)
    with pytest.raises(ValueError, match="median"):
        keep_learned_sampler(p, p, labels, rule="median")
