"""Reading a video file into a channel-first frame array with PyAV (:func:`load_video`)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from monai.utils import OptionalImportError, optional_import

from .functional import _check_positive_int, uniform_frame_indices

av, has_av = optional_import("av")

__all__ = ["MAX_VIDEO_VOXELS", "load_video"]


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


def _decode_kept_frames(
    path: str, grayscale: bool, frame_stride: int, max_frames: int | None, max_voxels: int | None
) -> tuple[dict[int, np.ndarray], list[int], int, int, float | None]:
    """``(frames by position, positions returned, frames decoded, frames declared, fps)`` of :func:`load_video`,
    decoding a second time when the header's frame count was missing or wrong; decoder errors become ``ValueError``."""
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
    return kept, positions, decoded, declared, fps


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

    kept, positions, decoded, declared, fps = _decode_kept_frames(path, grayscale, frame_stride, max_frames, max_voxels)

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
