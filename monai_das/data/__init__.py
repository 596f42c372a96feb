"""Datasets for frame-sequence classification: MedMNIST 3D volumes (offline npz), videos listed in
CSV manifests (COVID-BLUES and its four targets), BUSV PNG frame folders, and a synthetic task whose class is visible in
only a few frames; readers of hospital inputs (NIfTI, DICOM, video) for inference."""

from __future__ import annotations

from .busv import BUSV_CLASS_NAMES, BUSVDataset, busv_frame_files, list_busv_videos
from .covid_blues import (
    COVID_BLUES_CLASS_NAMES,
    COVID_BLUES_TARGETS,
    CovidBluesDataset,
    covid_blues_class_names,
    read_covid_blues_labels,
)
from .input_discovery import DICOM_SUFFIXES, NIFTI_SUFFIXES, VIDEO_SUFFIXES, InputSpec, expand_inputs, inference_datalist
from .inference_dataset import InferenceDataset, error_message
from .load_sequence import LoadSequence, LoadSequenced, LoadSequenceD, LoadSequenceDict, picked_source_frames
from .medmnist3d import (
    MEDMNIST3D_FLAGS,
    MEDMNIST3D_SIZES,
    MedMNIST3D,
    class_names,
    medmnist3d_filename,
    medmnist3d_info,
)
from .npz_dataset import NPZ_SPLITS, NpzSequenceDataset, file_md5
from .sequence_readers import (
    DEFAULT_MAX_VOXELS,
    SLICE_PLANES,
    FrameSequence,
    check_size,
    read_array,
    read_dicom_file,
    read_dicom_series,
    read_nifti,
    read_video,
    slice_axcodes,
)
from .synthetic import (
    SYNTHETIC_CLASS_NAMES,
    SyntheticSequenceDataset,
    evidence_hit_rate,
    make_synthetic_sequences,
    save_synthetic_npz,
    synthetic_evidence_mask,
)
from .group_splits import group_k_fold, split_by_group
from .manifest import read_manifest, validate_manifest
from .video_manifest import VideoManifestDataset

__all__ = [
    "BUSV_CLASS_NAMES",
    "BUSVDataset",
    "busv_frame_files",
    "list_busv_videos",
    "DICOM_SUFFIXES",
    "NIFTI_SUFFIXES",
    "VIDEO_SUFFIXES",
    "InferenceDataset",
    "InputSpec",
    "expand_inputs",
    "inference_datalist",
    "error_message",
    "picked_source_frames",
    "LoadSequence",
    "LoadSequenced",
    "LoadSequenceD",
    "LoadSequenceDict",
    "MEDMNIST3D_FLAGS",
    "MEDMNIST3D_SIZES",
    "MedMNIST3D",
    "class_names",
    "medmnist3d_filename",
    "medmnist3d_info",
    "NPZ_SPLITS",
    "NpzSequenceDataset",
    "file_md5",
    "DEFAULT_MAX_VOXELS",
    "SLICE_PLANES",
    "FrameSequence",
    "check_size",
    "read_array",
    "read_dicom_file",
    "read_dicom_series",
    "read_nifti",
    "read_video",
    "slice_axcodes",
    "SYNTHETIC_CLASS_NAMES",
    "SyntheticSequenceDataset",
    "evidence_hit_rate",
    "make_synthetic_sequences",
    "save_synthetic_npz",
    "synthetic_evidence_mask",
    "COVID_BLUES_CLASS_NAMES",
    "COVID_BLUES_TARGETS",
    "CovidBluesDataset",
    "covid_blues_class_names",
    "read_covid_blues_labels",
    "VideoManifestDataset",
    "group_k_fold",
    "read_manifest",
    "split_by_group",
    "validate_manifest",
]
