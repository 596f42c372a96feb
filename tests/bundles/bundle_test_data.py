"""Tiny data sets in the on-disk formats the bundles read (the fixtures in conftest.py write them once per session).

Layouts (what ``scripts/make_bundles.py`` points the bundles at):

- MedMNIST: ``<root>/<flag>.npz`` with ``{train,val,test}_{images,labels}``, uint8 ``(N, 28, 28, 28)`` and ``(N, 1)``;
- COVID-BLUES: ``<root>/manifest.csv`` (``path,label,source,patient_id,bluepoint,num_frames``), ``<root>/severity.csv``
  (``video_file,Severity Score,A-lines,B-lines,comments``) and mp4 files;
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


def covid_blues_video_labels(patient: int, video: int) -> dict[str, int]:
    """The labels of the generated COVID-BLUES video ``video`` of patient ``patient``: the COVID test is the
    patient's (alternating), the expert labels vary within a patient, so that with 4 videos a patient every patient
    holds every severity score and both B-line and A-line labels."""
    return {"covid": patient % 2, "b_lines": video % 2, "a_lines": (video // 2) % 2, "severity": (patient + video) % 4}


def write_covid_blues(root: str, patients_per_label: int = 6, seed: int = 0, videos_per_patient: int = 1) -> list[dict]:
    """COVID-BLUES layout: ``manifest.csv``, mp4 videos of 8-20 frames and ``severity.csv``.

    With one video a patient and 6 patients per label, the stratified 70/15/15 patient split is 4 / 1 / 1 per label
    and each of 5 folds holds both COVID labels; with 4 videos a patient every fold holds every class of every target
    (see :func:`covid_blues_video_labels`). ``severity.csv`` is written as the release writes it, dirty values
    included: ``"yes "`` / ``"no "`` with a trailing space, scores as ``"2.0"``, free-text comments with commas,
    and one row for a video that is not in the manifest (ignored by the reader).
    """
    rng = np.random.default_rng(seed)
    rows, severity = [], []
    for p in range(2 * patients_per_label):
        for j in range(videos_per_patient):
            labels = covid_blues_video_labels(p, j)
            num_frames = 8 + (p * 5 + j * 3) % 13  # 8..20: shorter and longer than the 16 frames the tests ask for
            stem = f"patient{p:02d}_L{(p + j) % 4 + 1}" if videos_per_patient == 1 else f"patient{p:02d}_V{j}"
            rel = f"lus_videos/{stem}.mp4"
            write_mp4(os.path.join(root, rel), moving_blob(num_frames, labels["covid"], rng))
            rows.append({"path": rel, "label": labels["covid"], "source": "synthetic-test", "patient_id": f"P{p:02d}",
                         "bluepoint": stem[-2:], "num_frames": num_frames})
            yes_no = [("no", "yes"), ("no ", "yes ")][(p + j) % 3 == 0]  # every third row with a trailing space
            severity.append({"video_file": stem, "Severity Score": f"{labels['severity']}.0",
                             "A-lines": yes_no[labels["a_lines"]], "B-lines": yes_no[labels["b_lines"]],
                             "comments": f"generated, patient {p}, video {j}"})
    severity.append({"video_file": "not_in_manifest", "Severity Score": "1.0", "A-lines": "yes", "B-lines": "no",
                     "comments": ""})
    with open(os.path.join(root, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "source", "patient_id", "bluepoint", "num_frames"])
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(root, "severity.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video_file", "Severity Score", "A-lines", "B-lines", "comments"])
        writer.writeheader()
        writer.writerows(severity)
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
