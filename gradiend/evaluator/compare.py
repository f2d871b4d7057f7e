"""Comparison across GRADIEND runs on the base model's global index space.

Every input dimension of a GRADIEND is a *base-global* index (``GradiendModel.global_indices``),
so runs that selected different parameters or were pruned differently still compare
coordinate by coordinate: top-k sets are sets of base-global indices, and weight vectors are
aligned by index with missing coordinates counting as 0. Only GRADIEND weights are needed —
never the base model — so runs given as folders are loaded with ``GradiendModel.from_pretrained``
one at a time.

Measures (``compute_similarity_matrix``):

* ``topk_overlap`` — ``intersection`` = |S_i ∩ S_j| of the top-k sets (importance of ``part``;
  default each run's own: ``snr`` when it knows its neutral gradient scale, else ``decoder-fit``,
  see ``GradiendModel``), or ``intersection_frac`` = |S_i ∩ S_j| / min(|S_i|, |S_j|).
* ``cosine`` / ``cosine_signed`` — cosine of the signed weight vectors of ``part`` (default
  ``encoder-weight``); the unsigned variant is ``|cos|`` (a GRADIEND's sign is arbitrary).
* ``spearman`` / ``spearman_signed`` — Spearman rank correlation of the aligned vectors over the
  union of both runs' dimensions (missing = 0, ties get average ranks); unsigned = ``|ρ|``.
* ``mass_overlap`` — ½(m_i(shared)/m_i + m_j(shared)/m_j) with m = L1 mass of the importance of
  ``part`` (default as for ``topk_overlap``) and ``shared`` the dimensions both runs have.

For the vector measures a ``topk`` restricts each run to its own top-k dimensions first.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend.evaluator.comparable import check_comparable
from gradiend.model.gradiend import DEFAULT_PART, GradiendModel

logger = logging.getLogger(__name__)

ModelLike = GradiendModel | str | os.PathLike | Any
MEASURES = (
    "topk_overlap",
    "cosine",
    "cosine_signed",
    "spearman",
    "spearman_signed",
    "mass_overlap",
)
_DEFAULT_PART = {
    "topk_overlap": DEFAULT_PART,
    "mass_overlap": DEFAULT_PART,
    "cosine": "encoder-weight",
    "cosine_signed": "encoder-weight",
    "spearman": "encoder-weight",
    "spearman_signed": "encoder-weight",
}
_AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": np.mean,
    "median": np.median,
    "min": np.min,
    "max": np.max,
}


# --------------------------------------------------------------------------- model resolution
def load_gradiend(model: ModelLike) -> GradiendModel:
    """The GradiendModel behind ``model``: itself, its ``.gradiend``, or loaded from a run folder.

    A path loads only the GRADIEND weights (``model/`` inside a run folder or the model folder
    itself); the base language model is never loaded.
    """
    if isinstance(model, GradiendModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return GradiendModel.from_pretrained(Path(model))
    inner = getattr(model, "gradiend", None)
    if isinstance(inner, GradiendModel):
        return inner
    raise TypeError(
        f"cannot compare {type(model).__name__}: pass a GradiendModel, an object with a "
        "`.gradiend` GradiendModel (ModelWithGradiend), or a run folder path"
    )


def _labelled(models: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """Accept a dict label → model, or a sequence (labels from folder names or positions)."""
    if isinstance(models, Mapping):
        out = {str(k): v for k, v in models.items()}
    else:
        out = {}
        for i, m in enumerate(models):
            label = Path(m).name if isinstance(m, (str, os.PathLike)) else f"model {i}"
            out[label if label not in out else f"{label} ({i})"] = m
    if not out:
        raise ValueError("no models to compare")
    return out


def _members(model: Any) -> list[Any]:
    """A seed group (list/tuple of models) or a single model, as a list of members."""
    return list(model) if isinstance(model, (list, tuple)) else [model]


# --------------------------------------------------------------------------- top-k sets and Venn
def topk_sets(
    models: Mapping[str, ModelLike] | Sequence[ModelLike],
    topk: int | float = 1000,
    part: str = DEFAULT_PART,
) -> dict[str, set[int]]:
    """Base-global indices of each run's ``topk`` most important dimensions of ``part``.

    ``topk`` is a count or a fraction of each run's own input dimension. Runs given as paths are
    loaded one at a time and released, so many large runs fit in memory.
    """
    labelled = _labelled(models)
    check_comparable({label: [model] for label, model in labelled.items()})
    return {label: _topk_set(load_gradiend(model), topk, part) for label, model in labelled.items()}


def _topk_set(model: GradiendModel, topk: int | float, part: str) -> set[int]:
    return set(model.get_topk_weights(part=part, topk=topk, global_indices=True).tolist())


def venn_region_counts(sets: Mapping[str, set[int]]) -> dict[tuple[str, ...], int]:
    """Size of every Venn region: elements in exactly the sets named by the key.

    Keys are tuples of set labels in input order; all 2^n − 1 regions are listed (zeros
    included), e.g. for sets A, B: ``{("A",): |A∖B|, ("B",): |B∖A|, ("A", "B"): |A∩B|}``.
    """
    labels = list(sets)
    membership: dict[int, int] = {}
    for bit, label in enumerate(labels):
        for element in sets[label]:
            membership[element] = membership.get(element, 0) | (1 << bit)
    counts = np.bincount(
        np.fromiter(membership.values(), dtype=np.int64, count=len(membership)),
        minlength=1 << len(labels),
    )
    regions: dict[tuple[str, ...], int] = {}
    for size in range(1, len(labels) + 1):
        for combo in itertools.combinations(range(len(labels)), size):
            mask = sum(1 << i for i in combo)
            regions[tuple(labels[i] for i in combo)] = int(counts[mask])
    return regions


# --------------------------------------------------------------------------- aligned vectors
@dataclass(frozen=True)
class _Aligned:
    """A run's vector as (sorted base-global indices, values at those indices)."""

    index: np.ndarray
    value: np.ndarray


