"""The sample app's guard on a real MONAI Label server (127.0.0.1): what it serves, who may call it, and a server that
stays responsive and stops on SIGTERM while it trains (issue 27). Each case failed on the app before the guard."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from apps_testing import VESSEL_BUNDLE, build_network, save_checkpoint, write_nifti
from monailabel_server import Server, prepare, running_server

requests = pytest.importorskip("requests")
psutil = pytest.importorskip("psutil")

T = 28
MODEL = VESSEL_BUNDLE.name
MAX_TRAIN_EPOCHS = 300


def make_studies(root: Path):
    def make(studies: Path) -> None:
        rng = np.random.default_rng(0)
        for i in range(8):
            write_nifti(studies / f"case{i}.nii.gz", rng.random((T, T, T)) * (255.0 if i % 2 else 60.0))
        write_nifti(studies / "big.nii.gz", rng.random((256, 256, 256)).astype(np.float32) * 255)
        write_nifti(root / "outside.nii.gz", rng.random((T, T, T)))
        (studies / "linked.nii.gz").symlink_to(root / "outside.nii.gz")
        (studies / "labels.csv").write_text("image,label\n" + "".join(f"case{i},{i % 2}\n" for i in range(8)))

    return make


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    ckpt = save_checkpoint(build_network(), root / "model.pt")
    with running_server(root, ckpt, make_studies(root), {"max_train_epochs": MAX_TRAIN_EPOCHS}) as srv:
        yield srv


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(response, status: int, *words: str) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text[:1000]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    for word in words:
        assert word in body["detail"], body
    return body


def infer(server, image="case0", params=None, files=None, session=None):
    data = {"params": params if isinstance(params, str) else json.dumps(params or {})}
    return (session or server.http).post(f"{server.url}/infer/{MODEL}", params={"image": image} if image else {},
                                         data=data, files=files, timeout=120)


def test_model_endpoints_are_not_served(server):
    """PUT replaced, GET downloaded and DELETE renamed the served checkpoint; with the token too, all are 403 now."""
    before = sha256(server.ckpt)
    probs = infer(server).json()["probabilities"]
    with server.log_on_failure():
        url = f"{server.url}/model/{MODEL}"
        check(server.http.put(url, files={"file": ("zero.pt", b"not a model")}, timeout=30), 403, "not served")
        check(server.http.get(url, timeout=30), 403, "not served")
        check(server.http.get(f"{server.url}/model/info/{MODEL}", timeout=30), 403, "not served")
        for _ in range(2):
            check(server.http.delete(url, timeout=30), 403, "not served")
        assert sha256(server.ckpt) == before and list(server.ckpt.parent.glob("*.deleted")) == []
        assert list((server.app / "model").glob("*.pt")) == []
        assert infer(server).json()["probabilities"] == probs


def test_token_required(server):
    with server.log_on_failure():
        for method, path in (("get", "/datastore/"), ("post", f"/train/{MODEL}"), ("get", "/train/"),
                             ("delete", "/datastore/image?id=case0"), ("put", "/datastore/image/info?image=case0")):
            check(getattr(server.anon, method)(f"{server.url}{path}", timeout=30), 401, "Bearer")
        check(infer(server, session=server.anon), 401, "Bearer")  # inference is not open unless --conf open_infer
        wrong = requests.get(f"{server.url}/datastore/", headers={"Authorization": "Bearer " + "x" * 43}, timeout=30)
        check(wrong, 401)
        assert server.anon.get(f"{server.url}/info/", timeout=30).status_code == 200
        assert (server.studies / "case0.nii.gz").is_file()


def test_files_by_id_stay_in_the_studies_folder(server):
    """A study that links out: not deleted (MONAI Label deleted its target), downloaded or read, by id."""
    target = server.root / "outside.nii.gz"
    with server.log_on_failure():
        check(server.http.delete(f"{server.url}/datastore/image", params={"id": "linked"}, timeout=30), 403,
              "outside the datastore")
        assert target.is_file() and (server.studies / "linked.nii.gz").is_symlink()
        check(server.http.get(f"{server.url}/datastore/image", params={"image": "linked"}, timeout=30), 403,
              "outside the datastore")
        check(infer(server, "linked"), 403, "outside the datastore")
        check(server.http.delete(f"{server.url}/datastore/image", params={"id": "no_such"}, timeout=30), 404,
              "no_such")


def leftover_files(server) -> list[Path]:
    return sorted(p for p in server.tmp.rglob("*") if p.is_file())


def test_uploads_are_removed_on_every_answer(server):
    blob = (server.studies / "case0.nii.gz").read_bytes() + b"\0" * 5_000_000  # over Starlette's in-memory size
    before = leftover_files(server)  # MONAI Label's log configuration (tmp*.json), written at start
    with server.log_on_failure():
        check(infer(server, None, {"device": "gpu"}, files={"file": ("x.nii.gz", blob)}), 400, "device")
        check(infer(server, None, "not json", files={"file": ("x.nii.gz", blob)}), 400, "not valid JSON")
        check(infer(server, None, {}, files={"file": ("evil.py", b"import os\n" * 1000)}), 422)
        check(infer(server, None, {}, files={"file": ("x.sh", b"rm -rf /\n")}), 422)
        r = server.http.put(f"{server.url}/datastore/image", params={"image": "x" * 300},
                            files={"file": ("x.nii.gz", blob)}, timeout=60)
        check(r, 400, "image id")
        assert infer(server, None, {}, files={"file": ("ok.nii.gz", (server.studies / "case1.nii.gz").read_bytes())}
                     ).status_code == 200
        assert leftover_files(server) == before
        foreign = server.tmp / "tmpabcd1234.nii.gz"  # named like MONAI Label's uploads, written by someone else
        write_nifti(foreign, np.zeros((T, T, T)))
        check(infer(server, str(foreign)), 403, "outside the datastore")
        foreign.unlink()


MALFORMED = {
    "params logging": (lambda s: infer(s, params={"logging": 5}), 400, "logging"),
    "params null": (lambda s: infer(s, params="null"), 400, "JSON object"),
    "params list": (lambda s: infer(s, params="[1,2]"), 400, "JSON object"),
    "params not JSON": (lambda s: infer(s, params="{'device': cpu"), 400, "not valid JSON"),
    "params cut by curl at ;": (lambda s: infer(s, params='{"device": "cpu"'), 400, "not valid JSON"),
    "session_id": (lambda s: s.http.post(f"{s.url}/infer/{MODEL}", params={"session_id": "abc"}, timeout=30),
                   400, "session"),
    "300-character id": (lambda s: s.http.put(f"{s.url}/datastore/image", params={"image": "a" * 300},
                                              files={"file": ("a.nii.gz", b"x")}, timeout=30), 400, "image id"),
    "NUL in id": (lambda s: s.http.put(f"{s.url}/datastore/image", params={"image": "a\0b"},
                                       files={"file": ("a.nii.gz", b"x")}, timeout=30), 400, "image id"),
    "info a list": (lambda s: s.http.put(f"{s.url}/datastore/image/info", params={"image": "case0"},
                                         data={"info": "[1,2]"}, timeout=30), 400, "JSON object"),
    "info not JSON": (lambda s: s.http.put(f"{s.url}/datastore/image/info", params={"image": "case0"},
                                           data={"info": "{"}, timeout=30), 400, "JSON"),
    "train body a list": (lambda s: s.http.post(f"{s.url}/train/{MODEL}", data="[1]", timeout=30), 400,
                          "JSON object"),
    "activelearning": (lambda s: s.http.post(f"{s.url}/activelearning/random", json={}, timeout=30), 403,
                       "not served"),
    "scoring": (lambda s: s.http.post(f"{s.url}/scoring/epistemic", json={"image": "/etc/passwd"}, timeout=30),
                403, "not served"),
    "device the machine lacks (infer)": (lambda s: infer(s, params={"device": "cuda"}), 400, "not available"),
    "device the machine lacks (train)": (lambda s: s.http.post(f"{s.url}/train/{MODEL}", json={"device": "cuda:0"},
                                                               timeout=30), 400, "not available"),
    "1000 epochs": (lambda s: s.http.post(f"{s.url}/train/{MODEL}", params={"run_sync": "true"},
                                          json={"max_epochs": 1000}, timeout=30), 400, str(MAX_TRAIN_EPOCHS)),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_get_4xx_json(server, case):
    send, status, word = MALFORMED[case]
    with server.log_on_failure():
        check(send(server), status, word)
        assert psutil.Process(server.proc.pid).children(recursive=True) == []  # nothing started (scoring did)
        assert requests.get(f"{server.url}/info/", timeout=10).status_code == 200


def info_latencies(server, while_true, limit_s: float = 300) -> list[float]:
    """Seconds of each ``GET /info/`` while ``while_true()`` holds."""
    times, deadline = [], time.monotonic() + limit_s
    while while_true() and time.monotonic() < deadline:
        start = time.monotonic()
        assert server.anon.get(f"{server.url}/info/", timeout=30).status_code == 200
        times.append(time.monotonic() - start)
        time.sleep(0.1)
    return times


def test_training_runs_off_the_event_loop(server):
    """A long training: /info/ keeps answering, a second training is refused (409), DELETE /train/ stops it."""
    with server.log_on_failure():
        task = server.http.post(f"{server.url}/train/{MODEL}", json={"max_epochs": MAX_TRAIN_EPOCHS}, timeout=30)
        assert task.status_code == 200, task.text
        check(server.http.post(f"{server.url}/train/{MODEL}", json={"max_epochs": 1}, timeout=30), 409, "runs already")
        running = lambda: server.http.get(f"{server.url}/train/", timeout=30).json()["status"] == "RUNNING"  # noqa
        end = time.monotonic() + 15
        times = info_latencies(server, lambda: time.monotonic() < end and running())
        print(f"/info/ while training: n={len(times)} max={max(times):.3f} s median={np.median(times):.3f} s")
        assert running(), "the training ended early: " + json.dumps(server.http.get(f"{server.url}/train/").json())
        assert max(times) < 5  # the issue asks < 1 s: measured and reported; the assertion leaves room
        stopped = server.http.delete(f"{server.url}/train/", timeout=30).json()
        assert stopped["stopped"] is True and stopped["task"]["status"] == "STOPPED"
        time.sleep(4)
        assert not psutil.pid_exists(task.json()["pid"]) or psutil.Process(task.json()["pid"]).status() == "zombie"


def test_inference_runs_off_the_event_loop(server):
    """While a 256^3 volume is read and classified, /info/ answers."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(r=infer(server, "big")))
    worker.start()
    time.sleep(0.05)
    times = info_latencies(server, worker.is_alive)
    worker.join()
    assert result["r"].status_code == 200, result["r"].text[:1000]
    print(f"/info/ while inferring: n={len(times)} max={max(times, default=0):.3f} s")
    assert max(times, default=0) < 5


