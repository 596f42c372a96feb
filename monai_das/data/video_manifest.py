"""Video classification datasets described by a CSV manifest, with patient-level splits.

A manifest is a CSV file with a header row and one video per row: a path column (relative to the
manifest's folder, or absolute), optionally a label column (integer class index) and a group column
(patient / subject id: every video of a group lands in the same split).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import apply_transform
from monai.utils import optional_import
from torch.utils.data import Dataset

from monai_das.data.indexing import resolve_index
from monai_das.utils.atomic_file import atomic_write

StratifiedGroupKFold, _ = optional_import("sklearn.model_selection", name="StratifiedGroupKFold")

__all__ = [
    "read_manifest",
    "split_by_group",
    "group_k_fold",
    "validate_manifest",
    "VideoManifestDataset",
]

_ROW = "_row"  # key holding the 1-based data row number (line number = row + 1, after the header)
_CACHE_VERSION = 1


def _where(manifest: str, row: int) -> str:
    return f"row {row} (line {row + 1}) of {manifest}"


def read_manifest(manifest: str | os.PathLike, required: Sequence[str] = ("path",)) -> list[dict[str, Any]]:
    """Read a CSV manifest into a list of row dicts.

    Each dict maps the header's column names to the cell strings and carries ``"_row"``: the 1-based
    data row number (the header is line 1, so row ``r`` is line ``r + 1``).

    Args:
        manifest: CSV file with a header row.
        required: columns that must be present.

    Returns:
        the rows in file order.

    Raises:
        FileNotFoundError: if the manifest does not exist.
        ValueError: if it is empty, lacks a required column, or has no data rows.
    """
    manifest = os.fspath(manifest)
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"manifest {manifest} not found.")
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        if not columns:
            raise ValueError(f"manifest {manifest} is empty: expected a header row with columns {list(required)}.")
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"manifest {manifest} has no column(s) {missing}; its columns are {columns}.")
        rows = []
        for i, rec in enumerate(reader, start=1):
            row = {k: (v.strip() if isinstance(v, str) else v) for k, v in rec.items() if k is not None}
            row[_ROW] = i
            rows.append(row)
    if not rows:
        raise ValueError(f"manifest {manifest} has a header but no data rows.")
    return rows


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise ValueError(f"fractions must be a sequence of numbers, got {fractions!r}.") from None
    if not fr or any(not np.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be non-negative numbers that sum to 1, got {fractions!r}.")
    return fr


def _assign(groups: list[tuple[str, int]], targets: np.ndarray, counts: np.ndarray) -> dict[str, int]:
    """Greedy: each group (in the given order) goes to the split furthest below its target row count."""
    out = {}
    for name, size in groups:
        j = int(np.argmax(targets - counts))
        out[name] = j
        counts[j] += size
    return out


def _groups(
    rows: list[dict[str, Any]], group_key: str | None, stratify_key: str | None
) -> tuple[list[str], dict[str, int], dict[str, list[str]]]:
    """The group id of every row, the row count of every group and (with ``stratify_key``) each group's values."""
    group_of: list[str] = []
    for i, row in enumerate(rows):
        if group_key is None:
            group_of.append(f"__row{i}")
            continue
        g = row.get(group_key)
        if g is None or str(g).strip() == "":
            raise ValueError(
                f"row {row.get(_ROW, i + 1)} has no value in the group column {group_key!r}; every row needs a "
                "group id (or pass group_key=None to split rows independently)."
            )
        group_of.append(str(g).strip())
    sizes: dict[str, int] = {}
    values: dict[str, list[str]] = {}
    for i, (row, g) in enumerate(zip(rows, group_of)):
        sizes[g] = sizes.get(g, 0) + 1
        if stratify_key is not None:
            v = row.get(stratify_key)
            if v is None or str(v).strip() == "":
                raise ValueError(f"row {row.get(_ROW, i + 1)} has no value in the stratify column {stratify_key!r}.")
            values.setdefault(g, []).append(str(v).strip())
    return group_of, sizes, values


