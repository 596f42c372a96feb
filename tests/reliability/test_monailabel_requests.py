"""Attacks on a real MONAI Label server (the sample app serving the vessel bundle on 127.0.0.1): code injection
through ``POST /train`` and ``POST /infer``, paths outside the datastore, unknown ids, folder loops and unusable
inputs. Each attack must be answered 4xx with a JSON ``detail`` and leave no file behind; the server must keep
answering."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from apps_testing import VESSEL_BUNDLE, build_network, save_checkpoint, write_nifti
from monailabel_server import running_server

requests = pytest.importorskip("requests")

T = 28
MODEL = VESSEL_BUNDLE.name
# the file every injected command would create (the server runs with its cwd in the test's folder)
MARKER = "pwned"
# an image id that is Python code if it ever reaches a bundle config as a string
CODE_ID = f"$__import__('os').system('touch {MARKER}_id')"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    ckpt = save_checkpoint(build_network(), root / "model.pt")
    write_nifti(root / "outside.nii.gz", np.random.default_rng(1).random((T, T, T)))

    def make_studies(studies: Path) -> None:
        rng = np.random.default_rng(0)
        for name in ("case_a", "case_b", CODE_ID):
            write_nifti(studies / f"{name}.nii.gz", rng.random((T, T, T)))
        write_nifti(studies / "four_d.nii.gz", rng.random((T, T, T, 3)))
        (studies / "broken.nii.gz").write_bytes(b"\x1f\x8b this is not a gzip stream" * 10)
        (studies / "sub").mkdir()
        (studies / "sub" / "link.nii.gz").symlink_to(root / "outside.nii.gz")
        (studies / "loop").mkdir()
        for link in ("l1", "l2"):  # two links to the parent: a walk that follows them never ends
            (studies / "loop" / link).symlink_to(studies / "loop")
        (studies / "big").mkdir()
        for i in range(5001):
            (studies / "big" / f"f{i:04d}").touch()
        (studies / "labels.csv").write_text(f"image,label\ncase_a,0\ncase_b,1\n{CODE_ID},1\n")

    with running_server(root, ckpt, make_studies) as srv:
        yield srv


def injected(server) -> list[Path]:
    """Files that an injected command would have created."""
    return sorted(server.root.rglob(f"{MARKER}*"))


def check_refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, f"{response.status_code}: {response.text[:1000]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail


def post_infer(server, image: str | None = "case_a", params: dict | None = None, model: str = MODEL):
    query = {} if image is None else {"image": image}
    return server.http.post(f"{server.url}/infer/{model}", params=query, data={"params": json.dumps(params or {})},
                         timeout=120)


def train_sync(server, body: dict):
    return server.http.post(f"{server.url}/train/{MODEL}", params={"run_sync": "true"}, json=body, timeout=600)


SHELL = f"__import__('os').system('touch {MARKER}')"
TRAIN_ATTACKS = {
    "device string": ({"device": f"cpu'); {SHELL}; ('"}, "device"),
    "bundle_overrides": ({"bundle_overrides": {"epochs": f"${SHELL} or 1"}}, "bundle_overrides"),
    "max_epochs expression": ({"max_epochs": f"${SHELL}"}, "max_epochs"),
    "config key": ({"max_epochs": 1, "output_dir": f"${SHELL}"}, "output_dir"),
    "pretrained": ({"pretrained": f"${SHELL}"}, "pretrained"),
    "val_every": ({"val_every": 1.5}, "val_every"),
    "too many epochs": ({"max_epochs": 10**6}, "max_epochs"),
}


@pytest.mark.parametrize("attack", list(TRAIN_ATTACKS))
def test_train_refuses_code_and_untyped_options(server, attack):
    body, word = TRAIN_ATTACKS[attack]
    with server.log_on_failure():
        check_refused(train_sync(server, body), 400, word)
        assert injected(server) == []
        assert not (server.app / "model" / f"{MODEL}.pt").exists(), "a refused request trained a model"


def test_background_train_refuses_code(server):
    """Without ``run_sync`` the options are checked before the training process starts: a code string or a
    ``bundle_path`` (MONAI Label would put it on the child's PYTHONPATH) is refused 400 and nothing starts."""
    evil = server.root / "evil"
    evil.mkdir(exist_ok=True)
    (evil / "sitecustomize.py").write_text(f"open({str(server.root / (MARKER + '_path'))!r}, 'w').close()\n")
    with server.log_on_failure():
        for body, word in (({"device": f"cpu'); {SHELL}; ('"}, "device"), ({"bundle_path": str(evil)}, "bundle_path")):
            r = server.http.post(f"{server.url}/train/{MODEL}", json=body, timeout=60)
            check_refused(r, 400, word)
        status = server.http.get(f"{server.url}/train/", timeout=30)
        assert status.status_code == 404 or status.json()["request"].get("bundle_path") is None, status.text
        assert injected(server) == []


def test_image_ids_never_reach_the_config(server):
    """An image whose id is Python code trains like any other (its id stays data)."""
    with server.log_on_failure():
        r = train_sync(server, {"max_epochs": 1, "val_every": 1})
        assert r.status_code == 200, r.text[:2000]
        assert r.json()["num_train"] == 3
        assert injected(server) == []


INFER_ATTACKS = {
    "device string": ("case_a", {"device": f"cpu'); {SHELL}; ('"}, 400, "device"),
    "slice_plane expression": ("case_a", {"slice_plane": f"${SHELL}"}, 400, "slice_plane"),
    "unknown option": ("case_a", {"sampler_name": f"${SHELL}"}, 400, "sampler_name"),
    "image in params": ("case_a", {"image": "/etc/passwd"}, 403, "outside the datastore"),
    "absolute path": ("/etc/passwd", None, 403, "outside the datastore"),
    "file outside": ("{root}/outside.nii.gz", None, 403, "outside the datastore"),
    "relative escape": ("../outside.nii.gz", None, 403, "outside the datastore"),
    "link out of the datastore": ("sub/link.nii.gz", None, 403, "outside the datastore"),
    "upload-like name elsewhere": ("{root}/tmpabcdefgh.nii.gz", None, 403, "outside the datastore"),
    "unknown id": ("no_such_case", None, 404, "unknown image id"),
    "image not a string": ("case_a", {"image": ["case_a"]}, 400, "image"),
    "unknown model": ("case_a", {"model": "other"}, 404, "no model"),
    "folder with a link loop": ("loop", None, 400, "files only"),
    "folder over the bound": ("big", None, 413, "more than"),
    "4-D NIfTI": ("four_d", None, 422, "four_d"),
    "unreadable file": ("broken", None, 422, "broken"),
}


@pytest.mark.parametrize("attack", list(INFER_ATTACKS))
def test_infer_refuses(server, attack):
    image, params, status, word = INFER_ATTACKS[attack]
    if image is not None and "{root}" in image:
        image = image.format(root=server.root)
    if attack == "upload-like name elsewhere":
        write_nifti(Path(image), np.zeros((T, T, T)))
    if attack in ("folder with a link loop", "folder over the bound"):
        image = os.path.join(image, "")  # a folder named by its path inside the studies folder
    with server.log_on_failure():
        check_refused(post_infer(server, image, params), status, word)
        assert injected(server) == []
        assert server.http.get(f"{server.url}/info/", timeout=10).status_code == 200  # still serving
        assert post_infer(server, "case_a").status_code == 200


def test_uploads_stay_in_the_datastore(server):
    """MONAI Label joins an uploaded image's id and a label's tag to the studies folder as they are: ``../`` in them
    must not write outside it, nor may an upload be of a type the datastore does not hold (``.py``); label uploads
    are not served at all (a classification has no label file)."""
    volume = server.studies / "case_a.nii.gz"

    def put(endpoint: str, params: dict, field: str, name: str, data: bytes):
        return server.http.put(f"{server.url}/datastore/{endpoint}", params=params, files={field: (name, data)},
                            timeout=60)

    with server.log_on_failure():
        check_refused(put("image", {"image": "../escaped"}, "file", "x.nii.gz", volume.read_bytes()), 400, "image id")
        check_refused(put("image", {"image": "plain"}, "file", "evil.py", b"print('pwned')\n"), 400, "file types")
        check_refused(put("label", {"image": "case_a", "tag": "../../escaped"}, "label", "l.nii.gz",
                          volume.read_bytes()), 403, "not served")  # label files: not served by this app
        assert sorted(server.root.rglob("escaped*")) == [], "an upload left the studies folder"
        assert sorted(server.studies.rglob("*.py")) == []
        r = put("image", {"image": "uploaded"}, "file", "u.nii.gz", volume.read_bytes())
        assert r.status_code == 200 and (server.studies / "uploaded.nii.gz").is_file(), r.text
