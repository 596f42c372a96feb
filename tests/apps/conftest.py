"""Fixtures of the command-line tool tests; the helpers are in ``apps_testing.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from apps_testing import build_network, save_checkpoint


@pytest.fixture(scope="session")
def vessel_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the vessel bundle's default (DAS) network, freshly initialised (BatchNorm calibrated)."""
    return save_checkpoint(build_network(), tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: intra-op threads only add overhead on a busy CPU; restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
