"""What a model was trained on, in a few numbers, and a check that flags inputs far outside it.

The statistics of one input, in the units the training data came in (``value_range``, e.g. ``[0, 255]`` for the
8-bit MedMNIST, video and PNG training sets):

- ``outside_fraction``: the fraction of voxels outside ``value_range``;
- ``extreme_fraction``: the fraction at either end of it (within 0.5 % of its width): 1.0 for a binary mask;
- ``foreground_fraction``: the fraction above its middle.

A bundle stores the range of each statistic over its training volumes (:func:`training_statistics`);
:class:`DomainCheckd` compares an input with them and says, in words, which statistic is out and by how much.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["STATISTICS", "input_statistics", "training_statistics", "domain_warning", "DomainCheckd"]

#: the statistics compared, each a fraction in [0, 1]
STATISTICS = ("outside_fraction", "extreme_fraction", "foreground_fraction")
_EDGE = 0.005


def input_statistics(image: Any, value_range: Sequence[float]) -> dict[str, float]:
    """The statistics of one input (any shape) against ``value_range = [low, high]`` (see the module docstring)."""
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float().reshape(-1)
    low, high = float(value_range[0]), float(value_range[1])
    edge = _EDGE * (high - low)
    return {
        "outside_fraction": float(((x < low) | (x > high)).float().mean()),
        "extreme_fraction": float(((x <= low + edge) | (x >= high - edge)).float().mean()),
        "foreground_fraction": float((x > (low + high) / 2).float().mean()),
    }


def training_statistics(volumes: Any, value_range: Sequence[float] = (0, 255)) -> dict[str, Any]:
    """The range ``[min, max]`` of each statistic over training volumes ``(N, ...)``, rounded to 4 decimals, with
    ``value_range`` and the number of volumes: what a bundle's ``training_statistics`` holds."""
    per_volume = [input_statistics(v, value_range) for v in volumes]
    out: dict[str, Any] = {"value_range": [float(value_range[0]), float(value_range[1])], "volumes": len(per_volume)}
    for name in STATISTICS:
        values = [s[name] for s in per_volume]
        out[name] = [round(float(min(values)), 4), round(float(max(values)), 4)]
    return out


def domain_warning(image: Any, statistics: Mapping[str, Any], margin: float = 0.05) -> str:
    """``""`` when every statistic of ``image`` lies within the training range widened by ``margin``, else a sentence
    naming each statistic that does not, its value and the training range.

    Raises:
        ValueError: when ``statistics`` has no ``value_range``.
    """
    if "value_range" not in statistics:
        raise ValueError(f"training statistics need a value_range, got {sorted(statistics)}.")
    stats = input_statistics(image, statistics["value_range"])
    found = []
    for name in STATISTICS:
        low, high = statistics.get(name, (0.0, 0.0) if name == "outside_fraction" else (0.0, 1.0))
        if not low - margin <= stats[name] <= high + margin:
            found.append(f"{name} {stats[name]:.3f} (training: {low:g}-{high:g})")
    if not found:
        return ""
    return ("input unlike the training data (values in " + "-".join(f"{v:g}" for v in statistics["value_range"])
            + "): " + ", ".join(found))


class DomainCheckd(MapTransform):
    """Flag an input far outside the training data: writes ``f"{key}_domain_warning"`` (``""`` when it looks like
    the training data) and raises a ``UserWarning`` with the same text, after the input's name (its ``name_key``
    item, else its image's ``filename_or_obj``). Run it on the frames as read, before any intensity scaling.

    Args:
        keys: the image key(s).
        statistics: the bundle's training statistics (:func:`training_statistics`); at least ``value_range``.
        margin: how far (a fraction) a statistic may lie outside its training range.
        name_key: key of the input's name, for the warning.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    def __init__(self, keys: KeysCollection, statistics: Mapping[str, Any], margin: float = 0.05,
                 name_key: str = "id", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if "value_range" not in statistics:
            raise ValueError(f"statistics need a value_range, got {sorted(statistics)}.")
        self.statistics = dict(statistics)
        self.margin = float(margin)
        self.name_key = name_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            text = domain_warning(d[key], self.statistics, self.margin)
            d[f"{key}_domain_warning"] = text
            if text:
                name = d.get(self.name_key) or (getattr(d[key], "meta", None) or {}).get("filename_or_obj", key)
                warnings.warn(f"{name}: {text}", stacklevel=2)
        return d
