"""Epoch-level classification metrics as ignite metrics, usable in MONAI workflows' ``key_val_metric``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import IgniteInfo, evenly_divisible_all_gather, min_version, optional_import

from monai_das.utils.class_indices import to_class_indices

balanced_accuracy_score, _has_sklearn = optional_import("sklearn.metrics", name="balanced_accuracy_score")
idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
NotComputableError, _ = optional_import(
    "ignite.exceptions", IgniteInfo.OPT_IMPORT_VERSION, min_version, "NotComputableError"
)
if TYPE_CHECKING:
    from ignite.metrics import Metric
    from ignite.metrics.metric import reinit__is_reduced
else:
    Metric, _ = optional_import("ignite.metrics", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Metric", as_type="base")
    reinit__is_reduced, _ = optional_import(
        "ignite.metrics.metric", IgniteInfo.OPT_IMPORT_VERSION, min_version, "reinit__is_reduced", as_type="decorator"
    )

__all__ = ["BalancedAccuracy", "QuadraticWeightedKappa", "quadratic_weighted_kappa"]


def quadratic_weighted_kappa(y_true: Any, y_pred: Any, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights, for ordinal classes ``0 .. num_classes - 1``.

    ``kappa = 1 - sum(W * O) / sum(W * E)`` with ``O`` the confusion matrix (rows: true class), ``E`` the outer
    product of its row and column sums divided by the number of samples (the counts expected by chance), and
    ``W[i, j] = (i - j)^2 / (num_classes - 1)^2``: 1 for perfect agreement, 0 for chance, negative below chance;
    scikit-learn's ``cohen_kappa_score(..., weights="quadratic", labels=range(num_classes))``. A class absent from
    both still counts in the distances, so ``0`` against ``3`` weighs 9 times ``0`` against ``1``.

    Args:
        y_true: ``(N,)`` true class indices.
        y_pred: ``(N,)`` predicted class indices.
        num_classes: number of classes (at least 2).

    Returns:
        the kappa, or NaN when it is undefined (no sample, or every sample in one class, predicted as that class).

    Raises:
        ValueError: for ``num_classes`` below 2, different lengths, or an index outside ``[0, num_classes)``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    t, p = np.asarray(y_true, dtype=np.int64).reshape(-1), np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must hold the same number of samples, got {t.size} and {p.size}.")
    bad = [int(v) for v in np.concatenate([t, p]) if not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"class indices must be in [0, {num_classes}), got {bad[:5]}.")
    observed = np.zeros((num_classes, num_classes))
    np.add.at(observed, (t, p), 1.0)
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(t.size, 1)
    idx = np.arange(num_classes)
    weights = (idx[:, None] - idx[None, :]) ** 2 / (num_classes - 1) ** 2
    chance = float((weights * expected).sum())
    return float("nan") if chance == 0.0 else 1.0 - float((weights * observed).sum()) / chance


class _EpochClassIndexMetric(Metric):
    """Accumulates predicted and true class indices over an epoch (gathered from every process in distributed
    runs) and scores them once at the end with :meth:`score`."""

    def __init__(self, output_transform: Callable, threshold: float, device: str | torch.device) -> None:
        self.threshold = float(threshold)
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._preds = []
        self._targets = []

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        """Add one batch ``(y_pred, y)``."""
        if not isinstance(output, Sequence) or len(output) != 2:
            raise TypeError(
                f"{type(self).__name__} expects (y_pred, y) from output_transform, got {type(output).__name__}."
            )
        y_pred, y = output
        pred = to_class_indices(y_pred, threshold=self.threshold, name="y_pred")
        target = to_class_indices(y, name="y")
        if pred.shape[0] != target.shape[0]:
            raise ValueError(
                f"y_pred and y must hold the same number of samples, got {pred.shape[0]} and {target.shape[0]}."
            )
        self._preds.append(pred)
        self._targets.append(target)

    @staticmethod
    def _gather(values: torch.Tensor) -> torch.Tensor:
        """Concatenate ``values`` from every process (they may hold different numbers of samples)."""
        return evenly_divisible_all_gather(values.to(idist.device()), concat=True).cpu()

    def score(self, targets: np.ndarray, preds: np.ndarray) -> float:
        raise NotImplementedError

    def compute(self) -> float:
        if not self._preds:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")
        preds = self._gather(torch.cat(self._preds))
        targets = self._gather(torch.cat(self._targets))
        return self.score(targets.numpy(), preds.numpy())


class BalancedAccuracy(_EpochClassIndexMetric):
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
        if not _has_sklearn:
            raise RuntimeError("BalancedAccuracy needs scikit-learn; install it with `pip install scikit-learn`.")
        return float(balanced_accuracy_score(targets, preds, adjusted=self.adjusted))


class QuadraticWeightedKappa(_EpochClassIndexMetric):
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
        ValueError: at ``compute`` for a class index outside ``[0, num_classes)``.
        ignite.exceptions.NotComputableError: at ``compute`` when no sample was seen.
    """

    def __init__(
        self,
        num_classes: int,
        output_transform: Callable = lambda x: x,
        threshold: float = 0.5,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        self.num_classes = int(num_classes)
        super().__init__(output_transform=output_transform, threshold=threshold, device=device)

    def score(self, targets: np.ndarray, preds: np.ndarray) -> float:
        return quadratic_weighted_kappa(targets, preds, self.num_classes)
