from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_das.utils import to_class_indices


@pytest.mark.parametrize(
    "value, expected",
    [
        ([0, 2, 1], [0, 2, 1]),
        ([[0], [1]], [0, 1]),
        (np.array([[0.0, 1.0], [1.0, 0.0]]), [1, 0]),  # one-hot rows
        (torch.tensor([[0.1, 0.7, 0.2]]), [1]),  # probabilities
        ([torch.tensor([1]), torch.tensor([0])], [1, 0]),  # a decollated batch
        (torch.tensor(2), [2]),
    ],
)
def test_forms_of_labels(value, expected):
    assert to_class_indices(value).tolist() == expected


def test_threshold_reads_binary_scores():
    assert to_class_indices(torch.tensor([0.2, 0.7]), threshold=0.5).tolist() == [0, 1]


@pytest.mark.parametrize("value", [[0.5], [float("inf")], [float("nan")]])
def test_non_integer_labels_are_refused(value):
    with pytest.raises(ValueError, match="whole numbers"):
        to_class_indices(value, name="labels")


def test_too_many_dimensions():
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        to_class_indices(torch.zeros(2, 2, 2))
