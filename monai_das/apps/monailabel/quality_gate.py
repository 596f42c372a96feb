"""Whether a freshly trained checkpoint may replace the served one: only when it scores better on the run's
validation images.

Without this, a one-epoch training whose only validation AUC was 0.0 was published and served by the next request.
Both checkpoints are scored the same way, by the bundle's inference path (:class:`~monai_das.apps.BundlePredictor`,
what ``/infer`` runs) on the same validation images, with the macro one-vs-rest ROC AUC of their class probabilities.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from monai.networks.utils import one_hot

from monai_das.apps.bundle_predictor import BundlePredictor

__all__ = ["validation_auc", "gate"]

logger = logging.getLogger(__name__)


def validation_auc(
    bundle: str | os.PathLike,
    ckpt: str | os.PathLike,
    items: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, Any] | None = None,
) -> float:
    """Macro ROC AUC of ``ckpt``'s class probabilities on ``items`` (``{"image": path, "label": int}``); NaN when
    the items hold a single class."""
    predictor = BundlePredictor(bundle, ckpt=ckpt, overrides=overrides)
    probs = torch.as_tensor(np.stack([predictor(str(item["image"])).probabilities for item in items]))
    labels = torch.as_tensor([int(item["label"]) for item in items]).reshape(-1, 1)
    if labels.unique().numel() < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_roc_auc(probs, one_hot(labels, num_classes=probs.shape[1], dim=1)))


def gate(
    bundle: str | os.PathLike,
    candidate: str | os.PathLike,
    current: str | os.PathLike | None,
    items: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``candidate`` and the served ``current`` checkpoint (``None``: none is served) on ``items``.

    Returns:
        ``{"publish": bool, "metric": "val_auc", "candidate": float | None, "current": float | None, "reason": str}``:
        publish when no model is served, or when the candidate's AUC is finite and above the current one's (a tie
        keeps the current model).
    """
    new = validation_auc(bundle, candidate, items, overrides)
    old = validation_auc(bundle, current, items, overrides) if current is not None and Path(current).is_file() else None
    finite = lambda v: v is not None and math.isfinite(v)  # noqa: E731
    if old is None:
        publish, reason = True, "no model was served"
    elif not finite(new):
        publish, reason = False, "the new model's validation AUC is undefined"
    else:
        publish = not finite(old) or new > old
        reason = (f"validation AUC {new:.4f} > {old:.4f} of the served model" if publish
                  else f"validation AUC {new:.4f} does not beat {old:.4f} of the served model")
    logger.info("quality gate on %d validation image(s): %s -> %s", len(items), reason,
                "publish" if publish else "keep the served model")
    return {"publish": publish, "metric": "val_auc", "candidate": new if finite(new) else None,
            "current": old if finite(old) else None, "reason": reason}
