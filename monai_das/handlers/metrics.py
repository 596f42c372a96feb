"""Epoch-level classification metrics as ignite metrics, usable in MONAI workflows' ``key_val_metric``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_das.utils.class_indices import to_class_indices

sklearn_metrics, _has_sklearn = optional_import("sklearn.metrics")
idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
if TYPE_CHECKING:
    from ignite.metrics import EpochMetric
else:
    EpochMetric, _ = optional_import(
        "ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "EpochMetric", as_type="base"
    )

__all__ = ["BalancedAccuracy", "QuadraticWeightedKappa", "quadratic_weighted_kappa"]

PADDING = -1  # class index of the entries that make every process's share the same length before ignite gathers


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    return int(num_classes)


def _require_sklearn(user: str) -> None:
    if not _has_sklearn:
        raise RuntimeError(f"{user} needs scikit-learn; install it with `pip install scikit-learn`.")


def quadratic_weighted_kappa(y_true: Any, y_pred: Any, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights for ordinal classes ``0 .. num_classes - 1``: scikit-learn's
    ``cohen_kappa_score(weights="quadratic")`` with the labels fixed to ``range(num_classes)``, so that a class absent
    from both still counts in the distances (``0`` against ``3`` weighs 9 times ``0`` against ``1``).

    Args:
        y_true: ``(N,)`` true class indices.
        y_pred: ``(N,)`` predicted class indices.
        num_classes: number of classes (at least 2).

    Returns:
        1 for perfect agreement, 0 for chance, negative below chance; NaN when undefined (every sample in one class,
        predicted as that class).

    Raises:
        ValueError: for ``num_classes`` below 2, different lengths, or an index outside ``[0, num_classes)``.
        RuntimeError: when scikit-learn is not installed.
    """
    num_classes = _check_num_classes(num_classes)
    t, p = np.asarray(y_true, dtype=np.int64).reshape(-1), np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must hold the same number of samples, got {t.size} and {p.size}.")
    bad = [int(v) for v in np.concatenate([t, p]) if not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"class indices must be in [0, {num_classes}), got {bad[:5]}.")
    _require_sklearn("quadratic_weighted_kappa")
    return float(sklearn_metrics.cohen_kappa_score(t, p, weights="quadratic", labels=np.arange(num_classes)))


class _ClassIndexEpochMetric(EpochMetric):
    """ignite's ``EpochMetric`` over class indices: ``update`` turns ``(y_pred, y)`` in any of the forms of
    :func:`~monai_das.utils.class_indices.to_class_indices` into ``(B,)`` indices, and ``score`` sees the indices of
    the whole epoch, from every process.

    ignite gathers with one ``all_gather`` of equal-length tensors, but a validation ``DistributedSampler`` with
    ``even_divisible=False`` gives the processes shares of different lengths; ``compute`` therefore first pads each
    share to the longest with ``PADDING`` entries (through the public ``update``), which ``score`` never sees.
    """

    def __init__(self, output_transform: Callable, threshold: float, device: str | torch.device) -> None:
        self.threshold = float(threshold)
        super().__init__(self._score_valid, output_transform=output_transform, check_compute_fn=False, device=device)

    def reset(self) -> None:
        super().reset()
        self.num_samples = 0

    def update(self, output: Sequence[Any]) -> None:
        """Add one batch ``(y_pred, y)``."""
        if not isinstance(output, Sequence) or len(output) != 2:
            raise TypeError(
                f"{type(self).__name__} expects (y_pred, y) from output_transform, got {type(output).__name__}."
            )
        pred = to_class_indices(output[0], threshold=self.threshold, name="y_pred")
        target = to_class_indices(output[1], name="y")
        if pred.shape[0] != target.shape[0]:
            raise ValueError(
                f"y_pred and y must hold the same number of samples, got {pred.shape[0]} and {target.shape[0]}."
            )
        super().update((pred, target))
        self.num_samples += pred.shape[0]

    def compute(self) -> float:
        longest = int(idist.all_reduce(self.num_samples, op="MAX")) if idist.get_world_size() > 1 else 0
        if longest > self.num_samples:
            padding = torch.full((longest - self.num_samples,), PADDING, dtype=torch.long)
            super().update((padding, padding))
            self.num_samples = longest
        return super().compute()

    def _score_valid(self, preds: torch.Tensor, targets: torch.Tensor) -> float:
        keep = targets != PADDING
        return self.score(targets[keep].cpu().numpy(), preds[keep].cpu().numpy())

    def score(self, targets: np.ndarray, preds: np.ndarray) -> float:
        """The metric of the epoch from ``(N,)`` true and predicted class indices."""
        raise NotImplementedError


