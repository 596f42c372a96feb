from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_das.data import (
    NpzSequenceDataset,
    SyntheticSequenceDataset,
    evidence_hit_rate,
    make_synthetic_sequences,
    save_synthetic_npz,
    synthetic_evidence_mask,
)
from monai_das.data.synthetic import _Config, _sample_one

N, T = 120, 32


def sobel_energy(images: np.ndarray) -> np.ndarray:
    """Mean squared Sobel magnitude per frame (valid region): (N, 1, T, H, W) -> (N, T)."""
    x = images[:, 0].astype(np.float64)
    smooth_r = x[..., :-2, :] + 2 * x[..., 1:-1, :] + x[..., 2:, :]  # [1, 2, 1] along rows
    smooth_c = x[..., :, :-2] + 2 * x[..., :, 1:-1] + x[..., :, 2:]  # [1, 2, 1] along columns
    gx = smooth_r[..., :, 2:] - smooth_r[..., :, :-2]
    gy = smooth_c[..., 2:, :] - smooth_c[..., :-2, :]
    return (gx**2 + gy**2).mean(axis=(-2, -1))


@pytest.fixture(scope="module")
def with_distractors():
    images, labels, starts = make_synthetic_sequences(N, num_frames=T, seed=3)
    return images, labels, starts, sobel_energy(images)


@pytest.fixture(scope="module")
def without_distractors():
    images, labels, starts = make_synthetic_sequences(N, num_frames=T, seed=3, distractors=False)
    return images, labels, starts, sobel_energy(images)


def test_shapes_dtypes_range(with_distractors):
    images, labels, starts, _ = with_distractors
    assert images.shape == (N, 1, T, 32, 32) and images.dtype == np.float32
    assert labels.shape == (N,) and labels.dtype == np.int64
    assert starts.shape == (N,) and starts.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert starts.min() >= 0 and starts.max() <= T - 2


@pytest.mark.parametrize("n,c", [(10, 2), (11, 2), (12, 3), (9, 4)])
def test_labels_balanced(n, c):
    _, labels, _ = make_synthetic_sequences(n, num_frames=8, size=16, num_classes=c, seed=1)
    counts = np.bincount(labels, minlength=c)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n


def test_reproducible_by_seed():
    a = make_synthetic_sequences(6, num_frames=8, size=16, seed=5)
    b = make_synthetic_sequences(6, num_frames=8, size=16, seed=5)
    c = make_synthetic_sequences(6, num_frames=8, size=16, seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_label_only_in_evidence_frames():
    """Same random stream, different label: every non-evidence frame is bit-identical."""
    cfg = _Config(32, 32, 2, 2, True, 1, 0.07, 0.03, 0.3, 0.45)
    v0, s0 = _sample_one(np.random.default_rng([9, 1, 0]), 0, cfg)
    v1, s1 = _sample_one(np.random.default_rng([9, 1, 0]), 1, cfg)
    assert s0 == s1
    other = np.ones(32, dtype=bool)
    other[s0 : s0 + 2] = False
    np.testing.assert_array_equal(v0[other], v1[other])
    assert not np.array_equal(v0[s0], v1[s0])
    # same added mass: the evidence frames' means differ by far less than the shape's contribution
    assert abs(v0[s0].mean() - v1[s0].mean()) < 0.01


def test_evidence_frames_have_more_edge_energy(with_distractors, without_distractors):
    for _, _, starts, energy in (with_distractors, without_distractors):
        mask = synthetic_evidence_mask(starts, T, 2)
        assert energy[mask].mean() > 1.5 * energy[~mask].mean()
        # per sample: every evidence frame beats the median frame
        median = np.median(energy, axis=1, keepdims=True)
        assert (energy[mask].reshape(N, 2) > median).all()


def test_uniform_vs_adaptive_hit_rates(with_distractors, without_distractors):
    uniform = np.floor((np.arange(8) + 0.5) * 4).astype(np.int64)
    top = {}
    for name, (_, _, starts, energy) in (("with", with_distractors), ("without", without_distractors)):
        rate = evidence_hit_rate(np.tile(uniform, (N, 1)), starts, 2)
        assert 0.3 < rate < 0.7  # exactly 1/2 in expectation
        top[name] = np.argsort(-energy, axis=1)
        assert evidence_hit_rate(top[name][:, :8], starts, 2) == 1.0
    # without distractors the two highest-energy frames are the evidence; with them, the crosses win
    assert evidence_hit_rate(top["without"][:, :2], without_distractors[2]) > 0.95
    assert evidence_hit_rate(top["with"][:, :2], with_distractors[2]) < 0.2
    assert evidence_hit_rate(top["with"][:, :4], with_distractors[2]) > 0.95


def test_evidence_mask_and_hit_rate_values():
    mask = synthetic_evidence_mask(np.array([0, 3]), 5, 2)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0, 0], [0, 0, 0, 1, 1]])
    idx = torch.tensor([[2, 4], [1, 3]])
    assert evidence_hit_rate(idx, torch.tensor([0, 4]), 2) == 0.0
    assert evidence_hit_rate(idx, torch.tensor([3, 4]), 2) == 0.5
    assert evidence_hit_rate(idx, torch.tensor([1, 0]), 2) == 1.0
    with pytest.raises(ValueError, match="shape"):
        evidence_hit_rate(np.zeros(3), np.zeros(3))


