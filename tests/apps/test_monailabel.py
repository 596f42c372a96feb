"""MONAI Label integration: a real server with the sample app serving the vessel bundle, over HTTP on 127.0.0.1.

One server (module fixture) is started with ``python -m monailabel.main start_server --uvicorn_app
monai_das.apps.monailabel.server:app`` and a token file (the interpreter running the tests,
``MONAI_LABEL_SESSIONS=false``, in a temporary folder) on a studies folder of 28^3 NIfTI volumes and a
checkpoint of a freshly built vessel-bundle network (BatchNorm calibrated, so its outputs depend on the input). The
tests call ``/info/``, ``/infer`` on a datastore image, on an uploaded mp4 and on a DICOM series folder given by
its path inside the studies folder, and compare with an in-process run of the same network on the same resampled input; the last one labels two
images (``labels.csv`` and ``PUT /datastore/image/info``), trains one epoch through ``POST /train`` and checks that
inference then uses the checkpoint the quality gate chose. The server is always stopped (SIGTERM, then kill); its log is printed
when a test fails. Skipped when monailabel cannot be imported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from apps_testing import (
    VESSEL_BUNDLE,
    has_av,
    has_pydicom,
    write_dicom_series,
    write_nifti,
    write_video,
)
from monailabel_server import Server, running_server

from monai_das.apps.bundle_predictor import BundlePredictor
from monai_das.apps.predict import predict

monai_bundle_run = pytest.importorskip("monai.bundle").scripts.create_workflow

T, K = 28, 14  # the vessel bundle: 28 frames of 28 x 28, k = round(0.5 * 28)
CLASSES = ["vessel", "aneurysm"]
MODEL = VESSEL_BUNDLE.name


@pytest.fixture(scope="module")
def server(tmp_path_factory, vessel_checkpoint):
    def make_studies(studies: Path) -> None:
        rng = np.random.default_rng(0)
        for name, scale in (("case001", 255.0), ("case_a", 200.0), ("case_b", 100.0)):  # the bundle's 8-bit units
            write_nifti(studies / f"{name}.nii.gz", rng.random((T, T, T)) * scale)

    with running_server(tmp_path_factory.mktemp("monailabel"), vessel_checkpoint, make_studies) as srv:
        yield srv


def _reference(ckpt: Path, path: Path) -> tuple[np.ndarray, list[int], list[int]]:
    """Probabilities, picks and their source frame numbers of the vessel bundle with ``ckpt`` on one input."""
    result = BundlePredictor(VESSEL_BUNDLE, ckpt=ckpt)(str(path))
    return result.probabilities, result.picks.tolist(), result.source_frames


def _post_infer(server: Server, **kwargs) -> dict:
    import requests

    response = server.http.post(f"{server.url}/infer/{MODEL}", timeout=120, **kwargs)
    assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
    return response.json()


def _check_result(result: dict, ref_probs: np.ndarray, ref_picks: list[int], ref_source: list[int]) -> None:
    scores = {p["label"]: p["score"] for p in result["prediction"]}
    assert list(scores) == CLASSES
    assert list(result["probabilities"]) == CLASSES
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose([scores[c] for c in CLASSES], ref_probs, atol=1e-5)
    picks = result["picked_slices"]
    assert len(picks) == min(K, result["num_source_slices"]) == len(set(picks))  # every slice of a shorter input
    assert len(set(result["source_slices"])) == len(picks)
    assert picks == sorted(picks) and all(0 <= i < T for i in picks)
    assert picks == ref_picks
    assert result["source_slices"] == list(ref_source)
    assert result["num_slices"] == T
    assert result["predicted_label"] == CLASSES[int(np.argmax(ref_probs))]
    assert result["label_names"] == {c: i for i, c in enumerate(CLASSES)}


def test_info(server):
    import requests

    with server.log_on_failure():
        info = server.http.get(f"{server.url}/info/", timeout=30).json()
        model = info["models"][MODEL]
        assert model["type"] == "classification" and model["dimension"] == 3
        assert model["labels"] == {"vessel": 0, "aneurysm": 1}
        assert MODEL in info["trainers"] and info["strategies"] == {}
        assert info["datastore"]["total"] == 3


def test_infer_datastore_image(server, vessel_checkpoint):
    with server.log_on_failure():
        result = _post_infer(server, params={"image": "case001"})
        print("POST /infer/%s?image=case001 ->" % MODEL, json.dumps({k: result[k] for k in (
            "prediction", "predicted_label", "picked_slices", "source_slices", "num_slices", "num_source_slices")}))
        _check_result(result, *_reference(vessel_checkpoint, server.studies / "case001.nii.gz"))
        assert result["num_source_slices"] == T and result["source_slices"] == result["picked_slices"]


def test_bundle_inference_predict_and_monailabel_agree(server, vessel_checkpoint, tmp_path):
    """One file through ``python -m monai.bundle run --config_file configs/inference.json`` (its own Dataset,
    DataLoader, evaluator and CheckpointLoader), ``monai-das predict`` and the MONAI Label server: the same
    probabilities and the same picks, since all three execute the bundle's inference.json."""
    import csv

    path = server.studies / "case_a.nii.gz"
    out = tmp_path / "bundle"
    workflow = monai_bundle_run(config_file=str(VESSEL_BUNDLE / "configs" / "inference.json"), logging_file=False,
                                bundle_root=str(VESSEL_BUNDLE), input_paths=[str(path)], output_dir=str(out),
                                ckpt_path=str(vessel_checkpoint))
    workflow.run()
    workflow.finalize()
    with open(out / "predictions.csv", newline="") as f:
        (bundle_row,) = list(csv.DictReader(f))
    (predict_row,) = predict(VESSEL_BUNDLE, [path], tmp_path / "predict.csv", ckpt=vessel_checkpoint)
    with server.log_on_failure():
        served = _post_infer(server, params={"image": "case_a"})
    probs = {c: float(bundle_row[f"prob_{c}"]) for c in CLASSES}
    assert {c: float(predict_row[f"prob_{c}"]) for c in CLASSES} == probs  # both written with 6 decimals
    assert all(abs(served["probabilities"][c] - probs[c]) <= 5e-7 for c in CLASSES), (served["probabilities"], probs)
    picks = [int(i) for i in bundle_row["picked_frames"].split()]
    assert [int(i) for i in predict_row["picked_frames"].split()] == picks == served["picked_slices"]
    assert len(picks) == K and bundle_row["predicted_label"] == predict_row["predicted_label"]
    assert served["checkpoint_sha256"] == predict_row["checkpoint_sha256"]
    # uniform noise is far from the binary masks the vessel bundle learned from: both say so, in the same words
    assert "extreme_fraction" in served["domain_warning"] and served["domain_warning"] == predict_row["domain_warning"]


