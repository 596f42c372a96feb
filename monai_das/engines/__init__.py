"""Training helpers for the engines: class balancing, the functions bundle configs call, distributed teardown."""

from __future__ import annotations

from .batchnorm_recalibration import recalibrate_batchnorm
from .class_balance import balanced_sampler_weights, class_weights
from .distributed import teardown_distributed
from .staged_sampler_training import train_sampler_staged
from .training_recipe import (
    IMBALANCE_POLICIES,
    balanced_data_sampler,
    check_validation_labels,
    distributed_data_sampler,
    logits_and_labels,
    loss_weights,
    metric_score,
    probabilities_and_labels,
)

__all__ = [
    "IMBALANCE_POLICIES",
    "balanced_data_sampler",
    "balanced_sampler_weights",
    "check_validation_labels",
    "class_weights",
    "distributed_data_sampler",
    "logits_and_labels",
    "loss_weights",
    "metric_score",
    "probabilities_and_labels",
    "recalibrate_batchnorm",
    "teardown_distributed",
    "train_sampler_staged",
]
