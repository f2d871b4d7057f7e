"""Decoder evaluation: score ``θ + η · decoder(ff)`` along each direction and pick a point per class.

Each point is applied to the base model *in place* (``ModelWithGradiend.applied``, which
restores the parameters bit-for-bit), scored, and undone; the update vector is computed once per
feature factor. The unmodified base model is the entry with ``feature_factor = 0`` and
``learning_rate = 0``. This module holds the grid, the budget and the selection policies; the
adaptive search that finds the budget's edge with few points is ``decoder_search``.

Sign convention (see ``gradiend.trainer.text_trainer.encoding_labels``): ``decoder(+1)``
strengthens ``target_classes[0]`` and ``decoder(−1)`` strengthens ``target_classes[1]``.

Metrics per summary key: strengthening ``C`` maximises ``probs[C]`` (probability of C's words on
sentences of the other class) over points with ``ff(C)``; weakening ``C`` (key ``C_weaken``)
maximises ``1 − probs_factual[C]`` over points with the other class's ff.

Budget: the selector's LMS rule (the incumbent's ``LMS ≥ 0.99 · LMS(base)`` by default) and,
on top, neutral ``NLL ≤ (1 + max_nll_increase) · NLL(base)``. Every summary reports the chosen
point's LMS and NLL and what the budget cost (the best metric inside and outside it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gradiend._kwargs import strict_kwargs
from gradiend.model.rewrite import WEAKEN_SUFFIX, summary_key  # noqa: F401 - the results' keys

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


# --------------------------------------------------------------------------- budget
@dataclass(frozen=True)
class Budget:
    """How much a rewrite may cost the language model: ``LMS ≥ lms_ratio · LMS(base)`` and
    neutral ``NLL ≤ (1 + max_nll_increase) · NLL(base)`` (``None`` switches a bound off).

    ``usage`` is the share of the budget a point spends (the larger of the two; ``≤ 1``
    inside): the decoder search brackets the step size where it crosses 1.
    """

    lms_ratio: float | None = 0.99
    max_nll_increase: float | None = 0.01

    @property
    def constrained(self) -> bool:
        return self.lms_ratio is not None or self.max_nll_increase is not None

    def usage(self, lms: float, nll: float, base: Entry) -> float:
        used = [0.0]
        base_lms, base_nll = lms_of(base), nll_of(base)
        if self.lms_ratio is not None and math.isfinite(base_lms):
            used.append(_share(base_lms - lms, (1.0 - self.lms_ratio) * base_lms))
        if self.max_nll_increase is not None and math.isfinite(base_nll):
            used.append(_share(nll - base_nll, self.max_nll_increase * base_nll))
        return max(used)

    def usage_of(self, entry: Entry, base: Entry, optimistic: bool = False) -> float:
        """Budget used by a grid entry; ``optimistic``: a screened point's most favourable
        value within its uncertainty (for the full set it is the value itself)."""
        lms = entry.get("lms", {}) if isinstance(entry.get("lms"), dict) else {}
        if optimistic and "lms_optimistic" in lms:
            return self.usage(lms["lms_optimistic"], lms["nll_optimistic"], base)
        return self.usage(lms_of(entry), nll_of(entry), base)

    def inside(self, entry: Entry, base: Entry) -> bool:
        return self.usage_of(entry, base) <= 1.0

    def to_dict(self) -> dict[str, float | None]:
        return {"lms_ratio": self.lms_ratio, "max_nll_increase": self.max_nll_increase}


def _share(used: float, allowed: float) -> float:
    if math.isnan(used):
        return math.inf
    if allowed <= 0:
        return 0.0 if used <= 0 else math.inf
    return used / allowed


def budget_for(selector: Any, max_nll_increase: float | None) -> Budget:
    """The budget a selection keeps: the NLL bound plus the selector's LMS ratio, if it has one."""
    ratio = getattr(selector, "ratio", None)
    return Budget(None if ratio is None else float(ratio), max_nll_increase)


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


def nll_of(entry: Entry) -> float:
    value = entry.get("lms")
    value = value.get("nll") if isinstance(value, dict) else None
    return float("nan") if value is None else float(value)


def lr_of(entry: Entry) -> float:
    return float(entry["id"]["learning_rate"])


def ff_of(entry: Entry) -> float:
    return float(entry["id"]["feature_factor"])


def is_estimate(entry: Entry) -> bool:
    """True for a point scored on the screening subset only (its LMS/NLL are estimates)."""
    return entry.get("scored") == "screen"


@strict_kwargs
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


