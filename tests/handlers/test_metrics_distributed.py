"""BalancedAccuracy and QuadraticWeightedKappa across two gloo processes holding shares of different lengths (as a
validation ``DistributedSampler(even_divisible=False)`` gives them): both processes must report the score of the
whole set, not of their share and not of padded duplicates."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from monai_das.handlers import BalancedAccuracy, QuadraticWeightedKappa

# 9 samples of 3 ordered classes; rank 0 holds 0, 2, 4, 6, 8 and rank 1 holds 1, 3, 5, 7 (interleaved shares)
TARGETS = [0, 1, 2, 2, 1, 0, 0, 2, 1]
PREDS = [0, 1, 1, 2, 2, 0, 1, 2, 0]


def _rank_main(rank: int, out_dir: str, shares: list[list[int]]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=2)
    try:
        results = {}
        for name, metric in (("bacc", BalancedAccuracy()), ("kappa", QuadraticWeightedKappa(num_classes=3))):
            metric.reset()
            share = shares[rank]
            if share:
                one_hot = torch.nn.functional.one_hot(torch.tensor([PREDS[i] for i in share]), 3).float()
                metric.update((one_hot, torch.tensor([TARGETS[i] for i in share])))
            results[name] = metric.compute()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "shares", [[[0, 2, 4, 6, 8], [1, 3, 5, 7]], [list(range(9)), []]], ids=["five_and_four", "nine_and_none"]
)
def test_two_processes_score_the_whole_set(tmp_path, shares):
    mp.spawn(_rank_main, args=(str(tmp_path), shares), nprocs=2, join=True)
    expected = {
        "bacc": balanced_accuracy_score(TARGETS, PREDS),
        "kappa": cohen_kappa_score(TARGETS, PREDS, weights="quadratic", labels=[0, 1, 2]),
    }
    share0 = shares[0]
    alone = balanced_accuracy_score([TARGETS[i] for i in share0], [PREDS[i] for i in share0])
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == pytest.approx(expected), f"rank {rank}"
    if share0 != list(range(9)):
        assert alone != pytest.approx(expected["bacc"])  # the test would catch a per-rank score
