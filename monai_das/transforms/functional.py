"""Pure functions behind the frame-sequence transforms of :mod:`monai_das.transforms`.

Every image here is channel-first ``(C, T, H, W)``: ``C`` channels, then ``T`` frames (video) or
slices (volume) as the first spatial axis, then the in-plane axes. The functions work on numpy
arrays and on torch tensors (a ``MetaTensor`` stays a ``MetaTensor``) and return the same type.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Optional

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.utils import OptionalImportError, StrEnum, look_up_option, optional_import

av, has_av = optional_import("av")

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
    "load_video",
    "MAX_VIDEO_VOXELS",
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


#: largest number of values (frames x height x width x channels) :func:`load_video` returns by default: 2**28, 1 GiB
#: as float32
MAX_VIDEO_VOXELS = 2**28


def _kept_positions(num_strided: int, max_frames: int | None) -> np.ndarray:
    """Positions, among the ``num_strided`` frames left by the stride, that ``load_video`` returns."""
    if max_frames is None or num_strided <= max_frames:
        return np.arange(num_strided)
    return uniform_frame_indices(num_strided, max_frames)


def _check_video_size(path: str, num_frames: int, height: int, width: int, channels: int, limit: int | None) -> None:
    if limit is not None and num_frames * height * width * channels > limit:
        raise ValueError(
            f"video file '{path}': {num_frames} frames of {height} x {width} x {channels} are "
            f"{num_frames * height * width * channels} values, over the limit of {limit}; pass a smaller max_frames, "
            "or raise max_voxels if the memory allows."
        )


def _decode_video(
    path: str, pix_fmt: str, frame_stride: int, max_frames: int | None, max_voxels: int | None,
    positions: set[int] | None = None,
) -> tuple[dict[int, np.ndarray], int, int, float | None]:
    """One decoding pass: ``({strided position: frame}, frames decoded, frames declared, fps)``.

    Only the frames at ``positions`` (among those left by the stride) are converted to arrays; the others are dropped
    as they are decoded, so memory holds the kept frames only. ``positions=None``: every frame without
    ``max_frames``, else the ``max_frames`` positions for the frame count in the header (none when it has no count).
    """
    channels = 1 if pix_fmt == "gray" else 3
    kept: dict[int, np.ndarray] = {}
    decoded = 0
    size: tuple[int, int] | None = None
    with av.open(path, mode="r") as container:
        if len(container.streams.video) == 0:
            raise ValueError(f"video file '{path}' contains no video stream (empty, truncated or not a video).")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        declared = int(stream.frames or 0)
        if positions is None and max_frames is not None:
            positions = set(_kept_positions(-(-declared // frame_stride), max_frames).tolist())
        expected = len(positions) if positions is not None else -(-declared // frame_stride)
        # refused before decoding when the header already says it is too large
        _check_video_size(path, expected, int(stream.height), int(stream.width), channels, max_voxels)
        for frame in container.decode(stream):
            if size is None:
                size = (frame.height, frame.width)
            elif (frame.height, frame.width) != size:
                raise ValueError(
                    f"video file '{path}' has frames of varying size: frame {decoded} is "
                    f"{(frame.height, frame.width)} (H, W) but frame 0 is {size}."
                )
            position, rest = divmod(decoded, frame_stride)
            if not rest and (positions is None or position in positions):
                _check_video_size(path, len(kept) + 1, size[0], size[1], channels, max_voxels)
                kept[position] = frame.to_ndarray(format=pix_fmt)
            decoded += 1
    return kept, decoded, declared, float(rate) if rate else None


def load_video(
    filename: str | os.PathLike,
    max_frames: int | None = None,
    frame_stride: int = 1,
    grayscale: bool = True,
    max_voxels: int | None = MAX_VIDEO_VOXELS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a video file (mp4, avi, ... anything FFmpeg reads) with PyAV.

    Frames are decoded in order from the first video stream; every ``frame_stride``-th decoded
    frame is kept, then, when more than ``max_frames`` remain, ``max_frames`` of them evenly
    spread over the whole video (:func:`uniform_frame_indices`).

    Memory holds only the frames that are returned: with ``max_frames``, the positions to keep are
    computed from the frame count in the file's header, and only those frames are converted from
    the decoder's buffers; when the header gives no count, or a wrong one (a truncated file), the
    file is decoded a second time once the count is known. Inputs whose returned frames would
    exceed ``max_voxels`` values (frames x height x width x channels) are refused, from the header
    before decoding when it has a frame count.

    A file whose header declares more frames than can be decoded (typically a truncated file that
    FFmpeg still opens) produces a ``UserWarning``, since some valid files also disagree with
    their header by a few frames.

    Args:
        filename: path to the video file.
        max_frames: largest number of frames to return; ``None`` keeps all of them.
        frame_stride: keep every ``frame_stride``-th decoded frame (``>= 1``).
        grayscale: ``True`` returns one luma channel, ``False`` three RGB channels.
        max_voxels: largest number of values returned (default ``MAX_VIDEO_VOXELS``, 2**28: 1 GiB as
            float32, e.g. 290 frames of 1280 x 720 RGB); ``None``: no limit.

    Returns:
        ``(frames, meta)``: float32 array ``(C, T, H, W)`` of the decoded 8-bit values (0-255) with ``C`` = 1 or 3, and a
        dict with ``filename_or_obj`` (the path), ``original_channel_dim`` (0), ``total_frames``
        (number of frames decoded from the file) and, when the container reports it, ``fps``.

    Raises:
        OptionalImportError: when PyAV is not installed.
        TypeError: when ``max_frames``, ``frame_stride`` or ``max_voxels`` is not an integer.
        ValueError: naming the path, when the file does not exist, cannot be opened or decoded,
            holds no video stream, yields zero frames or frames of varying size, or its frames are
            over ``max_voxels``; also when ``max_frames``, ``frame_stride`` or ``max_voxels`` is < 1.
    """
    if max_frames is not None:
        max_frames = _check_positive_int(max_frames, "max_frames")
    frame_stride = _check_positive_int(frame_stride, "frame_stride")
    if max_voxels is not None:
        max_voxels = _check_positive_int(max_voxels, "max_voxels")
    if not has_av:
        raise OptionalImportError("load_video requires PyAV (`pip install av`).")
    path = os.fspath(filename)
    if not os.path.isfile(path):
        raise ValueError(f"video file '{path}' does not exist or is not a regular file.")

    pix_fmt = "gray" if grayscale else "rgb24"
    try:
        kept, decoded, declared, fps = _decode_video(path, pix_fmt, frame_stride, max_frames, max_voxels)
        positions = _kept_positions(-(-decoded // frame_stride), max_frames).tolist()
        if not all(p in kept for p in positions):  # the header's count was missing or wrong: decode again
            kept, again, _, _ = _decode_video(path, pix_fmt, frame_stride, max_frames, max_voxels, set(positions))
            if again != decoded:
                raise ValueError(f"video file '{path}' decoded to {decoded} frames, then to {again}.")
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode video file '{path}' (corrupt, truncated or unsupported): {e}") from e
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read video file '{path}': {e}") from e

    if not decoded:
        raise ValueError(f"video file '{path}' contains zero decodable frames.")
    if declared > decoded:
        warnings.warn(
            f"video file '{path}' declares {declared} frames but only {decoded} could be decoded; "
            "it may be truncated.",
            stacklevel=2,
        )
    stacked = np.stack([kept[p] for p in positions], axis=0)  # (T, H, W) or (T, H, W, 3)
    stacked = stacked[None] if grayscale else np.moveaxis(stacked, -1, 0)  # (C, T, H, W)
    frames = np.ascontiguousarray(stacked, dtype=np.float32)  # the decoded 8-bit values, 0-255
    meta: dict[str, Any] = {"filename_or_obj": path, "original_channel_dim": 0, "total_frames": decoded}
    if fps is not None:
        meta["fps"] = fps
    return frames, meta
