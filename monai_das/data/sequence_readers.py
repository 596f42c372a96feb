"""Read a hospital file (NIfTI volume, DICOM series, DICOM cine, video) or an array as a sequence of frames.

Volumes are read with MONAI: ``LoadImage`` (``NibabelReader``) + ``EnsureChannelFirst`` + ``Orientation``, so that
the frame axis is an anatomical direction (``slice_plane``) and a volume stored in another voxel order gives the
same frames. Written by hand, because MONAI lacks it:

- DICOM series: MONAI's ``PydicomReader`` orders a series by InstanceNumber and takes the slice spacing from the
  z coordinate only; here slices are ordered by their position along the slice normal (ImagePositionPatient .
  (row x column cosines)), with a warning when InstanceNumber disagrees, and the affine is built from that order
  before the same ``Orientation``.
- DICOM pixel values: MONOCHROME1 inverted over the stored bit range; YBR_FULL / YBR_FULL_422 colour turned to RGB
  also for JPEG-compressed files (pydicom 2 leaves their decoded pixels in YBR); the modality LUT applied.
- DICOM multi-frame cines and videos (PyAV, :func:`monai_das.transforms.load_video`): the frame axis is time.

Intensities stay in the file's units (videos: 0-255); the bundle's preprocessing maps them as in training.
Every reader refuses an input over ``max_voxels`` before its pixels are allocated, and a single 2-D image unless
``allow_2d``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import look_up_option, optional_import

from monai_das.transforms import load_video, uniform_frame_indices

nib, has_nib = optional_import("nibabel")
pydicom, has_pydicom = optional_import("pydicom")

__all__ = [
    "SLICE_PLANES",
    "LUMA",
    "DEFAULT_MAX_VOXELS",
    "FrameSequence",
    "slice_axcodes",
    "check_size",
    "read_nifti",
    "read_dicom_series",
    "read_dicom_file",
    "read_video",
    "read_array",
]

#: axcodes of ``(T, H, W)`` per slice plane: frames run along the first code, rows and columns as a radiologist
#: views the plane (axial: anterior at the top, the patient's right on the left)
SLICE_PLANES = {"axial": "SPL", "coronal": "AIL", "sagittal": "RIP"}
_PLANE_OF_CODE = {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal", "R": "sagittal", "L": "sagittal"}
#: largest input, in voxels (frames x rows x columns x channels): 2**28, a 512 x 512 x 1024 CT (1 GiB as float32)
DEFAULT_MAX_VOXELS = 2**28
_YBR_DECODED = ("YBR_FULL", "YBR_FULL_422")
#: ITU-R BT.601 luma weights of R, G, B
LUMA = (0.299, 0.587, 0.114)


@dataclass
class FrameSequence:
    """Frames as read from one input, in the file's intensity units.

    Attributes:
        frames: float32 ``MetaTensor`` ``(C, N, H, W)``; C = 1 (grey) or 3 (RGB). A volume's affine is kept.
        source_frames: ``(N,)`` how the file numbers each frame: the voxel index along the anatomical axis (NIfTI),
            InstanceNumber (DICOM series), the frame index (cine, video, array).
        source_uids: ``(N,)`` SOPInstanceUID of each frame of a DICOM series, else empty.
        num_source_frames: frames in the file (a video may hold more than were decoded and kept).
    """

    frames: MetaTensor
    source_frames: list[int]
    source_uids: list[str] = field(default_factory=list)
    num_source_frames: int = 0


def slice_axcodes(slice_plane: str) -> str:
    """Axcodes of ``(T, H, W)`` for a slice plane: ``"axial"``, ``"coronal"``, ``"sagittal"``, or one code letter
    (``"S"``, ``"I"``, ``"A"``, ``"P"``, ``"R"``, ``"L"``: the direction in which the frames run; e.g. ``"I"`` gives
    axial slices from head to feet, ``"IPL"``).

    Raises:
        ValueError: for another value (the message lists the valid ones).
    """
    if isinstance(slice_plane, str) and len(slice_plane) == 1 and slice_plane.upper() in _PLANE_OF_CODE:
        code = slice_plane.upper()
        return code + SLICE_PLANES[_PLANE_OF_CODE[code]][1:]
    try:
        return SLICE_PLANES[look_up_option(slice_plane, tuple(SLICE_PLANES))]
    except ValueError as e:
        raise ValueError(f"slice_plane: {e} (or one axcode letter of {sorted(_PLANE_OF_CODE)})") from e


def check_size(name: str, shape: Sequence[int], max_voxels: int | None) -> None:
    """Refuse an input of ``shape`` over ``max_voxels`` voxels (``None``: no limit) before it is read.

    Raises:
        ValueError: naming the input, its shape, the limit and how to raise it.
    """
    size = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if max_voxels is not None and size > int(max_voxels):
        raise ValueError(f"'{name}' holds {size} voxels (shape {tuple(int(s) for s in shape)}), over the limit of "
                         f"{int(max_voxels)}; raise it with --max_voxels (max_voxels=) if the memory allows.")


def _refuse_2d(name: str, shape: Sequence[int]) -> None:
    raise ValueError(f"'{name}' is a single 2-D image (shape {tuple(shape)}); the model classifies a sequence of "
                     "slices or frames. Pass allow_2d=True (--allow_2d) to run it as a one-frame sequence.")


def _refuse_complex(name: str, dtype: Any) -> None:
    """Casting complex values to float would drop the imaginary part without a word: refuse them instead."""
    if (dtype.is_complex if isinstance(dtype, torch.dtype) else np.issubdtype(np.dtype(dtype), np.complexfloating)):
        raise ValueError(
            f"'{name}' holds complex values ({dtype}); the models read real intensities: save the magnitude "
            "(numpy.abs) or the real part as a real-valued image first."
        )


def _oriented(img: MetaTensor, axcodes: str) -> tuple[MetaTensor, list[int]]:
    """``Orientation(axcodes)`` of a channel-first volume, and the file's voxel index of each output frame."""
    from monai.transforms import Orientation

    affine_in = np.asarray(img.affine, dtype=np.float64)
    out = Orientation(axcodes=axcodes, labels=None)(img)
    moved = np.linalg.solve(affine_in, np.asarray(out.affine, dtype=np.float64))  # output voxel -> input voxel
    axis = int(np.argmax(np.abs(moved[:3, 0])))
    steps = np.arange(out.shape[1], dtype=np.float64)
    return out, [int(round(v)) for v in moved[axis, 0] * steps + moved[axis, 3]]


