"""Selection objectives beside today's per-class strengthen/weaken: balance the two target
classes (BPI), or prefer one of them over the other (FPI/MPI-style), times the LMS.

Per balance sentence ``i`` (a masked sentence; ``p_a,i``, ``p_b,i``: the probability of the two
target classes' words at its mask), averaged over the sentences and multiplied by the point's
LMS (see ``docs/decoder.md``, "Balanced debiasing"):

* ``balance``:     ``BPI = mean_i (1 − |p_a,i − p_b,i|) · (p_a,i + p_b,i) · LMS``
* ``parity``:      ``mean_i (1 − |p_a,i − p_b,i| / (p_a,i + p_b,i)) · LMS``: BPI's balance
  factor on the two classes' shares, for sentences where both words are unlikely (there BPI
  barely sees the balance and rewards the classes' joint mass instead)
* ``prefer:<X>``:  ``mean_i (1 − p_other,i) · p_X,i · LMS``

The product is taken per sentence, then averaged: on sentences whose context implies a class
(the default), the means of a model that follows the context perfectly are balanced, the
sentences are not. ``bpi_of_means`` (the product of the mean probabilities) is recorded too.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gradiend.evaluator import decoder as dec
from gradiend.evaluator.decoder import Entry, Metric, lms_of
from gradiend.model.rewrite import BALANCED_KEY, PREFER_PREFIX  # the results' keys

STRENGTHEN = "strengthen"  # today's selection: a summary per class (strengthen or weaken)
BALANCE = "balance"
PARITY = "parity"
PREFER = "prefer"
# the searched directions: both classes' feature factors and the decoder's bias alone (h = 0)
OBJECTIVE_FEATURE_FACTORS = (-1.0, 0.0, 1.0)


@dataclass(frozen=True)
class DecoderObjective:
    """A selection over all directions by one score: ``balance``, ``parity`` or ``prefer``
    (``cls``)."""

    name: str
    target_classes: tuple[str, str]
    cls: str | None = None

    @property
    def key(self) -> str:
        """The results' key: ``balanced`` (balance and parity) or ``prefer_<class>``."""
        return f"{PREFER_PREFIX}{self.cls}" if self.name == PREFER else BALANCED_KEY

    @property
    def label(self) -> str:
        return f"{PREFER}:{self.cls}" if self.name == PREFER else self.name

    def score(self, record: dict) -> float:
        """The objective without the LMS factor, from a point's ``balance`` record."""
        if self.name == PREFER:
            return float(record["prefer"][self.cls])
        return float(record["bpi"] if self.name == BALANCE else record["parity"])

    def metric(self) -> Metric:
        """``score · LMS`` of a grid entry (the value the selection maximises)."""

        def metric(entry: Entry) -> float:
            record = entry.get("balance")
            value = self.score(record) * lms_of(entry) if record else float("nan")
            return -math.inf if math.isnan(value) else value

        return metric

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.label, "key": self.key}


def objective_choices(target_classes: Sequence[str]) -> list[str]:
    return [STRENGTHEN, BALANCE, PARITY, *(f"{PREFER}:{c}" for c in target_classes)]


def parse_objective(value: Any, target_classes: Sequence[str]) -> DecoderObjective | None:
    """``"strengthen"`` (or ``None``) → ``None`` (today's selection); ``"balance"``,
    ``"parity"`` or ``"prefer:<class>"`` → the objective. Anything else is an error with the
    choices."""
    choices = objective_choices(target_classes)
    if value is None or value == STRENGTHEN:
        return None
    if not isinstance(value, str):
        raise TypeError(f"objective must be one of {choices}, got {value!r}")
    if len(target_classes) != 2:
        raise ValueError(
            f"objective {value!r} needs two target classes, the run has {list(target_classes)}"
        )
    tcs = (str(target_classes[0]), str(target_classes[1]))
    if value in (BALANCE, PARITY):
        return DecoderObjective(value, tcs)
    head, _, cls = value.partition(":")
    if head == PREFER and cls in tcs:
        return DecoderObjective(PREFER, tcs, cls)
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown objective {value!r}: choose one of {choices}{hint}")


def check_objective_call(goal: DecoderObjective | None, target_class: Any, strengthen: Any) -> None:
    """``target_class`` and ``increase_target_probabilities`` belong to today's selection."""
    if goal is None:
        return
    if target_class is not None:
        raise ValueError(
            f"target_class={target_class!r} does not apply to objective={goal.label!r}, which "
            "selects one point over both classes' directions: leave target_class out"
        )
    if strengthen is not True:
        raise ValueError(
            f"increase_target_probabilities={strengthen!r} does not apply to objective="
            f"{goal.label!r}: leave it out (use objective='strengthen' to weaken a class)"
        )


