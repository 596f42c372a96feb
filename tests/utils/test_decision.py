"""The operating threshold chosen on validation (best balanced accuracy) and the decision every reader makes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_das.utils import DECISION_THRESHOLD_KEY, choose_threshold, decide


def balanced_accuracy(p, y, threshold):
    pred = p > threshold
    return ((pred & y).sum() / y.sum() + (~pred & ~y).sum() / (~y).sum()) / 2


def test_the_threshold_has_the_best_balanced_accuracy_of_any_threshold():
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.25  # imbalanced, as Adrenal's hyperplasia
    p = np.clip(0.7 + 0.2 * y + 0.1 * rng.standard_normal(200), 0, 1)  # nearly every case above 0.5
    threshold = choose_threshold(p, y)
    best = balanced_accuracy(p, y, threshold)
    assert best == pytest.approx(max(balanced_accuracy(p, y, t) for t in np.linspace(0, 1, 2001)))
    assert balanced_accuracy(p, y, 0.5) < 0.55 and best > 0.8 and threshold > 0.7


def test_ties_keep_the_threshold_closest_to_one_half_and_a_missing_class_keeps_one_half():
    # every threshold in (0.2, 0.8) separates the classes: 0.5 stays
    assert choose_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.5
    # separable only between 0.6 and 0.7: the midpoint
    assert choose_threshold([0.55, 0.6, 0.7, 0.9], [0, 0, 1, 1]) == pytest.approx(0.65)
    assert choose_threshold([0.3, 0.9], [1, 1]) == 0.5
    # one probability for every case, but for float noise: nothing to choose
    assert choose_threshold([0.497 + 3e-8, 0.497, 0.497 + 1e-8, 0.497 - 2e-8], [1, 0, 1, 0]) == 0.5
    with pytest.raises(ValueError, match="one value per case"):
        choose_threshold([0.3, 0.9], [1, 0, 1])


def test_decide_uses_the_stored_threshold_for_two_classes_and_argmax_otherwise():
    prob = torch.tensor([[0.45, 0.55], [0.3, 0.7], [0.8, 0.2]])
    assert decide(prob, {DECISION_THRESHOLD_KEY: 0.6}).tolist() == [0, 1, 0]
    assert decide(prob, {}).tolist() == [1, 1, 0]  # no stored threshold (an older checkpoint): argmax
    assert decide(prob.numpy(), None).tolist() == [1, 1, 0]
    three = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    assert decide(three, {DECISION_THRESHOLD_KEY: 0.1}).tolist() == [2, 0]  # multi-class: argmax
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        decide(torch.rand(3), {})
