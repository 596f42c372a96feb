"""Breast-ultrasound video (BUSV) frame folders.

Layout (Lin et al., "A new dataset and a baseline model for breast lesion detection in ultrasound
videos", MICCAI 2022)::

    root/rawframes/benign/<video_id>/<frame_idx>.png
    root/rawframes/malignant/<video_id>/<frame_idx>.png

Frames are ordered by the integer in their file name (``2.png`` before ``10.png``); label 0 is
benign, 1 is malignant.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import apply_transform
from monai.utils import optional_import
from torch.utils.data import Dataset

from monai_das.data.indexing import resolve_index

Image, has_pil = optional_import("PIL.Image")

__all__ = ["BUSV_CLASS_NAMES", "list_busv_videos", "busv_frame_files", "BUSVDataset"]

#: Class folders of BUSV in label order.
BUSV_CLASS_NAMES: tuple[str, ...] = ("benign", "malignant")

_DIGITS = re.compile(r"(\d+)")


def _frames_root(root: str) -> str:
    base = os.path.join(root, "rawframes")
    if not os.path.isdir(base):
        raise FileNotFoundError(
            f"BUSV folder {base} not found: expected root/rawframes/{{benign,malignant}}/<video_id>/<frame>.png "
            f"under root={root}."
        )
    return base


def list_busv_videos(root: str | os.PathLike) -> list[tuple[str, int, str]]:
    """All videos of a BUSV tree as ``(video_id, label, folder)``, sorted by class then id.

    Raises:
        FileNotFoundError: if ``root/rawframes`` or both class folders are missing.
        ValueError: if a video id occurs under both classes.
    """
    root = os.fspath(root)
    base = _frames_root(root)
    out: list[tuple[str, int, str]] = []
    seen: dict[str, str] = {}
    found_class = False
    for label, name in enumerate(BUSV_CLASS_NAMES):
        folder = os.path.join(base, name)
        if not os.path.isdir(folder):
            continue
        found_class = True
        for vid in sorted(os.listdir(folder)):
            path = os.path.join(folder, vid)
            if not os.path.isdir(path):
                continue
            if vid in seen:
                raise ValueError(f"BUSV video id {vid!r} occurs in both {seen[vid]} and {path}; ids must be unique.")
            seen[vid] = path
            out.append((vid, label, path))
    if not found_class:
        raise FileNotFoundError(f"{base} has neither a 'benign' nor a 'malignant' folder.")
    return out


def busv_frame_files(folder: str | os.PathLike) -> list[str]:
    """PNG frames of one video folder, sorted by the (last) integer in the file name.

    Raises:
        ValueError: naming the folder, if it has no PNG files or a file name without a number.
    """
    folder = os.fspath(folder)
    names = [n for n in os.listdir(folder) if n.lower().endswith(".png") and os.path.isfile(os.path.join(folder, n))]
    if not names:
        raise ValueError(f"BUSV video folder {folder} contains no PNG frames.")
    keyed = []
    for n in names:
        digits = _DIGITS.findall(os.path.splitext(n)[0])
        if not digits:
            raise ValueError(f"BUSV frame {n} in {folder} has no frame number in its name (expected e.g. 12.png).")
        keyed.append((int(digits[-1]), n))
    keyed.sort()
    return [os.path.join(folder, n) for _, n in keyed]


def _read_png(path: str) -> np.ndarray:
    """One frame as float32 ``(H, W)`` in 8-bit units, 0-255 (colour converted to luma, 16-bit scaled down)."""
    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float32)
            return np.clip(arr * (255.0 / 65535.0), 0.0, 255.0).astype(np.float32)
        if img.mode != "L":
            img = img.convert("L")
        return np.asarray(img, dtype=np.float32)


def _read_ids(video_ids: Sequence[str] | str | os.PathLike) -> list[str]:
    if isinstance(video_ids, (str, os.PathLike)):
        path = os.fspath(video_ids)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video id list {path} not found (expected a text file with one id per line).")
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    return [str(v).strip() for v in video_ids]


class BUSVDataset(Dataset):
    """BUSV videos stored as folders of PNG frames; items ``(1, T, H, W)`` float32, 0-255.

    Items are dicts ``{"image": float32 tensor (1, T, H, W), "label": int64 0-d tensor (0 benign,
    1 malignant), "video_id": str}`` passed through ``transform`` when given. Frames of a video
    must all have the same size; resizing belongs in ``transform``.

    Args:
        root: folder holding ``rawframes/``.
        video_ids: ids to keep, in this order (a list, or a text file with one id per line; an id may
            be written ``benign/<id>`` or ``malignant/<id>``); ``None`` keeps every video.
        transform: callable applied to each item dict.
        max_frames: read at most this many frames, evenly spread over the video
            (``floor((i + 0.5) * T / max_frames)``); ``None`` reads all.
        frame_stride: keep every ``frame_stride``-th frame (applied before ``max_frames``).

    Attributes:
        videos: list of ``(video_id, label, folder)``.
        labels: int64 numpy array ``(N,)``.
        num_classes: 2.
        class_names: ``["benign", "malignant"]``.

    Raises:
        FileNotFoundError: if ``root/rawframes`` is missing or a requested id is not in the tree.
        ValueError: for bad ``max_frames``/``frame_stride``, a duplicate video id; at ``__getitem__``
            (naming the folder) for a folder without PNGs or frames of different sizes.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        video_ids: Sequence[str] | str | os.PathLike | None = None,
        transform: Callable | None = None,
        max_frames: int | None = None,
        frame_stride: int = 1,
    ) -> None:
        if not has_pil:
            raise ImportError("BUSVDataset needs Pillow to read PNG frames (`pip install pillow`).")
        for name, value, allow_none in (("max_frames", max_frames, True), ("frame_stride", frame_stride, False)):
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1{' or None' if allow_none else ''}, got {value!r}.")
        self.root = os.fspath(root)
        self.max_frames = None if max_frames is None else int(max_frames)
        self.frame_stride = int(frame_stride)
        self.transform = transform
        videos = list_busv_videos(self.root)
        if video_ids is not None:
            by_id = {v[0]: v for v in videos}
            by_class_id = {f"{BUSV_CLASS_NAMES[v[1]]}/{v[0]}": v for v in videos}
            wanted = _read_ids(video_ids)
            missing = [i for i in wanted if i not in by_id and i not in by_class_id]
            if missing:
                shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                raise FileNotFoundError(
                    f"{len(missing)} requested BUSV video id(s) not found under "
                    f"{os.path.join(self.root, 'rawframes')}: {shown}."
                )
            videos = [by_id.get(i) or by_class_id[i] for i in wanted]
        self.videos = videos
        self.labels = np.asarray([v[1] for v in videos], dtype=np.int64)
        self.num_classes = len(BUSV_CLASS_NAMES)
        self.class_names = list(BUSV_CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.videos)

    def frame_files(self, index: int) -> list[str]:
        """The PNG files read for video ``index`` (after ``frame_stride`` and ``max_frames``)."""
        files = busv_frame_files(self.videos[index][2])[:: self.frame_stride]
        if self.max_frames is not None and len(files) > self.max_frames:
            from monai_das.transforms.functional import uniform_frame_indices

            files = [files[int(i)] for i in uniform_frame_indices(len(files), self.max_frames)]
        return files

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = resolve_index(index, len(self), f"{len(self)} BUSV videos")
        vid, label, folder = self.videos[i]
        frames = []
        for path in self.frame_files(i):
            frame = _read_png(path)
            if frames and frame.shape != frames[0].shape:
                raise ValueError(
                    f"BUSV video folder {folder} has frames of different sizes: {os.path.basename(path)} is "
                    f"{frame.shape} (H, W) but the first frame read is {frames[0].shape}."
                )
            frames.append(frame)
        image = torch.from_numpy(np.stack(frames, axis=0)[None])
        item = {"image": image, "label": torch.tensor(label, dtype=torch.int64), "video_id": vid}
        return apply_transform(self.transform, item) if self.transform is not None else item
