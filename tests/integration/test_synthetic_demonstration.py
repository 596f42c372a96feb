"""The project's demonstration of why input-adaptive sampling exists, as a test.

On the synthetic task the class shows in 2 consecutive frames of 32, at a position that changes per sample. Keeping
k = T/4 = 8 frames, uniform sampling sees the evidence in about half of the inputs, so it cannot exceed ~75 %
accuracy; DAS finds the evidence frames per input. A short CPU training (a small 2D CNN backbone, the same recipe for
both samplers, the one of ``python -m benchmarks.adaptivity``, with the BatchNorm statistics re-estimated on
the eval-mode picks) must show DAS ahead of uniform by a clear margin, for every seed tried.

Why two seeds and the re-estimation: without it, the accuracy of one seeded DAS training swung between 0.50 and 0.90
(5 seeds) while DAS found the evidence in >= 98 % of the inputs every time: the backbone's BatchNorm statistics,
kept from the Gumbel-perturbed training picks, did not fit the deterministic eval picks. Re-estimated, the same 5
seeds gave 0.918-0.938 (measured while writing this test), so the thresholds below leave a wide margin.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.adaptivity import synthetic_split, train_and_test


@pytest.fixture(scope="module")
def synthetic_data():
    return synthetic_split(384, seed=0), synthetic_split(256, seed=1)


def test_das_beats_uniform_on_the_synthetic_task(synthetic_data):
    torch.set_num_threads(2)
    train, test = synthetic_data
    das = [train_and_test("das", 8, train, test, seed=seed, recalibrate_bn=True) for seed in (0, 1)]
    uniform_accuracy, uniform_hits = train_and_test("uniform", 8, train, test, recalibrate_bn=True)
    print(f"DAS (accuracy, evidence hit) per seed {das}; uniform {uniform_accuracy:.3f} ({uniform_hits:.3f})")
    assert 0.4 < uniform_hits < 0.65  # uniform sees the evidence in about half of the inputs
    for accuracy, hits in das:
        assert hits > 0.9  # DAS finds it per input
        assert accuracy > 0.8
        assert accuracy - uniform_accuracy > 0.12
