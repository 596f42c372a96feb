"""The binary decision threshold chosen on the validation split, as an ignite metric that also stores it in the
network options saved with the best model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, evenly_divisible_all_gather, min_version, optional_import

from monai_das.utils.decision import DECISION_THRESHOLD_KEY, choose_threshold

idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
NotComputableError, _ = optional_import("ignite.exceptions", IgniteInfo.OPT_IMPORT_VERSION, min_version,
                                        "NotComputableError")
if TYPE_CHECKING:
    from ignite.metrics import Metric
    from ignite.metrics.metric import reinit__is_reduced
else:
    Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")
    reinit__is_reduced, _ = optional_import("ignite.metrics.metric", IgniteInfo.OPT_IMPORT_VERSION, min_version,
                                            "reinit__is_reduced", as_type="decorator")

__all__ = ["OperatingThreshold"]


class OperatingThreshold(Metric):
    """:func:`monai_das.utils.choose_threshold` (best balanced accuracy) over the epoch's cases, gathered from every
    process (MONAI's ``evenly_divisible_all_gather``: a validation ``DistributedSampler`` may give the ranks different
    numbers of cases), written into ``network_config`` under ``"decision_threshold"`` each epoch.

    Put it in the evaluator's metrics (MONAI attaches metrics before handlers, so the best-model checkpoint saves
    the threshold of its own epoch with the weights).

    Args:
        network_config: a :py:class:`monai_das.handlers.NetworkConfig` (or anything with a ``values`` dict).
        output_transform: maps the engine's output to ``(probabilities (B, 2), labels (B,))``.
        device: of the metric's state (ignite's ``device``).

    Raises:
        ValueError: at ``update`` for probabilities that are not ``(B, 2)`` (a multi-class task decides by argmax).
    """

    def __init__(self, network_config: Any, output_transform: Callable = lambda x: x,
                 device: str | torch.device = "cpu") -> None:
        self.network_config = network_config
        self._positive: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._positive, self._labels = [], []

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        probabilities, labels = output
        if probabilities.ndim != 2 or probabilities.shape[1] != 2:
            raise ValueError(f"OperatingThreshold is for binary tasks: probabilities (B, 2), got "
                             f"{tuple(probabilities.shape)}.")
        self._positive.append(probabilities[:, 1].detach().float().cpu())
        self._labels.append(torch.as_tensor(labels).detach().reshape(-1).long().cpu())

    def compute(self) -> float:
        if not self._positive:
            raise NotComputableError("OperatingThreshold must have at least one example before it can be computed.")
        positive, labels = (evenly_divisible_all_gather(torch.cat(v).to(idist.device()), concat=True).cpu()
                            for v in (self._positive, self._labels))
        threshold = choose_threshold(positive, labels)
        self.network_config.values[DECISION_THRESHOLD_KEY] = threshold
        return threshold