@pytest.mark.skipif(not has_av, reason="PyAV is not installed")
def test_infer_uploaded_video(server, vessel_checkpoint, tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (40, 32, 32)).astype(np.uint8)
    clip = write_video(tmp_path / "clip.mp4", frames)
    with server.log_on_failure():
        with open(clip, "rb") as f:
            result = _post_infer(server, params={"output": "json"}, files={"file": ("clip.mp4", f, "video/mp4")})
        _check_result(result, *_reference(vessel_checkpoint, clip))
        assert result["num_source_slices"] == 40
        assert all(0 <= s < 40 for s in result["source_slices"])


@pytest.mark.skipif(not has_pydicom, reason="pydicom is not installed")
def test_infer_dicom_series_folder(server, vessel_checkpoint):
    """A series folder inside the studies folder, named by its path relative to it (paths outside are refused)."""
    series = write_dicom_series(server.studies / "series" / "s1", np.random.default_rng(2).integers(0, 4000, (6, 24, 24)))
    with server.log_on_failure():
        result = _post_infer(server, params={"image": "series/s1"})
        _check_result(result, *_reference(vessel_checkpoint, series))
        assert result["num_source_slices"] == 6  # 6 slices spread over T = 28: each is picked once
        assert result["source_slices"] == [1, 2, 3, 4, 5, 6]  # a series' slices by their InstanceNumber


