from __future__ import annotations

import pytest
import torch
from slow_tier import TESTS, is_slow


def pytest_collection_modifyitems(config, items):
    """Mark the tests of the files ``slow_tier.py`` names as ``slow``."""
    for item in items:
        if item.path.resolve().is_relative_to(TESTS) and is_slow(item.path):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _single_thread():
    """Every test runs on tiny tensors, where intra-op threads only add overhead (and large slowdowns on a busy CPU);
    the previous setting is restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def restore_torch_state():
    """In-process bundle runs call ``monai.utils.set_determinism``; undo it afterwards."""
    yield
    from monai.utils import set_determinism

    set_determinism(seed=None)
