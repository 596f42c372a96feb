"""Hospital inputs read the MONAI way (:mod:`monai_das.data.sequence_readers`): NIfTI orientation, DICOM series
order, YBR colour, 2-D refusal and the size limit, on files written here with nibabel and pydicom."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from apps_testing import has_nib, has_pydicom, write_dicom, write_jpeg_ybr_dicom, write_nifti

from monai_das.data import LoadSequence, LoadSequenced, expand_inputs, read_dicom_series, read_nifti, slice_axcodes

needs_dicom = pytest.mark.skipif(not has_pydicom, reason="pydicom is not installed")
needs_nifti = pytest.mark.skipif(not has_nib, reason="nibabel is not installed")


def _save(path, volume, affine):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume, dtype=np.float32), affine), str(path))
    return path


def _stored_copies(tmp_path, volume, affine):
    """One world volume stored in four voxel orders: as is, x flipped, axes permuted (z, x, y), and both."""
    n = volume.shape[0]
    flipped = affine.copy()
    flipped[:3, 0] *= -1
    flipped[:3, 3] += affine[:3, 0] * (n - 1)
    copies = [(volume, affine), (volume[::-1], flipped)]
    copies += [(np.transpose(v, (2, 0, 1)), a[:, [2, 0, 1, 3]]) for v, a in copies]
    return [(_save(tmp_path / f"copy{i}.nii.gz", v, a), a) for i, (v, a) in enumerate(copies)]


@needs_nifti
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal", "I"])
def test_nifti_in_any_voxel_order_gives_the_same_frames_and_world_slices(tmp_path, plane):
    rng = np.random.default_rng(0)
    volume = rng.random((10, 12, 8)).astype(np.float32)
    affine = np.diag([2.0, 1.5, 3.0, 1.0])
    affine[:3, 3] = [5.0, -3.0, 7.0]
    reads = [(read_nifti(path, plane), a) for path, a in _stored_copies(tmp_path, volume, affine)]
    axis = {"S": 2, "I": 2, "A": 1, "P": 1, "R": 0, "L": 0}[slice_axcodes(plane)[0]]
    reference = reads[0][0].frames
    for seq, a in reads:
        torch.testing.assert_close(seq.frames, reference, rtol=0, atol=0)
        # each frame's source index is a voxel index of its file along the anatomical axis: same world position
        file_axis = int(np.argmax(np.abs(a[axis, :3])))
        world = [a[axis, file_axis] * i + a[axis, 3] for i in seq.source_frames]
        ref_axis = int(np.argmax(np.abs(affine[axis, :3])))
        np.testing.assert_allclose(world, [affine[axis, ref_axis] * i + affine[axis, 3]
                                           for i in reads[0][0].source_frames])
    assert reference.shape[1] == volume.shape[axis]
    direction = np.sign(np.diff([affine[axis, axis] * i for i in reads[0][0].source_frames]))
    assert set(direction) == {1.0 if slice_axcodes(plane)[0] in "SAR" else -1.0}


@needs_nifti
def test_nifti_axial_frames_are_the_z_slices_of_an_ras_volume(tmp_path):
    volume = np.random.default_rng(1).random((6, 7, 5)).astype(np.float32)
    seq = read_nifti(write_nifti(tmp_path / "v.nii", volume))  # identity affine: RAS
    assert seq.frames.shape == (1, 5, 7, 6) and seq.source_frames == list(range(5))
    # SPL: rows run to posterior (y reversed), columns to the left (x reversed)
    np.testing.assert_allclose(seq.frames[0, 2].numpy(), volume[::-1, ::-1, 2].T)


@needs_nifti
def test_a_2d_slice_is_refused_unless_allowed(tmp_path):
    path = write_nifti(tmp_path / "slice.nii.gz", np.ones((16, 16, 1)))
    with pytest.raises(ValueError, match=r"slice\.nii\.gz.*single 2-D image.*allow_2d"):
        read_nifti(path)
    assert read_nifti(path, allow_2d=True).frames.shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="single 2-D image"):
        LoadSequence()(np.zeros((8, 8)))


@needs_nifti
def test_an_oversized_nifti_is_refused_from_its_header(tmp_path):
    """768^3 uint8 voxels of zeros: a ~1 MB .nii.gz that would take 1.7 GB as float32; refused before reading."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((768, 768, 768))
    header.set_data_dtype(np.uint8)
    header.set_sform(np.eye(4), code=1)
    path = tmp_path / "bomb.nii.gz"
    chunk = bytes(768 * 768 * 64)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header.binaryblock + struct.pack("<i", 0))  # the header, then the 4-byte extension flag
        for _ in range(12):
            f.write(chunk)
    assert path.stat().st_size < 3_000_000
    with pytest.raises(ValueError, match=r"bomb\.nii\.gz.*452984832 voxels.*--max_voxels"):
        read_nifti(path)


