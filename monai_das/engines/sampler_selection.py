"""Keep a learned sampler only when validation says it beats its untrained prior by more than chance.

Best-epoch selection on a small validation split keeps noise: on AdrenalMNIST3D's 98 validation cases the validation
gain of the learned sampler over its prior did not predict its test gain. The staged recipe therefore trains both
(the head on the prior's picks, and sampler and head together) and keeps the learned sampler only when a stratified
paired bootstrap over the validation cases finds its AUC above the prior's in at least ``confidence`` of the draws.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.metrics import compute_roc_auc
from monai.utils import look_up_option

__all__ = ["SELECTION_RULES", "keep_learned_sampler", "paired_bootstrap_auc", "roc_auc"]

#: ``"bootstrap"``: the learned sampler must win in ``confidence`` of the paired bootstrap draws; ``"best"``: the
#: higher validation AUC wins (best-epoch selection, the former rule)
SELECTION_RULES = ("bootstrap", "best")


def roc_auc(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Macro one-vs-rest AUC of ``(N, C)`` probabilities against ``(N,)`` class indices (MONAI's)."""
    return float(compute_roc_auc(probabilities, F.one_hot(labels, probabilities.shape[1]), average="macro"))


def paired_bootstrap_auc(prob_a: Any, prob_b: Any, labels: Any, num_bootstrap: int = 1000,
                         seed: int = 0) -> dict[str, float]:
    """AUC of ``a`` minus AUC of ``b`` on the same cases, and how often ``a`` wins when the cases are resampled.

    Args:
        prob_a, prob_b: ``(N, C)`` class probabilities of two models on the same ``N`` cases.
        labels: ``(N,)`` class indices; every class must occur.
        num_bootstrap: draws; each resamples the cases of every class with replacement (stratified, so every draw
            has every class).
        seed: of the draws.

    Returns:
        ``{"difference": AUC_a - AUC_b, "win_rate": share of draws with AUC_a > AUC_b}``.
    """
    prob_a, prob_b = torch.as_tensor(prob_a).float(), torch.as_tensor(prob_b).float()
    labels = torch.as_tensor(labels).long().reshape(-1)
    if prob_a.shape != prob_b.shape or prob_a.shape[0] != labels.numel():
        raise ValueError(f"prob_a {tuple(prob_a.shape)}, prob_b {tuple(prob_b.shape)} and labels "
                         f"{tuple(labels.shape)} must describe the same cases.")
    groups = [torch.nonzero(labels == c).reshape(-1) for c in range(prob_a.shape[1])]
    if any(g.numel() == 0 for g in groups):
        raise ValueError(f"every class needs a validation case, got per class {[g.numel() for g in groups]}.")
    generator = torch.Generator().manual_seed(seed)
    wins = 0
    for _ in range(num_bootstrap):
        idx = torch.cat([g[torch.randint(g.numel(), (g.numel(),), generator=generator)] for g in groups])
        wins += roc_auc(prob_a[idx], labels[idx]) > roc_auc(prob_b[idx], labels[idx])
    return {"difference": roc_auc(prob_a, labels) - roc_auc(prob_b, labels), "win_rate": wins / num_bootstrap}


def keep_learned_sampler(prob_learned: Any, prob_prior: Any, labels: Any, rule: str = "bootstrap",
                         confidence: float = 0.9, num_bootstrap: int = 1000, seed: int = 0) -> tuple[bool, dict]:
    """Whether the learned sampler's model replaces the prior's, by ``rule`` (:data:`SELECTION_RULES`).

    Args:
        prob_learned, prob_prior: ``(N, C)`` validation probabilities of the two best states.
        labels: ``(N,)`` validation labels.
        rule: ``"bootstrap"`` (win rate >= ``confidence``) or ``"best"`` (a higher validation AUC).
        confidence: the win rate the bootstrap rule needs.
        num_bootstrap, seed: of :func:`paired_bootstrap_auc`.

    Returns:
        ``(keep, {"difference", "win_rate", "rule", "confidence"})``.
    """
    rule = look_up_option(rule, SELECTION_RULES)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    stats = paired_bootstrap_auc(prob_learned, prob_prior, labels, num_bootstrap, seed)
    keep = stats["win_rate"] >= confidence if rule == "bootstrap" else stats["difference"] > 0
    return bool(keep), {**stats, "rule": rule, "confidence": confidence}
