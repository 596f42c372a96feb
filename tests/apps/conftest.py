"""Fixtures of the command-line tool tests; the helpers are in ``apps_testing.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from apps_testing import build_network, save_checkpoint


@pytest.fixture(scope="session")
def vessel_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the vessel bundle's default (DAS) network, freshly initialised (BatchNorm calibrated)."""
    return save_checkpoint(build_network(), tmp_path_factory.mktemp("ckpt") / "model.pt")

