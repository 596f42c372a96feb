"""Class labels and predictions in any of their usual forms, as one ``(B,)`` tensor of class indices."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["to_class_indices"]


def to_class_indices(x: Any, threshold: float | None = None, name: str = "y") -> torch.Tensor:
    """Class indices ``(B,)`` from a batch of predictions or labels.

    - ``(B, C)`` with ``C > 1`` (one-hot labels, probabilities or logits): ``argmax`` over ``C``;
    - ``(B,)``, ``(B, 1)`` or a 0-d tensor: with ``threshold`` ``None`` the values are taken as class indices,
      otherwise as binary scores, class ``1`` where ``value > threshold``;
    - a list/tuple of channel-first tensors or numbers (a decollated batch) is stacked first.

    Raises:
        ValueError: for more than two dimensions after stacking, or non-integer (or non-finite) values read as
            indices.
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
    if x.is_floating_point() and not (torch.isfinite(x).all() and torch.equal(x, x.round())):
        raise ValueError(f"{name} read as class indices must hold whole numbers, got {x[:5].tolist()}.")
    return x.long()
