"""``LoadSequence`` / ``LoadSequenced``: the first step of every bundle's inference preprocessing.

It reads what :func:`monai_das.data.expand_inputs` finds (a NIfTI file, a DICOM file, a folder of one DICOM series
or the list of its files, a video) or an array of frames, with the readers of :mod:`monai_das.data.sequence_readers`, and gives the frames the
network's channels.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from .input_discovery import expand_inputs
from .sequence_readers import (
    DEFAULT_MAX_VOXELS,
    LUMA,
    FrameSequence,
    read_array,
    read_dicom_file,
    read_dicom_series,
    read_nifti,
    read_video,
    slice_axcodes,
)

__all__ = ["LoadSequence", "LoadSequenced", "LoadSequenceD", "LoadSequenceDict", "picked_source_frames"]


class LoadSequence(Transform):
    """Read one input as a :class:`monai_das.data.FrameSequence` (frames ``(C, N, H, W)`` in the file's units and
    how the file numbers them).

    Args:
        slice_plane: volumes (NIfTI, DICOM series): the anatomical direction of the frames, ``"axial"``,
            ``"coronal"``, ``"sagittal"`` or an axcode letter (see :func:`monai_das.data.slice_axcodes`).
        max_frames: videos: keep at most this many frames, evenly spread (``None``: all).
        channels: channels of the output: 1 (colour frames become ITU-R BT.601 luma) or 3 (grey frames are
            repeated).
        max_voxels: refuse inputs over this many voxels before reading their pixels (``None``: no limit).
        allow_2d: run a single 2-D image as a one-frame sequence instead of refusing it.

    Non-finite values are set to the input's finite minimum, with a ``UserWarning``.

    Raises:
        ValueError: naming the input, when it cannot be read, is 2-D, too large, has no finite value, or is a
            folder that does not hold exactly one input.
        TypeError: for a value that is neither a path, a list of DICOM files nor an array.
    """

    def __init__(
        self,
        slice_plane: str = "axial",
        max_frames: int | None = None,
        channels: int = 1,
        max_voxels: int | None = DEFAULT_MAX_VOXELS,
        allow_2d: bool = False,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
        slice_axcodes(slice_plane)  # checks the value now
        self.slice_plane = slice_plane
        self.max_frames = None if max_frames is None else int(max_frames)
        self.channels = int(channels)
        self.max_voxels = None if max_voxels is None else int(max_voxels)
        self.allow_2d = bool(allow_2d)

    def __call__(self, source: Any) -> FrameSequence:
        seq = self._read(source)
        frames = seq.frames
        finite = torch.isfinite(frames)
        if not bool(finite.all()):
            if not bool(finite.any()):
                raise ValueError(f"'{_name(source)}' has no finite intensity value.")
            warnings.warn(f"{int((~finite).sum())} non-finite values of '{_name(source)}' set to its minimum",
                          stacklevel=2)
            frames = torch.where(finite, frames, frames[finite].min())
        if frames.shape[0] != self.channels:
            if frames.shape[0] == 3:
                frames = torch.tensordot(torch.as_tensor(LUMA), frames, dims=([0], [0]))[None]
            else:
                frames = frames.repeat(3, 1, 1, 1)
        seq.frames = frames
        return seq

    def _read(self, source: Any) -> FrameSequence:
        if isinstance(source, (np.ndarray, torch.Tensor)):
            return read_array(source, max_voxels=self.max_voxels, allow_2d=self.allow_2d)
        if isinstance(source, (list, tuple)):
            return read_dicom_series(source, self.slice_plane, self.max_voxels, self.allow_2d)
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"an input must be a path, a list of DICOM files or an array, got {type(source).__name__}.")
        specs = expand_inputs([source], max_voxels=self.max_voxels)
        if len(specs) != 1:
            raise ValueError(f"'{source}' holds {len(specs)} inputs ({[s.id for s in specs][:5]}); one volume, DICOM "
                             "series or video is needed.")
        spec = specs[0]
        if spec.kind == "nifti":
            return read_nifti(spec.path, self.slice_plane, self.max_voxels, self.allow_2d)
        if spec.kind == "dicom_series":
            return read_dicom_series(spec.files, self.slice_plane, self.max_voxels, self.allow_2d)
        if spec.kind == "dicom":
            return read_dicom_file(spec.path, self.max_voxels, self.allow_2d)
        if spec.kind == "video":
            return read_video(spec.path, self.max_frames, self.channels == 1, self.max_voxels)
        if spec.kind == "npz":
            raise ValueError(f"'{Path(source)}' is an npz file of {len(specs)} volume(s); pass one volume's array.")
        return read_array(spec.source)  # raises the spec's error


class LoadSequenced(MapTransform):
    """Dictionary version of :class:`LoadSequence`.

    ``data[key]`` becomes the frames (float32 ``MetaTensor`` ``(C, N, H, W)``, the file's units), and these are
    added for tracing the frames through the rest of the preprocessing:

    - ``f"{key}_frame_index"``: int64 ``(1, N, 1, 1)``, ``0..N-1``: give it to the frame transforms that follow
      (``PadOrCropFramesd``) with ``key``, and it says which read frame each output frame is;
    - ``f"{key}_source_frames"``: int64 ``(N,)``, how the file numbers each frame (see ``FrameSequence``);
    - ``f"{key}_source_uids"``: the SOPInstanceUIDs of a DICOM series, space-separated, else ``""``;
    - ``f"{key}_num_source_frames"``: frames in the file.

    Args:
        keys: the input key(s).
        slice_plane, max_frames, channels, max_voxels, allow_2d: as :class:`LoadSequence`.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        slice_plane: str = "axial",
        max_frames: int | None = None,
        channels: int = 1,
        max_voxels: int | None = DEFAULT_MAX_VOXELS,
        allow_2d: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadSequence(slice_plane, max_frames, channels, max_voxels, allow_2d)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            seq = self.loader(d[key])
            n = int(seq.frames.shape[1])
            d[key] = seq.frames
            d[f"{key}_frame_index"] = torch.arange(n, dtype=torch.int64).reshape(1, n, 1, 1)
            d[f"{key}_source_frames"] = torch.as_tensor(seq.source_frames, dtype=torch.int64)
            d[f"{key}_source_uids"] = " ".join(seq.source_uids)
            d[f"{key}_num_source_frames"] = int(seq.num_source_frames)
        return d


def picked_source_frames(frame_index: Any, source_frames: Any, picks: Any) -> list[int]:
    """The picks (indices among the network's ``T`` frames) as the file numbers its frames.

    Args:
        frame_index: ``f"{key}_frame_index"`` after the frame transforms, ``(1, T, 1, 1)``: the read frame of each
            network frame.
        source_frames: ``f"{key}_source_frames"``, ``(N,)``: the file's number of each read frame.
        picks: ``(n,)`` indices in ``[0, T)``.
    """
    read = torch.as_tensor(frame_index).reshape(-1)[torch.as_tensor(picks, dtype=torch.int64)].tolist()
    numbers = torch.as_tensor(source_frames).reshape(-1).tolist()
    return [int(numbers[i]) for i in read]


def _name(source: Any) -> str:
    return "array" if isinstance(source, (np.ndarray, torch.Tensor)) else str(source)


LoadSequenceD = LoadSequenceDict = LoadSequenced