def _aligned(model: GradiendModel, part: str, signed: bool, topk: int | float | None) -> _Aligned:
    values = model.weight_vector(part) if signed else model.get_weight_importance(part)
    index = model.global_indices()
    if topk is not None:
        keep = model.get_topk_weights(part=part, topk=topk, global_indices=False)
        values, index = values[keep], index[keep]
    index_np = index.cpu().numpy().astype(np.int64, copy=False)
    order = np.argsort(index_np, kind="stable")
    return _Aligned(index_np[order], values.cpu().double().numpy()[order])


def _cosine(a: _Aligned, b: _Aligned) -> float:
    norm = float(np.linalg.norm(a.value) * np.linalg.norm(b.value))
    if norm == 0.0:
        return float("nan")
    _, ia, ib = np.intersect1d(a.index, b.index, assume_unique=True, return_indices=True)
    return float(np.dot(a.value[ia], b.value[ib]) / norm)


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    new_group = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.r_[starts, len(x)])
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks


def _spearman(a: _Aligned, b: _Aligned) -> float:
    union = np.union1d(a.index, b.index)
    va, vb = np.zeros(len(union)), np.zeros(len(union))
    va[np.searchsorted(union, a.index)] = a.value
    vb[np.searchsorted(union, b.index)] = b.value
    ra, rb = _rank(va) - (len(union) + 1) / 2.0, _rank(vb) - (len(union) + 1) / 2.0
    norm = float(np.sqrt(np.dot(ra, ra) * np.dot(rb, rb)))
    return float(np.dot(ra, rb) / norm) if norm > 0 else float("nan")


def _mass_overlap(a: _Aligned, b: _Aligned) -> float:
    _, ia, ib = np.intersect1d(a.index, b.index, assume_unique=True, return_indices=True)
    total_a, total_b = float(np.abs(a.value).sum()), float(np.abs(b.value).sum())
    if total_a == 0.0 or total_b == 0.0:
        return float("nan")
    return 0.5 * (np.abs(a.value[ia]).sum() / total_a + np.abs(b.value[ib]).sum() / total_b)


def _pair_score(measure: str, value: str) -> Callable[[Any, Any], float]:
    """Score of one pair of runs, for the measures computed pair by pair."""
    if measure == "topk_overlap":
        if value == "intersection":
            return lambda a, b: float(len(a & b))
        return lambda a, b: len(a & b) / min(len(a), len(b))
    pair_fns = {"cosine": _cosine, "spearman": _spearman, "mass_overlap": _mass_overlap}
    return pair_fns[measure.removesuffix("_signed")]


