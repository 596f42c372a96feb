"""Batch inference of a bundle's network on NIfTI, DICOM, video and MedMNIST npz files, one CSV row per input.

    monai-das predict --bundle bundles/vesselmnist3d_das_classification --input scans/ clip.mp4 test.npz \\
        --output results.csv [--ckpt model.pt] [--montage_dir montages/] [--device cpu] [--overwrite]
    python -m monai_das.apps.cli predict ...          # the same

Inputs are files or folders. A folder is expanded: its files and sub-folders, where all the single-frame DICOM files
of one folder (and one SeriesInstanceUID) make one DICOM series. Readers, chosen by file name:

- NIfTI (``.nii``, ``.nii.gz``, nibabel): a volume ``(X, Y, Z)`` is cut into slices along ``--slice_axis`` (default
  the last axis, ``Z``); no reorientation, voxel spacing is ignored.
- DICOM series (pydicom): slices sorted by InstanceNumber (then ImagePositionPatient along the slice normal, then file
  name), modality LUT (RescaleSlope/Intercept) applied, stacked.
- DICOM file (``.dcm`` or any file with the ``DICM`` preamble): a multi-frame cine (NumberOfFrames > 1, e.g.
  ultrasound) gives ``(T, H, W)`` frames, colour (RGB/YBR) frames are turned to grey (ITU-R BT.601 luma).
- video (``.mp4``, ``.avi``, ``.mov``, ``.mkv``; PyAV through :func:`monai_das.transforms.load_video`, the function
  behind ``LoadVideo``).
- MedMNIST npz: every volume of the ``--npz_split`` split (``test`` by default) is one input named ``file.npz#index``;
  its first axis is the frame axis, as in training.

Every input is then brought to what the bundle expects (``configs/metadata.json``,
``network_data_format.inputs.image``: ``spatial_shape`` ``[T, H, W]``, ``num_channels``, ``value_range`` [0, 1]):
frames resampled to ``T`` (:class:`monai_das.transforms.PadOrCropFrames`: evenly spread frames when longer,
nearest-neighbour repetition when shorter), each frame resized to ``H x W`` (area interpolation, as the bundles'
``Resized``), and the intensities min-max scaled to [0, 1] per input (a constant input becomes zeros). For MedMNIST
files, whose volumes span 0-255, min-max equals the ``/ 255`` used in training.

CSV columns: ``input, status, predicted_class, predicted_label, prob_<class>..., picked_frames, source_frames,
num_source_frames, montage, error, warning``. ``picked_frames`` are the sampler's picks in the resampled sequence
``[0, T)``; ``source_frames`` the same frames as indices of the original file (0-based; for a DICOM series, positions
in the sorted series), in the same order; they can repeat when the input had fewer than ``T`` frames. An input that
cannot be read or run gets ``status=error`` and the message; the others go on. The exit status is 0 when at least
one input succeeded, 2 when none did, 1 when nothing could be run (bad bundle, checkpoint or arguments, or an output
file that exists without ``--overwrite``).

Extra ``--key value`` pairs override the bundle's ``configs/train.json`` (for example ``--sampler_name dps`` for a
checkpoint trained with that override); only keys that the config has are accepted.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import optional_import

from monai_das.transforms import (
    PadOrCropFrames,
    load_video,
    pad_or_crop_frame_indices,
    uniform_frame_indices,
    volume_to_sequence,
)

nib, has_nib = optional_import("nibabel")
pydicom, has_pydicom = optional_import("pydicom")
PILImage, has_pil = optional_import("PIL.Image")

__all__ = [
    "InputSpec",
    "RawSequence",
    "BundlePredictor",
    "expand_inputs",
    "read_input",
    "prepare_sequence",
    "write_montage",
    "predict",
    "build_parser",
    "main",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
DICOM_SUFFIXES = (".dcm", ".dicom")
NPZ_SPLITS = ("train", "val", "test")
MONTAGE_STYLES = ("picks", "decisions")
EXIT_OK, EXIT_SETUP_ERROR, EXIT_ALL_FAILED = 0, 1, 2
#: how the frame axis is brought to the bundle's T (see PadOrCropFrames)
FRAME_CROP_MODE, FRAME_PAD_MODE = "resample", "repeat"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class InputSpec:
    """One input as found on disk, before it is read.

    Attributes:
        id: the name written in the CSV's ``input`` column (a path, ``file.npz#index``, or ``folder#SeriesUID``).
        kind: ``"nifti"``, ``"dicom"`` (one file), ``"dicom_series"``, ``"video"``, ``"npz"`` or ``"invalid"``.
        path: the file or folder.
        files: the files of a DICOM series.
        index: the volume index in an npz split.
        array: the npz split's image array (shared by its volumes).
        error: set when the input is already known to be unusable (missing, unsupported type, unreadable npz).
        warning: a note for the CSV (e.g. unreadable files left out of a DICOM series).
    """

    id: str
    kind: str
    path: Path
    files: tuple[Path, ...] = ()
    index: int | None = None
    array: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None
    warning: str | None = None


@dataclass
class RawSequence:
    """Frames as read from an input, before resampling.

    Attributes:
        frames: float32 ``(C, N, H, W)``, C = 1 (grey) or 3 (RGB), any intensity range.
        source_frames: int64 ``(N,)``: the index in the original file of each frame.
        num_source_frames: the number of frames of the original file.
    """

    frames: np.ndarray
    source_frames: np.ndarray
    num_source_frames: int


# ---------------------------------------------------------------------------------------------------- input discovery


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(VIDEO_SUFFIXES):
        return "video"
    if name.endswith(DICOM_SUFFIXES) or _has_dicom_preamble(path):
        return "dicom"
    return None


def expand_inputs(paths: Sequence[str | os.PathLike], npz_split: str = "test") -> list[InputSpec]:
    """Turn the command line's files and folders into a list of inputs, in order (folders sorted by name).

    Args:
        paths: files or folders.
        npz_split: the split of MedMNIST npz files to use: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        one :class:`InputSpec` per input; inputs already known to be unusable carry an ``error``.
    """
    if npz_split not in NPZ_SPLITS:
        raise ValueError(f"npz_split must be one of {list(NPZ_SPLITS)}, got {npz_split!r}.")
    specs: list[InputSpec] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = _expand_folder(path, npz_split)
            if not found:
                specs.append(_invalid(path, f"folder '{path}' holds no NIfTI, DICOM, video or npz file."))
            specs.extend(found)
        elif path.is_file():
            kind = _kind_of(path)
            if kind is None:
                specs.append(_invalid(path, f"unsupported file type: '{path}' (expected .nii, .nii.gz, DICOM, "
                                            f"{', '.join(VIDEO_SUFFIXES)} or .npz)."))
            elif kind == "npz":
                specs.extend(_expand_npz(path, npz_split))
            else:
                specs.append(InputSpec(str(path), kind, path))
        else:
            specs.append(_invalid(path, f"no such file or folder: '{path}'."))
    return specs


def _invalid(path: Path, message: str, id_: str | None = None) -> InputSpec:
    return InputSpec(id_ or str(path), "invalid", path, error=message)


def _expand_folder(folder: Path, npz_split: str) -> list[InputSpec]:
    specs: list[InputSpec] = []
    dicom_files: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            specs.extend(_expand_folder(entry, npz_split))
            continue
        kind = _kind_of(entry)
        if kind is None:
            logger.info("skipping %s: not a NIfTI, DICOM, video or npz file", entry)
        elif kind == "dicom":
            dicom_files.append(entry)
        elif kind == "npz":
            specs.extend(_expand_npz(entry, npz_split))
        else:
            specs.append(InputSpec(str(entry), kind, entry))
    if dicom_files:
        specs.extend(_group_dicom(folder, dicom_files))
    return specs


def _group_dicom(folder: Path, files: list[Path]) -> list[InputSpec]:
    """Single-frame DICOM files of a folder make one series per SeriesInstanceUID; multi-frame files stand alone."""
    if not has_pydicom:
        return [_invalid(folder, f"reading the DICOM files in '{folder}' needs pydicom (pip install pydicom).")]
    series: dict[str, list[Path]] = {}
    singles: list[InputSpec] = []
    unreadable: list[str] = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=f.name.lower().endswith(DICOM_SUFFIXES))
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except Exception as e:  # noqa: BLE001 - any unreadable header is reported, not raised
            unreadable.append(f.name)
            singles.append(_invalid(f, f"cannot read DICOM file '{f}': {type(e).__name__}: {e}"))
            continue
        if frames > 1:
            singles.append(InputSpec(str(f), "dicom", f))
        else:
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(f)
    specs = []
    for uid, members in series.items():
        id_ = str(folder) if len(series) == 1 else f"{folder}#{uid}"
        warning = None
        if unreadable:
            warning = f"{len(unreadable)} unreadable DICOM file(s) in the folder left out: {' '.join(unreadable)}"
        specs.append(InputSpec(id_, "dicom_series", folder, files=tuple(members), warning=warning))
    return specs + singles


def _expand_npz(path: Path, split: str) -> list[InputSpec]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            key = f"{split}_images"
            if key not in npz.files:
                return [_invalid(path, f"npz file '{path}' has no '{key}' array (MedMNIST layout); found "
                                       f"{sorted(npz.files)}.")]
            images = npz[key]
    except Exception as e:  # noqa: BLE001
        return [_invalid(path, f"cannot read npz file '{path}': {type(e).__name__}: {e}")]
    if images.ndim not in (4, 5) or images.shape[0] == 0:
        return [_invalid(path, f"npz file '{path}': '{split}_images' must be (N, T, H, W) or (N, C, T, H, W) with "
                               f"N >= 1, got shape {images.shape}.")]
    return [InputSpec(f"{path}#{i}", "npz", path, index=i, array=images) for i in range(images.shape[0])]


# ------------------------------------------------------------------------------------------------------------ readers


def read_input(
    spec: InputSpec, slice_axis: int = -1, grayscale: bool = True, max_frames: int | None = None
) -> RawSequence:
    """Read one input's frames.

    Args:
        spec: from :func:`expand_inputs`.
        slice_axis: NIfTI only: the voxel axis (0, 1, 2 or -3, -2, -1) whose slices become frames.
        grayscale: videos only: decode one luma channel (``True``) or RGB.
        max_frames: videos only: keep at most this many frames, evenly spread over the video (``None``: all).

    Raises:
        ValueError: for an input that cannot be read (the message names it); ``OptionalImportError`` /
            ``RuntimeError`` when the reader's package is missing.
    """
    if spec.error is not None:
        raise ValueError(spec.error)
    if spec.kind == "nifti":
        return _read_nifti(spec.path, slice_axis)
    if spec.kind == "dicom_series":
        return _read_dicom_series(spec.files)
    if spec.kind == "dicom":
        return _read_dicom_file(spec.path)
    if spec.kind == "video":
        # load_video keeps max_frames frames evenly spread (uniform_frame_indices), exactly what the resampling to
        # T would keep, so only T frames are ever converted to float
        frames, meta = load_video(spec.path, max_frames=max_frames, grayscale=grayscale)
        n, total = frames.shape[1], int(meta.get("total_frames", frames.shape[1]))
        source = uniform_frame_indices(total, n) if total > n else np.arange(n, dtype=np.int64)
        return RawSequence(frames, source, total)
    if spec.kind == "npz":
        return _read_npz_item(spec)
    raise ValueError(f"unsupported input kind {spec.kind!r} for '{spec.id}'.")


def _read_nifti(path: Path, slice_axis: int) -> RawSequence:
    if not has_nib:
        raise RuntimeError("reading NIfTI needs nibabel (pip install nibabel).")
    try:
        arr = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - nibabel, gzip and zlib raise many types for a corrupt file
        raise ValueError(f"cannot read NIfTI file '{path}': {type(e).__name__}: {e}") from e
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.size == 0:
        raise ValueError(f"NIfTI file '{path}' has shape {arr.shape}; a 3-D volume (X, Y, Z) is needed.")
    frames = np.asarray(volume_to_sequence(arr[None], slice_axis))  # (1, T, H, W), the other axes in order
    n = frames.shape[1]
    return RawSequence(np.ascontiguousarray(frames), np.arange(n, dtype=np.int64), n)


def _dicom_pixels(ds: Any, path: Path) -> np.ndarray:
    """Pixel data with the modality LUT applied, negated for MONOCHROME1, as float32 (frames, H, W[, 3])."""
    from pydicom.pixel_data_handlers.util import apply_modality_lut, convert_color_space

    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ValueError(f"cannot decode the pixel data of DICOM file '{path}' (transfer syntax {syntax}): "
                         f"{type(e).__name__}: {e}") from e
    interpretation = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    compressed = bool(getattr(syntax, "is_compressed", False))
    if samples == 3 and interpretation.startswith("YBR") and not compressed:
        arr = convert_color_space(arr, interpretation, "RGB")
    if samples == 1:
        arr = apply_modality_lut(arr, ds)
    arr = np.asarray(arr, dtype=np.float32)
    if interpretation == "MONOCHROME1":  # high values are dark: negate (the min-max scaling follows)
        arr = -arr
    return arr


def _read_dicom_file(path: Path) -> RawSequence:
    if not has_pydicom:
        raise RuntimeError("reading DICOM needs pydicom (pip install pydicom).")
    try:
        ds = pydicom.dcmread(str(path), force=path.name.lower().endswith(DICOM_SUFFIXES))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot read DICOM file '{path}': {type(e).__name__}: {e}") from e
    arr = _dicom_pixels(ds, path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    expected_ndim = 2 + (frames > 1) + (samples > 1)
    if arr.ndim != expected_ndim:
        raise ValueError(f"DICOM file '{path}': pixel data of shape {arr.shape} does not match NumberOfFrames="
                         f"{frames}, SamplesPerPixel={samples}.")
    if frames == 1:
        arr = arr[None]
    seq = np.moveaxis(arr, -1, 0) if samples > 1 else arr[None]  # (C, T, H, W)
    if seq.shape[0] not in (1, 3):
        raise ValueError(f"DICOM file '{path}' has {seq.shape[0]} samples per pixel; 1 (grey) or 3 (colour) needed.")
    n = seq.shape[1]
    return RawSequence(np.ascontiguousarray(seq), np.arange(n, dtype=np.int64), n)


def _slice_sort_key(ds: Any, name: str) -> tuple:
    """InstanceNumber, then position along the slice normal, then file name."""
    number = ds.get("InstanceNumber", None)
    position = 0.0
    ipp, iop = ds.get("ImagePositionPatient", None), ds.get("ImageOrientationPatient", None)
    if ipp is not None and iop is not None and len(iop) == 6 and len(ipp) == 3:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        position = float(np.dot(normal, np.asarray(ipp, float)))
    return (number is None, int(number) if number is not None else 0, position, name)


def _read_dicom_series(files: Sequence[Path]) -> RawSequence:
    if not has_pydicom:
        raise RuntimeError("reading DICOM needs pydicom (pip install pydicom).")
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), force=f.name.lower().endswith(DICOM_SUFFIXES))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"cannot read DICOM file '{f}': {type(e).__name__}: {e}") from e
        slices.append((_slice_sort_key(ds, f.name), f, ds))
    slices.sort(key=lambda s: s[0])
    frames = []
    for _, f, ds in slices:
        arr = _dicom_pixels(ds, f)
        if arr.ndim == 3 and arr.shape[-1] == 3:
            arr = arr @ _LUMA
        if arr.ndim != 2:
            raise ValueError(f"DICOM file '{f}' of a series has pixel data of shape {arr.shape}; one 2-D slice "
                             "per file is needed.")
        if frames and arr.shape != frames[0].shape:
            raise ValueError(f"DICOM series '{f.parent}': slice '{f.name}' is {arr.shape} (rows, columns) but "
                             f"'{slices[0][1].name}' is {frames[0].shape}.")
        frames.append(arr)
    n = len(frames)
    return RawSequence(np.stack(frames)[None], np.arange(n, dtype=np.int64), n)


def _read_npz_item(spec: InputSpec) -> RawSequence:
    vol = np.asarray(spec.array[spec.index], dtype=np.float32)  # type: ignore[index]
    if vol.ndim == 3:
        vol = vol[None]
    n = vol.shape[1]
    return RawSequence(np.ascontiguousarray(vol), np.arange(n, dtype=np.int64), n)


# ------------------------------------------------------------------------------------------------------ preprocessing


def prepare_sequence(
    raw: RawSequence, spatial_shape: Sequence[int], channels: int = 1
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Bring frames to the network's input: channels, ``T`` frames, ``H x W`` pixels, intensities in [0, 1].

    Args:
        raw: from :func:`read_input`.
        spatial_shape: ``(T, H, W)``.
        channels: 1 (RGB frames become BT.601 luma) or 3 (grey frames are repeated).

    Returns:
        ``(image, source_frames, warnings)``: float32 ``(channels, T, H, W)`` tensor min-max scaled to [0, 1],
        the original frame index of each of its ``T`` frames, and notes for the CSV.

    Raises:
        ValueError: for a channel count that cannot be converted, or an input without a finite value.
    """
    from monai.transforms import Resize

    t, h, w = (int(s) for s in spatial_shape)
    notes: list[str] = []
    x = np.asarray(raw.frames, dtype=np.float32)
    if x.ndim != 4 or min(x.shape) == 0:
        raise ValueError(f"frames must be a non-empty (C, N, H, W) array, got shape {x.shape}.")
    if x.shape[0] != channels:
        if channels == 1 and x.shape[0] == 3:
            x = np.tensordot(_LUMA, x, axes=(0, 0))[None]
        elif channels == 3 and x.shape[0] == 1:
            x = np.repeat(x, 3, axis=0)
        else:
            raise ValueError(f"cannot turn {x.shape[0]}-channel frames into the {channels} channels the bundle needs.")
    finite = np.isfinite(x)
    if not finite.all():
        if not finite.any():
            raise ValueError("the input has no finite intensity value.")
        notes.append(f"{int((~finite).sum())} non-finite values set to the input's minimum")
        x = np.where(finite, x, x[finite].min())
    index, _ = pad_or_crop_frame_indices(x.shape[1], t, FRAME_CROP_MODE, FRAME_PAD_MODE)
    x = PadOrCropFrames(t, mode=FRAME_CROP_MODE, pad_mode=FRAME_PAD_MODE)(x)
    source = raw.source_frames[index]
    image = torch.as_tensor(Resize((-1, h, w), mode="area")(torch.from_numpy(np.ascontiguousarray(x)))).float()
    lo, hi = float(image.min()), float(image.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        notes.append("constant input (all frames one value): scaled to zeros")
        image = torch.zeros_like(image)
    else:
        image = (image - lo) / (hi - lo)
    return image.contiguous(), source, notes


# ---------------------------------------------------------------------------------------------------------- the model


class BundlePredictor:
    """A bundle's network (``configs/train.json`` ``network_def``), loaded from a checkpoint, in eval mode.

    Args:
        bundle: the bundle folder.
        ckpt: the checkpoint: a state dict, or ``{"model": state dict}``; default the config's ``ckpt_path``
            (``<bundle>/outputs/model.pt``), else ``<bundle>/models/model.pt``.
        device: torch device for the network.
        overrides: values for keys of ``train.json`` (e.g. ``{"sampler_name": "dps"}``).

    Attributes:
        spatial_shape: ``(T, H, W)`` the network's input, from ``metadata.json`` (the config's ``num_frames`` and
            ``frame_size`` when overrides change them).
        channels: input channels (the config's ``in_channels``, else the metadata's ``num_channels``).
        class_names: output class names.
        ckpt: the checkpoint used.

    Raises:
        FileNotFoundError: for a missing bundle config, metadata or checkpoint.
        ValueError: for an unknown override key or a checkpoint that does not fit the network.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        ckpt: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        from monai.bundle import ConfigParser

        self.bundle = Path(bundle)
        config_file = self.bundle / "configs" / "train.json"
        meta_file = self.bundle / "configs" / "metadata.json"
        for f in (config_file, meta_file):
            if not f.is_file():
                raise FileNotFoundError(f"bundle '{self.bundle}' has no {f.relative_to(self.bundle)} ({f}).")
        parser = ConfigParser()
        parser.read_config(str(config_file))
        overrides = dict(overrides or {})
        unknown = [k for k in overrides if k not in parser]
        if unknown:
            raise ValueError(f"unknown option(s) {['--' + k for k in unknown]}: neither an option of predict nor a "
                             f"key of {config_file}.")
        parser.update({"bundle_root": str(self.bundle), **overrides})
        meta = json.loads(meta_file.read_text())
        try:
            image_format = meta["network_data_format"]["inputs"]["image"]
            t, h, w = (int(s) for s in image_format["spatial_shape"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{meta_file} must give network_data_format.inputs.image.spatial_shape [T, H, W]: "
                             f"{type(e).__name__}: {e}") from e
        self.channels = int(image_format.get("num_channels", 1))
        if "in_channels" in parser and isinstance(parser.get_parsed_content("in_channels"), int):
            self.channels = int(parser.get_parsed_content("in_channels"))
        for key, value in (("num_frames", t), ("frame_size", h)):
            if key in parser and isinstance(parser.get_parsed_content(key), int):
                configured = int(parser.get_parsed_content(key))
                if configured != value:
                    logger.info("%s is %d in the config, %d in the metadata: using %d", key, configured, value,
                                configured)
                    t, h, w = (configured, h, w) if key == "num_frames" else (t, configured, configured)
        self.spatial_shape = (t, h, w)
        pred_format = meta["network_data_format"].get("outputs", {}).get("pred", {})
        channel_def = pred_format.get("channel_def", {})
        if "class_names" in parser:
            self.class_names = [str(c) for c in parser.get_parsed_content("class_names")]
        elif channel_def:
            self.class_names = [str(channel_def[k]) for k in sorted(channel_def, key=int)]
        else:
            self.class_names = [str(i) for i in range(int(pred_format.get("num_channels", 0)))]
        if not self.class_names:
            raise ValueError(f"{meta_file} names no output classes (outputs.pred.channel_def) and {config_file} has "
                             "no class_names.")
        self.ckpt = self._find_checkpoint(parser, ckpt)
        self.device = torch.device(device)
        network = parser.get_parsed_content("network_def")
        state = torch.load(self.ckpt, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
            state = state["model"]
        try:
            network.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            sampler = parser.get("sampler_name", "?")
            raise ValueError(
                f"checkpoint '{self.ckpt}' does not fit the network of bundle '{self.bundle}' (sampler_name="
                f"{sampler}); pass the overrides used in training, e.g. --sampler_name dps. {e}"
            ) from e
        self.network = network.to(self.device).eval()

    def _find_checkpoint(self, parser: Any, ckpt: str | os.PathLike | None) -> Path:
        if ckpt is not None:
            path = Path(ckpt)
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint '{path}' not found.")
            return path
        candidates = []
        if "ckpt_path" in parser:
            candidates.append(Path(parser.get_parsed_content("ckpt_path")))
        candidates.append(self.bundle / "models" / "model.pt")
        for c in candidates:
            if c.is_file():
                return c
        raise FileNotFoundError(f"no checkpoint found at {[str(c) for c in candidates]}; pass --ckpt PATH.")

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """Run one ``(C, T, H, W)`` input.

        Returns:
            ``(probabilities (num_classes,), picked frame indices (k,) or None, the sampler output or None)``.
        """
        logits = self.network(image[None].to(self.device))
        probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
        out = getattr(self.network, "last_sampler_output", None)
        picks = out.indices[0].cpu().numpy().astype(np.int64) if out is not None else None
        return probs, picks, out


# ------------------------------------------------------------------------------------------------------------ montage


def _slug(text: str, limit: int = 80) -> str:
    name = text.replace("\\", "/").rstrip("/").split("/")[-1] or "input"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-limit:]


def write_montage(
    path: Path, image: torch.Tensor, picks: np.ndarray, title: str, style: str = "picks", scores: Any = None
) -> Path:
    """Write one input's picked frames as a PNG.

    ``style="picks"``: :func:`monai_das.visualize.frames_montage` of the picked frames, in order, each with a bar
    showing where in the sequence it lies (Pillow). ``style="decisions"``:
    :func:`monai_das.visualize.plot_sampling_decisions`, every frame with the picked ones outlined (matplotlib).
    """
    from monai_das.visualize import frames_montage, plot_sampling_decisions

    if style == "decisions":
        return plot_sampling_decisions(image, picks, path, title=title, scores=scores)
    _, t, h, w = image.shape
    montage = frames_montage(image[:, torch.as_tensor(picks)], picks, num_frames=t, scale=max(1, 128 // max(h, w)))
    pixels = (montage.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(path, format="PNG")
    return path


# ------------------------------------------------------------------------------------------------------------ driver


def _indices_text(values: Any) -> str:
    return " ".join(str(int(v)) for v in values)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def predict(
    bundle: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    ckpt: str | os.PathLike | None = None,
    montage_dir: str | os.PathLike | None = None,
    montage_style: str = "picks",
    device: str = "cpu",
    slice_axis: int = -1,
    npz_split: str = "test",
    overwrite: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, str]]:
    """Run a bundle's network on every input and write the CSV (see the module docstring).

    Returns:
        the CSV rows, as written.

    Raises:
        FileExistsError: when ``output`` (or a montage) exists and ``overwrite`` is false; nothing is run then.
        FileNotFoundError, ValueError, RuntimeError: for a bundle, checkpoint or option that cannot be used.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"output file '{output}' exists; pass --overwrite to replace it.")
    if output.is_dir():
        raise ValueError(f"output '{output}' is a folder; give a CSV file name.")
    if montage_style not in MONTAGE_STYLES:
        raise ValueError(f"montage_style must be one of {list(MONTAGE_STYLES)}, got {montage_style!r}.")
    if montage_dir is not None and montage_style == "picks" and not has_pil:
        raise RuntimeError("--montage_dir needs Pillow (pip install pillow).")
    predictor = BundlePredictor(bundle, ckpt=ckpt, device=device, overrides=overrides)
    specs = expand_inputs(inputs, npz_split)
    if not specs:
        raise ValueError("no inputs given.")
    montage_paths: list[Path | None] = [None] * len(specs)
    if montage_dir is not None:
        montage_paths = [Path(montage_dir) / f"{i:04d}_{_slug(s.id)}.png" for i, s in enumerate(specs)]
        existing = [str(p) for p in montage_paths if p is not None and p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"montage file '{existing[0]}' exists ({len(existing)} in all); pass --overwrite "
                                  "to replace them.")
    class_columns = [f"prob_{name}" for name in predictor.class_names]
    columns = ["input", "status", "predicted_class", "predicted_label", *class_columns, "picked_frames",
               "source_frames", "num_source_frames", "montage", "error", "warning"]
    rows: list[dict[str, str]] = []
    for spec, montage_path in zip(specs, montage_paths):
        row = dict.fromkeys(columns, "")
        row["input"] = spec.id
        notes = [spec.warning] if spec.warning else []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                raw = read_input(spec, slice_axis=slice_axis, grayscale=predictor.channels == 1,
                                 max_frames=predictor.spatial_shape[0])
            notes += [_one_line(str(w.message)) for w in caught if issubclass(w.category, UserWarning)]
            image, source, prep_notes = prepare_sequence(raw, predictor.spatial_shape, predictor.channels)
            notes += prep_notes
            probs, picks, out = predictor(image)
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the others
            message = _one_line(f"{type(e).__name__}: {e}")
            if spec.id not in message and str(spec.path) not in message:
                message = f"{spec.id}: {message}"
            row.update(status="error", error=message, warning="; ".join(notes))
            logger.warning("%s: error: %s", spec.id, message)
            rows.append(row)
            continue
        label = int(np.argmax(probs))
        row.update(
            status="ok",
            predicted_class=str(label),
            predicted_label=predictor.class_names[label] if label < len(predictor.class_names) else str(label),
            num_source_frames=str(raw.num_source_frames),
        )
        for name, p in zip(class_columns, probs):
            row[name] = f"{float(p):.6f}"
        if picks is not None:
            row["picked_frames"] = _indices_text(picks)
            row["source_frames"] = _indices_text(source[picks])
        if montage_path is not None and picks is not None:
            title = (f"{spec.id}: {row['predicted_label']} (p={float(probs[label]):.2f}); frames "
                     f"{row['source_frames']} of {raw.num_source_frames}")
            try:
                scores = torch.softmax(out.logits[0], dim=-1) if getattr(out, "logits", None) is not None else None
                row["montage"] = str(write_montage(montage_path, image, picks, title, montage_style, scores))
            except Exception as e:  # noqa: BLE001 - a failed picture does not fail the prediction
                notes.append(_one_line(f"montage not written: {type(e).__name__}: {e}"))
        row["warning"] = "; ".join(notes)
        logger.info("%s: %s (%s)", spec.id, row["predicted_label"], row["source_frames"])
        rows.append(row)
    _write_csv(output, columns, rows, overwrite)
    return rows


