"""Array transforms for frame sequences: channel-first ``(C, T, H, W)`` images, ``T`` = frames or slices.

Each class wraps a pure function of :mod:`monai_das.transforms.functional`. Numpy input gives numpy
output; tensor input goes through ``convert_to_tensor(..., track_meta=get_track_meta())`` so a
``MetaTensor`` keeps its metadata.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor, look_up_option

from .functional import (
    FrameCropMode,
    FramePadMode,
    _check_positive_int,
    _normalize_frame_axis,
    check_frames_shape,
    pad_or_crop_frames,
    random_frame_indices,
    select_frames,
    uniform_frame_indices,
    volume_to_sequence,
)
from .video_reading import MAX_VIDEO_VOXELS, load_video

__all__ = ["LoadVideo", "VolumeToSequence", "UniformFrameSample", "RandFrameSample", "PadOrCropFrames"]


def _as_output_type(img: NdarrayOrTensor) -> NdarrayOrTensor:
    """Numpy stays numpy; a tensor becomes a (Meta)Tensor according to ``get_track_meta()``."""
    if isinstance(img, torch.Tensor):
        return convert_to_tensor(img, track_meta=get_track_meta())
    return img


class LoadVideo(Transform):
    """Decode a video file into a float32 frame sequence ``(C, T, H, W)`` of 8-bit values
    (0-255, the unit of every reader here; the bundles scale them to [0, 1] in their preprocessing), using PyAV.

    Args:
        max_frames: largest number of frames to return; when the video (after ``frame_stride``)
            is longer, ``max_frames`` frames evenly spread over the whole video are kept.
            ``None`` (default) keeps every frame.
        frame_stride: keep every ``frame_stride``-th decoded frame; default 1.
        grayscale: ``True`` (default) gives ``C = 1`` (luma), ``False`` gives ``C = 3`` (RGB).
        max_voxels: refuse a video whose returned frames hold more values (default 2**28,
            ``MAX_VIDEO_VOXELS``; ``None``: no limit). Only the returned frames are held in memory.

    Returns (from ``__call__``):
        a ``MetaTensor`` ``(C, T, H, W)`` whose meta holds ``filename_or_obj``, ``total_frames``
        and, when known, ``fps``; a plain tensor when meta tracking is off (``set_track_meta(False)``).

    Raises:
        TypeError: when ``max_frames`` or ``frame_stride`` is not an integer.
        ValueError: when ``max_frames`` or ``frame_stride`` is < 1; at call time, naming the path,
            for a missing, undecodable (corrupt/truncated) or empty file, frames of varying size, or
            frames over ``max_voxels``.

    Example:
        >>> LoadVideo(max_frames=16)("clip.mp4").shape  # doctest: +SKIP
        torch.Size([1, 16, 480, 640])
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        max_frames: int | None = None,
        frame_stride: int = 1,
        grayscale: bool = True,
        max_voxels: int | None = MAX_VIDEO_VOXELS,
    ) -> None:
        self.max_frames = None if max_frames is None else _check_positive_int(max_frames, "max_frames")
        self.max_voxels = None if max_voxels is None else _check_positive_int(max_voxels, "max_voxels")
        self.frame_stride = _check_positive_int(frame_stride, "frame_stride")
        self.grayscale = bool(grayscale)

    def __call__(self, filename: str | os.PathLike) -> torch.Tensor:
        frames, meta = load_video(
            filename, max_frames=self.max_frames, frame_stride=self.frame_stride, grayscale=self.grayscale,
            max_voxels=self.max_voxels,
        )
        out = MetaTensor(torch.from_numpy(frames), meta=meta)
        return out if get_track_meta() else out.as_tensor()


class VolumeToSequence(Transform):
    """Make one spatial axis of a channel-first volume the frame axis ``T`` (first spatial axis).

    For example a NIfTI volume loaded as ``(C, H, W, D)`` with ``frame_axis=2`` becomes
    ``(C, D, H, W)``: its ``D`` slices are then treated as frames. The remaining spatial axes keep
    their order; a ``MetaTensor``'s affine is permuted to match.

    Args:
        frame_axis: spatial axis (channel not counted) that holds the slices: 0, 1, 2 or -3, -2, -1.
            Default 2 (the last one, as in ``(C, H, W, D)``).

    Raises:
        TypeError: when ``frame_axis`` is not an int.
        ValueError: when ``frame_axis`` is out of range; at call time when the input is not 4-D.

    Example:
        >>> VolumeToSequence(frame_axis=2)(torch.zeros(1, 28, 28, 12)).shape
        torch.Size([1, 12, 28, 28])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, frame_axis: int = 2) -> None:
        _normalize_frame_axis(frame_axis)
        self.frame_axis = int(frame_axis)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        check_frames_shape(img)
        return volume_to_sequence(_as_output_type(img), self.frame_axis)


class UniformFrameSample(Transform):
    """Keep ``num_frames`` frames evenly spaced over ``T``: frame ``floor((i + 0.5) * T / num_frames)``.

    Args:
        num_frames: number of frames to keep, ``>= 1`` and at most ``T`` of each input.

    Raises:
        TypeError: when ``num_frames`` is not an int.
        ValueError: when ``num_frames`` < 1; at call time when the input is not 4-D or
            ``num_frames > T``.

    Example:
        >>> UniformFrameSample(4)(torch.zeros(1, 10, 8, 8)).shape
        torch.Size([1, 4, 8, 8])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_frames: int) -> None:
        self.num_frames = _check_positive_int(num_frames, "num_frames")

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        num_total = check_frames_shape(img)
        if self.num_frames > num_total:
            raise ValueError(
                f"`num_frames` ({self.num_frames}) must not exceed the number of frames T ({num_total}) "
                f"of the input of shape {tuple(img.shape)}; use PadOrCropFrames to pad short sequences."
            )
        return select_frames(_as_output_type(img), uniform_frame_indices(num_total, self.num_frames))