def _member_matrix(flat: list[Any], measure: str, value: str) -> np.ndarray:
    """Scores of every pair of runs (seed-group members listed individually)."""
    score = _pair_score(measure, value)
    matrix = np.empty((len(flat), len(flat)))
    for i, j in itertools.combinations_with_replacement(range(len(flat)), 2):
        matrix[i, j] = matrix[j, i] = score(flat[i], flat[j])
    return np.abs(matrix) if measure in ("cosine", "spearman") else matrix


# --------------------------------------------------------------------------- similarity matrix
def compute_similarity_matrix(
    models: Mapping[str, ModelLike | Sequence[ModelLike]] | Sequence[ModelLike],
    measure: str = "cosine",
    part: str | None = None,
    topk: int | float | None = None,
    value: str = "intersection_frac",
    aggregate: str = "mean",
) -> pd.DataFrame:
    """Pairwise similarity of runs as a DataFrame labelled by run on both axes.

    ``models`` maps a label to a GradiendModel, a ModelWithGradiend (``.gradiend``), a run
    folder, or a list of those (a *seed group*: the cell is ``aggregate`` over all pairs of
    distinct members). ``part`` defaults per measure (see the module docstring); ``topk`` is
    required for ``topk_overlap`` and optional otherwise. ``value`` applies to
    ``topk_overlap`` only. The DataFrame's ``attrs`` record measure, part, topk and value.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {MEASURES}")
    if value not in ("intersection", "intersection_frac"):
        raise ValueError(f"value must be 'intersection' or 'intersection_frac', got {value!r}")
    if aggregate not in _AGGREGATES:
        raise ValueError(f"aggregate must be one of {sorted(_AGGREGATES)}, got {aggregate!r}")
    if measure == "topk_overlap" and topk is None:
        raise ValueError("measure='topk_overlap' needs topk (a count or a fraction)")
    part = part or _DEFAULT_PART[measure]
    groups = {label: _members(m) for label, m in _labelled(models).items()}
    check_comparable(groups)
    resolved: set[str] = set()
    flat = [_features(m, measure, part, topk, resolved) for ms in groups.values() for m in ms]
    owners = [g for g, ms in enumerate(groups.values()) for _ in ms]
    members = _member_matrix(flat, measure, value)
    matrix = _group_matrix(members, owners, len(groups), _AGGREGATES[aggregate])
    frame = pd.DataFrame(matrix, index=list(groups), columns=list(groups))
    if measure == "topk_overlap" and value == "intersection" and not np.isnan(matrix).any():
        if all(len(ms) == 1 for ms in groups.values()):
            frame = frame.astype(np.int64)
    part_used = ", ".join(sorted(resolved))
    if len(resolved) > 1:  # e.g. runs trained with and without neutral texts
        logger.warning("the runs rank their dimensions differently (%s)", part_used)
    frame.attrs.update(measure=measure, part=part_used, topk=topk, value=value, aggregate=aggregate)
    return frame


def _features(
    model: ModelLike, measure: str, part: str | None, topk: int | float | None, resolved: set
) -> Any:
    """What a measure needs of one run: its top-k set or its aligned vector (the ranking it
    used is added to ``resolved``)."""
    gradiend = load_gradiend(model)
    part = gradiend.resolve_part(part)  # once: the ranking this run uses, passed on below
    resolved.add(part)
    if measure == "topk_overlap":
        return _topk_set(gradiend, topk, part)
    return _aligned(gradiend, part, signed=measure != "mass_overlap", topk=topk)


def _group_matrix(
    members: np.ndarray,
    owners: list[int],
    n_groups: int,
    aggregate: Callable[[np.ndarray], float],
) -> np.ndarray:
    """Aggregate member-pair scores per pair of groups; within a group, distinct members only."""
    owner = np.asarray(owners)
    matrix = np.empty((n_groups, n_groups))
    for i, j in itertools.combinations_with_replacement(range(n_groups), 2):
        rows, cols = np.flatnonzero(owner == i), np.flatnonzero(owner == j)
        block = members[np.ix_(rows, cols)]
        if i == j and len(rows) > 1:
            block = block[np.triu_indices(len(rows), k=1)]
        matrix[i, j] = matrix[j, i] = float(aggregate(np.ravel(block)))
    return matrix
