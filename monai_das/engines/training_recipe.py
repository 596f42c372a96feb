"""Small functions the bundle configs call to wire the training recipe: imbalance policy, metrics, scores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.utils import look_up_option
from torch.utils.data import WeightedRandomSampler

from monai_das.engines.class_balance import balanced_sampler_weights, class_weights

__all__ = [
    "IMBALANCE_POLICIES",
    "loss_weights",
    "balanced_data_sampler",
    "metric_score",
    "logits_and_labels",
    "probabilities_and_labels",
]

#: ``"weighted_loss"``: inverse-frequency class weights in the cross-entropy; ``"balanced_sampling"``: every class
#: drawn equally often by a WeightedRandomSampler; ``"none"``: plain loss and shuffling (the paper's setting).
IMBALANCE_POLICIES = ("weighted_loss", "balanced_sampling", "none")


def loss_weights(policy: str, labels: Any, num_classes: int, device: Any = None) -> torch.Tensor | None:
    """The ``weight`` of ``CrossEntropyLoss`` for an imbalance ``policy``: class weights or ``None``."""
    policy = look_up_option(policy, IMBALANCE_POLICIES)
    if policy != "weighted_loss":
        return None
    return class_weights(labels, num_classes).to(device)


def balanced_data_sampler(policy: str, labels: Any) -> WeightedRandomSampler | None:
    """The DataLoader ``sampler`` for an imbalance ``policy``: a class-balanced sampler or ``None`` (shuffle)."""
    if look_up_option(policy, IMBALANCE_POLICIES) != "balanced_sampling":
        return None
    return WeightedRandomSampler(balanced_sampler_weights(labels), num_samples=len(labels), replacement=True)


def metric_score(name: str) -> Callable[[Any], float]:
    """Score function for ignite's early stopping: the metric ``name``, negated when it is a loss (lower is better)."""
    sign = -1.0 if "loss" in name else 1.0

    def score(engine: Any) -> float:
        if name not in engine.state.metrics:
            raise KeyError(f"metric '{name}' is not computed by this evaluator; it has {sorted(engine.state.metrics)}.")
        return sign * float(engine.state.metrics[name])

    return score


def _stack(items: Sequence[dict], key: str) -> torch.Tensor:
    return torch.stack([torch.as_tensor(item[key]) for item in items])


def logits_and_labels(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, C), labels (B,))`` from decollated evaluator outputs, for ``ignite.metrics.Loss``."""
    return _stack(output, "logits").float(), _stack(output, "label").reshape(-1).long()


def probabilities_and_labels(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities (B, C), labels (B,))`` from decollated evaluator outputs, for ``ignite.metrics.Accuracy``."""
    return _stack(output, "pred").float(), _stack(output, "label").reshape(-1).long()
