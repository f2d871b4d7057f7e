"""The cross-encoding matrices of many runs, each a view of one ``CrossEncoderSummary``.

* ``compute_trainer_pair_encoding_matrix`` — GRADIEND i × run j: model i's mean encoding of run
  j's positive rows (``positive_mean``), negative rows (``negative_mean``), their difference
  (``positive_minus_negative``) or its Pearson r with j's labels (``correlation``); rows
  optionally divided by their diagonal cell (``normalize``).
* ``compute_gradiend_transition_cross_encoding_matrix`` — GRADIEND × directed transition ``a→b``.
* ``compute_gradiend_feature_cross_encoding_matrix`` — GRADIEND × feature class (each row's
  class by ``alignment``: its factual or its counterfactual class).
* ``compute_anchor_aligned_encoding_matrix`` — feature class × feature class: a binary run on
  ``(a, b)`` adds its per-column means to anchor row ``a`` with sign +1 and to row ``b`` with
  sign −1, flipped when ``alignment`` is not the class side its labels follow (the XOR rule),
  so the diagonal is positive whichever order a run lists its classes in.

Positive rows of run j: its pair rows whose label (``eval_data.encoding_labels``) is +1 with j's
positive class first. The positive class is ``positive_class_by_trainer[j]``, else j's
``TrainingArguments.positive_class``, else the class whose partner is named ``non_<it>`` /
``non-<it>``, else j's first target class. Runs with several seeds (``seed_selection``) give a
cell per seed; the frame holds their ``aggregate`` and, with ``dispersion``, ``attrs
["dispersion"]`` their ``std`` or ``range`` (max − min) per cell. Runs that did not converge
are refused unless ``allow_unconverged=True``; their rows are then marked (``attrs
["unconverged"]``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from gradiend.evaluator.cross_pool import CrossEncoderSummary, build_cross_task_encoder_summary
from gradiend.evaluator.encoder import pearson
from gradiend.trainer.eval_data import encoding_labels

logger = logging.getLogger(__name__)

PAIR_METRICS = ("positive_mean", "negative_mean", "positive_minus_negative", "correlation")
ALIGNMENTS = ("factual", "counterfactual", "transition")
DISPERSIONS = ("none", "std", "range")
_AGG: dict[str, Callable[..., np.ndarray]] = {
    "mean": np.nanmean,
    "median": np.nanmedian,
    "min": np.nanmin,
    "max": np.nanmax,
}
_ANCHOR_AGG = (*_AGG, "std", "count")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")


def _reduce(stack: np.ndarray, how: str) -> np.ndarray:
    """``how`` over axis 0, NaN-aware and quiet about all-NaN cells."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if how == "std":
            return np.nanstd(stack, axis=0)
        if how == "range":
            return np.nanmax(stack, axis=0) - np.nanmin(stack, axis=0)
        if how == "count":
            return np.sum(np.isfinite(stack), axis=0).astype(float)
        return _AGG[how](stack, axis=0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def get_summary(
    trainers: Any,
    encoder_summary: CrossEncoderSummary | None,
    split: str,
    max_size: int | None,
    seed_selection: str,
    allow_unconverged: bool = False,
) -> CrossEncoderSummary:
    """The given summary, else one built from ``trainers`` (one encoding pass per run)."""
    if encoder_summary is not None:
        if not isinstance(encoder_summary, CrossEncoderSummary):
            raise TypeError(
                "encoder_summary must come from build_cross_task_encoder_summary, got "
                f"{type(encoder_summary).__name__}"
            )
        return encoder_summary
    if trainers is None:
        raise ValueError("pass the runs (trainers, a suite) or encoder_summary=")
    return build_cross_task_encoder_summary(
        trainers, split, max_size, seed_selection, allow_unconverged=allow_unconverged
    )


def _seed_frame(
    summary: CrossEncoderSummary,
    columns: list[str],
    cell: Callable[[str, np.ndarray], np.ndarray],
    aggregate: str,
    dispersion: str,
    attrs: dict,
) -> pd.DataFrame:
    """Rows = runs: ``cell(label, encodings)`` per member, reduced over a run's seeds."""
    _choice("aggregate", aggregate, tuple(_AGG))
    _choice("dispersion", dispersion, DISPERSIONS)
    values, spread, counts = [], [], {}
    for label, members in summary.members.items():
        stack = np.array([cell(label, summary.encodings[m].to_numpy()) for m in members])
        values.append(_reduce(stack, aggregate))
        spread.append(_reduce(stack, dispersion) if dispersion != "none" else None)
        counts[label] = len(members)
    index = [summary.row_label(label) for label in summary.labels]
    frame = pd.DataFrame(values, index=index, columns=columns, dtype=float)
    frame.index.name = "gradiend"
    frame.attrs["unconverged"] = [summary.row_label(label) for label in summary.unconverged]
    frame.attrs.update(attrs, split=summary.split, seed_selection=summary.seed_selection)
    frame.attrs.update(aggregate=aggregate, n_seeds=counts)
    if dispersion != "none":
        frame.attrs["dispersion"] = {"kind": dispersion, "values": np.array(spread).tolist()}
    return frame


# --------------------------------------------------------------------------- GRADIEND × columns
def compute_gradiend_transition_cross_encoding_matrix(
    trainers: Any = None,
    *,
    encoder_summary: CrossEncoderSummary | None = None,
    transitions: list[str] | None = None,
    include_identity: bool = True,
    split: str = "test",
    max_size: int | None = None,
    seed_selection: str = "best",
    aggregate: str = "mean",
    dispersion: str = "none",
    allow_unconverged: bool = False,
) -> pd.DataFrame:
    """GRADIEND × directed transition (``a→b`` of the shared pool): mean encoding of the pooled
    rows of each transition (identity ``a→a`` columns unless ``include_identity=False``)."""
    summary = get_summary(
        trainers, encoder_summary, split, max_size, seed_selection, allow_unconverged
    )
    found = summary.transitions(include_identity)
    columns = _subset("transition", transitions, found)
    masks = [(summary.pool["transition"] == t).to_numpy() for t in columns]

    def cell(label: str, enc: np.ndarray) -> np.ndarray:
        return np.array([_mean(enc[m]) for m in masks])

    attrs = {"measure": "transition_cross_encoding", "columns": "transition"}
    return _seed_frame(summary, columns, cell, aggregate, dispersion, attrs)


def compute_gradiend_feature_cross_encoding_matrix(
    trainers: Any = None,
    *,
    encoder_summary: CrossEncoderSummary | None = None,
    feature_classes: list[str] | None = None,
    alignment: str = "factual",
    include_identity: bool = False,
    split: str = "test",
    max_size: int | None = None,
    seed_selection: str = "best",
    aggregate: str = "mean",
    dispersion: str = "none",
    allow_unconverged: bool = False,
) -> pd.DataFrame:
    """GRADIEND × feature class: mean encoding of the pooled rows whose ``alignment`` class
    (``factual`` or ``counterfactual``) is the column's class (identity rows left out unless
    ``include_identity``)."""
    _choice("alignment", alignment, ALIGNMENTS[:2])
    summary = get_summary(
        trainers, encoder_summary, split, max_size, seed_selection, allow_unconverged
    )
    columns = _subset("feature class", feature_classes, summary.feature_classes())
    masks = _class_masks(summary.pool, columns, alignment, include_identity)

    def cell(label: str, enc: np.ndarray) -> np.ndarray:
        return np.array([_mean(enc[m]) for m in masks])

    attrs = {"measure": "feature_cross_encoding", "alignment": alignment, "columns": "class"}
    return _seed_frame(summary, columns, cell, aggregate, dispersion, attrs)


def _class_masks(pool: pd.DataFrame, classes: list[str], alignment: str, identity: bool):
    side = pool["factual_class" if alignment == "factual" else "alternative_class"]
    moving = (pool["factual_class"] != pool["alternative_class"]).to_numpy() | identity
    return [(side == c).to_numpy() & moving for c in classes]


def _subset(what: str, wanted: list[str] | None, found: list[str]) -> list[str]:
    if wanted is None:
        return found
    unknown = [w for w in wanted if w not in found]
    if unknown or not wanted:
        raise ValueError(f"unknown {what}(s) {unknown or wanted!r}; the pool has {found}")
    return list(wanted)


# --------------------------------------------------------------------------- run × run
def positive_class(run: Any, override: Mapping[str, str] | None = None) -> str:
    """A run's positive class: the override, ``args.positive_class``, the class whose partner
    is ``non_<it>``/``non-<it>``, else its first target class."""
    a, b = run.target_classes
    chosen = (override or {}).get(run.label) or getattr(run.args, "positive_class", None)
    if chosen is None:
        for x, y in ((a, b), (b, a)):
            if y in (f"non_{x}", f"non-{x}"):
                chosen = x
    chosen = a if chosen is None else str(chosen)
    if chosen not in (a, b):
        raise ValueError(f"positive class {chosen!r} of run {run.label!r} is not one of {(a, b)}")
    return chosen


def compute_trainer_pair_encoding_matrix(
    trainers: Any = None,
    *,
    encoder_summary: CrossEncoderSummary | None = None,
    metric: str = "positive_mean",
    normalize: bool = False,
    positive_class_by_trainer: Mapping[str, str] | None = None,
    split: str = "test",
    max_size: int | None = None,
    full_eval: bool | None = None,
    seed_selection: str = "best",
    aggregate: str = "mean",
    dispersion: str = "none",
    allow_unconverged: bool = False,
) -> pd.DataFrame:
    """GRADIEND i × run j of ``metric`` on run j's pair rows of the shared pool (see the
    module docstring); ``normalize`` divides each seed's row by its own diagonal cell.

    ``full_eval=False`` caps the pool at each run's ``encoder_eval_max_size`` rows per
    transition (``None``: every row of the test split, a capped pool for other splits)."""
    _choice("metric", metric, PAIR_METRICS)
    max_size = _eval_cap(trainers, max_size, full_eval, split)
    summary = get_summary(
        trainers, encoder_summary, split, max_size, seed_selection, allow_unconverged
    )
    labels = summary.labels
    columns = [_pair_rows(summary, j, positive_class_by_trainer) for j in labels]

    def cell(label: str, enc: np.ndarray) -> np.ndarray:
        row = np.array([_pair_metric(enc, rows, lab, metric) for rows, lab in columns])
        if normalize:
            diag = row[labels.index(label)]
            with np.errstate(all="ignore"):
                row = row / diag if np.isfinite(diag) and diag != 0 else row * np.nan
        return row

    attrs = {"measure": f"trainer_pair_{metric}", "metric": metric, "normalize": normalize}
    attrs["positive_class"] = {j: _positive(summary, j, positive_class_by_trainer) for j in labels}
    frame = _seed_frame(summary, labels, cell, aggregate, dispersion, attrs)
    frame.columns.name = "data"
    return frame


def _positive(summary: CrossEncoderSummary, label: str, override) -> str:
    return positive_class(summary.runs[label], override)


def _pair_rows(summary: CrossEncoderSummary, label: str, override) -> tuple[np.ndarray, np.ndarray]:
    """Run ``label``'s pair rows of the pool (a mask) and their labels, positive class first."""
    run = summary.runs[label]
    pos = _positive(summary, label, override)
    neg = next(c for c in run.target_classes if c != pos)
    pool = summary.pool
    rows = pool["factual_class"].isin([pos, neg]) & pool["alternative_class"].isin([pos, neg])
    rows = (rows & (pool["factual_class"] != pool["alternative_class"])).to_numpy()
    if not rows.any():
        logger.warning("run %r has no pair rows in the shared pool", label)
    return rows, encoding_labels(pool, [pos, neg], run.data.target)


def _pair_metric(enc: np.ndarray, rows: np.ndarray, labels: np.ndarray, metric: str) -> float:
    pos, neg = _mean(enc[rows & (labels > 0)]), _mean(enc[rows & (labels < 0)])
    if metric == "positive_mean":
        return pos
    if metric == "negative_mean":
        return neg
    if metric == "positive_minus_negative":
        return pos - neg
    return pearson(enc[rows], labels[rows]) if rows.any() else float("nan")


def _eval_cap(trainers: Any, max_size: int | None, full_eval: bool | None, split: str):
    if max_size is not None or trainers is None:
        return max_size
    if full_eval is None:
        full_eval = split == "test"
    if full_eval:
        return None
    runs = getattr(trainers, "trainers", trainers)
    runs = runs.values() if isinstance(runs, Mapping) else runs
    caps = [getattr(getattr(t, "args", None), "encoder_eval_max_size", None) for t in runs]
    caps = [c for c in caps if c is not None]
    return min(caps) if caps else None


# --------------------------------------------------------------------------- class × class
def compute_anchor_aligned_encoding_matrix(
    trainers: Any = None,
    *,
    encoder_summary: CrossEncoderSummary | None = None,
    feature_classes: list[str] | None = None,
    alignment: str = "factual",
    aggregate: str = "mean",
    split: str = "test",
    max_size: int | None = None,
    seed_selection: str = "best",
    allow_unconverged: bool = False,
) -> pd.DataFrame:
    """Feature class × feature class (``alignment="transition"``: × directed transition) of
    sign-aligned mean encodings (see the module docstring). A run's seeds are averaged first;
    ``aggregate`` (mean, median, min, max, std, count) then combines the runs anchored on a
    row. ``attrs["count"]`` holds how many runs each cell combines."""
    _choice("alignment", alignment, ALIGNMENTS)
    _choice("aggregate", aggregate, _ANCHOR_AGG)
    summary = get_summary(
        trainers, encoder_summary, split, max_size, seed_selection, allow_unconverged
    )
    if alignment == "transition":
        columns = summary.transitions(include_identity=False)
        masks = [(summary.pool["transition"] == t).to_numpy() for t in columns]
    else:
        columns = _subset("feature class", feature_classes, summary.feature_classes())
        masks = _class_masks(summary.pool, columns, alignment, identity=False)
    anchors = _subset("feature class", feature_classes, summary.feature_classes())
    anchors = anchors if feature_classes is not None else _anchor_classes(summary)
    contributions: dict[str, list[np.ndarray]] = {c: [] for c in anchors}
    for label, members in summary.members.items():
        run = summary.runs[label]
        stack = [[_mean(summary.encodings[m].to_numpy()[k]) for k in masks] for m in members]
        means = _reduce(np.array(stack), "mean")
        sign = 1.0 if alignment in ("transition", run.label_side) else -1.0
        left, right = run.target_classes
        for cls, s in ((left, sign), (right, -sign)):
            if cls in contributions:
                contributions[cls].append(s * means)
    values, counts = [], []
    for cls in anchors:
        stack = np.array(contributions[cls] or [np.full(len(columns), np.nan)])
        values.append(_reduce(stack, aggregate))
        counts.append(
            _reduce(stack, "count").tolist() if contributions[cls] else [0.0] * len(columns)
        )
    frame = pd.DataFrame(values, index=anchors, columns=columns, dtype=float)
    frame.index.name, frame.columns.name = "anchor", alignment
    frame.attrs.update(measure="anchor_aligned_encoding", alignment=alignment, aggregate=aggregate)
    frame.attrs.update(count=counts, split=summary.split, seed_selection=summary.seed_selection)
    frame.attrs["unconverged"] = [summary.row_label(label) for label in summary.unconverged]
    return frame


def _anchor_classes(summary: CrossEncoderSummary) -> list[str]:
    return list(dict.fromkeys(c for r in summary.runs.values() for c in r.target_classes))
