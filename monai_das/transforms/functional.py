"""Pure functions behind the frame-sequence transforms of :mod:`monai_das.transforms`.

Every image here is channel-first ``(C, T, H, W)``: ``C`` channels, then ``T`` frames (video) or
slices (volume) as the first spatial axis, then the in-plane axes. The functions work on numpy
arrays and on torch tensors (a ``MetaTensor`` stays a ``MetaTensor``) and return the same type.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.utils import StrEnum, look_up_option

__all__ = [
    "FrameCropMode",
    "FramePadMode",
    "check_frames_shape",
    "evenly_spaced_indices",
    "uniform_frame_indices",
    "random_frame_indices",
    "pad_or_crop_frame_indices",
    "select_frames",
    "pad_or_crop_frames",
    "volume_to_sequence",
]


class FrameCropMode(StrEnum):
    """How :func:`pad_or_crop_frames` shortens a sequence that has more frames than wanted.

    - ``resample``: keep frames evenly spread over the whole sequence (see :func:`uniform_frame_indices`).
    - ``center``: keep the contiguous block of frames in the middle of the sequence.
    """

    RESAMPLE = "resample"
    CENTER = "center"


class FramePadMode(StrEnum):
    """How :func:`pad_or_crop_frames` lengthens a sequence that has fewer frames than wanted.

    - ``repeat``: nearest-neighbour temporal resampling; every frame is repeated about equally
      often and the order is kept.
    - ``zeros``: append all-zero frames after the last real frame.
    """

    REPEAT = "repeat"
    ZEROS = "zeros"


def _check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an ``int`` after checking that it is an integer >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int >= 1, got {value!r} of type {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value}.")
    return int(value)


def check_frames_shape(img: NdarrayOrTensor, name: str = "img") -> int:
    """Check that ``img`` is a channel-first frame sequence ``(C, T, H, W)`` and return ``T``.

    Args:
        img: array or tensor to check.
        name: argument name used in the error message.

    Returns:
        the number of frames ``T`` (``img.shape[1]``).

    Raises:
        TypeError: when ``img`` is neither a numpy array nor a torch tensor.
        ValueError: when ``img`` does not have 4 dimensions or has no frames.
    """
    if not isinstance(img, (np.ndarray, torch.Tensor)):
        raise TypeError(f"`{name}` must be a numpy array or a torch tensor, got {type(img).__name__}.")
    if img.ndim != 4:
        raise ValueError(
            f"`{name}` must be channel-first (C, T, H, W) with 4 dimensions, got shape {tuple(img.shape)}."
        )
    if img.shape[1] < 1:
        raise ValueError(f"`{name}` must have at least one frame (T >= 1), got shape {tuple(img.shape)}.")
    return int(img.shape[1])


def evenly_spaced_indices(num_total: int, num_frames: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """``floor((i + 0.5) * num_total / num_frames)`` for ``i = 0 .. num_frames - 1``, as an int64 tensor computed in
    exact integer arithmetic (TorchScript-compatible; no argument checks: see :py:func:`uniform_frame_indices`)."""
    i = torch.arange(num_frames, dtype=torch.long, device=device)
    return torch.div((2 * i + 1) * num_total, 2 * num_frames, rounding_mode="floor")


def uniform_frame_indices(num_total: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames evenly spread over ``num_total`` frames.

    Frame ``i`` is taken from the middle of the ``i``-th of ``num_frames`` equal segments,
    ``floor((i + 0.5) * num_total / num_frames)`` (computed in exact integer arithmetic). With
    ``num_frames <= num_total`` the indices are distinct and increasing; with
    ``num_frames > num_total`` they repeat (nearest-neighbour resampling) and stay non-decreasing.

    Args:
        num_total: number of frames available, ``T >= 1``.
        num_frames: number of indices to return, ``>= 1``.

    Returns:
        int64 array of shape ``(num_frames,)``.

    Raises:
        TypeError: when an argument is not an integer.
        ValueError: when an argument is < 1.

    Example:
        >>> uniform_frame_indices(10, 4)
        array([1, 3, 6, 8])
    """
    num_total = _check_positive_int(num_total, "num_total")
    num_frames = _check_positive_int(num_frames, "num_frames")
    return evenly_spaced_indices(num_total, num_frames).numpy()


