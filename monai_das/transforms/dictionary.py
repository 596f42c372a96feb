"""Dictionary versions of the frame-sequence transforms in :mod:`monai_das.transforms.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform

from .array import LoadVideo, PadOrCropFrames, RandFrameSample, UniformFrameSample, VolumeToSequence
from .functional import FrameCropMode, FramePadMode, check_frames_shape
from .video_reading import MAX_VIDEO_VOXELS

__all__ = [
    "LoadVideod",
    "LoadVideoD",
    "LoadVideoDict",
    "VolumeToSequenced",
    "VolumeToSequenceD",
    "VolumeToSequenceDict",
    "UniformFrameSampled",
    "UniformFrameSampleD",
    "UniformFrameSampleDict",
    "RandFrameSampled",
    "RandFrameSampleD",
    "RandFrameSampleDict",
    "PadOrCropFramesd",
    "PadOrCropFramesD",
    "PadOrCropFramesDict",
]


class LoadVideod(MapTransform):
    """Dictionary-based version :py:class:`monai_das.transforms.LoadVideo`.

    Replaces each file path under ``keys`` by the decoded ``MetaTensor`` ``(C, T, H, W)``.

    Args:
        keys: keys of the items holding video file paths.
        max_frames: largest number of frames per video (evenly spread); ``None`` keeps all.
        frame_stride: keep every ``frame_stride``-th decoded frame.
        grayscale: ``True`` gives one channel, ``False`` three RGB channels.
        max_voxels: refuse a video whose returned frames hold more values (``None``: no limit).
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = LoadVideo.backend

    def __init__(
        self,
        keys: KeysCollection,
        max_frames: int | None = None,
        frame_stride: int = 1,
        grayscale: bool = True,
        allow_missing_keys: bool = False,
        max_voxels: int | None = MAX_VIDEO_VOXELS,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadVideo(max_frames=max_frames, frame_stride=frame_stride, grayscale=grayscale,
                                max_voxels=max_voxels)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])  # type: ignore[arg-type]
        return d


class VolumeToSequenced(MapTransform):
    """Dictionary-based version :py:class:`monai_das.transforms.VolumeToSequence`.

    Args:
        keys: keys of the channel-first volumes to transform.
        frame_axis: spatial axis (channel not counted) holding the slices: 0, 1, 2 or -3, -2, -1.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = VolumeToSequence.backend

    def __init__(self, keys: KeysCollection, frame_axis: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = VolumeToSequence(frame_axis=frame_axis)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class UniformFrameSampled(MapTransform):
    """Dictionary-based version :py:class:`monai_das.transforms.UniformFrameSample`.

    Keys with the same ``T`` get the same frames, since the selection depends only on ``T``.

    Args:
        keys: keys of the ``(C, T, H, W)`` images to sample.
        num_frames: number of frames to keep.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = UniformFrameSample.backend

    def __init__(self, keys: KeysCollection, num_frames: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.sampler = UniformFrameSample(num_frames=num_frames)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.sampler(d[key])
        return d


class RandFrameSampled(RandomizableTransform, MapTransform):
    """Dictionary-based version :py:class:`monai_das.transforms.RandFrameSample`.

    Draws the frame indices once per call, from the first key's ``T``, and applies the same
    indices to every key, so an image and its per-frame label stay aligned.

    Args:
        keys: keys of the ``(C, T, H, W)`` images to sample; all must have the same ``T``.
        num_frames: number of distinct frames to keep.
        allow_missing_keys: don't raise an exception if a key is missing.

    Raises:
        ValueError: at call time when the keys do not share the same number of frames ``T``.
    """

    backend = RandFrameSample.backend

    def __init__(self, keys: KeysCollection, num_frames: int, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.sampler = RandFrameSample(num_frames=num_frames)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandFrameSampled:
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        first_key: Hashable = self.first_key(d)
        if first_key == ():
            return d
        num_total = check_frames_shape(d[first_key], name=f"data[{first_key!r}]")
        for key in self.key_iterator(d):
            t = check_frames_shape(d[key], name=f"data[{key!r}]")
            if t != num_total:
                raise ValueError(
                    f"{type(self).__name__} applies the same frames to every key, but data[{key!r}] has "
                    f"T={t} frames while data[{first_key!r}] has T={num_total}."
                )
        self.randomize(None)
        if self.sampler.num_frames > num_total:
            raise ValueError(
                f"`num_frames` ({self.sampler.num_frames}) must not exceed the number of frames T ({num_total}) "
                f"of data[{first_key!r}]."
            )
        self.sampler.randomize(num_total)
        for key in self.key_iterator(d):
            d[key] = self.sampler(d[key], randomize=False)
        return d


class PadOrCropFramesd(MapTransform):
    """Dictionary-based version :py:class:`monai_das.transforms.PadOrCropFrames`.

    With ``return_mask=True`` the bool mask ``(num_frames,)`` of each key (``True`` = real frame,
    ``False`` = padded frame; see :py:class:`monai_das.transforms.PadOrCropFrames`) is written under
    ``f"{key}{mask_key_postfix}"``, e.g. ``"image_frame_mask"``, replacing any value there.

    Args:
        keys: keys of the ``(C, T, H, W)`` images to pad or crop.
        num_frames: number of output frames.
        mode: crop policy, ``"resample"`` or ``"center"``.
        pad_mode: pad policy, ``"repeat"`` or ``"zeros"``.
        return_mask: write the frame mask next to each key.
        mask_key_postfix: suffix of the mask keys; default ``"_frame_mask"``.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = PadOrCropFrames.backend

    def __init__(
        self,
        keys: KeysCollection,
        num_frames: int,
        mode: str = FrameCropMode.RESAMPLE,
        pad_mode: str = FramePadMode.REPEAT,
        return_mask: bool = False,
        mask_key_postfix: str = "_frame_mask",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not isinstance(mask_key_postfix, str) or not mask_key_postfix:
            raise ValueError(f"`mask_key_postfix` must be a non-empty string, got {mask_key_postfix!r}.")
        self.padder = PadOrCropFrames(num_frames=num_frames, mode=mode, pad_mode=pad_mode, return_mask=True)
        self.return_mask = bool(return_mask)
        self.mask_key_postfix = mask_key_postfix

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], mask = self.padder(d[key])  # type: ignore[misc]
            if self.return_mask:
                d[f"{key}{self.mask_key_postfix}"] = mask
        return d


LoadVideoD = LoadVideoDict = LoadVideod
VolumeToSequenceD = VolumeToSequenceDict = VolumeToSequenced
UniformFrameSampleD = UniformFrameSampleDict = UniformFrameSampled
RandFrameSampleD = RandFrameSampleDict = RandFrameSampled
PadOrCropFramesD = PadOrCropFramesDict = PadOrCropFramesd
