"""Video classification datasets described by a CSV manifest, with patient-level splits.

A manifest is a CSV file with a header row and one video per row: a path column (relative to the
manifest's folder, or absolute), optionally a label column (integer class index) and a group column
(patient / subject id: every video of a group lands in the same split).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import apply_transform
from torch.utils.data import Dataset

from monai_das.data.group_splits import _check_fractions, _fold_splits, split_by_group
from monai_das.data.indexing import resolve_index
from monai_das.data.manifest import _ROW, _parse_label, _resolve, _where, read_manifest, validate_manifest
from monai_das.data.video_cache import VideoDecodeCache

__all__ = ["VideoManifestDataset"]


class VideoManifestDataset(Dataset):
    """Videos listed in a CSV manifest, decoded with PyAV to ``(C, T, H, W)`` float32 8-bit values (0-255).

    Decoding uses :class:`monai_das.transforms.LoadVideo` (grayscale gives C = 1). Frames keep their
    native size and count: resize to ``(size, size)`` and fix the frame count in ``transform`` (e.g.
    MONAI ``Resized`` with ``spatial_size=(-1, size, size)`` and ``monai_das.transforms.UniformFrameSampled``).

    Items are dicts ``{"image": float32 tensor (C, T, H, W), "label": int64 0-d tensor (when
    label_key), "path": str, "row": int, "group": str (when group_key)}`` passed through ``transform``.

    Splits: with ``split`` given, the rows are divided by :func:`split_by_group` (groups never shared
    between splits) and only that split is kept; ``split`` is a name (``"train"``, ``"val"``, ``"test"``
    for three fractions; ``"train"``, ``"val"`` for two) or an index into ``fractions``.

    Cross-validation: with ``fold`` given, ``fractions`` is not used: the rows are divided into ``num_folds``
    patient-grouped folds by :func:`group_k_fold` (stratified by ``stratify_key``); ``"test"`` (index 2) is
    fold ``fold``, ``"val"`` (index 1) is fold ``(fold + 1) % num_folds`` and ``"train"`` (index 0) is every
    other fold. Over ``fold = 0 .. num_folds - 1`` every row is tested exactly once.

    Cache: with ``cache_dir``, each decoded video is stored once as ``<stem>-<key>.dascache.npy``
    (uint8, the exact values the decoder produced) where ``key`` hashes the file's real path, size,
    modification time and the decode options. Only files with that suffix are ever written, through a
    temporary file and an atomic rename, so user files in the folder are never overwritten.
    The cache holds full-size frames (about ``T * H * W`` bytes per grayscale video).

    Args:
        manifest: CSV file; paths are relative to its folder.
        split: ``None`` (all rows), a split name or an index into ``fractions``.
        path_key: column of the video paths.
        label_key: column of the integer labels, or ``None`` for unlabeled videos (inference).
        group_key: column of the group (patient) id used for splitting; ``None``: every row its own group.
        fractions: split fractions for :func:`split_by_group`.
        seed: split seed.
        stratify_key: column to stratify the split by (e.g. ``label_key``), or ``None``.
        transform: callable applied to each item dict.
        cache_dir: folder for decoded videos, or ``None`` to decode on every access.
        max_frames: ``LoadVideo`` option: at most this many frames, evenly spread over the video.
        frame_stride: ``LoadVideo`` option: keep every ``frame_stride``-th frame.
        grayscale: ``LoadVideo`` option: one luma channel (True) or RGB (False).
        class_names: names of the classes in label order (sets ``num_classes``).
        check_files: check at construction that every selected row's file exists and raise listing
            the bad rows (call :meth:`validate` or :func:`validate_manifest` for the full list).
        fold: ``None`` (split by ``fractions``) or the cross-validation fold in ``[0, num_folds)`` whose
            patients are the test split.
        num_folds: number of cross-validation folds (at least 3: a test, a validation and a training fold).

    Attributes:
        rows: the selected row dicts (``"_row"`` holds the manifest row number).
        labels: int64 numpy array ``(N,)`` of the selected rows' labels (``None`` without ``label_key``).
        num_classes: ``len(class_names)`` or ``max label + 1`` over the whole manifest (same for every split).
        class_names: list of class names.

    Raises:
        FileNotFoundError: for a missing manifest; for a missing video at ``__getitem__`` (naming the
            file and the manifest row) or at construction with ``check_files``.
        ValueError: for missing columns, bad labels (naming the row), an unknown split, bad fractions, a
            fold outside ``[0, num_folds)``.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        split: str | int | None = None,
        path_key: str = "path",
        label_key: str | None = "label",
        group_key: str | None = None,
        fractions: Sequence[float] = (0.7, 0.15, 0.15),
        seed: int = 0,
        stratify_key: str | None = None,
        transform: Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_frames: int | None = None,
        frame_stride: int = 1,
        grayscale: bool = True,
        class_names: Sequence[str] | None = None,
        check_files: bool = True,
        fold: int | None = None,
        num_folds: int = 5,
    ) -> None:
        self.manifest = os.fspath(manifest)
        self.path_key, self.label_key, self.group_key = path_key, label_key, group_key
        required = [path_key] + [k for k in (label_key, group_key, stratify_key) if k]
        all_rows = self._read_rows(required)
        for name, value, allow_none in (("max_frames", max_frames, True), ("frame_stride", frame_stride, False)):
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1{' or None' if allow_none else ''}, got {value!r}.")
        self.load_options = {
            "max_frames": None if max_frames is None else int(max_frames),
            "frame_stride": int(frame_stride),
            "grayscale": bool(grayscale),
        }
        all_labels = (
            [_parse_label(r.get(label_key), self.manifest, r[_ROW], label_key) for r in all_rows] if label_key else []
        )

        self.split: str | int | None = split
        rows = self._split_rows(all_rows, split, fractions, seed, group_key, stratify_key, fold, num_folds)
        self.rows = rows

        if label_key:
            self.labels: np.ndarray | None = np.asarray(
                [_parse_label(r.get(label_key), self.manifest, r[_ROW], label_key) for r in rows], dtype=np.int64
            )
            n_cls = len(class_names) if class_names is not None else max(all_labels) + 1
            if max(all_labels) >= n_cls:
                raise ValueError(
                    f"manifest {self.manifest} has label {max(all_labels)} but class_names lists only {n_cls} classes."
                )
        else:
            self.labels = None
            n_cls = len(class_names) if class_names is not None else 0
        self.num_classes = int(n_cls)
        self.class_names = (
            [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(self.num_classes)]
        )
        self.transform = transform
        self.videos = VideoDecodeCache(cache_dir, self.load_options)
        self.cache_dir = self.videos.cache_dir
        if check_files:
            self._check_files_exist(rows)

    def _split_rows(self, all_rows: list, split: str | int | None, fractions: Sequence[float], seed: int,
                    group_key: str | None, stratify_key: str | None, fold: int | None, num_folds: int) -> list:
        """The rows of ``split``: by ``fractions`` (grouped, stratified), or with ``fold`` of that cross-validation
        fold; every row for ``split=None``."""
        if fold is None:
            fr = _check_fractions(fractions)
            names = {3: ("train", "val", "test"), 2: ("train", "val")}.get(len(fr), ())
            count, what = len(fr), f"fractions {tuple(fr)}"
        else:
            names, count, what = ("train", "val", "test"), 3, f"fold {fold!r}"
        if split is None:
            return all_rows
        if isinstance(split, str):
            if split not in names:
                raise ValueError(
                    f"split must be None, one of {list(names)} or an index in [0, {count - 1}] for "
                    f"{what}, got {split!r}."
                )
            index = names.index(split)
        elif isinstance(split, (int, np.integer)) and not isinstance(split, bool) and 0 <= split < count:
            index = int(split)
        else:
            raise ValueError(
                f"split must be None, one of {list(names)} or an index in [0, {count - 1}], got {split!r}."
            )
        if fold is None:
            parts = split_by_group(all_rows, fr, seed=seed, group_key=group_key, stratify_key=stratify_key)
        else:
            parts = _fold_splits(all_rows, fold, num_folds, seed, group_key, stratify_key)
        return parts[index]

    def _check_files_exist(self, rows: list) -> None:
        """Raise ``FileNotFoundError`` listing the rows whose video file does not exist."""
        bad = [(r[_ROW], p) for r, p in ((r, self.path_of(r)) for r in rows) if not os.path.isfile(p)]
        if bad:
            listed = "; ".join(f"row {r}: {p}" for r, p in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise FileNotFoundError(
                f"{len(bad)} video(s) listed in {self.manifest} do not exist: {listed}{more}. "
                "Use validate_manifest() for the full list, or check_files=False to defer the error."
            )

    def __len__(self) -> int:
        return len(self.rows)

    def _read_rows(self, required: list[str]) -> list[dict[str, Any]]:
        """Every row of the manifest (subclasses add columns here, e.g. labels from another file)."""
        return read_manifest(self.manifest, required)

    def path_of(self, row: dict[str, Any]) -> str:
        """Resolved video path of a row (relative paths are taken from the manifest's folder)."""
        raw = row.get(self.path_key) or ""
        if not raw:
            raise ValueError(f"{_where(self.manifest, row[_ROW])}: empty {self.path_key!r} column.")
        return _resolve(self.manifest, raw)

    def validate(self, decode: bool = False) -> list[tuple[int, str, str]]:
        """List the bad rows among the selected ones: ``[(row, path, error), ...]`` (see :func:`validate_manifest`)."""
        opts = {k: v for k, v in self.load_options.items() if v is not None}
        return validate_manifest(self.manifest, self.path_key, self.label_key, decode=decode, rows=self.rows, **opts)

    def load(self, path: str) -> torch.Tensor:
        """Decoded video ``(C, T, H, W)`` float32, 8-bit values (0-255), from the cache when there is one."""
        return self.videos.load(path)

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = resolve_index(index, len(self), f"{len(self)} videos from {self.manifest}")
        row = self.rows[i]
        path = self.path_of(row)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video {path} listed in {_where(self.manifest, row[_ROW])} does not exist.")
        try:
            image = self.load(path)
        except ValueError as e:
            raise ValueError(f"{_where(self.manifest, row[_ROW])}: {e}") from e
        item: dict[str, Any] = {"image": image, "path": path, "row": int(row[_ROW])}
        if self.labels is not None:
            item["label"] = torch.tensor(self.labels[i], dtype=torch.int64)
        if self.group_key:
            item["group"] = str(row.get(self.group_key, ""))
        return apply_transform(self.transform, item) if self.transform is not None else item

