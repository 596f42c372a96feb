"""Turn files and folders into a list of inputs: NIfTI volumes, DICOM series and cines, videos, MedMNIST npz volumes.

Folder walks are safe on any folder: a folder reached twice (a symlink loop, or a link to a parent or sibling)
is walked once, a file reached twice through links is listed once, a link that leads outside the folder given is
not followed (an error row names it), and FIFOs, devices and sockets are skipped without being opened (opening a
FIFO blocks). A NIfTI header whose affine is not finite or is singular (a zero voxel spacing) is an error: the slice
direction cannot be known; a zero or negative ``pixdim`` beside a usable affine is a warning.
"""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import look_up_option, optional_import

from .npz_dataset import NPZ_SPLITS
from .sequence_readers import DEFAULT_MAX_VOXELS, check_size

pydicom, has_pydicom = optional_import("pydicom")
nib, has_nib = optional_import("nibabel")

__all__ = [
    "NIFTI_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DICOM_SUFFIXES",
    "InputSpec",
    "expand_inputs",
    "inference_datalist",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpeg", ".mpg", ".gif")  # every container PyAV reads here
DICOM_SUFFIXES = (".dcm", ".dicom")


@dataclass
class InputSpec:
    """One input as found on disk, before it is read.

    Attributes:
        id: its name in outputs (a path, ``file.npz#index``, or ``folder#SeriesInstanceUID``).
        kind: ``"nifti"``, ``"dicom"`` (one file), ``"dicom_series"``, ``"video"``, ``"npz"`` or ``"invalid"``.
        path: the file or folder.
        files: the files of a DICOM series.
        index: the volume index in an npz split.
        array: the npz split's image array (shared by its volumes).
        error: set when the input is already known to be unusable (missing, unsupported type, unreadable npz).
        warning: a note for the outputs (e.g. unreadable files left out of a DICOM series).
    """

    id: str
    kind: str
    path: Path
    files: tuple[Path, ...] = ()
    index: int | None = None
    array: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None
    warning: str | None = None

    @property
    def source(self) -> Any:
        """What :class:`monai_das.data.LoadSequence` reads: a path, the files of a series, or a volume array."""
        if self.error is not None:
            raise ValueError(self.error)
        if self.kind == "dicom_series":
            return list(self.files)
        if self.kind == "npz":
            return self.array[self.index]  # type: ignore[index]
        return str(self.path)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)  # follows links: a link and its target have one (st_dev, st_ino)
    except OSError:
        return None


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _kind_of(path: Path) -> str | None:
    """The reader of a regular file, from its name (``DICM`` preamble for DICOM files without a suffix)."""
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