def check_balance_data(data: Any, mask: str, goal: DecoderObjective | None) -> list[str] | None:
    """The user's balance sentences as a list (each with exactly one ``mask``), or ``None`` for
    the default (the run's test sentences of both classes). Refused before any model loads."""
    if data is None:
        return None
    if goal is None:
        raise ValueError(
            "balance_data is only read by objective='balance', 'parity' or 'prefer:<class>': "
            "pass one"
        )
    if isinstance(data, pd.DataFrame):
        if "masked" not in data.columns:
            raise ValueError(
                f"balance_data needs a 'masked' column; columns are {list(data.columns)}"
            )
        data = data["masked"].tolist()
    if isinstance(data, (str, bytes)) or not isinstance(data, (list, tuple)):
        raise TypeError(
            "balance_data must be a list of masked sentences or a DataFrame with a 'masked' "
            f"column, got {type(data).__name__} (for a file: read it first, e.g. pd.read_csv)"
        )
    if not data:
        raise ValueError("balance_data is empty: pass masked sentences, or None for the default")
    for i, text in enumerate(data):
        if not isinstance(text, str) or text.count(mask) != 1:
            found = text.count(mask) if isinstance(text, str) else type(text).__name__
            raise ValueError(
                f"balance_data[{i}] = {text!r} must be a string with exactly one {mask!r} "
                f"(the run's mask), found {found}; e.g. 'the doctor said that {mask} will come'"
            )
    return [str(t) for t in data]


def balance_record(probs: np.ndarray, target_classes: Sequence[str]) -> dict[str, Any]:
    """The balance scores of one point from ``[n_sentences, 2]`` class probabilities."""
    a, b = str(target_classes[0]), str(target_classes[1])
    pa, pb = np.asarray(probs[:, 0], float), np.asarray(probs[:, 1], float)
    mean_a, mean_b = float(pa.mean()), float(pb.mean())
    gap, total = np.abs(pa - pb), pa + pb
    share_gap = np.divide(gap, total, out=np.ones_like(total), where=total > 0)
    return {
        "p": {a: mean_a, b: mean_b},
        "abs_diff": float(gap.mean()),
        "bpi": float(((1 - gap) * total).mean()),
        "parity": float((1 - share_gap).mean()),
        "prefer": {a: float(((1 - pb) * pa).mean()), b: float(((1 - pa) * pb).mean())},
        "bpi_of_means": (1 - abs(mean_a - mean_b)) * (mean_a + mean_b),
        "n_sentences": len(pa),
    }


def promoted_class(entry: Entry, base: Entry, target_classes: Sequence[str]) -> str:
    """The class a point's direction promotes: ``ff`` > 0 the first, < 0 the second; the
    decoder bias alone (``ff`` = 0): the class whose mean balance probability rose more."""
    ff = float(entry["id"]["feature_factor"])
    if ff != 0:
        return str(target_classes[0] if ff > 0 else target_classes[1])
    after, before = entry.get("balance", {}).get("p", {}), base.get("balance", {}).get("p", {})
    rise = {c: after.get(c, 0.0) - before.get(c, 0.0) for c in target_classes}
    return str(max(target_classes, key=lambda c: rise[c]))


# --------------------------------------------------------------------------- selection
def objective_points(grid: list[Entry], goal: DecoderObjective, ffs: Sequence[float]) -> list:
    """The evaluated points of every searched direction (the base model aside)."""
    return [p for ff in ffs for p in dec.direction_points(grid, float(ff))]


def select_objective(
    grid: list[Entry],
    goal: DecoderObjective,
    ffs: Sequence[float],
    selector: Any = None,
    max_nll_increase: float | None = None,
    margin: float = 0.0,
) -> dict[str, Entry]:
    """``{goal.key: summary}``: the best fully scored point over all directions and the base
    model (no rewrite at all may be the best) inside the budget, as ``decoder.select`` does
    for a class; ``best_inside``/``best_outside`` are taken over all directions."""
    selector = dec.as_policy(selector)
    base = next(e for e in grid if dec.lr_of(e) == 0)
    points = objective_points(grid, goal, ffs)
    nll_bound = dec.Budget(None, dec.selection_bound(max_nll_increase, margin))
    cands = [base, *(e for e in points if not dec.is_estimate(e))]
    within = [e for e in cands if nll_bound.inside(e, base)]
    sel = dec._as_selection(selector(within, goal.metric(), base))  # a user's selector too
    return {goal.key: summarize_objective(sel, points, goal, base, selector, max_nll_increase,
                                          margin)}  # fmt: skip


def summarize_objective(
    sel: dec.Selection,
    points: list[Entry],
    goal: DecoderObjective,
    base: Entry,
    selector: Any,
    max_nll_increase: float | None,
    margin: float,
) -> Entry:
    """``decoder.summarize`` of the chosen point plus the objective's record (its balance
    scores and the base's) and each budget-cost point's feature factor."""
    metric = goal.metric()
    out = dec.summarize(sel, points, metric, base, selector, max_nll_increase, margin)
    budget = dec.budget_for(selector, dec.selection_bound(max_nll_increase, margin))
    inside = [e for e in points if budget.inside(e, base)]
    outside = [e for e in points if not budget.inside(e, base)]
    for side, es in (("best_inside", inside), ("best_outside", outside)):
        best = max(es, key=metric) if es else None  # which direction it is on, too
        out[side] = None if best is None else {**dec.point_report(best, metric, base),
                                               "feature_factor": dec.ff_of(best)}  # fmt: skip
    out["strengthen"] = True
    out["objective"] = {
        **goal.to_dict(),
        "value": goal.score(sel.entry["balance"]),
        "base_value": goal.score(base["balance"]),
        "balance": dict(sel.entry["balance"]),
        "base_balance": dict(base["balance"]),
    }
    return out
