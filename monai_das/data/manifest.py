"""A CSV manifest of videos: one row per video, a path column (relative to the manifest's folder, or absolute),
optionally a label column (an integer class index) and a group column (patient / subject id). Reading it, and
listing its bad rows."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["read_manifest", "validate_manifest"]

_ROW = "_row"  # key holding the 1-based data row number (line number = row + 1, after the header)


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
