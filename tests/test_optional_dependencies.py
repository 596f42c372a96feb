"""``pip install monai-das`` without extras installs monai, torch and numpy only: every module of the package must
still import, and ``monai-das predict --help`` must still answer, when the optional libraries are missing (they are
made unimportable in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# import names of the libraries of pyproject's optional extras (and MONAI Label, installed separately)
OPTIONAL = ("ignite", "tensorboard", "av", "nibabel", "pydicom", "fire", "jsonschema", "yaml", "sklearn", "matplotlib",
            "monailabel")

PROBE = """
import contextlib, importlib, io, json, pkgutil, sys
for name in sys.argv[1:]:
    sys.modules[name] = None  # import of it raises ImportError
import monai_das
from monai_das.apps import cli
failed = {}
# the guard MONAI Label runs as its --uvicorn_app and the endpoints it serves: they exist only inside that server
SERVER_ONLY = {"monai_das.apps.monailabel.server", "monai_das.apps.monailabel.endpoints"}
for module in pkgutil.walk_packages(monai_das.__path__, "monai_das."):
    if module.name in SERVER_ONLY:
        continue
    try:
        importlib.import_module(module.name)
    except Exception as e:
        failed[module.name] = repr(e)[:300]
help_text = io.StringIO()
try:
    with contextlib.redirect_stdout(help_text):
        cli.main(["predict", "--help"])
except SystemExit as e:
    failed.update({} if e.code == 0 else {"monai-das predict --help": f"exit {e.code}"})
except Exception as e:
    failed["monai-das predict --help"] = repr(e)[:300]
print(json.dumps({"failed": failed, "help": help_text.getvalue()}))
"""


def test_every_module_imports_without_the_optional_libraries():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *OPTIONAL], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert "--bundle" in result["help"] and "--output" in result["help"]
