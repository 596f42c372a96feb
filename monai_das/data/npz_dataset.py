"""Frame-sequence datasets stored as one npz file in the MedMNIST layout."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import apply_transform
from monai.utils import look_up_option
from torch.utils.data import Dataset

from monai_das.data.indexing import resolve_index

__all__ = ["NPZ_SPLITS", "file_md5", "NpzSequenceDataset"]


def _option(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``look_up_option`` whose error also names the argument."""
    try:
        return look_up_option(value, choices)
    except ValueError as e:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.") from e

#: Split names of a MedMNIST-style npz file.
NPZ_SPLITS: tuple[str, ...] = ("train", "val", "test")

_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def file_md5(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """MD5 hex digest of a file, computed once per file version per process.

    The result is cached under ``(real path, size, modification time)``, so a replaced file is hashed again.

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        the 32-character hex digest.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cannot compute the md5 of {path}: no such file.")
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _MD5_CACHE:
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk_size), b""):
                digest.update(block)
        _MD5_CACHE[key] = digest.hexdigest()
    return _MD5_CACHE[key]


class NpzSequenceDataset(Dataset):
    """One split of a MedMNIST-style npz file of volumes / frame sequences.

    The file holds ``{split}_images`` and ``{split}_labels`` for ``split`` in ``train``, ``val``,
    ``test``: images uint8 ``(N, T, H, W)`` (values 0-255) or float ``(N, T, H, W)`` in [0, 1], or
    either with a channel axis ``(N, C, T, H, W)``; labels integer ``(N,)`` or ``(N, 1)``. Any other
    ``{split}_<name>`` array whose first dimension is N (for example ``evidence_start`` in files from
    :func:`monai_das.data.save_synthetic_npz`) is returned under ``<name>`` in each item.

    Items are dicts ``{"image": float32 tensor (C, T, H, W) in 8-bit units (0-255: uint8 as it is, float times 255),
    "label": int64 0-d tensor, ...}``, passed through ``transform`` when given. T is the first
    spatial axis (the depth of a MedMNIST volume).

    Args:
        path: the npz file.
        split: ``"train"``, ``"val"`` or ``"test"``.
        transform: callable applied to each item dict (e.g. a MONAI ``Compose``).
        expected_md5: when given, the file's md5 must match.
        num_classes: number of classes; default ``len(class_names)`` if given, else ``max(label) + 1``.
        class_names: optional class names in label order.

    Attributes:
        labels: int64 numpy array ``(N,)``.
        num_classes: number of classes.
        class_names: list of class names (``["0", "1", ...]`` when not given).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for a wrong md5, an unknown split, missing keys, or arrays of the wrong
            shape/dtype/range (the message names the file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        expected_md5: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.split = _option("split", split, NPZ_SPLITS)
        self.transform = transform
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"npz file {self.path} not found.")
        if expected_md5 is not None:
            actual = file_md5(self.path)
            if actual.lower() != str(expected_md5).lower():
                raise ValueError(
                    f"md5 mismatch for {self.path}: expected {expected_md5}, got {actual}. The file is corrupt, "
                    "incomplete or a different version; replace it (or pass check_md5=False for files you made)."
                )
        self.images, self.labels, self.extras = self._read(self.path, self.split)
        if class_names is not None:
            self.class_names = [str(c) for c in class_names]
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None else int(self.labels.max(initial=-1)) + 1
        self.num_classes = int(num_classes)
        if class_names is None:
            self.class_names = [str(i) for i in range(self.num_classes)]
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(
                f"{self.path}: {self.split}_labels must lie in [0, {self.num_classes - 1}], "
                f"got values in [{self.labels.min()}, {self.labels.max()}]."
            )

    @staticmethod
    def _read(path: str, split: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        try:
            npz = np.load(path, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"cannot read {path} as an npz file: {e}") from e
        with npz:
            files = set(npz.files)
            image_key, label_key = f"{split}_images", f"{split}_labels"
            missing = [k for k in (image_key, label_key) if k not in files]
            if missing:
                raise ValueError(
                    f"{path} is missing the key(s) {missing}; found {sorted(files)}. Expected the MedMNIST layout "
                    f"with {', '.join(f'{s}_images, {s}_labels' for s in NPZ_SPLITS)}."
                )
            try:  # the members are decompressed here: a damaged file fails now, with zlib's or zipfile's error
                images = npz[image_key]
                labels = npz[label_key]
                extras = {
                    k[len(split) + 1 :]: npz[k]
                    for k in sorted(files - {image_key, label_key})
                    if k.startswith(f"{split}_")
                }
            except Exception as e:
                raise ValueError(f"cannot read the '{split}' arrays of {path}: the file is damaged ({type(e).__name__}: "
                                 f"{e}). Check it (MedMNIST: check_md5 True) or fetch it again.") from e
            n = images.shape[0] if images.ndim else -1
        if images.ndim not in (4, 5):
            raise ValueError(
                f"{path}: {image_key} must have shape (N, T, H, W) or (N, C, T, H, W), got {images.shape}."
            )
        if images.dtype != np.uint8:
            if not np.issubdtype(images.dtype, np.floating):
                raise ValueError(f"{path}: {image_key} must be uint8 (0-255) or float in [0, 1], got {images.dtype}.")
            if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
                raise ValueError(f"{path}: float {image_key} must be finite and lie in [0, 1].")
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(
                f"{path}: {label_key} must have shape (N,) or (N, 1) with N = {n} images, got {labels.shape} "
                "(multi-label files are not supported)."
            )
        if not np.issubdtype(labels.dtype, np.integer):
            if not (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)):
                raise ValueError(f"{path}: {label_key} must hold integer class indices, got dtype {labels.dtype}.")
        extras = {k: v for k, v in extras.items() if v.ndim >= 1 and v.shape[0] == n}
        return images, labels.astype(np.int64), extras

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _image(self, i: int) -> torch.Tensor:
        arr = self.images[i]
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype == np.uint8:
            return torch.from_numpy(arr.astype(np.float32))
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32) * np.float32(255.0))

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = resolve_index(index, len(self), f"{len(self)} samples in {self.path} ({self.split})")
        item: dict[str, Any] = {"image": self._image(i), "label": torch.tensor(self.labels[i], dtype=torch.int64)}
        for k, v in self.extras.items():
            item[k] = torch.as_tensor(v[i])
        return apply_transform(self.transform, item) if self.transform is not None else item
