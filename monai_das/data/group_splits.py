"""Patient-grouped splits of manifest rows: a train / val / test split by fractions, and k folds (scikit-learn's
``StratifiedGroupKFold``); every video of a group (patient) lands in one split."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_das.data.manifest import _ROW

StratifiedGroupKFold, _ = optional_import("sklearn.model_selection", name="StratifiedGroupKFold")

__all__ = ["split_by_group", "group_k_fold"]


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise ValueError(f"fractions must be a sequence of numbers, got {fractions!r}.") from None
    if not fr or any(not np.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be non-negative numbers that sum to 1, got {fractions!r}.")
    return fr


def _assign(groups: list[tuple[str, int]], targets: np.ndarray, counts: np.ndarray) -> dict[str, int]:
    """Greedy: each group (in the given order) goes to the split furthest below its target row count."""
    out = {}
    for name, size in groups:
        j = int(np.argmax(targets - counts))
        out[name] = j
        counts[j] += size
    return out


def _groups(
    rows: list[dict[str, Any]], group_key: str | None, stratify_key: str | None
) -> tuple[list[str], dict[str, int], dict[str, list[str]]]:
    """The group id of every row, the row count of every group and (with ``stratify_key``) each group's values."""
    group_of: list[str] = []
    for i, row in enumerate(rows):
        if group_key is None:
            group_of.append(f"__row{i}")
            continue
        g = row.get(group_key)
        if g is None or str(g).strip() == "":
            raise ValueError(
                f"row {row.get(_ROW, i + 1)} has no value in the group column {group_key!r}; every row needs a "
                "group id (or pass group_key=None to split rows independently)."
            )
        group_of.append(str(g).strip())
    sizes: dict[str, int] = {}
    values: dict[str, list[str]] = {}
    for i, (row, g) in enumerate(zip(rows, group_of)):
        sizes[g] = sizes.get(g, 0) + 1
        if stratify_key is not None:
            v = row.get(stratify_key)
            if v is None or str(v).strip() == "":
                raise ValueError(f"row {row.get(_ROW, i + 1)} has no value in the stratify column {stratify_key!r}.")
            values.setdefault(g, []).append(str(v).strip())
    return group_of, sizes, values


def split_by_group(
    rows: Sequence[dict[str, Any]],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    group_key: str | None = "patient_id",
    stratify_key: str | None = None,
) -> list[list[dict[str, Any]]]:
    """Split rows so that no group (patient) appears in two splits; deterministic for a seed.

    Groups are ordered by name, shuffled with ``numpy.random.default_rng(seed)``, then each group is
    given to the split whose row count is furthest below ``fraction * number of rows``. With
    ``stratify_key`` the groups are split separately per stratum (a group's stratum is the most
    common value of ``stratify_key`` among its rows, ties broken by the smallest value), which keeps
    the label balance of every split close to the whole set's.

    Args:
        rows: row dicts (e.g. from :func:`read_manifest`).
        fractions: target fraction of rows per split; non-negative, summing to 1.
        seed: random seed of the group shuffle.
        group_key: column holding the group id; ``None`` makes every row its own group.
        stratify_key: optional column to stratify by (e.g. the label).

    Returns:
        one list of rows per fraction, each in the input order.

    Raises:
        ValueError: for bad fractions, or a row without a group id / stratify value (naming the row).
    """
    fr = _check_fractions(fractions)
    rows = list(rows)
    group_of, sizes, values = _groups(rows, group_key, stratify_key)
    names = sorted(sizes)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    strata: dict[str, list[str]] = {}
    for g in order:
        if stratify_key is None:
            key = ""
        else:
            vals, counts = np.unique(values[g], return_counts=True)
            key = str(vals[int(np.argmax(counts))])
        strata.setdefault(key, []).append(g)
    split_of: dict[str, int] = {}
    for key in sorted(strata):
        groups = [(g, sizes[g]) for g in strata[key]]
        total = sum(s for _, s in groups)
        split_of.update(_assign(groups, np.asarray(fr) * total, np.zeros(len(fr))))
    out: list[list[dict[str, Any]]] = [[] for _ in fr]
    for row, g in zip(rows, group_of):
        out[split_of[g]].append(row)
    return out


def group_k_fold(
    rows: Sequence[dict[str, Any]],
    num_folds: int = 5,
    seed: int = 0,
    group_key: str | None = "patient_id",
    stratify_key: str | None = None,
) -> list[list[dict[str, Any]]]:
    """Divide rows into ``num_folds`` folds so that no group (patient) is in two folds; deterministic for a seed.

    scikit-learn's ``StratifiedGroupKFold(num_folds, shuffle=True, random_state=seed)``: the groups, shuffled, go one
    by one to the fold that keeps every ``stratify_key`` value's share most even (the smallest fold first without
    ``stratify_key``). A group whose rows hold several values (a patient with videos of different labels) stays
    whole, so the folds are stratified only as far as the groups allow.

    Args:
        rows: row dicts (e.g. from :func:`read_manifest`).
        num_folds: number of folds, at least 2 and at most the number of groups.
        seed: random seed of the group shuffle.
        group_key: column holding the group id; ``None`` makes every row its own group.
        stratify_key: optional column to stratify by (e.g. the label).

    Returns:
        ``num_folds`` lists of rows, each in the input order.

    Raises:
        ValueError: for ``num_folds`` below 2 or above the number of groups, or a row without a group id /
            stratify value (naming the row).
    """
    rows = list(rows)
    group_of, sizes, _ = _groups(rows, group_key, stratify_key)
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or not 2 <= num_folds <= len(sizes):
        raise ValueError(f"num_folds must be an integer in [2, {len(sizes)}] (the number of groups), got {num_folds}.")
    strata = [str(r[stratify_key]).strip() for r in rows] if stratify_key is not None else [""] * len(rows)
    splitter = StratifiedGroupKFold(n_splits=int(num_folds), shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a value rarer than num_folds is expected with few patients
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        tests = [test for _, test in splitter.split(np.zeros(len(rows)), strata, group_of)]
    return [[rows[i] for i in sorted(test)] for test in tests]


def _fold_splits(
    rows: list[dict[str, Any]],
    fold: int,
    num_folds: int,
    seed: int,
    group_key: str | None,
    stratify_key: str | None,
) -> list[list[dict[str, Any]]]:
    """``[train, val, test]`` of cross-validation fold ``fold``: test fold ``fold``, val fold ``fold + 1``."""
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 3:
        raise ValueError(f"num_folds must be an integer >= 3 (test, validation and training folds), got {num_folds!r}.")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < num_folds:
        raise ValueError(f"fold must be an integer in [0, {num_folds - 1}] for num_folds={num_folds}, got {fold!r}.")
    folds = group_k_fold(rows, num_folds, seed=seed, group_key=group_key, stratify_key=stratify_key)
    test, val = folds[fold], folds[(fold + 1) % num_folds]
    held_out = {id(r) for r in test + val}
    return [[r for r in rows if id(r) not in held_out], val, test]
