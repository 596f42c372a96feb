"""The dataset of a bundle's batch inference: an input that cannot be read or prepared becomes an error item, so one
bad file in a folder gives one error row instead of stopping the run (as ``monai-das predict`` does)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import Dataset
from monai.transforms import apply_transform

__all__ = ["InferenceDataset", "error_message"]

logger = logging.getLogger(__name__)


def error_message(error: BaseException) -> str:
    """The innermost cause of ``error`` (MONAI's ``Compose`` wraps a transform's error in a ``RuntimeError`` that
    names only the transform) as ``"<type>: <message>"``."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


class InferenceDataset(Dataset):
    """A MONAI ``Dataset`` over an inference datalist (:func:`monai_das.data.inference_datalist`) whose failing items
    become error items.

    An item whose datalist entry carries an ``error`` (a file that was listed but cannot be used), or whose
    ``transform`` raises (e.g. a 4-D NIfTI, a damaged video), is returned as ``{id_key: its id, "error": message,
    image_key: zeros (C, T, H, W), f"{image_key}_frame_mask": all True (T,)}``: the network runs on the zeros and
    :class:`monai_das.handlers.PredictionWriter` (``error_key="error"``) writes the row as ``status=error`` with the
    message and no prediction. The message is logged with the input's id. Other items carry ``"error": ""``.

    Args:
        data: the datalist, ``[{image_key: source, id_key: name}, ...]``.
        transform: the preprocessing of one item.
        image_shape: ``(C, T, H, W)`` of the network's input (the shape of the placeholder).
        image_key: key of the image.
        id_key: key of the input's name.
    """

    def __init__(self, data: Sequence[dict], transform: Callable, image_shape: Sequence[int], image_key: str = "image",
                 id_key: str = "id") -> None:
        super().__init__(data=data, transform=transform)
        if len(image_shape) != 4:
            raise ValueError(f"image_shape must be (C, T, H, W), got {tuple(image_shape)}.")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.image_key, self.id_key = image_key, id_key

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, int):
            return super().__getitem__(index)
        entry = self.data[index]
        message = entry.get("error") or ""
        if not message:
            try:
                return {**apply_transform(self.transform, {k: v for k, v in entry.items() if k != "error"}),
                        "error": ""}
            except Exception as e:  # one bad input must not stop the others: it becomes an error row
                message = error_message(e)
        logger.error("%s: %s", entry.get(self.id_key, index), message)
        return {self.id_key: entry.get(self.id_key, str(index)), "error": message,
                self.image_key: torch.zeros(self.image_shape),
                f"{self.image_key}_frame_mask": torch.ones(self.image_shape[1], dtype=torch.bool)}
