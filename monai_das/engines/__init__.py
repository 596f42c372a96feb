"""Training: the staged recipe (ignite stages, resumable), the learned-vs-prior selection, class balancing, the
functions bundle configs call, distributed teardown."""

from __future__ import annotations

from .batchnorm_recalibration import recalibrate_batchnorm
from .class_balance import balanced_sampler_weights, class_weights
from .distributed import teardown_distributed
from .sampler_selection import SELECTION_RULES, keep_learned_sampler, paired_bootstrap_auc, roc_auc
from .staged_recipe import StagedRecipe
from .training_recipe import (
    IMBALANCE_POLICIES,
    balanced_data_sampler,
    check_validation_labels,
    decisions_and_labels,
    distributed_data_sampler,
    logits_and_labels,
    loss_weights,
    metric_score,
    probabilities_and_labels,
)

__all__ = [
    "IMBALANCE_POLICIES",
    "SELECTION_RULES",
    "StagedRecipe",
    "balanced_data_sampler",
    "balanced_sampler_weights",
    "check_validation_labels",
    "class_weights",
    "decisions_and_labels",
    "distributed_data_sampler",
    "logits_and_labels",
    "loss_weights",
    "metric_score",
    "probabilities_and_labels",
    "recalibrate_batchnorm",
    "teardown_distributed",
    "keep_learned_sampler",
    "paired_bootstrap_auc",
    "roc_auc",
]
