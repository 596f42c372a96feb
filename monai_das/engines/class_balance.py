"""Counter class imbalance: inverse-frequency loss weights and per-sample weights for a WeightedRandomSampler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from monai_das.utils.class_indices import to_class_indices

__all__ = ["class_weights", "balanced_sampler_weights"]

logger = logging.getLogger(__name__)

LabelsLike = Union[Sequence, np.ndarray, torch.Tensor]


def _class_indices(labels: LabelsLike, num_classes: int | None = None) -> np.ndarray:
    """Labels (class indices ``(N,)``/``(N, 1)`` or one-hot ``(N, C)``) as an int64 ``(N,)`` array, checked."""
    try:
        arr = to_class_indices(labels, name="labels").numpy()
    except (TypeError, RuntimeError) as e:  # not numbers, or rows of different lengths
        raise TypeError(f"labels must be a sequence of class indices or one-hot rows, got {labels!r}.") from e
    if arr.size == 0:
        raise ValueError("labels must not be empty.")
    if arr.min() < 0 or (num_classes is not None and arr.max() >= num_classes):
        upper = "" if num_classes is None else f", {num_classes}"
        raise ValueError(f"labels must lie in [0{upper}), got min {arr.min()} and max {arr.max()}.")
    return arr


def class_weights(labels: LabelsLike, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights for a weighted loss, e.g. ``torch.nn.CrossEntropyLoss(weight=...)``.

    ``w_c = (1 / n_c) / mean_c'(1 / n_c')`` over the classes present in ``labels``: rarer classes weigh more, in
    inverse proportion to their count, and the mean weight over the present classes is 1 (so the loss keeps its usual
    scale). A class absent from ``labels`` gets weight 0 (it never appears as a target in that data, and an infinite
    weight would poison the loss); a warning is logged.

    Example: labels ``[0, 0, 0, 1]`` give ``1/n = [1/3, 1]``, mean ``2/3``, weights ``[0.5, 1.5]``.

    Args:
        labels: class indices ``(N,)`` (or ``(N, 1)``), or one-hot rows ``(N, num_classes)``; list, numpy or torch.
        num_classes: the number of classes C (>= 1).

    Returns:
        ``(C,)`` float32 tensor.

    Raises:
        ValueError: for empty labels, non-integer labels, labels outside ``[0, num_classes)`` or ``num_classes < 1``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    counts = np.bincount(_class_indices(labels, num_classes), minlength=num_classes).astype(np.float64)
    present = counts > 0
    if not present.all():
        logger.warning(f"class_weights: classes {np.flatnonzero(~present).tolist()} have no samples; weight 0.")
    inverse = np.zeros(num_classes)
    inverse[present] = 1.0 / counts[present]
    weights = inverse / inverse[present].mean()
    return torch.as_tensor(weights, dtype=torch.float32)


def balanced_sampler_weights(labels: LabelsLike, num_classes: int | None = None) -> torch.Tensor:
    """Per-sample weights that make every class equally likely under ``torch.utils.data.WeightedRandomSampler``.

    Sample ``i`` of class ``c`` gets ``1 / n_c``, so each class has total weight 1 and is drawn with probability
    ``1 / (number of present classes)``. Use it as
    ``WeightedRandomSampler(balanced_sampler_weights(labels), num_samples=len(labels), replacement=True)``.

    Args:
        labels: class indices ``(N,)`` (or ``(N, 1)``), or one-hot rows ``(N, C)``; list, numpy or torch.
        num_classes: optional C, only to check that the labels lie in ``[0, C)``.

    Returns:
        ``(N,)`` float64 tensor (the dtype ``WeightedRandomSampler`` uses).

    Raises:
        ValueError: for empty or non-integer labels, or labels outside ``[0, num_classes)``.
    """
    idx = _class_indices(labels, num_classes)
    counts = np.bincount(idx).astype(np.float64)
    return torch.as_tensor(1.0 / counts[idx], dtype=torch.float64)
