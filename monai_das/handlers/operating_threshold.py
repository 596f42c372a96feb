"""The binary decision threshold chosen on the validation split, as an ignite metric that also stores it in the
network options saved with the best model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_das.utils.decision import DECISION_THRESHOLD_KEY, choose_threshold

EpochMetric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "EpochMetric",
                                 as_type="base")

__all__ = ["OperatingThreshold"]


def _threshold(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    if probabilities.ndim != 2 or probabilities.shape[1] != 2:
        raise ValueError(f"OperatingThreshold is for binary tasks: probabilities (N, 2), got "
                         f"{tuple(probabilities.shape)}.")
    return choose_threshold(probabilities[:, 1], labels.reshape(-1))


class OperatingThreshold(EpochMetric):
    """ignite's ``EpochMetric`` of :func:`monai_das.utils.choose_threshold` (best balanced accuracy over the epoch's
    cases, gathered from every process), written into ``network_config`` under ``"decision_threshold"`` each epoch.

    Put it in the evaluator's metrics (MONAI attaches metrics before handlers, so the best-model checkpoint saves
    the threshold of its own epoch with the weights).

    Args:
        network_config: a :py:class:`monai_das.handlers.NetworkConfig` (or anything with a ``values`` dict).
        output_transform: maps the engine's output to ``(probabilities (B, 2), labels (B,))``.
    """

    def __init__(self, network_config: Any, output_transform: Callable = lambda x: x) -> None:
        self.network_config = network_config
        super().__init__(_threshold, output_transform=output_transform, check_compute_fn=False)

    def compute(self) -> float:
        threshold = float(super().compute())
        self.network_config.values[DECISION_THRESHOLD_KEY] = threshold
        return threshold
