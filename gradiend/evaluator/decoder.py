"""Decoder evaluation: sweep ``θ + η · decoder(ff)`` over a grid and pick a point per class.

Each grid point is applied to the base model *in place* (``ModelWithGradiend.applied``, which
restores the parameters bit-for-bit), scored, and undone; the update vector is computed once per
feature factor. The unmodified base model is the grid entry with ``feature_factor = 0`` and
``learning_rate = 0``.

Sign convention (see ``gradiend.trainer.text_trainer.encoding_labels``): ``decoder(+1)``
strengthens ``target_classes[0]`` and ``decoder(−1)`` strengthens ``target_classes[1]``.

Metrics per summary key: strengthening ``C`` maximises ``probs[C]`` (probability of C's words on
sentences of the other class) over points with ``ff(C)``; weakening ``C`` (key ``C_weaken``)
maximises ``1 − probs_factual[C]`` over points with the other class's ff.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

DEFAULT_LRS: list[float] = [
    100.0,
    50.0,
    20.0,
    10.0,
    5.0,
    2.0,
    1.0,
    0.5,
    0.2,
    0.1,
    0.05,
    0.02,
    0.01,
    0.005,
    0.002,
    0.001,
]
WEAKEN_SUFFIX = "_weaken"

Entry = dict[str, Any]
Metric = Callable[[Entry], float]


# --------------------------------------------------------------------------- directions
def feature_factor(cls: str, target_classes: Sequence[str]) -> float:
    """The ff that strengthens ``cls``: +1 for ``target_classes[0]``, −1 for the other."""
    if cls not in target_classes:
        raise ValueError(f"unknown class {cls!r}; the target classes are {list(target_classes)}")
    return 1.0 if cls == target_classes[0] else -1.0


def direction_factor(cls: str, target_classes: Sequence[str], strengthen: bool) -> float:
    """The ff that strengthens ``cls`` (``strengthen``) or weakens it (the other class's ff)."""
    ff = feature_factor(cls, target_classes)
    return ff if strengthen else -ff


def default_feature_factors(
    classes: Sequence[str], target_classes: Sequence[str], strengthen: bool
) -> list[float]:
    return sorted({direction_factor(c, target_classes, strengthen) for c in classes})


def summary_key(cls: str, strengthen: bool) -> str:
    return cls if strengthen else cls + WEAKEN_SUFFIX


# --------------------------------------------------------------------------- grid
def point_id(ff: float, lr: float) -> dict[str, float]:
    return {"feature_factor": float(ff), "learning_rate": float(lr)}


def point_key(ff: float, lr: float) -> str:
    return f"{float(ff)!r}|{float(lr)!r}"


def grid_points(
    feature_factors: Sequence[float], lrs: Sequence[float]
) -> list[tuple[float, float]]:
    """Sorted ``(ff, lr)`` pairs, base model ``(0, 0)`` first."""
    if any(lr <= 0 for lr in lrs):
        raise ValueError("learning rates must be > 0 (the direction is set by the feature factor)")
    pts = sorted({(float(ff), float(lr)) for ff in feature_factors for lr in lrs})
    return [(0.0, 0.0), *pts]


def run_grid(
    mwg: Any,
    points: Sequence[tuple[float, float]],
    evaluate: Callable[[Any], Entry],
    part: str = "decoder",
    progress: bool = True,
) -> dict[str, Entry]:
    """Evaluate each ``(ff, lr)`` point by applying η·u in place; returns entries by key."""
    out: dict[str, Entry] = {}
    updates: dict[float, Any] = {}
    for ff, lr in tqdm(points, desc="decoder grid", disable=not progress):
        if lr == 0:
            entry = evaluate(mwg.base_model)
        else:
            if ff not in updates:
                updates[ff] = mwg.get_update_vector(ff, part)
            with mwg.applied(lr, ff, part, update=updates[ff]) as model:
                entry = evaluate(model)
        entry["id"] = point_id(ff, lr)
        out[point_key(ff, lr)] = entry
    return out


def point_entry(
    probs: np.ndarray,
    row_classes: Sequence[str],
    classes: Sequence[str],
    target_classes: Sequence[str],
    lms: dict,
) -> Entry:
    """Grid entry from per-row class probabilities ``[n_rows, n_classes]`` and the LMS."""
    row_classes = np.asarray(row_classes)
    by_dataset = {
        str(fc): {c: float(probs[row_classes == fc, j].mean()) for j, c in enumerate(classes)}
        for fc in dict.fromkeys(row_classes.tolist())
    }
    other = {c: [o for o in target_classes if o != c] for c in target_classes}
    counter = {
        c: float(np.mean([by_dataset[o][c] for o in other[c]]))
        for c in target_classes
        if all(o in by_dataset for o in other[c]) and other[c]
    }
    factual = {c: by_dataset[c][c] for c in target_classes if c in by_dataset}
    return {
        "probs": counter,
        "probs_factual": factual,
        "probs_by_dataset": by_dataset,
        "lms": dict(lms),
    }


# --------------------------------------------------------------------------- selection
@dataclass
class Selection:
    """The chosen grid entry and whether it satisfies the policy's constraint."""

    entry: Entry
    passed: bool = True


def lms_of(entry: Entry) -> float:
    value = entry.get("lms")
    value = value.get("lms") if isinstance(value, dict) else value
    return float("nan") if value is None else float(value)


def lr_of(entry: Entry) -> float:
    return float(entry["id"]["learning_rate"])


class LMSThresholdPolicy:
    """Best metric among points with ``LMS ≥ ratio · LMS(base)``; if none passes, the point with
    the smallest step size (``passed=False``)."""

    def __init__(self, ratio: float = 0.99):
        self.ratio = ratio

    def __call__(self, candidates: list[Entry], metric: Metric, base: Entry) -> Selection:
        threshold = self.ratio * lms_of(base)
        ok = [c for c in candidates if lms_of(c) >= threshold]
        if ok:
            return Selection(max(ok, key=metric), True)
        return Selection(min(candidates, key=lambda c: abs(lr_of(c))), False)

    def __repr__(self) -> str:
        return f"LMSThresholdPolicy(ratio={self.ratio})"


class LMSTimesMetricPolicy:
    """Maximise ``metric · LMS``. With ``ratio`` set, ``passed`` reports whether the chosen point
    keeps ``LMS ≥ ratio · LMS(base)``; otherwise it is always True."""

    def __init__(self, ratio: float | None = None):
        self.ratio = ratio

    def __call__(self, candidates: list[Entry], metric: Metric, base: Entry) -> Selection:
        best = max(candidates, key=lambda c: metric(c) * lms_of(c))
        passed = self.ratio is None or lms_of(best) >= self.ratio * lms_of(base)
        return Selection(best, passed)

    def __repr__(self) -> str:
        return f"LMSTimesMetricPolicy(ratio={self.ratio})"


def _as_selection(result: Any) -> Selection:
    """Accept what a user callable returns: a Selection, an entry, or ``(entry, passed)``."""
    if isinstance(result, Selection):
        return result
    if isinstance(result, tuple):
        return Selection(result[0], bool(result[1]))
    if isinstance(result, dict):
        return Selection(result, True)
    raise TypeError(f"a selector must return a grid entry or Selection, got {type(result)}")


def metric_for(cls: str, strengthen: bool) -> Metric:
    """Strengthen: ``probs[C]``; weaken: ``1 − probs_factual[C]``."""
    if strengthen:
        return lambda e: _nan_low(e["probs"].get(cls))
    return lambda e: _nan_low(
        None if cls not in e["probs_factual"] else 1.0 - e["probs_factual"][cls]
    )


def _nan_low(v: float | None) -> float:
    return -math.inf if v is None or math.isnan(v) else float(v)


def select(
    grid: list[Entry],
    classes: Sequence[str],
    target_classes: Sequence[str],
    strengthen: bool,
    selector: Any = None,
) -> dict[str, Entry]:
    """Summary entry per requested class, chosen by ``selector`` (default LMSThresholdPolicy)."""
    if selector is None:
        selector = LMSThresholdPolicy()
    elif isinstance(selector, (int, float)):
        selector = LMSThresholdPolicy(float(selector))
    base = next(e for e in grid if lr_of(e) == 0)
    out = {}
    for cls in classes:
        ff = direction_factor(cls, target_classes, strengthen)
        metric = metric_for(cls, strengthen)
        cands = sorted(
            (e for e in grid if lr_of(e) != 0 and float(e["id"]["feature_factor"]) == ff), key=lr_of
        )
        key = summary_key(cls, strengthen)
        if not cands:
            raise ValueError(f"no grid point with feature_factor {ff} to select {key!r} from")
        sel = _as_selection(selector(cands, metric, base))
        if not sel.passed:
            logger.warning(
                "%s: no grid point keeps the LMS constraint of %r; falling back to "
                "learning rate %g",
                key,
                selector,
                lr_of(sel.entry),
            )
        out[key] = {
            "value": metric(sel.entry),
            "feature_factor": float(sel.entry["id"]["feature_factor"]),
            "learning_rate": lr_of(sel.entry),
            "id": dict(sel.entry["id"]),
            "strengthen": strengthen,
            "lms": lms_of(sel.entry),
            "base_lms": lms_of(base),
            "base_value": metric(base),
            "passed": bool(sel.passed),
        }
    return out
