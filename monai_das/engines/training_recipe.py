"""Small functions the bundle configs call to wire the training recipe: imbalance policy, metrics, scores."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import DistributedSampler, DistributedWeightedRandomSampler
from monai.utils import look_up_option
from torch.utils.data import Dataset, WeightedRandomSampler

from monai_das.engines.class_balance import _class_indices, balanced_sampler_weights, class_weights
from monai_das.utils.decision import decide

__all__ = [
    "IMBALANCE_POLICIES",
    "loss_weights",
    "balanced_data_sampler",
    "distributed_data_sampler",
    "metric_score",
    "check_validation_labels",
    "logits_and_labels",
    "probabilities_and_labels",
    "decisions_and_labels",
]

#: ``"weighted_loss"``: inverse-frequency class weights in the cross-entropy; ``"balanced_sampling"``: every class
#: drawn equally often by a WeightedRandomSampler; ``"none"``: plain loss and shuffling (the paper's setting).
IMBALANCE_POLICIES = ("weighted_loss", "balanced_sampling", "none")

logger = logging.getLogger(__name__)


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


def distributed_data_sampler(
    policy: str, dataset: Dataset, labels: Any, num_replicas: int | None = None, rank: int | None = None
) -> DistributedSampler:
    """The train DataLoader ``sampler`` of a ``torch.distributed`` run for an imbalance ``policy``.

    ``"balanced_sampling"`` gives MONAI's :py:class:`~monai.data.DistributedWeightedRandomSampler` with the weights
    of :py:func:`balanced_sampler_weights`: each rank draws, with replacement, from its own shard of the dataset with
    every class equally likely; the other policies give a shuffling :py:class:`~monai.data.DistributedSampler`. Both
    are even-divisible (every rank runs the same number of iterations) and have ``set_epoch``.

    Args:
        policy: one of :py:data:`IMBALANCE_POLICIES`.
        dataset: the training dataset.
        labels: its class labels, one per item (as for :py:func:`balanced_sampler_weights`).
        num_replicas: number of ranks; by default the size of the initialised process group.
        rank: this process's rank; by default read from the initialised process group.
    """
    if look_up_option(policy, IMBALANCE_POLICIES) != "balanced_sampling":
        return DistributedSampler(dataset, even_divisible=True, num_replicas=num_replicas, rank=rank, shuffle=True)
    weights = balanced_sampler_weights(labels)
    if len(weights) != len(dataset):  # type: ignore[arg-type]
        raise ValueError(f"labels must give one label per dataset item, got {len(weights)} labels for "
                         f"{len(dataset)} items.")  # type: ignore[arg-type]
    return DistributedWeightedRandomSampler(
        dataset, weights.tolist(), even_divisible=True, num_replicas=num_replicas, rank=rank
    )


def metric_score(name: str) -> Callable[[Any], float]:
    """Score function for ignite's early stopping: the metric ``name``, negated when it is a loss (lower is better)."""
    sign = -1.0 if "loss" in name else 1.0

    def score(engine: Any) -> float:
        if name not in engine.state.metrics:
            raise KeyError(f"metric '{name}' is not computed by this evaluator; it has {sorted(engine.state.metrics)}.")
        return sign * float(engine.state.metrics[name])

    return score


def check_validation_labels(labels: Any, num_classes: int, checkpoint_metric: str) -> None:
    """Check the validation split before training (the bundles call it in ``initialize``).

    An empty split would train without ever writing ``model.pt``; a split that lacks a class has an undefined AUC
    (NaN every epoch), so ``model.pt`` would stay at epoch 1 and early stopping would never fire.

    Args:
        labels: the validation labels, one per input (class indices ``(N,)`` / ``(N, 1)`` or one-hot rows).
        num_classes: the number of classes.
        checkpoint_metric: the metric that picks ``model.pt`` and drives early stopping.

    Raises:
        ValueError: for an empty split, or one that lacks a class when ``checkpoint_metric`` is an AUC (otherwise a
            warning says that the logged AUC is NaN).
    """
    if labels is None or len(labels) == 0:
        raise ValueError("the validation split is empty: no model.pt would be written and nothing would stop the "
                         "training early. Give the validation split some inputs (e.g. --num_val, or the dataset's "
                         "val split).")
    counts = np.bincount(_class_indices(labels, num_classes), minlength=num_classes)
    missing = [i for i in range(num_classes) if counts[i] == 0]
    if not missing:
        return
    message = (f"the validation split ({len(labels)} inputs, per class {counts.tolist()}) lacks class(es) {missing}: "
               "its AUC is undefined (NaN) every epoch")
    if "auc" in checkpoint_metric.lower():
        raise ValueError(f"{message}, so checkpoint_metric '{checkpoint_metric}' would keep model.pt at epoch 1 and "
                         "early stopping would never fire. Use a validation split that holds every class, or "
                         "--checkpoint_metric val_loss.")
    logger.warning("%s (the checkpoint metric '%s' still works).", message, checkpoint_metric)


def _stack(items: Sequence[dict], key: str) -> torch.Tensor:
    return torch.stack([torch.as_tensor(item[key]) for item in items])


def logits_and_labels(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, C), labels (B,))`` from decollated evaluator outputs, for ``ignite.metrics.Loss``."""
    return _stack(output, "logits").float(), _stack(output, "label").reshape(-1).long()


def probabilities_and_labels(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities (B, C), labels (B,))`` from decollated evaluator outputs, for ``ignite.metrics.Accuracy``."""
    return _stack(output, "pred").float(), _stack(output, "label").reshape(-1).long()


def decisions_and_labels(network_config: Any) -> Callable[[Sequence[dict]], tuple[torch.Tensor, torch.Tensor]]:
    """An output transform giving ``(one-hot decisions (B, C), labels (B,))``: the classes :py:func:`decide` picks
    with the options of ``network_config`` (a :py:class:`NetworkConfig`, read at each call, so the threshold a
    checkpoint loader restored is the one used), for ignite's ``Accuracy`` and :py:class:`BalancedAccuracy`."""

    def transform(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        prob, labels = probabilities_and_labels(output)
        return F.one_hot(decide(prob, network_config.values), prob.shape[1]).float(), labels

    return transform
