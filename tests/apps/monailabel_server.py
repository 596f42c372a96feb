"""A real MONAI Label server (``python -m monailabel.main start_server``) with the sample app on 127.0.0.1, for the
tests of ``tests/apps`` and ``tests/reliability``: :func:`running_server` copies the app, writes the studies folder
with ``make_studies(folder)``, starts the server, yields it and always stops it (SIGTERM, then kill)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apps_testing import PYTHON, VESSEL_BUNDLE, has_nib, subprocess_env

START_TIMEOUT_S = 90


def import_monailabel():
    try:
        import monailabel.interfaces.app  # noqa: F401  (what the server needs: fastapi, itk, pydicom_seg...)
    except Exception as e:  # noqa: BLE001 - any import failure means "not installed correctly here"
        pytest.skip(f"monailabel is not importable ({type(e).__name__}: {e}); see scripts/setup_env.sh")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A MONAI Label server process and its log."""

    def __init__(self, root: Path, ckpt: Path) -> None:
        self.root, self.ckpt = root, ckpt
        self.app, self.studies = root / "app", root / "studies"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import requests

        env = subprocess_env()
        env.update(MONAI_LABEL_SESSIONS="false", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        cmd = [PYTHON, "-m", "monailabel.main", "start_server", "--app", str(self.app), "--studies",
               str(self.studies), "--host", "127.0.0.1", "--port", str(self.port),
               "--conf", "bundle", str(VESSEL_BUNDLE), "--conf", "ckpt", str(self.ckpt)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} before answering /info/")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"the server did not answer GET /info/ within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful; uvicorn then exits with -15 (not 0)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    @contextlib.contextmanager
    def log_on_failure(self):
        try:
            yield
        except BaseException:
            print(f"----- MONAI Label server log ({self.log_path}) -----\n{self.log()[-20000:]}")
            raise



@contextlib.contextmanager
def running_server(root: Path, ckpt: Path, make_studies: Callable[[Path], None]) -> Iterator[Server]:
    """The sample app serving the vessel bundle with ``ckpt``, its studies folder made by ``make_studies``; skips the
    test when monailabel or nibabel is missing."""
    import_monailabel()
    if not has_nib:
        pytest.skip("nibabel is not installed")
    from monai_das.apps.monailabel import SAMPLE_APP

    shutil.copytree(SAMPLE_APP, root / "app", ignore=shutil.ignore_patterns("__pycache__", "logs", "model", "bin"))
    (root / "studies").mkdir()
    make_studies(root / "studies")
    srv = Server(root, ckpt)
    try:
        with srv.log_on_failure():
            srv.start()
        yield srv
    finally:
        srv.stop()