def expand_inputs(
    paths: Sequence[str | os.PathLike], npz_split: str = "test", max_voxels: int | None = DEFAULT_MAX_VOXELS
) -> list[InputSpec]:
    """Turn files and folders into a list of inputs, in order (folders sorted by name, recursively).

    In a folder, the single-frame DICOM files of one SeriesInstanceUID make one series; other files are one input
    each; a MedMNIST npz file gives one input per volume of its ``npz_split`` split.

    Args:
        paths: files or folders.
        npz_split: the split of MedMNIST npz files: ``"train"``, ``"val"`` or ``"test"``.
        max_voxels: largest npz split array that is loaded (``None``: no limit).

    Returns:
        one :class:`InputSpec` per input; inputs already known to be unusable carry an ``error``.
    """
    npz_split = look_up_option(npz_split, NPZ_SPLITS)
    specs: list[InputSpec] = []
    seen: set[tuple[int, int]] = set()
    for p in paths:
        path = Path(p)
        st = _stat(path)
        if st is None:
            specs.append(_invalid(path, f"no such file or folder: '{path}'."))
        elif stat.S_ISDIR(st.st_mode):
            found = _expand_folder(path, npz_split, max_voxels, seen, path.resolve())
            if not found:
                specs.append(_invalid(path, f"folder '{path}' holds no NIfTI, DICOM, video or npz file."))
            specs.extend(found)
        elif not stat.S_ISREG(st.st_mode):
            specs.append(_invalid(path, f"'{path}' is not a regular file (a FIFO, device or socket): not read."))
        elif (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            specs.extend(_file_inputs(path, npz_split, max_voxels, listed=True))
    return specs


def inference_datalist(
    paths: Sequence[str | os.PathLike], npz_split: str = "test", max_voxels: int | None = DEFAULT_MAX_VOXELS
) -> list[dict[str, Any]]:
    """The datalist of a bundle's inference: ``{"image": what LoadSequenced reads, "id": the input's name, "error":
    why it cannot be used, else ""}`` per input of :func:`expand_inputs` (an input given or found but unusable stays
    in the list with its error: :class:`InferenceDataset` turns it into an error row).

    Raises:
        ValueError: when no input is found at all.
    """
    specs = expand_inputs(paths, npz_split, max_voxels)
    if not specs:
        raise ValueError(f"no NIfTI, DICOM, video or npz input found in {[str(p) for p in paths]}.")
    return [{"image": spec.source, "id": spec.id, "error": spec.error or ""} for spec in specs]


def _invalid(path: Path, message: str) -> InputSpec:
    return InputSpec(str(path), "invalid", path, error=message)


def _file_inputs(path: Path, npz_split: str, max_voxels: int | None, listed: bool) -> list[InputSpec]:
    kind = _kind_of(path)
    if kind is None:
        if not listed:
            logger.info("skipping %s: not a NIfTI, DICOM, video or npz file", path)
            return []
        return [_invalid(path, f"unsupported file type: '{path}' (expected .nii, .nii.gz, DICOM, "
                               f"{', '.join(VIDEO_SUFFIXES)} or .npz).")]
    if kind == "npz":
        return _expand_npz(path, npz_split, max_voxels)
    if kind == "nifti":
        return [_nifti_input(path)]
    return [InputSpec(str(path), kind, path)]


def _nifti_input(path: Path) -> InputSpec:
    """A NIfTI input, its header checked: the affine orients the volume (the slice direction), so one that is not
    finite or is singular is an error; a non-positive spacing in ``pixdim`` beside a usable affine is a warning."""
    if not has_nib:
        return InputSpec(str(path), "nifti", path)
    try:
        header_image = nib.load(str(path))  # the header only: the pixels are read later, if at all
        affine = np.asarray(header_image.affine, dtype=np.float64)
        with nib.openers.ImageOpener(str(path)) as f:  # as stored: nibabel's own check turns a 0 spacing into 1
            raw = type(header_image.header).from_fileobj(f, check=False)
        zooms = [float(z) for z in raw["pixdim"][1:4]]
    except Exception:  # noqa: BLE001 - a corrupt file: the reader names the problem
        return InputSpec(str(path), "nifti", path)
    if not np.isfinite(affine).all():
        return _invalid(path, f"NIfTI file '{path}' has a non-finite affine (NaN or inf in its sform/qform): its "
                              "orientation, and so the slice direction, is unknown; fix the header.")
    if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12:
        return _invalid(path, f"NIfTI file '{path}' has a singular affine (a zero voxel spacing or a collapsed axis; "
                              f"pixdim {zooms}): its orientation, and so the slice direction, is unknown; fix the "
                              "header.")
    warning = None
    if not all(np.isfinite(z) and z > 0 for z in zooms):
        warning = (f"NIfTI file '{path}': pixdim {zooms} has a zero, negative or non-finite voxel spacing; the "
                   "orientation comes from the affine (sform/qform), which may not match it.")
        logger.warning("%s", warning)
    return InputSpec(str(path), "nifti", path, warning=warning)


def _outside(path: Path, root: Path) -> Path | None:
    """Where ``path`` leads when that is outside ``root`` (``None`` when it stays inside)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return None  # a loop: the walk's own checks skip it
    return None if real == root or root in real.parents else real


def _expand_folder(
    folder: Path, npz_split: str, max_voxels: int | None, seen: set[tuple[int, int]], root: Path
) -> list[InputSpec]:
    st = _stat(folder)
    if st is None or (st.st_dev, st.st_ino) in seen:
        if st is not None:
            logger.info("skipping %s: a folder already listed (a link to it or a loop)", folder)
        return []
    seen.add((st.st_dev, st.st_ino))
    specs: list[InputSpec] = []
    dicom_files: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        return [_invalid(folder, f"cannot list folder '{folder}': {e}")]
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            continue
        est = _stat(path)
        target = _outside(path, root) if est is not None and entry.is_symlink() else None
        if est is None:
            logger.info("skipping %s: a broken link or unreadable entry", path)
        elif target is not None:
            logger.warning("skipping %s: a link that leads outside the folder given (%s) to %s", path, root, target)
            specs.append(_invalid(path, f"'{path}' is a link that leads outside the folder given ('{root}') to "
                                        f"'{target}': not followed."))
        elif stat.S_ISDIR(est.st_mode):
            specs.extend(_expand_folder(path, npz_split, max_voxels, seen, root))
        elif not stat.S_ISREG(est.st_mode):
            logger.info("skipping %s: not a regular file (a FIFO, device or socket)", path)
        elif (est.st_dev, est.st_ino) in seen:
            logger.info("skipping %s: the same file is already listed (through a link)", path)
        else:
            seen.add((est.st_dev, est.st_ino))
            if _kind_of(path) == "dicom":
                dicom_files.append(path)
            else:
                specs.extend(_file_inputs(path, npz_split, max_voxels, listed=False))
    if dicom_files:
        specs.extend(_group_dicom(folder, dicom_files))
    return specs


def _group_dicom(folder: Path, files: list[Path]) -> list[InputSpec]:
    """Single-frame DICOM files of a folder make one series per SeriesInstanceUID (MONAI's ``PydicomReader`` reads
    every DICOM file of a folder as one series); multi-frame files stand alone."""
    if not has_pydicom:
        return [_invalid(folder, f"reading the DICOM files in '{folder}' needs pydicom (pip install pydicom).")]
    series: dict[str, list[Path]] = {}
    singles: list[InputSpec] = []
    unreadable: list[str] = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except Exception as e:  # noqa: BLE001 - any unreadable header is reported, not raised
            unreadable.append(f.name)
            singles.append(_invalid(f, f"cannot read DICOM file '{f}': {type(e).__name__}: {e}"))
            continue
        if frames > 1:
            singles.append(InputSpec(str(f), "dicom", f))
        else:
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(f)
    warning = None
    if unreadable:
        warning = f"{len(unreadable)} unreadable DICOM file(s) in the folder left out: {' '.join(unreadable)}"
    specs = [
        InputSpec(str(folder) if len(series) == 1 else f"{folder}#{uid}", "dicom_series", folder,
                  files=tuple(members), warning=warning)
        for uid, members in series.items()
    ]
    return specs + singles


def _npy_shape(path: Path, member: str) -> tuple[int, ...]:
    """Shape of an array in an npz file, from its header (nothing else is decompressed)."""
    with zipfile.ZipFile(path) as zf, zf.open(member) as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read_header(f)
    return tuple(int(s) for s in shape)


def _expand_npz(path: Path, split: str, max_voxels: int | None) -> list[InputSpec]:
    key = f"{split}_images"
    try:
        shape = _npy_shape(path, f"{key}.npy")
    except KeyError:
        return [_invalid(path, f"npz file '{path}' has no '{key}' array (MedMNIST layout).")]
    except Exception as e:  # noqa: BLE001
        return [_invalid(path, f"cannot read npz file '{path}': {type(e).__name__}: {e}")]
    if len(shape) not in (4, 5) or shape[0] == 0:
        return [_invalid(path, f"npz file '{path}': '{key}' must be (N, T, H, W) or (N, C, T, H, W) with "
                               f"N >= 1, got shape {shape}.")]
    try:
        check_size(f"{path}:{key}", shape, max_voxels)
        with np.load(path, allow_pickle=False) as npz:
            images = npz[key]
    except Exception as e:  # noqa: BLE001
        return [_invalid(path, f"cannot read npz file '{path}': {type(e).__name__}: {e}")]
    return [InputSpec(f"{path}#{i}", "npz", path, index=i, array=images) for i in range(images.shape[0])]
