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

Every measure looks at one ``region`` of the dimensions (``gradiend.model.word_rows``): by
default ``rest``, everything but the feature words' own embedding rows. Those rows take the top
of every ranking (they are where the trained words are), so over ``"all"`` two runs whose
encoders are unrelated still share almost every top-k dimension; ``"word_rows"`` compares only
them.

Runs that did not converge (their ``training.json`` says so) are refused with
``UnconvergedError`` unless ``allow_unconverged=True``; then their labels carry
``" (NOT CONVERGED)"`` in the frame, the top-k sets and every figure drawn from them
(``gradiend.evaluator.converged_runs``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gradiend.evaluator.comparable import check_comparable
from gradiend.evaluator.converged_runs import check_runs, marked
from gradiend.evaluator.seed_groups import check_seed_args, group_matrices
from gradiend.model.gradiend import DEFAULT_PART, GradiendModel
from gradiend.model.runs import RunLike, label_runs, load_gradiend
from gradiend.model.word_rows import DEFAULT_REGION, check_region, region_positions

logger = logging.getLogger(__name__)

__all__ = [
    "MEASURES",
    "ModelLike",
    "RunComparison",
    "compare",
    "compute_similarity_matrix",
    "load_gradiend",
    "topk_sets",
    "venn_region_counts",
]

ModelLike = RunLike
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


def _members(model: Any) -> list[Any]:
    """A seed group (list/tuple of models) or a single model, as a list of members."""
    return list(model) if isinstance(model, (list, tuple)) else [model]


# --------------------------------------------------------------------------- top-k sets and Venn
def topk_sets(
    models: Mapping[str, ModelLike] | Sequence[ModelLike],
    topk: int | float = 1000,
    part: str = DEFAULT_PART,
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
) -> dict[str, set[int]]:
    """Base-global indices of each run's ``topk`` most important dimensions of ``part`` in
    ``region`` (default ``rest``: all but the feature words' embedding rows).

    ``topk`` is a count or a fraction of each run's own dimensions in the region. Runs given as
    paths are loaded one at a time and released, so many large runs fit in memory. An
    unconverged run is refused unless ``allow_unconverged`` (then its label is marked).
    """
    check_region(region)
    labelled = label_runs(models)
    groups = {label: [model] for label, model in labelled.items()}
    bad = check_runs(groups, "topk_sets", allow_unconverged)
    check_comparable(groups)
    return {
        marked(label, bad): _topk_set(load_gradiend(model), topk, part, region)
        for label, model in labelled.items()
    }


def _topk_set(model: GradiendModel, topk: int | float, part: str, region: str) -> set[int]:
    return set(model.get_topk_weights(part, topk, global_indices=True, region=region).tolist())


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


def _aligned(
    model: GradiendModel, part: str, signed: bool, topk: int | float | None, region: str
) -> _Aligned:
    values = model.weight_vector(part) if signed else model.get_weight_importance(part)
    index = model.global_indices()
    keep = region_positions(model, region)
    if topk is not None:
        keep = model.get_topk_weights(part, topk, global_indices=False, region=region)
    if keep is not None:
        values, index = values[keep.to(values.device)], index[keep.to(index.device)]
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
        return lambda a, b: len(a & b) / min(len(a), len(b)) if a and b else float("nan")
    pair_fns = {"cosine": _cosine, "spearman": _spearman, "mass_overlap": _mass_overlap}
    return pair_fns[measure.removesuffix("_signed")]


def _member_matrix(flat: list[Any], measure: str, value: str) -> np.ndarray:
    """Scores of every pair of runs (seed-group members listed individually)."""
    score = _pair_score(measure, value)
    matrix = np.empty((len(flat), len(flat)))
    for i, j in itertools.combinations_with_replacement(range(len(flat)), 2):
        matrix[i, j] = matrix[j, i] = score(flat[i], flat[j])
    return np.abs(matrix) if measure in ("cosine", "spearman") else matrix


# --------------------------------------------------------------------------- the comparison value
@dataclass(frozen=True, eq=False)
class RunComparison:
    """Everything one comparison of runs found, computed from each run loaded once.

    ``part`` is the ranking the similarity ``frame`` used (each run's own, joined when they
    differ), ``region`` the dimensions it looked at (``rest``, ``word_rows`` or ``all``);
    ``topk_sets`` (label → base-global indices of the run's top ``topk`` by
    ``sets_part``) and their Venn ``regions`` are there when ``topk`` was given and every label is
    a single run. ``requested_part`` is the ``part`` asked for (None: each run's default).
    ``unconverged`` maps the (marked) label of each run that did not converge, compared because
    ``allow_unconverged=True`` was passed, to what its training record says.
    """

    labels: tuple[str, ...]
    measure: str
    topk: int | float | None
    part: str
    frame: pd.DataFrame
    topk_sets: dict[str, set[int]] | None = None
    regions: dict[tuple[str, ...], int] | None = None
    sets_part: str | None = None
    requested_part: str | None = None
    region: str = DEFAULT_REGION
    unconverged: dict[str, str] = field(default_factory=dict)
    dispersion: pd.DataFrame | None = None  # seed groups: the spread of each cell's scores
    n_matrix: pd.DataFrame | None = None  # seed groups: the member pairs behind each cell

    def overlap(self, value: str = "intersection") -> pd.DataFrame:
        """Pairwise top-k overlaps (``intersection`` counts or ``intersection_frac``), from the
        frame when it is that measure, else from the top-k sets."""
        if self.measure == "topk_overlap" and self.frame.attrs.get("value") == value:
            return self.frame
        _check_value(value)
        if self.topk_sets is None:
            raise ValueError(
                "this comparison has no top-k sets: compare single runs (not seed groups) "
                "with a topk"
            )
        matrix = _member_matrix(list(self.topk_sets.values()), "topk_overlap", value)
        frame = pd.DataFrame(matrix, index=list(self.labels), columns=list(self.labels))
        if value == "intersection":
            frame = frame.astype(np.int64)
        attrs = {"measure": "topk_overlap", "part": self.sets_part, "topk": self.topk}
        attrs["region"] = self.region
        frame.attrs.update(attrs, value=value, aggregate="mean")
        return frame


def compare(
    models: Mapping[str, ModelLike | Sequence[ModelLike]] | Sequence[ModelLike],
    measure: str = "topk_overlap",
    topk: int | float | None = 1000,
    part: str | None = None,
    value: str = "intersection_frac",
    aggregate: str = "mean",
    *,
    vector_topk: int | float | None = None,
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
    dispersion: str | None = None,
    seed_pairing_mode: str = "all_pairs",
) -> RunComparison:
    """Compare runs once: the similarity frame of ``measure``, each run's top-``topk`` set and
    their Venn regions, every run loaded (and its ranking resolved) a single time.

    ``models``, ``part``, ``value`` and ``aggregate`` are as for ``compute_similarity_matrix``.
    ``topk`` sizes the top-k sets (and is the ``topk_overlap`` measure's k); the vector measures
    use all dimensions unless ``vector_topk`` restricts each run to its own top-k first. The
    top-k sets rank by ``part`` (default each run's own ranking), also for a vector measure.
    Sets, vectors and masses are of ``region``'s dimensions (default ``rest``: all but the
    feature words' own embedding rows; ``word_rows`` or ``all``). A run whose training did not
    converge raises ``UnconvergedError`` unless ``allow_unconverged=True``, which compares it
    with its label marked ``" (NOT CONVERGED)"`` (listed in ``unconverged``). Seed groups:
    ``dispersion`` and ``seed_pairing_mode`` as in ``gradiend.evaluator.seed_groups``.
    """
    check_seed_args(dispersion, seed_pairing_mode)
    frame_topk = topk if measure == "topk_overlap" else vector_topk
    _check_args(measure, value, aggregate, frame_topk)
    check_region(region)
    groups = {label: _members(m) for label, m in label_runs(models).items()}
    bad = check_runs(groups, "compare", allow_unconverged)
    groups = {marked(label, bad): members for label, members in groups.items()}
    check_comparable(groups)
    want_sets = topk is not None and all(len(ms) == 1 for ms in groups.values())
    flat, resolved, sets, sets_resolved = _load_all(
        groups, measure, (part, topk, frame_topk), region, want_sets
    )
    seeds = (dispersion, seed_pairing_mode)
    frame = _frame(groups, flat, measure, value, aggregate, frame_topk, resolved, seeds)
    frame.attrs["region"] = region
    unconverged = {marked(label, bad): what for label, what in bad.items()}
    frame.attrs["unconverged"] = list(unconverged)
    return RunComparison(
        labels=tuple(groups),
        measure=measure,
        topk=topk,
        part=frame.attrs["part"],
        frame=frame,
        topk_sets=sets if want_sets else None,
        regions=venn_region_counts(sets) if want_sets else None,
        sets_part=", ".join(sorted(sets_resolved)) if want_sets else None,
        requested_part=part,
        region=region,
        unconverged=unconverged,
        dispersion=_labelled(frame, "dispersion"),
        n_matrix=_labelled(frame, "n_matrix"),
    )


def _load_all(groups: dict, measure: str, sizes: tuple, region: str, want_sets: bool):
    """Each run loaded once: its features, the rankings used, and (``want_sets``) its top-k
    set by ``part`` (``sizes``: part, topk and the frame's own top-k)."""
    part, topk, frame_topk = sizes
    frame_part = part or _DEFAULT_PART[measure]
    resolved: set[str] = set()
    sets_resolved: set[str] = set()
    flat: list[Any] = []
    sets: dict[str, set[int]] = {}
    for label, members in groups.items():
        for model in members:
            gradiend = load_gradiend(model)  # released at the next run: one in memory at a time
            features, used = _features(gradiend, measure, frame_part, frame_topk, region)
            flat.append(features)
            resolved.add(used)
            if want_sets:
                found = _set_of(gradiend, measure, (features, used), part, topk, region)
                sets[label], ranking = found
                sets_resolved.add(ranking)
    return flat, resolved, sets, sets_resolved


def _labelled(frame: pd.DataFrame, key: str) -> pd.DataFrame | None:
    """``frame.attrs[key]`` (a matrix as nested lists) as a frame with ``frame``'s labels."""
    values = frame.attrs.get(key)
    return (
        None if values is None else pd.DataFrame(values, index=frame.index, columns=frame.columns)
    )


def compute_similarity_matrix(
    models: Mapping[str, ModelLike | Sequence[ModelLike]] | Sequence[ModelLike],
    measure: str = "cosine",
    part: str | None = None,
    topk: int | float | None = None,
    value: str = "intersection_frac",
    aggregate: str = "mean",
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
    dispersion: str | None = None,
    seed_pairing_mode: str = "all_pairs",
) -> pd.DataFrame:
    """Pairwise similarity of runs as a DataFrame labelled by run on both axes.

    ``models`` maps a label to a GradiendModel, a ModelWithGradiend (``.gradiend``), a run
    folder, or a list of those (a *seed group*: the cell is ``aggregate`` over all pairs of
    distinct members). ``part`` defaults per measure (see the module docstring); ``topk`` is
    required for ``topk_overlap`` and optional otherwise. ``value`` applies to
    ``topk_overlap`` only; ``region`` and ``allow_unconverged`` as for ``compare``. The
    DataFrame's ``attrs`` record measure, part, topk, value, region and the unconverged runs.
    Seed groups: ``seed_pairing_mode="matched"`` pairs seed k with seed k across groups;
    ``dispersion`` (std, range, minmax) puts a frame of each cell's spread in
    ``attrs["dispersion"]`` beside ``attrs["n_matrix"]`` (``gradiend.evaluator.seed_groups``).
    """
    sets_topk = topk if measure == "topk_overlap" else None
    found = compare(
        models, measure, sets_topk, part, value, aggregate, vector_topk=topk, region=region,
        allow_unconverged=allow_unconverged, dispersion=dispersion,
        seed_pairing_mode=seed_pairing_mode,
    )  # fmt: skip
    return found.frame


def _check_value(value: str) -> None:
    if value not in ("intersection", "intersection_frac"):
        raise ValueError(f"value must be 'intersection' or 'intersection_frac', got {value!r}")


def _check_args(measure: str, value: str, aggregate: str, topk: int | float | None) -> None:
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {MEASURES}")
    _check_value(value)
    if aggregate not in _AGGREGATES:
        raise ValueError(f"aggregate must be one of {sorted(_AGGREGATES)}, got {aggregate!r}")
    if measure == "topk_overlap" and topk is None:
        raise ValueError("measure='topk_overlap' needs topk (a count or a fraction)")


def _features(
    gradiend: GradiendModel,
    measure: str,
    part: str | None,
    topk: int | float | None,
    region: str,
) -> tuple[Any, str]:
    """What a measure needs of one run (its top-k set or its aligned vector) and the ranking it
    used, resolved once and passed on."""
    part = gradiend.resolve_part(part)
    if measure == "topk_overlap":
        return _topk_set(gradiend, topk, part, region), part
    signed = measure != "mass_overlap"
    return _aligned(gradiend, part, signed=signed, topk=topk, region=region), part


def _set_of(
    gradiend: GradiendModel,
    measure: str,
    features: tuple[Any, str],
    part: str | None,
    topk: int | float,
    region: str,
) -> tuple[set[int], str]:
    """A run's top-k set and its ranking: the ``topk_overlap`` features themselves, else the
    top ``topk`` of ``region`` by ``part`` (each run's default ranking when None)."""
    if measure == "topk_overlap":
        return features
    ranking = gradiend.resolve_part(part)
    return _topk_set(gradiend, topk, ranking, region), ranking


def _frame(
    groups: dict[str, list[Any]],
    flat: list[Any],
    measure: str,
    value: str,
    aggregate: str,
    topk: int | float | None,
    resolved: set[str],
    seeds: tuple[str | None, str] = (None, "all_pairs"),
) -> pd.DataFrame:
    """The labelled similarity frame of the runs' features, its settings in ``attrs``
    (``seeds``: the seed groups' dispersion and pairing mode)."""
    owners = [g for g, ms in enumerate(groups.values()) for _ in ms]
    members = _member_matrix(flat, measure, value)
    matrix, spread, counts = group_matrices(
        members, owners, len(groups), _AGGREGATES[aggregate], *seeds
    )
    labels = list(groups)
    frame = pd.DataFrame(matrix, index=labels, columns=labels)
    # plain lists: pandas compares attrs (concat, equals), which a DataFrame there breaks
    frame.attrs["n_matrix"] = np.asarray(counts).tolist()
    frame.attrs["seed_pairing_mode"] = seeds[1]
    if spread is not None:
        frame.attrs["dispersion"] = np.asarray(spread).tolist()
    if measure == "topk_overlap" and value == "intersection" and not np.isnan(matrix).any():
        if all(len(ms) == 1 for ms in groups.values()):
            frame = frame.astype(np.int64)
    part_used = ", ".join(sorted(resolved))
    if len(resolved) > 1:  # e.g. runs trained with and without neutral texts
        logger.warning("the runs rank their dimensions differently (%s)", part_used)
    frame.attrs.update(measure=measure, part=part_used, topk=topk, value=value, aggregate=aggregate)
    return frame