def test_sigterm_stops_a_server_that_trains(tmp_path):
    """SIGTERM during a run_sync training: the server exits within seconds and the training process is gone."""
    root = tmp_path
    ckpt = save_checkpoint(build_network(), root / "model.pt")
    prepare(root, make_studies(root))
    srv = Server(root, ckpt, {"max_train_epochs": 1000})
    try:
        with srv.log_on_failure():
            srv.start()
            answer: dict = {}

            def run_sync() -> None:
                try:
                    answer["r"] = srv.http.post(f"{srv.url}/train/{MODEL}", params={"run_sync": "true"},
                                                json={"max_epochs": 1000}, timeout=300)
                except requests.RequestException as e:
                    answer["error"] = e

            worker = threading.Thread(target=run_sync)
            worker.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = srv.http.get(f"{srv.url}/train/", timeout=30)
                if status.status_code == 200 and "epoch" in Path(status.json()["log"]).read_text(errors="replace"):
                    break
                time.sleep(0.5)
            pid = status.json()["pid"]
            seconds = srv.stop()
            worker.join(timeout=30)
            print(f"SIGTERM to exit while training: {seconds:.2f} s; run_sync answer: "
                  f"{answer.get('r').status_code if 'r' in answer else answer.get('error')}")
            assert seconds < 10
            assert "r" not in answer or answer["r"].status_code == 503
            time.sleep(4)
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    finally:
        srv.stop()


def test_open_inference_without_token(tmp_path):
    """Without a token file the token endpoints are off (403); --conf open_infer true opens inference alone."""
    ckpt = save_checkpoint(build_network(), tmp_path / "model.pt")
    with running_server(tmp_path, ckpt, make_studies(tmp_path), {"token_file": "", "open_infer": "true"}) as srv:
        with srv.log_on_failure():
            assert infer(srv, session=srv.anon).status_code == 200
            check(srv.anon.get(f"{srv.url}/datastore/", timeout=30), 403, "token_file")
            check(srv.anon.post(f"{srv.url}/train/{MODEL}", json={}, timeout=30), 403, "token_file")


def test_app_refuses_to_start_without_the_guard(tmp_path):
    ckpt = save_checkpoint(build_network(), tmp_path / "model.pt")
    prepare(tmp_path, make_studies(tmp_path))
    srv = Server(tmp_path, ckpt, guard=False)
    try:
        with pytest.raises((RuntimeError, TimeoutError)):
            srv.start()
        assert "--uvicorn_app monai_das.apps.monailabel.server:app" in srv.log()
    finally:
        srv.stop()