@strict_kwargs
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
    max_nll_increase: float | None = None,
    margin: float = 0.0,
) -> dict[str, Entry]:
    """Summary entry per requested class, chosen by ``selector`` (default LMSThresholdPolicy)
    among the fully scored points that keep the neutral-NLL bound ``max_nll_increase`` less
    the ``margin`` (a share of it kept back for the held-out check).

    Besides the chosen point each summary reports what the budget cost: the best metric
    inside the budget and the best outside it, with their LMS and NLL (``best_inside``,
    ``best_outside``; screened points are marked ``estimated``).
    """
    selector = as_policy(selector)
    base = next(e for e in grid if lr_of(e) == 0)
    bound = selection_bound(max_nll_increase, margin)
    nll_bound = Budget(None, bound)
    out = {}
    for cls in classes:
        ff = direction_factor(cls, target_classes, strengthen)
        points = direction_points(grid, ff)
        cands = [e for e in points if not is_estimate(e)]
        key = summary_key(cls, strengthen)
        if not cands:
            raise ValueError(f"no grid point with feature_factor {ff} to select {key!r} from")
        within = [e for e in cands if nll_bound.inside(e, base)]
        metric = metric_for(cls, strengthen)
        if within:
            sel = _as_selection(selector(within, metric, base))
        else:
            sel = Selection(min(cands, key=lambda c: abs(lr_of(c))), False)
        if not sel.passed:
            logger.warning(
                "%s: no point keeps the budget (%r, neutral NLL at most +%s); falling back to "
                "learning rate %g",
                key,
                selector,
                "∞" if bound is None else f"{100 * bound:g} %",
                lr_of(sel.entry),
            )
        out[key] = summarize(sel, points, metric, base, selector, max_nll_increase, margin)
        out[key]["strengthen"] = strengthen
    return out


def selection_bound(max_nll_increase: float | None, margin: float) -> float | None:
    """The NLL bound the selection keeps: the budget less its margin (``None``: no bound)."""
    return None if max_nll_increase is None else max_nll_increase * (1.0 - margin)


def direction_points(grid: list[Entry], ff: float) -> list[Entry]:
    """The evaluated points of one direction (the base model aside), by step size."""
    return sorted((e for e in grid if lr_of(e) != 0 and ff_of(e) == ff), key=lr_of)


def summarize(
    sel: Selection,
    points: list[Entry],
    metric: Metric,
    base: Entry,
    selector: Any,
    max_nll_increase: float | None,
    margin: float = 0.0,
) -> Entry:
    """The summary of one selected point: its report, the base's values, the budget (the
    user's bound, the margin and the bound the selection kept) and what the budget cost."""
    bound = selection_bound(max_nll_increase, margin)
    budget = budget_for(as_policy(selector), bound)
    record = {**budget.to_dict(), "max_nll_increase": max_nll_increase, "margin": margin}
    record["selection_max_nll_increase"] = bound
    out = {
        **point_report(sel.entry, metric, base),
        "feature_factor": float(sel.entry["id"]["feature_factor"]),
        "id": dict(sel.entry["id"]),
        "base_lms": lms_of(base),
        "base_nll": nll_of(base),
        "base_value": metric(base),
        "passed": bool(sel.passed),
        "budget": record,
        **budget_cost(points, metric, base, budget),
    }
    out.pop("estimated")
    return out


def as_policy(selector: Any) -> Any:
    """``None`` → ``LMSThresholdPolicy()``; a number → ``LMSThresholdPolicy(number)``."""
    if selector is None:
        return LMSThresholdPolicy()
    if isinstance(selector, (int, float)):
        return LMSThresholdPolicy(float(selector))
    return selector


def point_report(entry: Entry, metric: Metric, base: Entry) -> dict[str, Any]:
    """Metric, step size, LMS and NLL (absolute and relative to the base) of one point."""
    nll, base_nll = nll_of(entry), nll_of(base)
    return {
        "value": metric(entry),
        "learning_rate": lr_of(entry),
        "lms": lms_of(entry),
        "nll": nll,
        "nll_increase": nll / base_nll - 1.0 if base_nll else float("nan"),
        "estimated": is_estimate(entry),
    }


def budget_cost(points: list[Entry], metric: Metric, base: Entry, budget: Budget) -> dict:
    """``best_inside`` / ``best_outside``: the best metric among the evaluated points of one
    direction inside / outside ``budget`` (``None`` when there is no such point)."""
    inside = [e for e in points if budget.inside(e, base)]
    outside = [e for e in points if not budget.inside(e, base)]

    def best(es: list[Entry]) -> dict | None:
        return point_report(max(es, key=metric), metric, base) if es else None

    return {"best_inside": best(inside), "best_outside": best(outside)}
