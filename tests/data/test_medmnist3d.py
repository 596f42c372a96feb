from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import monai_das.data.medmnist3d as mm
from monai_das.data import (
    MEDMNIST3D_FLAGS,
    MedMNIST3D,
    NpzSequenceDataset,
    class_names,
    file_md5,
    medmnist3d_filename,
    medmnist3d_info,
)

REAL_ROOT = "/work/shared/data/medmnist3d"


def write_npz(path, size=28, counts=(5, 3, 4), num_classes=2, seed=0, drop=()):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % num_classes).astype(np.uint8).reshape(n, 1)
    for k in drop:
        arrays.pop(k)
    np.savez_compressed(path, **arrays)
    return str(path)


@pytest.mark.parametrize("flag", MEDMNIST3D_FLAGS)
def test_all_flags_read_generated_files(tmp_path, flag):
    n_cls = len(class_names(flag))
    path = write_npz(tmp_path / f"{flag}.npz", num_classes=n_cls)
    for split, n in zip(("train", "val", "test"), (5, 3, 4)):
        ds = MedMNIST3D(tmp_path, flag, split=split, check_md5=False)
        assert len(ds) == n and ds.num_classes == n_cls and ds.class_names == class_names(flag)
        assert ds.labels.dtype == np.int64 and ds.labels.shape == (n,)
        item = ds[1]
        assert item["image"].shape == (1, 28, 28, 28) and item["image"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["label"].ndim == 0 and int(item["label"]) == 1 % n_cls
        with np.load(path) as f:
            expected = f[f"{split}_images"][1].astype(np.float32)  # the file's values, scaled by the bundles
        np.testing.assert_allclose(item["image"][0].numpy(), expected, rtol=0, atol=1e-7)


def test_size_64_and_wrong_size(tmp_path):
    write_npz(tmp_path / "organmnist3d_64.npz", size=64, counts=(2, 1, 1), num_classes=11)
    ds = MedMNIST3D(tmp_path, "organmnist3d", split="val", size=64, check_md5=False)
    assert ds[0]["image"].shape == (1, 64, 64, 64)
    write_npz(tmp_path / "nodulemnist3d_64.npz", size=28, counts=(1, 1, 1))
    with pytest.raises(ValueError, match="64"):
        MedMNIST3D(tmp_path, "nodulemnist3d", size=64, check_md5=False)
    with pytest.raises(ValueError, match="28"):
        MedMNIST3D(tmp_path, "nodulemnist3d", size=32, check_md5=False)
    assert medmnist3d_filename("vesselmnist3d", 64) == "vesselmnist3d_64.npz"


def test_missing_file_message(tmp_path):
    info = medmnist3d_info("fracturemnist3d")
    with pytest.raises(FileNotFoundError) as e:
        MedMNIST3D(tmp_path, "fracturemnist3d", size=64)
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "fracturemnist3d_64.npz") in msg
    assert info["MD5_64"] in msg and info["url_64"] in msg and str(tmp_path) in msg


def test_md5_checks(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "adrenalmnist3d.npz")
    with pytest.raises(ValueError) as e:
        MedMNIST3D(tmp_path, "adrenalmnist3d")
    actual = file_md5(path)
    assert path in str(e.value) and medmnist3d_info("adrenalmnist3d")["MD5"] in str(e.value) and actual in str(e.value)
    # a file whose md5 matches the (patched) INFO entry is accepted
    info = dict(mm._load_info())
    info["adrenalmnist3d"] = {**info["adrenalmnist3d"], "MD5": actual}
    monkeypatch.setattr(mm, "_INFO", info)
    assert len(MedMNIST3D(tmp_path, "adrenalmnist3d", split="test")) == 4


def test_md5_is_cached_per_file(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "a.npz")
    first = file_md5(path)
    import hashlib

    monkeypatch.setattr(hashlib, "md5", lambda *a, **k: (_ for _ in ()).throw(AssertionError("hashed twice")))
    assert file_md5(path) == first
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        file_md5(tmp_path / "nothing.npz")


def test_missing_keys_and_bad_arrays(tmp_path):
    write_npz(tmp_path / "synapsemnist3d.npz", drop=("val_labels",))
    with pytest.raises(ValueError) as e:
        MedMNIST3D(tmp_path, "synapsemnist3d", split="val", check_md5=False)
    assert "synapsemnist3d.npz" in str(e.value) and "val_labels" in str(e.value)
    assert len(MedMNIST3D(tmp_path, "synapsemnist3d", split="train", check_md5=False)) == 5

    bad = tmp_path / "bad.npz"
    np.savez(bad, train_images=np.zeros((3, 4, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match="N = 3"):
        NpzSequenceDataset(bad)
    np.savez(bad, train_images=np.full((2, 4, 4, 4), 2.0, np.float32), train_labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        NpzSequenceDataset(bad)
    np.savez(bad, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="shape"):
        NpzSequenceDataset(bad)
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="junk.npz"):
        NpzSequenceDataset(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="split"):
        NpzSequenceDataset(bad, split="validation")


def test_bad_flag_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="vesselmnist3d"):
        MedMNIST3D(tmp_path, "vesselmnist")


def test_transform_and_dataloader(tmp_path):
    write_npz(tmp_path / "vesselmnist3d.npz")
    ds = MedMNIST3D(tmp_path, "vesselmnist3d", check_md5=False, transform=lambda d: {**d, "image": d["image"] * 2})
    raw = MedMNIST3D(tmp_path, "vesselmnist3d", check_md5=False)
    torch.testing.assert_close(ds[0]["image"], raw[0]["image"] * 2)
    batch = next(iter(torch.utils.data.DataLoader(raw, batch_size=4)))
    assert batch["image"].shape == (4, 1, 28, 28, 28) and batch["label"].tolist() == [0, 1, 0, 1]


def test_download(tmp_path, monkeypatch):
    import monai.apps.utils as mau

    calls = []

    def fake_download(url, filepath, hash_val=None, hash_type="md5", **kw):
        calls.append((url, hash_val, hash_type))
        write_npz(filepath)

    monkeypatch.setattr(mau, "download_url", fake_download)
    root = tmp_path / "new_root"
    ds = MedMNIST3D(root, "adrenalmnist3d", download=True, check_md5=False)
    info = medmnist3d_info("adrenalmnist3d")
    assert len(ds) == 5 and calls == [(info["url"], info["MD5"], "md5")]

    def failing(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(mau, "download_url", failing)
    with pytest.raises(RuntimeError, match="no network"):
        MedMNIST3D(tmp_path / "other", "adrenalmnist3d", download=True)


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL_ROOT, "adrenalmnist3d.npz")), reason="real MedMNIST not staged"
)
def test_real_adrenal_smoke():
    ds = MedMNIST3D(REAL_ROOT, "adrenalmnist3d", split="val")
    assert len(ds) == 98 and np.bincount(ds.labels).tolist() == [76, 22]
    item = ds[0]
    assert item["image"].shape == (1, 28, 28, 28)
    assert float(item["image"].min()) == 0.0 and float(item["image"].max()) == 255.0  # binary masks, 8-bit units


def test_medmnist_facts_are_read_without_importing_the_package(monkeypatch, capfd):
    # the package's __init__ needs pandas (left out by --no-deps) and prints an install hint without it
    monkeypatch.setattr(mm, "_INFO", None)
    monkeypatch.delitem(sys.modules, "medmnist", raising=False)
    info = mm._load_info()
    assert info["adrenalmnist3d"]["label"] == {"0": "normal", "1": "hyperplasia"}
    assert "medmnist" not in sys.modules
    assert "Please install" not in capfd.readouterr().out
