"""Frame-sequence transforms for channel-first ``(C, T, H, W)`` images: pure functions, array and
dictionary transforms (with ``D``/``Dict`` aliases), and the check that flags an input unlike the training data."""

from __future__ import annotations

from .array import LoadVideo, PadOrCropFrames, RandFrameSample, UniformFrameSample, VolumeToSequence
from .dictionary import (
    LoadVideoD,
    LoadVideod,
    LoadVideoDict,
    PadOrCropFramesD,
    PadOrCropFramesd,
    PadOrCropFramesDict,
    RandFrameSampleD,
    RandFrameSampled,
    RandFrameSampleDict,
    UniformFrameSampleD,
    UniformFrameSampled,
    UniformFrameSampleDict,
    VolumeToSequenceD,
    VolumeToSequenced,
    VolumeToSequenceDict,
)
from .domain_check import STATISTICS, DomainCheckd, domain_warning, input_statistics, training_statistics
from .functional import (
    FrameCropMode,
    FramePadMode,
    check_frames_shape,
    evenly_spaced_indices,
    pad_or_crop_frame_indices,
    pad_or_crop_frames,
    random_frame_indices,
    select_frames,
    uniform_frame_indices,
    volume_to_sequence,
)
from .video_reading import MAX_VIDEO_VOXELS, load_video

__all__ = [
    "STATISTICS",
    "DomainCheckd",
    "domain_warning",
    "input_statistics",
    "training_statistics",
    # functional
    "MAX_VIDEO_VOXELS",
    "FrameCropMode",
    "FramePadMode",
    "check_frames_shape",
    "evenly_spaced_indices",
    "load_video",
    "pad_or_crop_frame_indices",
    "pad_or_crop_frames",
    "random_frame_indices",
    "select_frames",
    "uniform_frame_indices",
    "volume_to_sequence",
    # array
    "LoadVideo",
    "PadOrCropFrames",
    "RandFrameSample",
    "UniformFrameSample",
    "VolumeToSequence",
    # dictionary
    "LoadVideod",
    "LoadVideoD",
    "LoadVideoDict",
    "PadOrCropFramesd",
    "PadOrCropFramesD",
    "PadOrCropFramesDict",
    "RandFrameSampled",
    "RandFrameSampleD",
    "RandFrameSampleDict",
    "UniformFrameSampled",
    "UniformFrameSampleD",
    "UniformFrameSampleDict",
    "VolumeToSequenced",
    "VolumeToSequenceD",
    "VolumeToSequenceDict",
]
