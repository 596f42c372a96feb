"""POCUS lung-ultrasound clips (healthy / pneumonia / COVID-19) in five container formats, split by video or by source.

Data: Born et al., "Accelerating detection of lung pathologies with explainable ultrasound image analysis", Applied
Sciences 11(2):672, 2021 (``jannisborn/covid19_ultrasound``); every clip has its own licence (the manifest's
``license`` column, mostly CC BY-NC / CC BY-NC-SA): evaluation use, never redistribute the clips or images of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from monai.utils import look_up_option

from monai_das.data.video_manifest import VideoManifestDataset, read_manifest

__all__ = ["POCUS_CLASS_NAMES", "POCUS_GROUPINGS", "PocusDataset"]

#: the 3-class task of ``manifest.csv``'s ``label``: 0 healthy, 1 pneumonia (bacterial or viral), 2 COVID-19
POCUS_CLASS_NAMES: tuple[str, ...] = ("healthy", "pneumonia", "covid19")
#: how clips are kept together by the folds: each clip alone, or by web site + free-text patient id
POCUS_GROUPINGS: tuple[str, ...] = ("video", "source")
_GROUP = "_source_group"


class PocusDataset(VideoManifestDataset):
    """POCUS clips of ``root/manifest.csv`` (mp4, avi, mpeg, mov and gif, all decoded by PyAV), 3 classes.

    There are no reliable patient ids. ``grouping="video"`` makes each clip its own group (the stratified k-fold of
    the clips); ``grouping="source"`` keeps together the clips that share ``source_site`` (the web site of the clip's
    URL, empty for the collaborating hospitals) and ``patient_id_raw`` (the metadata's free-text patient field),
    the stricter split to report beside it. Folds are stratified by ``label``.

    Splits, items, cache and decoding: see :class:`VideoManifestDataset` (test = fold ``fold``, val = fold
    ``fold + 1``, train = the rest; ``fold=None`` splits by ``fractions``). Clips are read as grey frames
    ``(1, T, H, W)`` in ``[0, 1]`` by default; their frame sizes differ, so resize in ``transform``.

    Args:
        root: folder holding ``manifest.csv`` (columns ``path``, ``label``, ``source_site``, ``patient_id_raw``)
            and the clips.
        split: ``"train"``, ``"val"``, ``"test"``, an index, or ``None`` for every clip.
        grouping: ``"video"`` or ``"source"``.
        fold: cross-validation fold whose clips are tested, or ``None`` for a ``fractions`` split.
        num_folds, fractions, seed, transform, cache_dir, max_frames, frame_stride, grayscale, check_files: see
            :class:`VideoManifestDataset`.

    Raises:
        ValueError: for an unknown grouping, a missing column or a bad label (naming the file and the row), or a
            bad split / fold.
        FileNotFoundError: for a missing manifest or clip.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | int | None = "train",
        grouping: str = "video",
        fold: int | None = 0,
        num_folds: int = 5,
        fractions: tuple[float, ...] = (0.7, 0.15, 0.15),
        seed: int = 0,
        transform: Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        max_frames: int | None = None,
        frame_stride: int = 1,
        grayscale: bool = True,
        check_files: bool = True,
    ) -> None:
        self.root = os.fspath(root)
        self.grouping = look_up_option(grouping, POCUS_GROUPINGS)
        super().__init__(
            os.path.join(self.root, "manifest.csv"),
            split=split,
            path_key="path",
            label_key="label",
            group_key=None if self.grouping == "video" else _GROUP,
            fractions=fractions,
            seed=seed,
            stratify_key="label",
            transform=transform,
            cache_dir=cache_dir,
            max_frames=max_frames,
            frame_stride=frame_stride,
            grayscale=grayscale,
            class_names=POCUS_CLASS_NAMES,
            check_files=check_files,
            fold=fold,
            num_folds=num_folds,
        )

    def _read_rows(self, required: list[str]) -> list[dict[str, Any]]:
        """The manifest's rows, each with its source group ``source_site | patient_id_raw``."""
        rows = read_manifest(self.manifest, [c for c in required if c != _GROUP] + ["source_site", "patient_id_raw"])
        for row in rows:
            row[_GROUP] = f"{row['source_site']}|{row['patient_id_raw']}"
        return rows
