"""BalancedAccuracy against scikit-learn, alone and inside a MONAI SupervisedEvaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.exceptions import NotComputableError
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine
from monai.transforms import Activationsd
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from torch import nn

from monai_das.handlers import BalancedAccuracy, to_class_indices


def _score(y_pred, y, **kwargs) -> float:
    metric = BalancedAccuracy(**kwargs)
    metric.reset()
    metric.update((y_pred, y))
    return metric.compute()


def test_imbalanced_majority_guess_is_half():
    y = torch.tensor([0] * 90 + [1] * 10)
    probs = torch.tensor([[0.8, 0.2]]).repeat(100, 1)  # always predicts class 0
    assert accuracy_score(y.numpy(), probs.argmax(1).numpy()) == pytest.approx(0.9)
    assert _score(probs, y) == pytest.approx(0.5)
    assert _score(probs, y, adjusted=True) == pytest.approx(0.0)


def test_matches_sklearn_multiclass_logits_index_and_one_hot():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3, generator=g)
    y = torch.randint(0, 3, (50,), generator=g)
    expected = balanced_accuracy_score(y.numpy(), logits.argmax(1).numpy())
    assert _score(logits, y) == pytest.approx(expected)
    assert _score(logits, y[:, None]) == pytest.approx(expected)
    assert _score(torch.softmax(logits, 1), torch.nn.functional.one_hot(y, 3)) == pytest.approx(expected)


def test_single_column_scores_use_the_threshold():
    scores = torch.tensor([-2.0, -0.5, 0.3, 1.0, 0.2, -0.1])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    expected = balanced_accuracy_score(y.numpy(), (scores > 0).long().numpy())
    assert _score(scores[:, None], y, threshold=0.0) == pytest.approx(expected)
    probs = torch.sigmoid(scores)
    assert _score(probs, y, threshold=0.5) == pytest.approx(expected)


def test_accumulates_over_batches_and_decollated_lists():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(20, 2, generator=g)
    y = torch.randint(0, 2, (20,), generator=g)
    metric = BalancedAccuracy()
    metric.reset()
    metric.update((logits[:7], y[:7]))
    metric.update((list(logits[7:]), [v[None] for v in y[7:]]))  # channel-first items, as decollated
    assert metric.compute() == pytest.approx(balanced_accuracy_score(y.numpy(), logits.argmax(1).numpy()))
    metric.reset()
    with pytest.raises(NotComputableError):
        metric.compute()


def test_bad_inputs():
    with pytest.raises(ValueError, match="same number"):
        _score(torch.rand(4, 2), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="whole numbers"):
        to_class_indices(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        to_class_indices(torch.rand(2, 2, 2))


def test_in_supervised_evaluator_like_rocauc():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    g = torch.Generator().manual_seed(2)
    data = [{"image": torch.randn(1, 4, 4, generator=g), "label": int(i % 3 == 0)} for i in range(13)]
    evaluator = SupervisedEvaluator(
        "cpu",
        DataLoader(data, batch_size=4),
        net,
        postprocessing=Activationsd(keys="pred", softmax=True),
        key_val_metric={"val_bacc": BalancedAccuracy(output_transform=from_engine(["pred", "label"]))},
    )
    evaluator.run()
    with torch.no_grad():
        preds = net(torch.stack([d["image"] for d in data])).argmax(1).numpy()
    expected = balanced_accuracy_score(np.array([d["label"] for d in data]), preds)
    assert evaluator.state.metrics["val_bacc"] == pytest.approx(expected)
