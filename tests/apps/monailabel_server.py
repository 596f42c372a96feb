"""A real MONAI Label server (``python -m monailabel.main start_server``) with the sample app on 127.0.0.1, for the
tests of ``tests/apps`` and ``tests/reliability``: :func:`running_server` copies the app, writes the studies folder
with ``make_studies(folder)``, starts the server, yields it and always stops it (SIGTERM, then kill)."""

from __future__ import annotations

import contextlib
import os
import secrets
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
#: MONAI Label's option that puts the app's guard in front of its endpoints (the sample app refuses to start without)
GUARD = ["--uvicorn_app", "monai_das.apps.monailabel.server:app"]


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
    """A MONAI Label server process and its log.

    ``conf`` adds ``--conf`` values; ``guard=False`` starts it without the app's guard (the app must refuse). The
    administrator's token (``token_file`` in ``root``) is sent by :attr:`http` (a ``requests.Session``); :attr:`anon`
    sends none.
    """

    def __init__(self, root: Path, ckpt: Path, conf: dict | None = None, guard: bool = True) -> None:
        import requests

        self.root, self.ckpt = root, ckpt
        self.app, self.studies = root / "app", root / "studies"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self.tmp = root / "tmp"
        self.proc: subprocess.Popen | None = None
        self.token = secrets.token_urlsafe(32)
        token_file = root / "token"
        token_file.write_text(self.token + "\n")
        os.chmod(token_file, 0o600)
        self.conf = {"bundle": str(VESSEL_BUNDLE), "ckpt": str(ckpt), "token_file": str(token_file), **(conf or {})}
        self.guard = guard
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.anon = requests.Session()

    def command(self) -> list[str]:
        cmd = [PYTHON, "-m", "monailabel.main", "start_server", "--app", str(self.app), "--studies",
               str(self.studies), "--host", "127.0.0.1", "--port", str(self.port), *(GUARD if self.guard else [])]
        for key, value in self.conf.items():
            cmd += ["--conf", key, str(value)]
        return cmd

    def start(self) -> None:
        import requests

        env = subprocess_env()
        self.tmp.mkdir(exist_ok=True)  # the server's temporary folder: uploads must not stay there
        env.update(MONAI_LABEL_SESSIONS="false", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", TMPDIR=str(self.tmp))
        cmd = self.command()
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

    def stop(self) -> float | None:
        """SIGTERM, then kill after 20 s; returns the seconds from SIGTERM to exit (``None``: it had exited)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)  # graceful; uvicorn then exits with -15 (not 0)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        return time.monotonic() - start

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    @contextlib.contextmanager
    def log_on_failure(self):
        try:
            yield
        except BaseException:
            print(f"----- MONAI Label server log ({self.log_path}) -----\n{self.log()[-20000:]}")
            raise



def prepare(root: Path, make_studies: Callable[[Path], None]) -> None:
    """Copy the sample app to ``root/app`` and make ``root/studies``; skips the test when monailabel or nibabel is
    missing."""
    import_monailabel()
    if not has_nib:
        pytest.skip("nibabel is not installed")
    from monai_das.apps.monailabel import SAMPLE_APP

    shutil.copytree(SAMPLE_APP, root / "app", ignore=shutil.ignore_patterns("__pycache__", "logs", "model", "bin"))
    (root / "studies").mkdir()
    make_studies(root / "studies")


@contextlib.contextmanager
def running_server(root: Path, ckpt: Path, make_studies: Callable[[Path], None], conf: dict | None = None
                   ) -> Iterator[Server]:
    """The sample app serving the vessel bundle with ``ckpt`` behind its guard, its studies folder made by
    ``make_studies``, extra ``--conf`` values ``conf``."""
    prepare(root, make_studies)
    srv = Server(root, ckpt, conf)
    try:
        with srv.log_on_failure():
            srv.start()
        yield srv
    finally:
        srv.stop()
