"""Paired comparison of two methods on the same test cases: mean AUC difference over seeds, bootstrap interval.

For one dataset and budget, method A and method B were each run with the same seeds, and each run saved its
per-case test predictions. The difference of A and B is the mean over seeds of ``AUC(A, seed) - AUC(B, seed)``.
Its 95% interval comes from a paired bootstrap over the test cases: every replicate draws cases with replacement
and scores A and B of every seed on the same draw. When every seed was tested on the same cases (MedMNIST's official
test split) one draw serves all seeds; otherwise (a split per seed or fold) each seed draws from its own cases.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_predictions", "roc_auc", "paired_difference"]


def read_predictions(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, probabilities (N, C), labels (N,))`` from a predictions CSV with ``id``, ``prob_*`` and ``label``.

    Raises:
        ValueError: when the file has no ``label`` column or no ``prob_`` column.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    prob_columns = [c for c in columns if c.startswith("prob_")]
    if "label" not in columns or not prob_columns:
        raise ValueError(f"{path}: a predictions file needs 'label' and 'prob_<class>' columns, got {columns}.")
    ids = [r["id"] for r in rows]
    probs = np.array([[float(r[c]) for c in prob_columns] for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    return ids, probs, labels


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count one half); NaN when one class is absent."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based ranks, averaged over ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """AUC of ``probs`` ``(N, C)``: of class 1 for two classes, else the macro mean of one-vs-rest AUCs."""
    if probs.shape[1] == 2:
        return _binary_auc(probs[:, 1], labels == 1)
    return float(np.nanmean([_binary_auc(probs[:, c], labels == c) for c in range(probs.shape[1])]))


def paired_difference(
    runs_a: Sequence[tuple[list[str], np.ndarray, np.ndarray]],
    runs_b: Sequence[tuple[list[str], np.ndarray, np.ndarray]],
    num_bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean AUC difference A - B over paired runs (one pair per seed) and its 95% paired-bootstrap interval.

    Args:
        runs_a, runs_b: per seed, the :py:func:`read_predictions` of A and of B (same order of seeds).
        num_bootstrap: bootstrap replicates.
        seed: seed of the bootstrap draws.

    Returns:
        ``{"mean": ..., "low": ..., "high": ..., "seeds": n, "cases": cases per seed (mean)}``.

    Raises:
        ValueError: when the lists differ in length or are empty, or a pair was not tested on the same cases.
    """
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError(f"need one run of each method per seed, got {len(runs_a)} and {len(runs_b)}.")
    for (ids_a, _, labels_a), (ids_b, _, labels_b) in zip(runs_a, runs_b):
        if ids_a != ids_b or not np.array_equal(labels_a, labels_b):
            raise ValueError("a pair of runs was not tested on the same cases (ids or labels differ).")
    diffs = [roc_auc(pa, ya) - roc_auc(pb, yb) for (_, pa, ya), (_, pb, yb) in zip(runs_a, runs_b)]
    shared = all(ids == runs_a[0][0] for ids, _, _ in runs_a)
    rng = np.random.default_rng(seed)
    replicates = np.empty(num_bootstrap)
    for r in range(num_bootstrap):
        draw = rng.integers(0, len(runs_a[0][0]), len(runs_a[0][0])) if shared else None
        total = 0.0
        for (ids, pa, y), (_, pb, _) in zip(runs_a, runs_b):
            idx = draw if shared else rng.integers(0, len(ids), len(ids))
            total += roc_auc(pa[idx], y[idx]) - roc_auc(pb[idx], y[idx])
        replicates[r] = total / len(runs_a)
    low, high = np.nanpercentile(replicates, [2.5, 97.5])
    return {"mean": float(np.mean(diffs)), "low": float(low), "high": float(high), "seeds": len(runs_a),
            "cases": float(np.mean([len(ids) for ids, _, _ in runs_a]))}