class BalancedAccuracy(_ClassIndexEpochMetric):
    """Balanced accuracy over an epoch: the mean of the per-class recalls (sklearn's ``balanced_accuracy_score``).

    Unlike plain accuracy it is not inflated by a majority class: on 90 negatives and 10 positives, predicting
    "negative" always scores accuracy 0.9 but balanced accuracy 0.5. Predictions and labels are accumulated over the
    epoch (gathered from every process in distributed runs) and scored once at the end.

    Use it as MONAI's :py:class:`monai.handlers.ROCAUC` is used::

        evaluator = SupervisedEvaluator(
            ...,
            key_val_metric={"val_auc": ROCAUC(output_transform=from_engine(["pred", "label"]))},
            additional_metrics={"val_bacc": BalancedAccuracy(output_transform=from_engine(["pred", "label"]))},
        )

    Args:
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``. ``y_pred``: ``(B, C)`` probabilities or
            logits (the argmax is the predicted class), or ``(B,)``/``(B, 1)`` binary scores compared with
            ``threshold``. ``y``: ``(B,)``/``(B, 1)`` class indices or ``(B, C)`` one-hot rows. Lists of
            channel-first tensors (decollated batches) work too.
        threshold: decision threshold for single-column predictions: 0.5 for probabilities, 0.0 for logits.
        adjusted: chance-adjusted score (sklearn's ``adjusted=True``): 0 for chance level, 1 for perfect.
        device: device of the metric's state (ignite's ``device``).

    Raises:
        RuntimeError: at ``compute`` when scikit-learn is not installed.
        ignite.exceptions.NotComputableError: at ``compute`` when no sample was seen.
    """

    def __init__(
        self,
        output_transform: Callable = lambda x: x,
        threshold: float = 0.5,
        adjusted: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        self.adjusted = bool(adjusted)
        super().__init__(output_transform=output_transform, threshold=threshold, device=device)

    def score(self, targets: np.ndarray, preds: np.ndarray) -> float:
        _require_sklearn("BalancedAccuracy")
        return float(sklearn_metrics.balanced_accuracy_score(targets, preds, adjusted=self.adjusted))


class QuadraticWeightedKappa(_ClassIndexEpochMetric):
    """Quadratic-weighted Cohen's kappa over an epoch (:func:`quadratic_weighted_kappa`), the agreement measure for
    ordinal classes such as a severity score: a prediction two grades off costs four times one grade off.

    Used like :class:`BalancedAccuracy` (``output_transform`` gives ``(y_pred, y)``: ``(B, C)`` probabilities or
    logits, ``(B,)`` / ``(B, 1)`` class indices or one-hot rows). For two classes it is Cohen's plain kappa.

    Args:
        num_classes: number of ordered classes.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``.
        threshold: decision threshold for single-column binary predictions.
        device: device of the metric's state.

    Raises:
        ValueError: at construction for ``num_classes`` below 2; at ``compute`` for a class index outside
            ``[0, num_classes)``.
        RuntimeError: at ``compute`` when scikit-learn is not installed.
        ignite.exceptions.NotComputableError: at ``compute`` when no sample was seen.
    """

    def __init__(
        self,
        num_classes: int,
        output_transform: Callable = lambda x: x,
        threshold: float = 0.5,
        device: str | torch.device = "cpu",
    ) -> None:
        self.num_classes = _check_num_classes(num_classes)
        super().__init__(output_transform=output_transform, threshold=threshold, device=device)

    def score(self, targets: np.ndarray, preds: np.ndarray) -> float:
        return quadratic_weighted_kappa(targets, preds, self.num_classes)
