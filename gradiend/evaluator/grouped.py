"""Similarity of runs within groups of base-model parameters: per layer, per parameter tensor,
per module type, or any grouping of parameter names.

Each run is loaded once and its aligned vector (``compare``) computed once; every group's
matrix then compares only the dimensions that fall in that group's tensors (base-global
indices, so differently selected or pruned runs still line up). Weights only: no base model.
Runs that did not converge are refused unless ``allow_unconverged=True`` (then marked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradiend.evaluator import compare as cmp
from gradiend.evaluator.comparable import check_comparable
from gradiend.evaluator.converged_runs import check_runs, marked
from gradiend.evaluator.seed_groups import group_matrices
from gradiend.model.localise import split_name
from gradiend.model.runs import label_runs, load_gradiend
from gradiend.model.word_rows import DEFAULT_REGION, check_region

logger = logging.getLogger(__name__)

GROUP_BY = ("layer", "param", "component", "module")
GroupBy = str | Mapping[str, Any] | Callable[[str], Any]


def group_key(group_by: GroupBy) -> Callable[[str], Any]:
    """Parameter name → its group (``None``: the tensor belongs to no group)."""
    if callable(group_by):
        return group_by
    if isinstance(group_by, Mapping):
        return lambda name: group_by.get(name)
    if group_by == "layer":
        return lambda name: "other" if split_name(name)[0] is None else split_name(name)[0]
    if group_by == "param":
        return lambda name: name
    if group_by in ("component", "module"):
        return lambda name: split_name(name)[1]
    raise ValueError(
        f"unknown group_by {group_by!r}: choose one of {GROUP_BY}, a dict of parameter name → "
        "group, or a function of the parameter name"
    )


def _weight_runs(models: Any) -> Any:
    """A suite's trainers, and each trainer as its model folder (weights only)."""
    if hasattr(models, "trainers") and not isinstance(models, Mapping):
        models = models.trainers
    if isinstance(models, Mapping):
        return {k: _weight_run(v) for k, v in models.items()}
    if isinstance(models, Sequence) and not isinstance(models, str):
        return [_weight_run(m) for m in models]
    return models


def _weight_run(model: Any) -> Any:
    if isinstance(model, (list, tuple)):
        return [_weight_run(m) for m in model]
    if hasattr(model, "model_dir") and callable(getattr(model, "get_model", None)):
        return model.model_dir
    return model


def compute_grouped_similarity_matrices(
    models: Any,
    group_by: GroupBy = "layer",
    measure: str = "cosine",
    part: str | None = None,
    topk: int | float | None = None,
    value: str = "intersection_frac",
    aggregate: str = "mean",
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
) -> dict[Any, pd.DataFrame]:
    """``{group: similarity frame}`` of ``measure`` (as ``compute_similarity_matrix``) over the
    dimensions of each parameter group (``group_by``: ``layer`` — non-layer tensors are group
    ``"other"`` —, ``param``, ``component``/``module``, a dict or a function of the name).

    ``topk`` restricts each run to its own top-k dimensions within the group (required for
    ``topk_overlap``). Groups in which no run has a dimension are left out; each frame's
    ``attrs`` add ``group_by``, ``group`` and ``dims`` (each run's dimension count there).
    ``allow_unconverged`` as for ``compute_similarity_matrix``."""
    cmp._check_args(measure, value, aggregate, topk)
    check_region(region)
    key = group_key(group_by)
    groups = {label: cmp._members(m) for label, m in label_runs(_weight_runs(models)).items()}
    check_comparable(groups)
    bad = check_runs(groups, "grouped similarity", allow_unconverged)
    groups = {marked(label, bad): members for label, members in groups.items()}
    signed = measure not in ("mass_overlap", "topk_overlap")
    frame_part = part or cmp._DEFAULT_PART[measure]
    flat, owners, spec_groups = [], [], None
    for g, members in enumerate(groups.values()):
        for model in members:
            gradiend = load_gradiend(model)  # one run in memory at a time
            if spec_groups is None:
                spec_groups = _spec_groups(gradiend, key)
            used = gradiend.resolve_part(frame_part)
            vec = cmp._aligned(gradiend, used, signed=signed, topk=None, region=region)
            flat.append((vec, _group_of(vec.index, spec_groups)))
            owners.append(g)
    out = {}
    for group in dict.fromkeys(name for _, _, name in spec_groups):
        frame = _group_frame(groups, flat, owners, group, measure, value, aggregate, topk)
        if frame is not None:
            frame.attrs.update(part=frame_part, region=region, group_by=_describe(group_by))
            frame.attrs["unconverged"] = [marked(label, bad) for label in bad]
            out[group] = frame
    if not out:
        raise ValueError(f"no run has a dimension in any group of group_by={group_by!r}")
    return out


def _spec_groups(gradiend: Any, key: Callable[[str], Any]) -> list[tuple[int, int, Any]]:
    if gradiend.param_map is None:
        raise ValueError(
            "a run has no parameter map, so its dimensions cannot be grouped by parameter; "
            "train it with TextPredictionTrainer or build it with param_map="
        )
    return sorted(
        (s.offset, s.offset + s.numel, key(s.name))
        for s in gradiend.param_map.specs
        if key(s.name) is not None
    )


def _group_of(index: np.ndarray, spec_groups: list[tuple[int, int, Any]]) -> np.ndarray:
    """The group of each base-global index (``None`` outside every grouped tensor)."""
    starts = np.array([lo for lo, _, _ in spec_groups], dtype=np.int64)
    ends = np.array([hi for _, hi, _ in spec_groups], dtype=np.int64)
    names = np.array([name for _, _, name in spec_groups] + [None], dtype=object)
    pos = np.searchsorted(starts, index, side="right") - 1
    inside = (pos >= 0) & (index < ends[np.clip(pos, 0, None)])
    return names[np.where(inside, pos, len(spec_groups))]


def _group_frame(groups, flat, owners, group, measure, value, aggregate, topk):
    """One group's similarity frame, or None when no run has a dimension in it."""
    features, dims = [], []
    for vec, where in flat:
        keep = np.flatnonzero(where == group)
        sub = cmp._Aligned(vec.index[keep], vec.value[keep])
        if topk is not None and len(keep):
            k = int(topk) if topk >= 1 else max(1, int(round(topk * len(keep))))
            top = np.argsort(-np.abs(sub.value), kind="stable")[:k]
            top.sort()
            sub = cmp._Aligned(sub.index[top], sub.value[top])
        dims.append(len(sub.index))
        features.append(set(sub.index.tolist()) if measure == "topk_overlap" else sub)
    if not any(dims):
        return None
    members = cmp._member_matrix(features, measure, value)
    matrix, _, counts = group_matrices(members, owners, len(groups), cmp._AGGREGATES[aggregate])
    frame = pd.DataFrame(matrix, index=list(groups), columns=list(groups))
    frame.attrs["n_matrix"] = np.asarray(counts).tolist()  # plain: pandas compares attrs
    frame.attrs.update(measure=measure, topk=topk, value=value, aggregate=aggregate)
    frame.attrs.update(group=group, dims=dims)
    return frame


def _describe(group_by: GroupBy) -> str:
    return group_by if isinstance(group_by, str) else type(group_by).__name__
