"""Epoch-level classification metrics as ignite metrics, usable in MONAI workflows' ``key_val_metric``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

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

__all__ = ["BalancedAccuracy", "to_class_indices"]


def to_class_indices(x: Any, threshold: float | None = None, name: str = "y") -> torch.Tensor:
    """Class indices ``(B,)`` from a batch of predictions or labels.

    - ``(B, C)`` with ``C > 1`` (one-hot labels, probabilities or logits): ``argmax`` over ``C``;
    - ``(B,)``, ``(B, 1)`` or a 0-d tensor: with ``threshold`` ``None`` the values are taken as class indices,
      otherwise as binary scores, class ``1`` where ``value > threshold``;
    - a list/tuple of channel-first tensors or numbers (a decollated batch) is stacked first.

    Raises:
        ValueError: for more than two dimensions after stacking, or non-integer values read as indices.
    """
    if isinstance(x, (list, tuple)):
        x = torch.stack([torch.as_tensor(v).reshape(-1) for v in x]) if len(x) else torch.zeros(0, dtype=torch.long)
    x = torch.as_tensor(x).detach().cpu()
    if x.ndim == 0:
        x = x.reshape(1)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        return x.argmax(dim=1).long()
    if x.ndim != 1:
        raise ValueError(f"{name} must be (B,), (B, 1) or (B, C), got shape {tuple(x.shape)}.")
    if threshold is not None:
        return (x.float() > threshold).long()
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise ValueError(f"{name} read as class indices must hold whole numbers, got {x[:5].tolist()}.")
    return x.long()


class BalancedAccuracy(Metric):
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
        self.threshold = float(threshold)
        self.adjusted = bool(adjusted)
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
            raise TypeError(f"BalancedAccuracy expects (y_pred, y) from output_transform, got {type(output).__name__}.")
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
        if idist.get_world_size() <= 1:
            return values
        sizes = idist.all_gather(torch.tensor([values.numel()], device=idist.device()))
        longest = int(sizes.max())
        padded = torch.full((longest,), -1, dtype=torch.long, device=idist.device())
        padded[: values.numel()] = values.to(idist.device())
        gathered = idist.all_gather(padded).reshape(-1, longest).cpu()
        return torch.cat([row[: int(n)] for row, n in zip(gathered, sizes.cpu())])

    def compute(self) -> float:
        if not _has_sklearn:
            raise RuntimeError("BalancedAccuracy needs scikit-learn; install it with `pip install scikit-learn`.")
        if not self._preds:
            raise NotComputableError("BalancedAccuracy must have at least one example before it can be computed.")
        preds = self._gather(torch.cat(self._preds))
        targets = self._gather(torch.cat(self._targets))
        return float(balanced_accuracy_score(targets.numpy(), preds.numpy(), adjusted=self.adjusted))
