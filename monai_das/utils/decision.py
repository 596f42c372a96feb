"""The class a user reads: an operating threshold chosen on validation for binary tasks, argmax otherwise.

A network trained on imbalanced classes (or through a sampler that sees few frames) can rank cases well (AUC) while
its probabilities sit on one side of 0.5, so the class at 0.5 is wrong for most cases of one class. For a binary task
the bundles therefore choose the threshold on the validation split with the rule of :func:`choose_threshold` (the
best balanced accuracy, i.e. the largest Youden's J = sensitivity + specificity - 1), store it in the checkpoint's
network options under :data:`DECISION_THRESHOLD_KEY`, and every reader of the checkpoint decides with :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["DECISION_THRESHOLD_KEY", "choose_threshold", "decide"]

#: the network option (``network_config`` entry of a checkpoint) holding the positive-class threshold
DECISION_THRESHOLD_KEY = "decision_threshold"
#: decimals of the probabilities :func:`choose_threshold` compares
PRECISION = 6


def choose_threshold(positive_probabilities: Any, labels: Any) -> float:
    """The threshold on the positive-class probability with the best balanced accuracy on these cases.

    Candidates are 0.5 and the midpoints between consecutive distinct probabilities (to :data:`PRECISION` decimals,
    so that the float noise between two computations of one probability never becomes a rule); a case is called
    positive when its probability is above the threshold. Among equally good candidates the one closest to 0.5 wins, so the default
    stays unless the cases say otherwise. Maximising balanced accuracy ``(TPR + TNR) / 2`` is maximising Youden's J.

    Args:
        positive_probabilities: ``(N,)`` probabilities of class 1.
        labels: ``(N,)`` class indices in {0, 1}.

    Returns:
        the threshold, 0.5 when a class is missing from ``labels`` (no rule can be learned).
    """
    p = torch.as_tensor(positive_probabilities).detach().double().cpu().numpy().reshape(-1)
    y = torch.as_tensor(labels).detach().cpu().numpy().reshape(-1).astype(bool)
    if p.shape != y.shape:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} must have one value per case.")
    if y.all() or not y.any():
        return 0.5
    p = p.round(PRECISION)  # probabilities equal but for float rounding (1e-8 apart) are one value, never split
    values = np.unique(p)
    candidates = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2])
    positive = p[None, :] > candidates[:, None]  # (candidates, N)
    balanced = (positive[:, y].mean(axis=1) + (~positive[:, ~y]).mean(axis=1)) / 2
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def decide(probabilities: Any, network_options: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Predicted classes ``(N,)`` from class probabilities ``(N, C)``.

    Binary (``C == 2``) with a stored :data:`DECISION_THRESHOLD_KEY`: class 1 where its probability is above the
    threshold; otherwise (multi-class, or no stored threshold, e.g. an older checkpoint): the argmax.

    Args:
        probabilities: ``(N, C)`` softmax outputs (a tensor or an array).
        network_options: the checkpoint's network options (``split_checkpoint(state)[1]``, a ``NetworkConfig``'s
            ``values``), or ``None``.
    """
    prob = torch.as_tensor(probabilities).detach()
    if prob.ndim != 2:
        raise ValueError(f"probabilities must have shape (N, C), got {tuple(prob.shape)}.")
    threshold = (network_options or {}).get(DECISION_THRESHOLD_KEY)
    if prob.shape[1] == 2 and threshold is not None:
        return (prob[:, 1] > float(threshold)).long()
    return prob.argmax(dim=1)
