"""Fixtures of the reliability tests; the bundle helpers they reuse live in ``tests/bundles`` (put on ``sys.path``
here, as pytest does when it collects that folder)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BUNDLE_TESTS = Path(__file__).resolve().parents[1] / "bundles"
if str(BUNDLE_TESTS) not in sys.path:
    sys.path.insert(0, str(BUNDLE_TESTS))


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors: intra-op threads only add overhead on a busy CPU; restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