def read_nifti(
    path: str | os.PathLike, slice_plane: str = "axial", max_voxels: int | None = DEFAULT_MAX_VOXELS,
    allow_2d: bool = False,
) -> FrameSequence:
    """A NIfTI volume ``(X, Y, Z)`` as frames along ``slice_plane`` (MONAI ``LoadImage`` + ``EnsureChannelFirst``
    + ``Orientation``). Trailing axes of length 1 (``(X, Y, Z, 1)``) are dropped.

    Raises:
        ValueError: naming the file, when it cannot be read, holds complex values, is not 3-D, is 2-D (unless
            ``allow_2d``) or is over ``max_voxels`` (checked on the header, before the pixels are read).
    """
    from monai.transforms import EnsureChannelFirst, LoadImage

    if not has_nib:
        raise RuntimeError("reading NIfTI needs nibabel (pip install nibabel).")
    path = os.fspath(path)
    axcodes = slice_axcodes(slice_plane)
    try:
        header_image = nib.load(path)
        shape = tuple(int(s) for s in header_image.shape)
    except Exception as e:  # noqa: BLE001 - nibabel, gzip and zlib raise many types for a corrupt file
        raise ValueError(f"cannot read NIfTI file '{path}': {type(e).__name__}: {e}") from e
    _refuse_complex(path, header_image.get_data_dtype())
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2 or (len(shape) == 3 and 1 in shape and not allow_2d):
        _refuse_2d(path, shape)  # allow_2d takes (X, Y, 1): a 2-D file has no slice direction to orient
    if len(shape) != 3 or 0 in shape:
        raise ValueError(f"NIfTI file '{path}' has shape {shape}; a 3-D volume (X, Y, Z) is needed.")
    check_size(path, shape, max_voxels)
    try:
        img = LoadImage(reader="NibabelReader", image_only=True, dtype=np.float32, squeeze_non_spatial_dims=True)(path)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot read NIfTI file '{path}': {type(e).__name__}: {e}") from e
    img = EnsureChannelFirst(channel_dim="no_channel")(img)
    frames, source = _oriented(img, axcodes)
    return FrameSequence(frames, source, [], frames.shape[1])


# ------------------------------------------------------------------------------------------------------------- DICOM


