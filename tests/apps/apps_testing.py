"""Small inputs of every supported kind and a bundle checkpoint made from a freshly built network (no training).

Imported by the tests as ``apps_testing`` (the test folders are not packages); ``conftest.py`` holds the fixtures.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
from monai.utils import optional_import

nib, has_nib = optional_import("nibabel")
av, has_av = optional_import("av")
pydicom, has_pydicom = optional_import("pydicom")

REPO = Path(__file__).resolve().parents[2]
VESSEL_BUNDLE = REPO / "bundles" / "vesselmnist3d_das_classification"
COVID_BUNDLE = REPO / "bundles" / "covid_blues_das_classification"


def build_network(bundle: Path = VESSEL_BUNDLE, calibrate: bool = True, **overrides) -> torch.nn.Module:
    """The bundle's ``network_def``, built from ``configs/train.json`` as ``ckpt_export`` builds it, in eval mode.

    A freshly initialised MobileNetV3 in eval mode gives the same logits for every input (its activations shrink to
    ~1e-10 through the default BatchNorm statistics), which would make any comparison of logits meaningless. With
    ``calibrate`` the BatchNorm statistics are set from one no-grad forward pass in train mode on random inputs (no
    training), so that the logits depend on the input.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.update({"bundle_root": str(bundle), **overrides})
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    if calibrate:
        shape = parser.get_parsed_content("num_frames"), parser.get_parsed_content("frame_size")
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative average: one pass sets the statistics
        net.train()
        with torch.no_grad():
            net(torch.rand(4, 1, shape[0], shape[1], shape[1]))
    return net.eval()


def save_checkpoint(network: torch.nn.Module, path: Path) -> Path:
    """A plain state dict: what the bundle's CheckpointSaver writes for its single ``{"model": network}`` entry
    (ignite saves a one-object checkpoint without the key), and what ckpt_export / CheckpointLoader read."""
    torch.save(network.state_dict(), path)
    return path


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


PYTHON = sys.executable


# ------------------------------------------------------------------------------------------------- input file writers


def write_nifti(path: Path, volume: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(path))
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    series_uid: str,
    instance_number: int = 1,
    position: float = 0.0,
    num_frames: int | None = None,
    rgb: bool = False,
) -> Path:
    """A DICOM file with proper file meta (Explicit VR Little Endian), readable back by pydicom.

    ``pixels``: uint16 ``(H, W)`` for a slice, uint8 ``(T, H, W, 3)`` for an RGB multi-frame cine (``num_frames``).
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = "1.2.840.10008.5.1.4.1.1.3.1" if num_frames else "1.2.840.10008.5.1.4.1.1.4"  # US multi-frame, MR
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US" if num_frames else "MR"
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "TEST", series_uid + ".1", series_uid
    ds.InstanceNumber = instance_number
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    if num_frames:
        ds.NumberOfFrames = num_frames
    else:
        ds.ImagePositionPatient = [0.0, 0.0, float(position)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -100
    if rgb:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        pixels = pixels.astype(np.uint8)
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        pixels = pixels.astype(np.uint16)
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(str(path), write_like_original=False)
    return path


def write_dicom_series(folder: Path, slices: np.ndarray) -> Path:
    """One file per slice of ``slices (T, H, W)``; file names run opposite to InstanceNumber so that sorting by
    name would be wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = "1.2.826.0.1.3680043.8.498.1"
    n = len(slices)
    for i, s in enumerate(slices):
        write_dicom(folder / f"IM{n - i:03d}.dcm", s, uid, instance_number=i + 1, position=2.5 * i)
    return folder


def write_video(path: Path, frames: np.ndarray, rate: int = 10) -> Path:
    """``frames (T, H, W)`` uint8 grey, as an mpeg4 mp4 (PyAV)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            rgb = np.repeat(f[..., None], 3, axis=2).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_medmnist_npz(path: Path, n_test: int = 3, size: int = 28, seed: int = 0) -> Path:
    """MedMNIST 3D layout: ``{train,val,test}_images`` uint8 (N, D, H, W), ``*_labels`` (N, 1)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 1), ("val", 1), ("test", n_test)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1)).astype(np.int64)
    np.savez_compressed(path, **arrays)
    return path


def write_jpeg_ybr_dicom(path: Path, rgb: np.ndarray) -> Path:
    """``rgb (H, W, 3)`` uint8 as a JPEG Baseline DICOM (Pillow's encoder, 4:4:4) with PhotometricInterpretation
    YBR_FULL_422, as ultrasound machines write colour frames; pydicom 2 decodes it to YBR, not RGB."""
    import io

    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, generate_uid

    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="JPEG", quality=100, subsampling=0)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = 1
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(str(path), write_like_original=False)
    return path