def split_by_group(
    rows: Sequence[dict[str, Any]],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    group_key: str | None = "patient_id",
    stratify_key: str | None = None,
) -> list[list[dict[str, Any]]]:
    """Split rows so that no group (patient) appears in two splits; deterministic for a seed.

    Groups are ordered by name, shuffled with ``numpy.random.default_rng(seed)``, then each group is
    given to the split whose row count is furthest below ``fraction * number of rows``. With
    ``stratify_key`` the groups are split separately per stratum (a group's stratum is the most
    common value of ``stratify_key`` among its rows, ties broken by the smallest value), which keeps
    the label balance of every split close to the whole set's.

    Args:
        rows: row dicts (e.g. from :func:`read_manifest`).
        fractions: target fraction of rows per split; non-negative, summing to 1.
        seed: random seed of the group shuffle.
        group_key: column holding the group id; ``None`` makes every row its own group.
        stratify_key: optional column to stratify by (e.g. the label).

    Returns:
        one list of rows per fraction, each in the input order.

    Raises:
        ValueError: for bad fractions, or a row without a group id / stratify value (naming the row).
    """
    fr = _check_fractions(fractions)
    rows = list(rows)
    group_of, sizes, values = _groups(rows, group_key, stratify_key)
    names = sorted(sizes)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    strata: dict[str, list[str]] = {}
    for g in order:
        if stratify_key is None:
            key = ""
        else:
            vals, counts = np.unique(values[g], return_counts=True)
            key = str(vals[int(np.argmax(counts))])
        strata.setdefault(key, []).append(g)
    split_of: dict[str, int] = {}
    for key in sorted(strata):
        groups = [(g, sizes[g]) for g in strata[key]]
        total = sum(s for _, s in groups)
        split_of.update(_assign(groups, np.asarray(fr) * total, np.zeros(len(fr))))
    out: list[list[dict[str, Any]]] = [[] for _ in fr]
    for row, g in zip(rows, group_of):
        out[split_of[g]].append(row)
    return out


def group_k_fold(
    rows: Sequence[dict[str, Any]],
    num_folds: int = 5,
    seed: int = 0,
    group_key: str | None = "patient_id",
    stratify_key: str | None = None,
) -> list[list[dict[str, Any]]]:
    """Divide rows into ``num_folds`` folds so that no group (patient) is in two folds; deterministic for a seed.

    scikit-learn's ``StratifiedGroupKFold(num_folds, shuffle=True, random_state=seed)``: the groups, shuffled, go one
    by one to the fold that keeps every ``stratify_key`` value's share most even (the smallest fold first without
    ``stratify_key``). A group whose rows hold several values (a patient with videos of different labels) stays
    whole, so the folds are stratified only as far as the groups allow.

    Args:
        rows: row dicts (e.g. from :func:`read_manifest`).
        num_folds: number of folds, at least 2 and at most the number of groups.
        seed: random seed of the group shuffle.
        group_key: column holding the group id; ``None`` makes every row its own group.
        stratify_key: optional column to stratify by (e.g. the label).

    Returns:
        ``num_folds`` lists of rows, each in the input order.

    Raises:
        ValueError: for ``num_folds`` below 2 or above the number of groups, or a row without a group id /
            stratify value (naming the row).
    """
    rows = list(rows)
    group_of, sizes, _ = _groups(rows, group_key, stratify_key)
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or not 2 <= num_folds <= len(sizes):
        raise ValueError(f"num_folds must be an integer in [2, {len(sizes)}] (the number of groups), got {num_folds}.")
    strata = [str(r[stratify_key]).strip() for r in rows] if stratify_key is not None else [""] * len(rows)
    splitter = StratifiedGroupKFold(n_splits=int(num_folds), shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a value rarer than num_folds is expected with few patients
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        tests = [test for _, test in splitter.split(np.zeros(len(rows)), strata, group_of)]
    return [[rows[i] for i in sorted(test)] for test in tests]


def _resolve(manifest: str, path: str) -> str:
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(manifest)), path))


def _parse_label(value: Any, manifest: str, row: int, label_key: str) -> int:
    text = "" if value is None else str(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number) or number != int(number) or number < 0:
        raise ValueError(f"{_where(manifest, row)}: column {label_key!r} must be a class index >= 0, got {text!r}.")
    return int(number)