def _series(folder, numbers, positions, order):
    folder.mkdir()
    for k in order:
        write_dicom(folder / f"f{numbers[k]:02d}_{k}.dcm", np.full((6, 8), 100 * (k + 1)), "1.2.3",
                    instance_number=numbers[k], position=positions[k])
    return folder


@needs_dicom
def test_dicom_series_in_position_order_with_a_warning_when_instance_numbers_disagree(tmp_path):
    positions = [0.0, 2.5, 5.0, 7.5, 10.0, 12.5]  # slice k at z = 2.5 k: its value is 100 (k + 1) - 100
    interleaved = [1, 4, 2, 5, 3, 6]
    folder = _series(tmp_path / "inter", interleaved, positions, order=[3, 0, 5, 1, 4, 2])
    spec = expand_inputs([folder])[0]
    with pytest.warns(UserWarning, match="InstanceNumber order .* disagrees"):
        seq = read_dicom_series(spec.files)
    # axial, SPL: frames run inferior -> superior, i.e. increasing z
    np.testing.assert_allclose(seq.frames[0, :, 0, 0].numpy(), [100 * (k + 1) - 100 for k in range(6)])
    assert seq.source_frames == interleaved and len(set(seq.source_uids)) == 6
    # shuffled files, consistent numbers: same order, no warning
    folder = _series(tmp_path / "shuffled", [1, 2, 3, 4, 5, 6], positions, order=[4, 2, 0, 5, 1, 3])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seq = read_dicom_series(expand_inputs([folder])[0].files)
    assert seq.source_frames == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(seq.frames[0, :, 0, 0].numpy(), [100 * (k + 1) - 100 for k in range(6)])


@needs_dicom
def test_a_single_dicom_slice_is_refused(tmp_path):
    path = write_dicom(tmp_path / "one.dcm", np.zeros((8, 8)), "1.2")
    with pytest.raises(ValueError, match=r"one\.dcm.*single 2-D image"):
        LoadSequence()(str(path))


@needs_dicom
def test_jpeg_ybr_dicom_is_read_as_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[4:8, :, 1] = 150
    path = write_jpeg_ybr_dicom(tmp_path / "ybr.dcm", rgb)
    seq = LoadSequence(channels=3, allow_2d=True)(str(path))
    assert seq.frames.shape == (3, 1, 16, 16)
    np.testing.assert_allclose(seq.frames[:, 0].permute(1, 2, 0).numpy(), rgb, atol=3)  # JPEG at quality 100
    grey = LoadSequence(channels=1, allow_2d=True)(str(path)).frames[0, 0]
    np.testing.assert_allclose(grey.numpy(), rgb @ np.array([0.299, 0.587, 0.114]), atol=3)


def test_load_sequenced_keys_and_non_finite_values():
    frames = np.arange(5 * 4 * 4, dtype=np.float32).reshape(5, 4, 4)
    frames[1, 0, 0] = np.nan
    with pytest.warns(UserWarning, match="1 non-finite"):
        d = LoadSequenced("image", channels=3)({"image": frames})
    assert d["image"].shape == (3, 5, 4, 4) and float(d["image"][0, 1, 0, 0]) == 0.0
    assert d["image_frame_index"].flatten().tolist() == list(range(5))
    assert d["image_source_frames"].tolist() == list(range(5)) and d["image_num_source_frames"] == 5
    with pytest.raises(ValueError, match="slice_plane"):
        LoadSequence(slice_plane="oblique")