def random_frame_indices(num_total: int, num_frames: int, rng: np.random.RandomState) -> np.ndarray:
    """Indices of ``num_frames`` distinct frames drawn at random from ``num_total``, sorted in time.

    Args:
        num_total: number of frames available, ``T >= 1``.
        num_frames: number of distinct frames to draw, ``1 <= num_frames <= num_total``.
        rng: the random state to draw from (a transform passes its ``self.R``).

    Returns:
        int64 array of shape ``(num_frames,)``, strictly increasing.

    Raises:
        TypeError: when an argument is not an integer.
        ValueError: when ``num_frames`` is < 1 or larger than ``num_total``.
    """
    num_total = _check_positive_int(num_total, "num_total")
    num_frames = _check_positive_int(num_frames, "num_frames")
    if num_frames > num_total:
        raise ValueError(
            f"`num_frames` ({num_frames}) must not exceed the number of frames T ({num_total}) "
            "when drawing distinct frames."
        )
    return np.sort(rng.choice(num_total, size=num_frames, replace=False)).astype(np.int64)


def pad_or_crop_frame_indices(
    num_total: int,
    num_frames: int,
    mode: FrameCropMode | str = FrameCropMode.RESAMPLE,
    pad_mode: FramePadMode | str = FramePadMode.REPEAT,
) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and validity mask that bring ``num_total`` frames to exactly ``num_frames``.

    Policy for the mask: ``True`` marks a real, distinct input frame and ``False`` marks padding,
    so a downstream sampler can be told never to pick a ``False`` frame. Cropping keeps only real
    frames (all ``True``). Padding with ``zeros`` marks the appended zero frames ``False``. Padding
    with ``repeat`` marks the first copy of every input frame ``True`` and its repeats ``False``,
    so exactly ``num_total`` entries are ``True`` and each input frame can be picked at most once.

    Args:
        num_total: number of input frames ``T >= 1``.
        num_frames: number of output frames ``>= 1``.
        mode: used when ``num_total > num_frames``; one of :class:`FrameCropMode`
            (``"resample"`` or ``"center"``).
        pad_mode: used when ``num_total < num_frames``; one of :class:`FramePadMode`
            (``"repeat"`` or ``"zeros"``).

    Returns:
        ``(indices, mask)``: int64 array ``(num_frames,)`` of source frame indices, ``-1`` where a
        zero frame is to be inserted, and the bool mask ``(num_frames,)`` described above.

    Raises:
        TypeError: when ``num_total`` or ``num_frames`` is not an integer.
        ValueError: when ``num_total`` or ``num_frames`` is < 1, or ``mode``/``pad_mode`` is unknown.
    """
    num_total = _check_positive_int(num_total, "num_total")
    num_frames = _check_positive_int(num_frames, "num_frames")
    mode = look_up_option(mode, FrameCropMode)
    pad_mode = look_up_option(pad_mode, FramePadMode)
    if num_total == num_frames:
        return np.arange(num_frames, dtype=np.int64), np.ones(num_frames, dtype=bool)
    if num_total > num_frames:
        if mode == FrameCropMode.RESAMPLE:
            indices = uniform_frame_indices(num_total, num_frames)
        else:
            start = (num_total - num_frames) // 2
            indices = np.arange(start, start + num_frames, dtype=np.int64)
        return indices, np.ones(num_frames, dtype=bool)
    if pad_mode == FramePadMode.ZEROS:
        indices = np.full(num_frames, -1, dtype=np.int64)
        indices[:num_total] = np.arange(num_total, dtype=np.int64)
        return indices, indices >= 0
    indices = uniform_frame_indices(num_total, num_frames)  # non-decreasing, covers every frame
    mask = np.ones(num_frames, dtype=bool)
    mask[1:] = indices[1:] != indices[:-1]
    return indices, mask


def select_frames(img: NdarrayOrTensor, indices: Any) -> NdarrayOrTensor:
    """Gather frames ``indices`` along the frame axis ``T`` (axis 1) of a ``(C, T, H, W)`` image.

    Args:
        img: channel-first image ``(C, T, H, W)``, numpy array or torch tensor.
        indices: sequence of frame indices in ``[0, T)``; repeats are allowed.

    Returns:
        an image of the same type, shape ``(C, len(indices), H, W)``.

    Raises:
        ValueError: when ``img`` is not 4-D, ``indices`` is empty or an index is outside ``[0, T)``.
    """
    num_total = check_frames_shape(img)
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    idx = np.asarray(indices).reshape(-1)
    if idx.size == 0:
        raise ValueError("`indices` must contain at least one frame index, got an empty sequence.")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"`indices` must be integers, got dtype {idx.dtype}.")
    if idx.min() < 0 or idx.max() >= num_total:
        raise ValueError(
            f"`indices` must lie in [0, {num_total}) for an image with T={num_total} frames, "
            f"got min {int(idx.min())} and max {int(idx.max())}."
        )
    idx = idx.astype(np.int64)
    if isinstance(img, torch.Tensor):
        return torch.index_select(img, 1, torch.as_tensor(idx, device=img.device))
    return np.take(img, idx, axis=1)


def pad_or_crop_frames(
    img: NdarrayOrTensor,
    num_frames: int,
    mode: FrameCropMode | str = FrameCropMode.RESAMPLE,
    pad_mode: FramePadMode | str = FramePadMode.REPEAT,
) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
    """Bring a ``(C, T, H, W)`` image to exactly ``num_frames`` frames.

    See :func:`pad_or_crop_frame_indices` for the index and mask policy.

    Args:
        img: channel-first image ``(C, T, H, W)``, numpy array or torch tensor.
        num_frames: number of output frames ``>= 1``.
        mode: crop policy when ``T > num_frames``: ``"resample"`` or ``"center"``.
        pad_mode: pad policy when ``T < num_frames``: ``"repeat"`` or ``"zeros"``.

    Returns:
        ``(frames, mask)``: the image ``(C, num_frames, H, W)`` of the input type, and a bool mask
        ``(num_frames,)`` (numpy for numpy input, torch on the input's device otherwise) where
        ``True`` marks a real input frame and ``False`` a padded one.

    Raises:
        ValueError: when ``img`` is not 4-D, ``num_frames`` < 1 or an option is unknown.
    """
    num_total = check_frames_shape(img)
    indices, mask = pad_or_crop_frame_indices(num_total, num_frames, mode, pad_mode)
    out = select_frames(img, np.maximum(indices, 0))
    zero_slots = np.flatnonzero(indices < 0)
    if zero_slots.size > 0:
        if isinstance(out, torch.Tensor):
            out[:, torch.as_tensor(zero_slots, device=out.device)] = 0
        else:
            out[:, zero_slots] = 0
    if isinstance(img, torch.Tensor):
        return out, torch.as_tensor(mask, device=img.device)
    return out, mask


def volume_to_sequence(img: NdarrayOrTensor, frame_axis: int) -> NdarrayOrTensor:
    """Move spatial axis ``frame_axis`` of a channel-first volume to be the frame axis ``T``.

    The other spatial axes keep their order, so ``(C, H, W, D)`` with ``frame_axis=2`` becomes
    ``(C, D, H, W)``. For a ``MetaTensor`` the columns of the affine are permuted the same way, so
    the voxel-to-world mapping stays correct.

    Args:
        img: channel-first volume ``(C, X, Y, Z)``, numpy array or torch tensor.
        frame_axis: the spatial axis holding the frames/slices, counted without the channel
            axis: ``0``, ``1``, ``2`` or ``-3``, ``-2``, ``-1``.

    Returns:
        the volume with that axis moved to position 1, same type as ``img``.

    Raises:
        ValueError: when ``img`` is not 4-D or ``frame_axis`` is out of range.
    """
    check_frames_shape(img)
    axis = _normalize_frame_axis(frame_axis)
    if axis == 0:
        return img
    if isinstance(img, torch.Tensor):
        out = torch.movedim(img, axis + 1, 1)
    else:
        out = np.moveaxis(img, axis + 1, 1)
    if isinstance(out, MetaTensor) and tuple(out.affine.shape) == (4, 4):
        order = [axis] + [a for a in range(3) if a != axis]
        affine = out.affine.clone()
        affine[:, :3] = out.affine[:, order]
        out.affine = affine
    return out


def _normalize_frame_axis(frame_axis: Any) -> int:
    if isinstance(frame_axis, (bool, np.bool_)) or not isinstance(frame_axis, (int, np.integer)):
        raise TypeError(f"`frame_axis` must be an int in {{0, 1, 2, -3, -2, -1}}, got {frame_axis!r}.")
    if not -3 <= frame_axis <= 2:
        raise ValueError(
            f"`frame_axis` counts spatial axes of a (C, X, Y, Z) volume and must be in "
            f"{{0, 1, 2, -3, -2, -1}}, got {frame_axis}."
        )
    return int(frame_axis) % 3