def validate_manifest(
    manifest: str | os.PathLike,
    path_key: str = "path",
    label_key: str | None = "label",
    decode: bool = False,
    rows: Sequence[dict[str, Any]] | None = None,
    **load_kwargs: Any,
) -> list[tuple[int, str, str]]:
    """List the bad rows of a manifest without raising.

    Checks that each row has a path, that the file exists, that the label (when ``label_key``) is a
    class index, and with ``decode=True`` that the video decodes (slow: reads every file).

    Args:
        manifest: CSV file.
        path_key: column of the video paths.
        label_key: column of the labels, or ``None``.
        decode: also decode every video with ``monai_das.transforms.LoadVideo``.
        rows: rows to check (default: all rows of the manifest).
        load_kwargs: ``max_frames`` / ``frame_stride`` / ``grayscale`` passed to ``LoadVideo`` when decoding.

    Returns:
        ``[(row, path, error), ...]`` with the 1-based data row number (line ``row + 1``), the resolved
        path and a message; empty when every row is fine.
    """
    manifest = os.fspath(manifest)
    required = [path_key] + ([label_key] if label_key else [])
    rows = read_manifest(manifest, required) if rows is None else rows
    loader = None
    bad: list[tuple[int, str, str]] = []
    for row in rows:
        r = int(row[_ROW])
        raw = row.get(path_key) or ""
        if not raw:
            bad.append((r, "", f"empty {path_key!r} column"))
            continue
        path = _resolve(manifest, raw)
        if label_key:
            try:
                _parse_label(row.get(label_key), manifest, r, label_key)
            except ValueError as e:
                bad.append((r, path, str(e)))
                continue
        if not os.path.isfile(path):
            bad.append((r, path, "file not found"))
            continue
        if decode:
            if loader is None:
                from monai_das.transforms import LoadVideo

                loader = LoadVideo(**load_kwargs)
            try:
                loader(path)
            except Exception as e:  # report every decoding problem, never raise
                bad.append((r, path, f"cannot decode: {e}"))
    return bad


def _fold_splits(
    rows: list[dict[str, Any]],
    fold: int,
    num_folds: int,
    seed: int,
    group_key: str | None,
    stratify_key: str | None,
) -> list[list[dict[str, Any]]]:
    """``[train, val, test]`` of cross-validation fold ``fold``: test fold ``fold``, val fold ``fold + 1``."""
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 3:
        raise ValueError(f"num_folds must be an integer >= 3 (test, validation and training folds), got {num_folds!r}.")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < num_folds:
        raise ValueError(f"fold must be an integer in [0, {num_folds - 1}] for num_folds={num_folds}, got {fold!r}.")
    folds = group_k_fold(rows, num_folds, seed=seed, group_key=group_key, stratify_key=stratify_key)
    test, val = folds[fold], folds[(fold + 1) % num_folds]
    held_out = {id(r) for r in test + val}
    return [[r for r in rows if id(r) not in held_out], val, test]


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

        if fold is None:
            fr = _check_fractions(fractions)
            names = {3: ("train", "val", "test"), 2: ("train", "val")}.get(len(fr), ())
            count, what = len(fr), f"fractions {tuple(fr)}"
        else:
            names, count, what = ("train", "val", "test"), 3, f"fold {fold!r}"
        if split is None:
            rows = all_rows
            self.split: str | int | None = None
        else:
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
            rows = parts[index]
            self.split = split
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
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        if self.cache_dir is not None:
            os.makedirs(self.cache_dir, exist_ok=True)
        self._loader: Any = None
        if check_files:
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

    def _cache_file(self, path: str) -> str:
        st = os.stat(path)
        key = json.dumps(
            [os.path.realpath(path), st.st_size, st.st_mtime_ns, self.load_options, _CACHE_VERSION], sort_keys=True
        )
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(path))[0]
        return os.path.join(str(self.cache_dir), f"{stem}-{digest}.dascache.npy")

    def _decode(self, path: str) -> torch.Tensor:
        if self._loader is None:
            from monai_das.transforms import LoadVideo  # lazy: keeps this module free of the transforms import

            self._loader = LoadVideo(**self.load_options)
        img = self._loader(path)
        if hasattr(img, "as_tensor"):
            img = img.as_tensor()
        return torch.as_tensor(img, dtype=torch.float32)

    def load(self, path: str) -> torch.Tensor:
        """Decoded video ``(C, T, H, W)`` float32, 8-bit values (0-255), from the cache when there is one."""
        if self.cache_dir is None:
            return self._decode(path)
        cache = self._cache_file(path)
        if os.path.isfile(cache):
            try:
                arr = np.load(cache, allow_pickle=False)
                return torch.from_numpy(arr.astype(np.float32))
            except (OSError, ValueError):
                pass  # unreadable cache entry (e.g. interrupted write): decode again and replace it
        img = self._decode(path)
        quant = torch.round(img).clamp_(0, 255).to(torch.uint8)
        with atomic_write(cache, "wb") as f:
            np.save(f, quant.numpy(), allow_pickle=False)
        return img

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

