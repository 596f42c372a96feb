"""Quadratic-weighted kappa: hand-computed values, scikit-learn, and an ignite run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from sklearn.metrics import cohen_kappa_score

from monai_das.handlers import QuadraticWeightedKappa, quadratic_weighted_kappa


def test_known_values():
    assert quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3], 4) == pytest.approx(1.0)
    # hand-computed: O = [[1, 1], [0, 2]] of 4 samples, E = outer([2, 2], [1, 3]) / 4 = [[0.5, 1.5], [0.5, 1.5]],
    # W = [[0, 1], [1, 0]]: kappa = 1 - 1 / (1.5 + 0.5) = 0.5
    assert quadratic_weighted_kappa([0, 0, 1, 1], [0, 1, 1, 1], 2) == pytest.approx(0.5)
    # always off by the whole scale, against the reverse order: the most negative value
    assert quadratic_weighted_kappa([0, 1, 2, 3], [3, 2, 1, 0], 4) == pytest.approx(-1.0)


def test_distance_counts_even_for_classes_nobody_used():
    """Class 2 is absent: 3 is still 3 grades from 0 and 2 from 1 (sklearn without ``labels`` would say 2 and 1)."""
    t, p = [0, 0, 1, 3, 3, 1], [0, 1, 1, 3, 1, 0]
    ours = quadratic_weighted_kappa(t, p, 4)
    assert ours == pytest.approx(cohen_kappa_score(t, p, weights="quadratic", labels=[0, 1, 2, 3]))
    assert ours != pytest.approx(cohen_kappa_score(t, p, weights="quadratic"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, 60)
    p = np.clip(t + rng.integers(-1, 2, 60), 0, 3)
    expected = cohen_kappa_score(t, p, weights="quadratic", labels=[0, 1, 2, 3])
    assert quadratic_weighted_kappa(t, p, 4) == pytest.approx(expected)


def test_undefined_and_bad_input():
    assert np.isnan(quadratic_weighted_kappa([2, 2], [2, 2], 4))
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 4\), got \[4\]"):
        quadratic_weighted_kappa([0, 4], [0, 1], 4)
    with pytest.raises(ValueError, match="same number of samples"):
        quadratic_weighted_kappa([0, 1], [0], 4)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        QuadraticWeightedKappa(num_classes=1)


def test_ignite_metric_over_batches_from_probabilities():
    rng = np.random.default_rng(3)
    t = torch.as_tensor(rng.integers(0, 4, 40))
    logits = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    logits[torch.arange(40), t] += 1.5  # mostly right
    batches = [(logits[i : i + 16], t[i : i + 16]) for i in range(0, 40, 16)]
    engine = Engine(lambda e, batch: batch)
    QuadraticWeightedKappa(num_classes=4).attach(engine, "kappa")
    state = engine.run(batches, max_epochs=1)
    expected = cohen_kappa_score(t.numpy(), logits.argmax(1).numpy(), weights="quadratic", labels=[0, 1, 2, 3])
    assert state.metrics["kappa"] == pytest.approx(expected)
    assert 0.0 < state.metrics["kappa"] < 1.0
    empty = QuadraticWeightedKappa(num_classes=4)
    with pytest.raises(NotComputableError):
        empty.compute()