def _write_csv(output: Path, columns: list[str], rows: list[dict[str, str]], overwrite: bool) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    if not overwrite and output.exists():  # appeared while we were running
        tmp.unlink()
        raise FileExistsError(f"output file '{output}' exists; pass --overwrite to replace it.")
    os.replace(tmp, output)


# ---------------------------------------------------------------------------------------------------------------- CLI


def build_parser(prog: str = "monai-das predict") -> argparse.ArgumentParser:
    """The argument parser of ``monai-das predict``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a monai_das bundle's network on NIfTI / DICOM / video / MedMNIST npz files and write one "
        "CSV row per input (probabilities, picked frames in the resampled and in the original sequence).",
        epilog="Any other --key value pair overrides the bundle's configs/train.json (e.g. --sampler_name dps). "
        "Exit status: 0 when at least one input succeeded, 2 when none did, 1 when nothing could be run.",
    )
    parser.add_argument("--bundle", required=True, help="the bundle folder (configs/train.json, configs/metadata.json)")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH", help="files or folders")
    parser.add_argument("--output", required=True, metavar="CSV", help="the CSV file to write")
    parser.add_argument("--ckpt", default=None, metavar="PATH",
                        help="checkpoint (default: the bundle's outputs/model.pt, else models/model.pt)")
    parser.add_argument("--montage_dir", default=None, metavar="DIR", help="write one PNG of the picks per input")
    parser.add_argument("--montage_style", default="picks", choices=MONTAGE_STYLES,
                        help="picks: the picked frames (fast); decisions: every frame, picks outlined (matplotlib)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--slice_axis", type=int, default=-1, choices=(-3, -2, -1, 0, 1, 2),
                        help="NIfTI: voxel axis whose slices are the frames (default -1, the last)")
    parser.add_argument("--npz_split", default="test", choices=NPZ_SPLITS, help="MedMNIST npz: the split to run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file and montages")
    return parser


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``monai-das predict``; returns the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if len(rest) % 2 or any(not k.startswith("--") for k in rest[::2]):
        parser.error(f"unrecognized arguments: {' '.join(rest)} (bundle overrides are --key value pairs)")
    overrides = {key[2:]: _literal(value) for key, value in zip(rest[::2], rest[1::2])}
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        rows = predict(
            args.bundle, args.input, args.output, ckpt=args.ckpt, montage_dir=args.montage_dir,
            montage_style=args.montage_style, device=args.device, slice_axis=args.slice_axis,
            npz_split=args.npz_split, overwrite=args.overwrite, overrides=overrides,
        )
    except (FileExistsError, FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        print(f"monai-das predict: error: {e}", file=sys.stderr)
        return EXIT_SETUP_ERROR
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok} of {len(rows)} inputs succeeded; wrote {args.output}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_ALL_FAILED


if __name__ == "__main__":
    sys.exit(main())
