"""COVID-BLUES lung-ultrasound videos with four targets: the COVID-19 test, B-lines, A-lines and the severity score.

Data: Wiedemann et al., "COVID-BLUES: a prospective study on the value of AI in lung ultrasound analysis", IEEE JBHI
29(9):6301-6310, 2025, doi:10.1109/JBHI.2025.3543686; licence CC BY-NC-ND 4.0 (evaluation use, never redistribute).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from monai.utils import look_up_option

from monai_das.data.manifest import _ROW, _where, read_manifest
from monai_das.data.video_manifest import VideoManifestDataset

__all__ = [
    "COVID_BLUES_CLASS_NAMES",
    "COVID_BLUES_TARGETS",
    "covid_blues_class_names",
    "read_covid_blues_labels",
    "CovidBluesDataset",
]

#: Label names of COVID-BLUES ``manifest.csv`` (``cov_test``: COVID-19 test negative / positive).
COVID_BLUES_CLASS_NAMES: tuple[str, ...] = ("negative", "positive")

#: target -> (column of ``severity.csv``, or ``None`` for the manifest's ``label``; class names in label order)
_TARGETS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "covid": (None, COVID_BLUES_CLASS_NAMES),
    "b_lines": ("B-lines", ("absent", "present")),
    "a_lines": ("A-lines", ("absent", "present")),
    "severity": ("Severity Score", ("score_0", "score_1", "score_2", "score_3")),
}
#: the targets a :class:`CovidBluesDataset` can be built for
COVID_BLUES_TARGETS: tuple[str, ...] = tuple(_TARGETS)
_YES_NO = {"no": 0, "yes": 1}


def covid_blues_class_names(target: str = "covid") -> list[str]:
    """Class names of a target, in label order: ``covid`` negative/positive, ``b_lines`` and ``a_lines``
    absent/present, ``severity`` score_0 .. score_3.

    Raises:
        ValueError: for an unknown target (naming the valid ones).
    """
    return list(look_up_option(target, _TARGETS)[1])


def _parse_value(text: str, column: str, where: str) -> int:
    if column == "Severity Score":
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number not in (0.0, 1.0, 2.0, 3.0):  # False for nan
            raise ValueError(f"{where}: column {column!r} must be a score 0, 1, 2 or 3, got {text!r}.")
        return int(number)
    label = _YES_NO.get(text.lower())
    if label is None:
        raise ValueError(f"{where}: column {column!r} must be 'yes' or 'no', got {text!r}.")
    return label


def read_covid_blues_labels(severity_csv: str | os.PathLike, target: str) -> dict[str, int]:
    """The expert labels of ``severity.csv`` for one target, by video.

    ``severity.csv`` has one row per video: ``video_file`` (the video's file name without extension), ``B-lines``
    and ``A-lines`` (``yes`` / ``no``), ``Severity Score`` (0-3, written ``0.0`` .. ``3.0``) and a free-text comment.
    Cells are trimmed (the release has ``"yes "`` and ``"no "``) and the yes/no columns are read case-insensitively;
    anything else is an error.

    Args:
        severity_csv: path of ``severity.csv``.
        target: ``b_lines`` (``B-lines``: 0 no, 1 yes), ``a_lines`` (``A-lines``) or ``severity`` (``Severity
            Score``: 0 .. 3).

    Returns:
        ``{video_file: label}``.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for an unknown target, a missing column, an empty or unknown value, an empty ``video_file`` or
            a video listed twice (naming the file, the row and the value).
    """
    column = look_up_option(target, _TARGETS)[0]
    if column is None:
        raise ValueError(f"target {target!r} is read from manifest.csv, not from {os.fspath(severity_csv)}.")
    path = os.fspath(severity_csv)
    labels: dict[str, int] = {}
    first_row: dict[str, int] = {}
    for row in read_manifest(path, ["video_file", column]):
        where = _where(path, row[_ROW])
        video = row["video_file"]
        if not video:
            raise ValueError(f"{where}: empty 'video_file'.")
        if video in labels:
            raise ValueError(f"{where}: video {video!r} is listed twice (also in row {first_row[video]}).")
        labels[video] = _parse_value(row.get(column) or "", column, f"{where}, video {video!r}")
        first_row[video] = row[_ROW]
    return labels


class CovidBluesDataset(VideoManifestDataset):
    """COVID-BLUES lung-ultrasound videos (``root/manifest.csv``), split by patient, for one of four targets.

    Targets (``target``):

    - ``covid``: the patient's COVID-19 test (``manifest.csv`` column ``label``: 0 negative, 1 positive);
    - ``b_lines`` / ``a_lines``: whether the expert saw B-lines / A-lines in the video (``severity.csv``: 0 absent,
      1 present);
    - ``severity``: the expert's severity score of the video, 4 ordered classes 0 .. 3 (``severity.csv``).

    ``severity.csv``'s ``video_file`` is the manifest path's file name without extension; every video of the
    manifest must have a label there (a missing one is an error listing the videos), and rows for videos not in the
    manifest are ignored. Groups: ``patient_id``; the split is stratified by the target's label.

    Splits: with ``fold`` (the bundle's default) patient-grouped ``num_folds``-fold cross-validation (see
    :class:`VideoManifestDataset`: test = fold ``fold``, val = fold ``fold + 1``, train = the rest); with
    ``fold=None`` a ``fractions`` split of the patients.

    Args:
        root: folder holding ``manifest.csv``, ``severity.csv`` (for the expert targets) and ``lus_videos/``.
        split: ``"train"``, ``"val"``, ``"test"``, an index, or ``None`` for all videos.
        target: ``covid``, ``b_lines``, ``a_lines`` or ``severity``.
        fold: cross-validation fold whose patients are tested, or ``None`` for a ``fractions`` split.
        num_folds: number of cross-validation folds.
        fractions, seed, transform, cache_dir, max_frames, frame_stride, grayscale, check_files:
            see :class:`VideoManifestDataset` (``seed`` shuffles the patients of the split or the folds).

    Raises:
        ValueError: for an unknown target, a bad label in either file (naming the file, the row and the value),
            a manifest video without a label in ``severity.csv``, or a bad split / fold.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | int | None = "train",
        target: str = "covid",
        fold: int | None = None,
        num_folds: int = 5,
        fractions: Sequence[float] = (0.7, 0.15, 0.15),
        seed: int = 0,
        transform: Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_frames: int | None = None,
        frame_stride: int = 1,
        grayscale: bool = True,
        check_files: bool = True,
    ) -> None:
        self.root = os.fspath(root)
        self.target = look_up_option(target, COVID_BLUES_TARGETS)
        label_key = "label" if self.target == "covid" else self.target
        super().__init__(
            os.path.join(self.root, "manifest.csv"),
            split=split,
            path_key="path",
            label_key=label_key,
            group_key="patient_id",
            fractions=fractions,
            seed=seed,
            stratify_key=label_key,
            transform=transform,
            cache_dir=cache_dir,
            max_frames=max_frames,
            frame_stride=frame_stride,
            grayscale=grayscale,
            class_names=covid_blues_class_names(self.target),
            check_files=check_files,
            fold=fold,
            num_folds=num_folds,
        )

    def _read_rows(self, required: list[str]) -> list[dict[str, Any]]:
        """The manifest's rows; for an expert target each gets its label from ``severity.csv`` in column ``target``."""
        if self.target == "covid":
            return read_manifest(self.manifest, required)
        rows = read_manifest(self.manifest, [c for c in required if c != self.target])
        severity_csv = os.path.join(self.root, "severity.csv")
        labels = read_covid_blues_labels(severity_csv, self.target)
        missing = []
        for row in rows:
            video = os.path.splitext(os.path.basename(row.get("path") or ""))[0]
            if video in labels:
                row[self.target] = str(labels[video])
            else:
                missing.append(f"row {row[_ROW]}: {video!r}")
        if missing:
            listed = "; ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise ValueError(
                f"{len(missing)} video(s) of {self.manifest} have no {self.target!r} label in {severity_csv} (no "
                f"row with that video_file): {listed}."
            )
        return rows