def _dicom_pixels(ds: Any, name: str) -> np.ndarray:
    """Pixel data as float32 ``(frames, rows, cols[, 3])``: YBR to RGB, modality LUT, MONOCHROME1 inverted."""
    from pydicom.pixel_data_handlers.util import apply_modality_lut, convert_color_space

    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ValueError(f"cannot decode the pixel data of DICOM file '{name}' (transfer syntax {syntax}): "
                         f"{type(e).__name__}: {e}") from e
    interpretation = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3 and interpretation in _YBR_DECODED:
        # pydicom 2 decodes both native and JPEG YBR data to full-resolution YBR (YBR_FULL), without turning it
        # to RGB; MONAI's PydicomReader does not convert it either
        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    if samples != 1:
        return np.asarray(arr, dtype=np.float32)
    arr = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    if interpretation == "MONOCHROME1":  # high values are dark: invert over the stored range (not the data's)
        bits = int(ds.get("BitsStored", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        arr = np.float32(slope * (lo + hi) + 2 * intercept) - arr
    return arr


def _read_dicom(path: Path, stop_before_pixels: bool = False) -> Any:
    if not has_pydicom:
        raise RuntimeError("reading DICOM needs pydicom (pip install pydicom).")
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels, force=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot read DICOM file '{path}': {type(e).__name__}: {e}") from e


def _slice_geometry(ds: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row cosine, column cosine (ImageOrientationPatient) and position (ImagePositionPatient), LPS, in mm."""
    iop, ipp = ds.get("ImageOrientationPatient", None), ds.get("ImagePositionPatient", None)
    if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
        raise ValueError(f"DICOM file '{name}' of a series has no ImageOrientationPatient / ImagePositionPatient: "
                         "the slice order cannot be known.")
    iop = np.asarray([float(v) for v in iop])
    return iop[:3], iop[3:], np.asarray([float(v) for v in ipp])


def read_dicom_series(
    files: Sequence[str | os.PathLike], slice_plane: str = "axial", max_voxels: int | None = DEFAULT_MAX_VOXELS,
    allow_2d: bool = False,
) -> FrameSequence:
    """Single-frame DICOM files of one series as frames along ``slice_plane``.

    Slices are ordered by position along the slice normal; when that order differs from InstanceNumber's a
    ``UserWarning`` says so. The affine (LPS from ImageOrientationPatient, PixelSpacing and the positions, turned to
    RAS) then goes through MONAI's ``Orientation``, as a NIfTI volume does.

    Raises:
        ValueError: naming the file, for a slice without geometry, of another size or orientation, a series of one
            slice (unless ``allow_2d``) or over ``max_voxels`` (checked on the headers).
    """
    headers = [(Path(f), _read_dicom(Path(f), stop_before_pixels=True)) for f in files]
    if not headers:
        raise ValueError("a DICOM series needs at least one file.")
    first_name, first = headers[0]
    rows, cols = int(first.get("Rows", 0) or 0), int(first.get("Columns", 0) or 0)
    if len(headers) == 1 and not allow_2d:
        _refuse_2d(str(first_name), (rows, cols))
    check_size(str(first_name.parent), (len(headers), rows, cols), max_voxels)
    row_cos, col_cos, _ = _slice_geometry(first, str(first_name))
    normal = np.cross(row_cos, col_cos)
    placed = []
    for name, ds in headers:
        r, c, ipp = _slice_geometry(ds, str(name))
        if not (np.allclose(r, row_cos, atol=1e-3) and np.allclose(c, col_cos, atol=1e-3)):
            raise ValueError(f"DICOM series '{first_name.parent}': slice '{name.name}' has another orientation "
                             f"({[*r, *c]}) than '{first_name.name}' ({[*row_cos, *col_cos]}).")
        number = ds.get("InstanceNumber", None)
        placed.append((float(np.dot(normal, ipp)), int(number) if number is not None else 0, str(name), ipp))
    placed.sort(key=lambda p: (p[0], p[2]))
    numbers = [p[1] for p in placed]
    if numbers != sorted(numbers) and numbers != sorted(numbers, reverse=True):
        warnings.warn(f"DICOM series '{first_name.parent}': InstanceNumber order {numbers} disagrees with the slice "
                      "positions; slices are read in position order.", stacklevel=2)
    frames, uids = [], []
    for _, _, name, _ in placed:
        ds = _read_dicom(Path(name))
        arr = _dicom_pixels(ds, name)
        if arr.shape[:2] != (rows, cols) or arr.ndim != (2 if int(ds.get("SamplesPerPixel", 1) or 1) == 1 else 3):
            raise ValueError(f"DICOM series '{first_name.parent}': slice '{Path(name).name}' has pixel data of shape "
                             f"{arr.shape}; one {rows} x {cols} slice per file is needed.")
        frames.append(arr if arr.ndim == 2 else arr @ np.asarray(LUMA, np.float32))
        uids.append(str(ds.get("SOPInstanceUID", "")))
    spacing = [float(v) for v in (first.get("PixelSpacing", None) or (1.0, 1.0))]
    step = (placed[-1][3] - placed[0][3]) / (len(placed) - 1) if len(placed) > 1 else normal
    lps = np.eye(4)
    # array (columns, rows, slices): i runs along a row (row cosine), j down a column (column cosine)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_cos * spacing[1], col_cos * spacing[0], step, placed[0][3]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    volume = np.stack(frames, axis=-1).swapaxes(0, 1)[None]  # (1, cols, rows, slices)
    img = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume)), affine=torch.as_tensor(affine))
    out, index = _oriented(img, slice_axcodes(slice_plane))
    return FrameSequence(out, [numbers[i] for i in index], [uids[i] for i in index], len(placed))


def read_dicom_file(
    path: str | os.PathLike, max_voxels: int | None = DEFAULT_MAX_VOXELS, allow_2d: bool = False
) -> FrameSequence:
    """One DICOM file: a multi-frame cine (NumberOfFrames > 1, e.g. ultrasound) as ``(C, frames, rows, cols)``
    in file order; a single-frame file is a 2-D image, refused unless ``allow_2d``.

    Raises:
        ValueError: naming the file, when it cannot be read or decoded, is 2-D (unless ``allow_2d``) or is over
            ``max_voxels`` (checked on the header).
    """
    path = Path(path)
    header = _read_dicom(path, stop_before_pixels=True)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    shape = (frames, int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0), samples)
    if frames == 1 and not allow_2d:
        _refuse_2d(str(path), shape[1:3])
    check_size(str(path), shape, max_voxels)
    arr = _dicom_pixels(_read_dicom(path), str(path))
    if arr.ndim != 2 + (frames > 1) + (samples > 1):
        raise ValueError(f"DICOM file '{path}': pixel data of shape {arr.shape} does not match NumberOfFrames="
                         f"{frames}, SamplesPerPixel={samples}.")
    arr = arr[None] if frames == 1 else arr
    seq = np.moveaxis(arr, -1, 0) if samples > 1 else arr[None]  # (C, T, H, W)
    if seq.shape[0] not in (1, 3):
        raise ValueError(f"DICOM file '{path}' has {seq.shape[0]} samples per pixel; 1 (grey) or 3 (colour) needed.")
    n = seq.shape[1]
    return FrameSequence(MetaTensor(np.ascontiguousarray(seq)), list(range(n)), [], n)


def read_video(
    path: str | os.PathLike, max_frames: int | None = None, grayscale: bool = True,
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
) -> FrameSequence:
    """A video (PyAV, :func:`monai_das.transforms.load_video`): at most ``max_frames`` frames evenly spread over it,
    intensities 0-255 (the 8-bit values of the decoded frames).

    Raises:
        ValueError: naming the file, when it cannot be decoded or the kept frames are over ``max_voxels`` (checked
            by ``load_video`` before the frames are kept).
    """
    frames, meta = load_video(path, max_frames=max_frames, grayscale=grayscale, max_voxels=max_voxels)
    n, total = frames.shape[1], int(meta.get("total_frames", frames.shape[1]))
    source = uniform_frame_indices(total, n) if total > n else np.arange(n)
    return FrameSequence(MetaTensor(frames), [int(s) for s in source], [], total)


def read_array(
    array: Any, name: str = "array", max_voxels: int | None = DEFAULT_MAX_VOXELS, allow_2d: bool = False
) -> FrameSequence:
    """Frames given as an array: ``(N, H, W)`` or ``(C, N, H, W)`` (e.g. a MedMNIST volume, its first axis the frame
    axis as in training), values as they are.

    Raises:
        ValueError: for complex values, another number of dimensions, a 2-D image (unless ``allow_2d``) or over
            ``max_voxels``.
    """
    _refuse_complex(name, array.dtype)
    shape = tuple(array.shape)
    if len(shape) == 2 and allow_2d:
        array, shape = array[None], (1, *shape)
    if len(shape) == 2:
        _refuse_2d(name, shape)
    if len(shape) not in (3, 4) or 0 in shape:
        raise ValueError(f"'{name}': an array input must be (N, H, W) or (C, N, H, W), got shape {shape}.")
    check_size(name, shape, max_voxels)
    data = torch.as_tensor(np.asarray(array.detach().cpu() if isinstance(array, torch.Tensor) else array),
                           dtype=torch.float32)
    data = data[None] if data.ndim == 3 else data
    n = int(data.shape[1])
    return FrameSequence(MetaTensor(data), list(range(n)), [], n)
