"""Tiny data sets in the on-disk formats the bundles read (the fixtures in conftest.py write them once per session).

Layouts (what ``scripts/make_bundles.py`` points the bundles at):

- MedMNIST: ``<root>/<flag>.npz`` with ``{train,val,test}_{images,labels}``, uint8 ``(N, 28, 28, 28)`` and ``(N, 1)``;
- COVID-BLUES: ``<root>/manifest.csv`` (``path,label,source,patient_id,bluepoint,num_frames``) and mp4 files;
- BUSV: ``<root>/rawframes/{benign,malignant}/<id>/<i>.png`` and ``<root>/splits/{train,val,test}.txt``.

Every split holds every class: the bundles' ROC-AUC is NaN for a split missing a class, and then no checkpoint is
ever saved.
"""

from __future__ import annotations

import csv
import os

import numpy as np

MEDMNIST_CLASSES = {
    "organmnist3d": 11,
    "nodulemnist3d": 2,
    "adrenalmnist3d": 2,
    "fracturemnist3d": 3,
    "vesselmnist3d": 2,
    "synapsemnist3d": 2,
}
VIDEO_SIZE = 48  # frames are written at 48 x 48 and resized to the bundles' frame_size by the configs


def medmnist_counts(num_classes: int) -> tuple[int, int, int]:
    """Train / val / test sizes: 12 / 6 / 6, or one volume per class and split when there are more classes."""
    return max(12, num_classes), max(6, num_classes), max(6, num_classes)


def write_medmnist(root: str, flag: str, num_classes: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), medmnist_counts(num_classes)):
        labels = np.arange(n) % num_classes
        images = rng.integers(0, 96, size=(n, 28, 28, 28), dtype=np.uint8)
        images[:, 8:20, 8:20, 8:20] += (160 * (labels + 1) // num_classes).astype(np.uint8)[:, None, None, None]
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.astype(np.uint8).reshape(n, 1)
    path = os.path.join(root, f"{flag}.npz")
    np.savez(path, **arrays)
    return path


def write_mp4(path: str, frames: np.ndarray) -> None:
    """``frames``: uint8 ``(T, H, W)`` grey frames, written as mpeg4 / yuv420p."""
    import av

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_blob(num_frames: int, label: int, rng: np.random.Generator) -> np.ndarray:
    """A bright square drifting over noise; larger for label 1."""
    frames = rng.integers(0, 60, size=(num_frames, VIDEO_SIZE, VIDEO_SIZE), dtype=np.uint8)
    half = 6 + 6 * label
    for t in range(num_frames):
        c = 12 + (24 * t) // max(1, num_frames - 1)
        frames[t, max(0, c - half) : c + half, 24 - half : 24 + half] = 220
    return frames


def write_covid_blues(root: str, patients_per_label: int = 6, seed: int = 0) -> list[dict]:
    """One video per patient, 8-20 frames; with 6 patients per label the stratified patient split is 4 / 1 / 1 per
    label (see ``monai_das.data.split_by_group``), so every split holds both labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(2 * patients_per_label):
        label = p % 2
        num_frames = 8 + (p * 5) % 13  # 8..20: shorter and longer than the 16 frames the tests ask for
        rel = f"lus_videos/patient{p:02d}_L{p % 4 + 1}.mp4"
        write_mp4(os.path.join(root, rel), moving_blob(num_frames, label, rng))
        rows.append({"path": rel, "label": label, "source": "synthetic-test", "patient_id": f"P{p:02d}",
                     "bluepoint": f"L{p % 4 + 1}", "num_frames": num_frames})
    with open(os.path.join(root, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "source", "patient_id", "bluepoint", "num_frames"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


BUSV_SPLITS = {
    "train": ["b0", "b1", "b2", "m0", "m1", "m2"],
    "val": ["b3", "m3"],
    "test": ["b4", "m4"],
}


def write_busv(root: str, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ids in BUSV_SPLITS.values():
        for vid in ids:
            label = int(vid.startswith("m"))
            folder = os.path.join(root, "rawframes", ("benign", "malignant")[label], vid)
            os.makedirs(folder)
            frames = moving_blob(6 + int(vid[1:]) * 3, label, rng)  # 6..18 frames
            for i, frame in enumerate(frames):
                Image.fromarray(frame).save(os.path.join(folder, f"{i}.png"))
    os.makedirs(os.path.join(root, "splits"))
    for split, ids in BUSV_SPLITS.items():
        with open(os.path.join(root, "splits", f"{split}.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
