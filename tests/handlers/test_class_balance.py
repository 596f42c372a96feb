"""Inverse-frequency class weights and balanced sampler weights (monai_das.engines.class_balance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from monai_das.engines import balanced_sampler_weights, class_weights


def test_class_weights_known_values():
    torch.testing.assert_close(class_weights([0, 0, 0, 1], 2), torch.tensor([0.5, 1.5]))
    # counts 1, 2, 4 -> 1/n = 1, 1/2, 1/4, mean 7/12
    expected = torch.tensor([12 / 7, 6 / 7, 3 / 7])
    weights = class_weights(torch.tensor([2, 1, 2, 0, 2, 1, 2]), 3)
    torch.testing.assert_close(weights, expected)
    assert weights.dtype == torch.float32 and float(weights.mean()) == pytest.approx(1.0)


def test_class_weights_balanced_data_and_one_hot():
    torch.testing.assert_close(class_weights(np.array([0, 1, 2, 0, 1, 2]), 3), torch.ones(3))
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 1]), 2)
    torch.testing.assert_close(class_weights(one_hot, 2), torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(class_weights([[0], [0], [0], [1]], 2), torch.tensor([0.5, 1.5]))


def test_class_weights_absent_class_gets_zero():
    weights = class_weights([0, 0, 0, 2], 3)
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.0, 1.5]))


def test_class_weights_work_in_cross_entropy():
    labels = torch.tensor([0, 0, 0, 1])
    loss = torch.nn.CrossEntropyLoss(weight=class_weights(labels, 2))
    assert torch.isfinite(loss(torch.zeros(4, 2), labels))


@pytest.mark.parametrize(
    "labels, num_classes, match",
    [([0, 2], 2, "lie in"), ([-1, 0], 2, "lie in"), ([], 2, "empty"), ([0, 1], 0, "num_classes"), ([0.5], 2, "whole")],
)
def test_class_weights_bad_input(labels, num_classes, match):
    with pytest.raises(ValueError, match=match):
        class_weights(labels, num_classes)


def test_balanced_sampler_weights():
    weights = balanced_sampler_weights([0, 0, 0, 1])
    torch.testing.assert_close(weights, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0], dtype=torch.float64))
    labels = torch.tensor([0] * 90 + [1] * 10)
    sampler = WeightedRandomSampler(
        balanced_sampler_weights(labels), num_samples=4000, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    drawn = labels[torch.tensor(list(sampler))]
    assert 0.45 < float(drawn.float().mean()) < 0.55
    with pytest.raises(ValueError, match="lie in"):
        balanced_sampler_weights([0, 3], num_classes=2)


def test_distributed_data_sampler_balances_classes_on_every_rank():
    from monai.data import DistributedSampler, DistributedWeightedRandomSampler

    from monai_das.engines import distributed_data_sampler

    labels = [0] * 90 + [1] * 10  # 10 % class 1
    dataset = list(range(100))
    torch.manual_seed(0)
    samplers = [distributed_data_sampler("balanced_sampling", dataset, labels, num_replicas=2, rank=r) for r in (0, 1)]
    drawn = []
    for epoch in range(40):
        shares = []
        for sampler in samplers:
            assert isinstance(sampler, DistributedWeightedRandomSampler) and len(sampler) == 50
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
        assert not set(shares[0]) & set(shares[1])  # the ranks draw from disjoint shards
        drawn += shares[0] + shares[1]
    assert 0.4 < np.mean([labels[i] for i in drawn]) < 0.6  # about half class 1, not 10 %
    plain = [distributed_data_sampler("weighted_loss", dataset, labels, num_replicas=2, rank=r) for r in (0, 1)]
    assert all(type(s) is DistributedSampler for s in plain)
    assert sorted(list(plain[0]) + list(plain[1])) == dataset  # a shuffled partition: class 1 stays at 10 %
    with pytest.raises(ValueError, match="one label per dataset item"):
        distributed_data_sampler("balanced_sampling", dataset[:50], labels, num_replicas=2, rank=0)
