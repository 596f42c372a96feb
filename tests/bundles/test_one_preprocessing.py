"""One preprocessing list: a file gives the network the same tensor through training and through ``inference.json``.

The training path is what ``train.json`` builds (its dataset, which yields the file's 8-bit values, then
``validate#preprocessing``: scale, pad or crop with the frame mask, resize); the inference path is ``inference.json``'s
``dataset`` (``LoadSequenced``, the domain check, then the same list). Both are parsed from the bundles' own configs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_test_data import write_mp4

monai_bundle = pytest.importorskip("monai.bundle")
nib = pytest.importorskip("nibabel")

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"


def parser(name: str, config: str, **overrides) -> "monai_bundle.ConfigParser":
    configs = BUNDLES_DIR / f"{name}_das_classification" / "configs"
    p = monai_bundle.ConfigParser()
    p.read_config(str(configs / config))
    p.read_meta(str(configs / "metadata.json"))
    p.update({"device": "$torch.device('cpu')", **overrides})
    return p


def assert_same(training: dict, inference: dict, what: str) -> None:
    for key in ("image", "image_frame_mask"):
        a, b = torch.as_tensor(training[key]), torch.as_tensor(inference[key])
        assert a.dtype == b.dtype and a.shape == b.shape, (what, key, a.dtype, b.dtype, a.shape, b.shape)
        assert torch.equal(a, b), f"{what}: {key} differs by up to {(a.float() - b.float()).abs().max()}"


def test_npz_volume(bundle_data):
    """A MedMNIST volume: ``MedMNIST3D`` (train.json's test split) and ``inference.json`` on the same npz."""
    options = {"dataset_dir": bundle_data["medmnist"], "check_md5": False}
    training = parser("vesselmnist3d", "train.json", **options).get_parsed_content("test_dataset")
    inference = parser("vesselmnist3d", "inference.json", **options).get_parsed_content("dataset")
    assert len(training) == len(inference) > 0
    for i in range(len(training)):
        assert_same(training[i], inference[i], f"npz volume {i}")
    image = torch.as_tensor(training[0]["image"])
    assert image.shape == (1, 28, 28, 28) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.max()) > 0.5  # scaled once: 8-bit values / 255, not / 255 twice


def test_mp4_video(bundle_data, tmp_path):
    """A COVID-BLUES video: ``CovidBluesDataset`` (decoded to the disk cache, then from it) and ``inference.json``
    on the same test-fold files; short videos are padded, so the frame masks are compared too."""
    options = {"dataset_dir": bundle_data["covid_blues"], "num_frames": 16, "frame_size": 32,
               "video_cache_dir": str(tmp_path / "cache")}
    inference = parser("covid_blues", "inference.json", **options).get_parsed_content("dataset")
    for attempt in ("decoded", "cached"):
        training = parser("covid_blues", "train.json", **options).get_parsed_content("test_dataset")
        assert len(training) == len(inference) > 0
        for i in range(len(training)):
            assert_same(training[i], inference[i], f"{attempt} video {i}")
    assert any(not bool(torch.as_tensor(inference[i]["image_frame_mask"]).all()) for i in range(len(inference))), (
        "no test video is shorter than num_frames: the mask is not exercised")


def test_mp4_through_the_video_reader_of_both_paths(tmp_path):
    """One mp4 read by the training readers' decoder and by inference's: the same 8-bit values."""
    from monai_das.data import read_video
    from monai_das.transforms import LoadVideo

    frames = np.stack([np.full((24, 24), v, np.uint8) for v in (0, 40, 128, 250)])
    path = tmp_path / "clip.mp4"
    write_mp4(str(path), frames)
    loaded = torch.as_tensor(LoadVideo()(str(path)))
    read = torch.as_tensor(read_video(path).frames)
    assert torch.equal(loaded, read)
    assert loaded.dtype == torch.float32 and float(loaded.max()) > 200  # 8-bit units, not [0, 1]


def test_nifti_volume(tmp_path):
    """A NIfTI volume (what MONAI Label trains on): read once, then train.json's ``validate#preprocessing`` and
    ``inference.json``'s list give the same tensor, and the scaling happens once."""
    volume = np.random.default_rng(0).integers(0, 256, (30, 30, 20)).astype(np.float32)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    inference = parser("vesselmnist3d", "inference.json", input_paths=[str(path)]).get_parsed_content("dataset")
    (item,) = [inference[i] for i in range(len(inference))]
    train = parser("vesselmnist3d", "train.json")
    load = parser("vesselmnist3d", "inference.json").get_parsed_content("load")
    training = train.get_parsed_content("validate#preprocessing")(load({"image": str(path)}))
    assert_same(training, item, "NIfTI volume")
    assert torch.as_tensor(item["image"]).shape == (1, 28, 28, 28)
    assert float(torch.as_tensor(item["image"]).max()) > 0.5
