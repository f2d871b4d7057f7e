"""Seed groups in a comparison matrix: aggregate, dispersion and pairing of member scores.

A *seed group* is a list of runs of one configuration trained with different seeds. In
``compute_similarity_matrix`` a cell between two groups is computed from the scores of their
members' pairs:

* ``seed_pairing_mode="all_pairs"`` (default): every member of one group with every member of
  the other; within a group every pair of distinct members.
* ``"matched"``: the k-th member of one group with the k-th of the other (seed k with seed k:
  list the members in seed order); groups of different sizes pair their first min(n, m)
  members. Within a group it is the same as ``all_pairs``.

The cell is ``aggregate`` (mean, median, min, max) of those scores; ``dispersion`` (std, range,
minmax) of the same scores goes to a second matrix and ``n_matrix`` counts them.

``gradiend.evaluator.seed_dispersion`` builds the groups of whole runs (their saved seeds)
and draws the suite dispersion heatmap.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DISPERSIONS",
    "PAIRING_MODES",
    "check_seed_args",
    "group_matrices",
]

DISPERSIONS = ("std", "range", "minmax")
PAIRING_MODES = ("all_pairs", "matched")


def check_seed_args(dispersion: str | None, pairing: str) -> None:
    if dispersion is not None and dispersion not in DISPERSIONS:
        raise ValueError(f"dispersion must be one of {DISPERSIONS} or None, got {dispersion!r}")
    if pairing not in PAIRING_MODES:
        raise ValueError(f"seed_pairing_mode must be one of {PAIRING_MODES}, got {pairing!r}")


def _spread(x: np.ndarray, dispersion: str) -> Any:
    if len(x) == 0:
        return float("nan") if dispersion != "minmax" else (float("nan"), float("nan"))
    if dispersion == "std":
        return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    if dispersion == "range":
        return float(np.max(x) - np.min(x))
    return (float(np.min(x)), float(np.max(x)))


def _block(members: np.ndarray, rows: np.ndarray, cols: np.ndarray, same: bool, matched: bool):
    """The member-pair scores behind one cell."""
    if same:
        block = members[np.ix_(rows, cols)]
        return block[np.triu_indices(len(rows), k=1)] if len(rows) > 1 else np.ravel(block)
    if matched:
        k = min(len(rows), len(cols))
        if len(rows) != len(cols):
            logger.warning(
                "matched seed pairing of groups with %d and %d members: the first %d are paired",
                len(rows), len(cols), k,
            )  # fmt: skip
        return members[rows[:k], cols[:k]]
    return np.ravel(members[np.ix_(rows, cols)])


def group_matrices(
    members: np.ndarray,
    owners: Sequence[int],
    n_groups: int,
    aggregate: Callable[[np.ndarray], float],
    dispersion: str | None = None,
    pairing: str = "all_pairs",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(aggregate matrix, dispersion matrix or None, n_matrix)`` of the groups from the
    member × member score matrix (``owners[i]``: the group of member i)."""
    owner = np.asarray(owners)
    matrix = np.empty((n_groups, n_groups))
    counts = np.zeros((n_groups, n_groups), dtype=np.int64)
    spread = np.empty((n_groups, n_groups), dtype=object) if dispersion else None
    for i, j in itertools.combinations_with_replacement(range(n_groups), 2):
        rows, cols = np.flatnonzero(owner == i), np.flatnonzero(owner == j)
        scores = _block(members, rows, cols, i == j, pairing == "matched").astype(np.float64)
        matrix[i, j] = matrix[j, i] = float(aggregate(scores)) if len(scores) else float("nan")
        counts[i, j] = counts[j, i] = len(scores)
        if spread is not None:
            spread[i, j] = spread[j, i] = _spread(scores, dispersion)
    if spread is not None and dispersion != "minmax":
        spread = spread.astype(np.float64)
    return matrix, spread, counts