def test_dataset_matches_function_and_transform():
    images, labels, starts = make_synthetic_sequences(5, num_frames=8, size=16, seed=2, num_classes=3)
    ds = SyntheticSequenceDataset(5, num_frames=8, size=16, seed=2, num_classes=3, cache=True)
    assert len(ds) == 5 and ds.num_classes == 3 and ds.class_names == ["disc", "ring", "square"]
    np.testing.assert_array_equal(ds.labels, labels)
    for i in range(5):
        item = ds[i]
        assert item["image"].shape == (1, 8, 16, 16) and item["image"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and int(item["label"]) == labels[i]
        assert int(item["evidence_start"]) == starts[i]
        np.testing.assert_array_equal(item["image"].numpy(), images[i] * np.float32(255))  # 8-bit units
    np.testing.assert_array_equal(ds[-1]["image"].numpy(), images[4] * np.float32(255))
    with pytest.raises(IndexError):
        ds[5]
    flipped = SyntheticSequenceDataset(2, num_frames=8, size=16, transform=lambda d: {**d, "image": 1 - d["image"]})
    plain = SyntheticSequenceDataset(2, num_frames=8, size=16)
    torch.testing.assert_close(flipped[0]["image"], 1 - plain[0]["image"])
    batch = next(iter(torch.utils.data.DataLoader(plain, batch_size=2)))
    assert batch["image"].shape == (2, 1, 8, 16, 16) and batch["label"].shape == (2,)


def test_save_npz_roundtrip(tmp_path):
    path = tmp_path / "synthetic.npz"
    save_synthetic_npz(path, num_train=4, num_val=2, num_test=3, num_frames=8, size=16, seed=1)
    with np.load(path) as f:
        assert f["train_images"].dtype == np.uint8 and f["train_images"].shape == (4, 8, 16, 16)
        assert f["val_labels"].shape == (2, 1)
        assert not np.array_equal(f["train_images"][:2], f["val_images"])
    ds = NpzSequenceDataset(path, "test")
    assert len(ds) == 3 and ds[0]["image"].shape == (1, 8, 16, 16) and "evidence_start" in ds[0]
    with pytest.raises(FileExistsError):
        save_synthetic_npz(path, num_train=1, num_val=1, num_test=1)
    with pytest.raises(ValueError, match="unknown generation"):
        save_synthetic_npz(tmp_path / "x.npz", num_train=1, num_val=1, num_test=1, colour=True)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 5}, "num_classes"),
        ({"num_frames": 3, "evidence_frames": 2}, "num_frames"),
        ({"seed": -1}, "seed"),
        ({"size": 8}, "size"),
        ({"noise_std": -0.1}, "noise_std"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_sequences(2, **kwargs)
    with pytest.raises(ValueError, match="num_samples"):
        make_synthetic_sequences(0)