def test_batch_infer_is_not_served(server):
    """MONAI Label's batch inference is off: the guard answers 403 before MONAI Label sees the request."""
    with server.log_on_failure():
        r = server.http.post(f"{server.url}/batch/infer/{MODEL}", params={"run_sync": "true"},
                             json={"multi_gpu": False, "max_workers": 1}, timeout=60)
        assert r.status_code == 403, r.text[:2000]
        assert "not served" in r.json()["detail"]


def test_train_then_infer(server, vessel_checkpoint):
    """Label two images (labels.csv, image info), train one epoch over HTTP; the new checkpoint is served only when
    its validation AUC beats the served one's, and the answer says which happened."""

    published = server.app / "model" / f"{MODEL}.pt"
    with server.log_on_failure():
        (server.studies / "labels.csv").write_text("image,label\ncase_a.nii.gz,vessel\ncase_b,0\n")
        r = server.http.put(f"{server.url}/datastore/image/info", params={"image": "case_b"},
                         data={"info": json.dumps({"label": "aneurysm"})}, timeout=30)  # wins over labels.csv
        assert r.status_code == 200, r.text
        r = server.http.post(f"{server.url}/train/{MODEL}", params={"run_sync": "true"}, json={"max_epochs": 1},
                          timeout=600)
        assert r.status_code == 200, r.text[:2000]
        stats = r.json()
        assert stats["epochs"] == 1 and stats["num_train"] == 2
        assert stats["class_counts"] == {"vessel": 1, "aneurysm": 1}
        assert stats["started_from"] == str(vessel_checkpoint)
        gate = stats["quality_gate"]
        assert gate["current"] is not None and gate["candidate"] is not None  # both scored on the same images
        assert stats["published"] == gate["publish"] == (gate["candidate"] > gate["current"]), stats
        assert server.http.get(f"{server.url}/info/", timeout=30).json()["train_stats"][MODEL]["epochs"] == 1
        served = published if stats["published"] else vessel_checkpoint
        assert Path(stats["checkpoint"]) == served and published.is_file() == stats["published"]
        result = _post_infer(server, params={"image": "case001"})
        _check_result(result, *_reference(served, server.studies / "case001.nii.gz"))


# ------------------------------------------------------------------------------------------- labels, no server needed


class _FakeDatastore:
    def __init__(self, info: dict[str, dict]) -> None:
        self.info = info

    def list_images(self):
        return list(self.info)

    def get_image_info(self, image_id):
        return dict(self.info[image_id])


def test_class_labels_from_info_and_csv(tmp_path):
    from monai_das.apps.monailabel import datastore_class_labels, parse_class_label

    assert parse_class_label("Aneurysm", CLASSES) == 1 and parse_class_label(0, CLASSES) == 0
    assert parse_class_label("1", CLASSES) == 1
    for bad in ("2", -1, "tumour", True, 0.5):
        with pytest.raises(ValueError, match="vessel"):
            parse_class_label(bad, CLASSES)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("image,label\na.nii.gz,1\nb,vessel\nc,\nghost,0\n")
    store = _FakeDatastore({"a": {}, "b": {"label": "aneurysm"}, "c": {}, "d": {"label": 0}})
    assert datastore_class_labels(store, CLASSES, csv_file) == {"a": 1, "b": 1, "d": 0}
    with pytest.raises(ValueError, match="image 'x'"):
        datastore_class_labels(_FakeDatastore({"x": {"label": "tumour"}}), CLASSES)
    csv_file.write_text("name,class\na,1\n")
    with pytest.raises(ValueError, match="'image' and 'label'"):
        datastore_class_labels(store, CLASSES, csv_file)