class RandFrameSample(RandomizableTransform):
    """Keep ``num_frames`` distinct frames drawn at random, in temporal order.

    The draw uses only ``self.R`` (seed it with ``set_random_state``). The transform is always
    applied (``prob`` is fixed at 1): skipping it would leave ``T`` unchanged and break batching.

    Args:
        num_frames: number of frames to keep, ``>= 1`` and at most ``T`` of each input.

    Raises:
        TypeError: when ``num_frames`` is not an int.
        ValueError: when ``num_frames`` < 1; at call time when the input is not 4-D or
            ``num_frames > T``.
        RuntimeError: when called with ``randomize=False`` before any draw.

    Example:
        >>> RandFrameSample(4).set_random_state(0)(torch.zeros(1, 10, 8, 8)).shape
        torch.Size([1, 4, 8, 8])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_frames: int) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        self.num_frames = _check_positive_int(num_frames, "num_frames")
        self._indices: np.ndarray | None = None

    @property
    def indices(self) -> np.ndarray | None:
        """The frame indices of the last draw, ``None`` before the first one."""
        return self._indices

    def randomize(self, data: int) -> None:  # type: ignore[override]
        """Draw the frame indices for an input of ``data`` (= ``T``) frames."""
        super().randomize(None)
        self._indices = random_frame_indices(int(data), self.num_frames, self.R)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """
        Args:
            img: channel-first image ``(C, T, H, W)``.
            randomize: draw new indices (default); ``False`` reuses the previous draw, as the
                dictionary version does to give every key the same frames.
        """
        num_total = check_frames_shape(img)
        if randomize:
            if self.num_frames > num_total:
                raise ValueError(
                    f"`num_frames` ({self.num_frames}) must not exceed the number of frames T ({num_total}) "
                    f"of the input of shape {tuple(img.shape)}."
                )
            self.randomize(num_total)
        if self._indices is None:
            raise RuntimeError("please call the `randomize()` function first.")
        return select_frames(_as_output_type(img), self._indices)


class PadOrCropFrames(Transform):
    """Bring every sequence to exactly ``num_frames`` frames, by cropping or padding along ``T``.

    Longer inputs are cropped: ``mode="resample"`` keeps frames evenly spread over the whole
    sequence, ``mode="center"`` keeps the central block. Shorter inputs are padded:
    ``pad_mode="repeat"`` resamples with repetition (nearest-neighbour in time, order kept),
    ``pad_mode="zeros"`` appends zero frames after the last one.

    Mask policy (``return_mask=True``): a bool mask ``(num_frames,)`` marks real frames ``True``
    and padded frames ``False`` (appended zero frames, or the second and later copies of a
    repeated frame), so a sampler can be told never to pick a padded frame and never to pick the
    same input frame twice.

    Args:
        num_frames: number of output frames ``>= 1``.
        mode: crop policy, ``"resample"`` (default) or ``"center"``.
        pad_mode: pad policy, ``"repeat"`` (default) or ``"zeros"``.
        return_mask: when ``True``, ``__call__`` returns ``(frames, mask)`` instead of ``frames``.

    Raises:
        TypeError: when ``num_frames`` is not an int.
        ValueError: when ``num_frames`` < 1 or an option is unknown; at call time when the input
            is not 4-D.

    Example:
        >>> PadOrCropFrames(8, pad_mode="zeros", return_mask=True)(torch.ones(1, 5, 4, 4))[1]
        tensor([ True,  True,  True,  True,  True, False, False, False])
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        num_frames: int,
        mode: str = FrameCropMode.RESAMPLE,
        pad_mode: str = FramePadMode.REPEAT,
        return_mask: bool = False,
    ) -> None:
        self.num_frames = _check_positive_int(num_frames, "num_frames")
        self.mode = look_up_option(mode, FrameCropMode)
        self.pad_mode = look_up_option(pad_mode, FramePadMode)
        self.return_mask = bool(return_mask)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor | tuple[NdarrayOrTensor, NdarrayOrTensor]:
        check_frames_shape(img)
        out, mask = pad_or_crop_frames(_as_output_type(img), self.num_frames, self.mode, self.pad_mode)
        if self.return_mask:
            return out, mask
        return out
