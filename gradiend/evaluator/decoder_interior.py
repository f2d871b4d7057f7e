"""Interior search: the best step size along one direction for an objective that is not
monotone in η (the balance: it rises while the step evens the two classes out, then falls).

1. **Edge**: the adaptive search's bracket and refinement (``decoder_search.find_edge``) find
   the largest η inside the budget, ``η_edge``.
2. **Coarse grid**: ``grid_points`` step sizes spaced evenly in log η from
   ``η_edge / span`` to ``η_edge`` (those not already scored).
3. **Golden section** in log η around the best point inside the budget, between its
   neighbours, ``golden_steps`` steps (until the bracket is within 5 %). Where the best point is
   the largest inside the budget the objective still rises at the edge, and the edge is the
   answer.
4. **Probe** and **confirm** as the adaptive search does (``decoder_search``): the best
   candidate by the objective is scored on the full set of LMS texts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradiend.evaluator.decoder import Budget, Entry, Metric
from gradiend.evaluator.decoder_search import (
    AdaptiveSearchConfig,
    SearchTrace,
    confirm_best,
    find_edge,
    log_trace,
    probe_beyond,
    screener,
)

logger = logging.getLogger(__name__)

GOLDEN = (3 - math.sqrt(5)) / 2  # 0.382: the golden section's share of the larger part
MIN_RATIO = 1.05  # a step size within 5 % of a scored one is not scored again


@dataclass(frozen=True)
class InteriorSearchConfig:
    """Knobs of the interior search (see the module doc)."""

    span: float = 100.0
    grid_points: int = 5
    golden_steps: int = 6


def search_interior(
    evaluate: Callable[[float, bool], Entry],
    base: Entry,
    budget: Budget,
    metric: Metric,
    eta0: float,
    cfg: AdaptiveSearchConfig | None = None,
    interior: InteriorSearchConfig | None = None,
) -> SearchTrace:
    """``search_direction``'s contract (``evaluate(lr, full)``, the trace of what was scored)
    for an objective with a maximum inside the budget."""
    cfg, interior = cfg or AdaptiveSearchConfig(), interior or InteriorSearchConfig()
    points: dict[float, Entry] = {}
    trace = SearchTrace([], [], False)
    screen = screener(evaluate, points, trace, budget, base)

    def screen_new(lr: float) -> None:  # unless a scored point is within 5 %
        if not any(abs(math.log(lr / p)) < math.log(MIN_RATIO) for p in points):
            screen(lr)

    def value(lr: float) -> float:
        inside = budget.usage_of(points[lr], base) <= 1
        return metric(points[lr]) if inside else -math.inf

    trace.edge_found = find_edge(screen, points, budget, base, eta0, cfg)
    inside = [lr for lr, e in points.items() if budget.usage_of(e, base) <= 1]
    if inside:
        top = max(inside)
        for lr in np.geomspace(top / interior.span, top, interior.grid_points)[:-1]:
            screen_new(float(lr))
        golden_section(screen_new, points, value, interior.golden_steps)
    probe_beyond(screen, points, budget, base, cfg)
    confirm_best(evaluate, points, budget, base, metric, cfg, trace)
    log_trace(trace)
    return trace


def golden_section(
    screen: Callable[[float], None],
    points: dict[float, Entry],
    value: Callable[[float], float],
    steps: int,
) -> None:
    """Narrow the bracket around the best scored step size by golden sections in log η."""
    lrs = sorted(points)
    best = max(lrs, key=value)
    i = lrs.index(best)
    if i >= _last_inside(lrs, value):
        return  # the objective still rises at the edge: the edge search placed it
    lo = math.log(lrs[i - 1]) if i > 0 else math.log(best) - math.log(lrs[i + 1] / best)
    hi = math.log(lrs[i + 1])
    for _ in range(steps):
        c = math.log(best)
        if hi - lo < math.log(MIN_RATIO):
            return
        x = c + GOLDEN * (hi - c) if hi - c > c - lo else c - GOLDEN * (c - lo)
        screen(math.exp(x))
        got = min(points, key=lambda p: abs(math.log(p) - x))  # the scored point standing for x
        if value(got) > value(best):
            lo, hi = (c, hi) if x > c else (lo, c)
            best = got
        else:
            lo, hi = (lo, x) if x > c else (x, hi)


def _last_inside(lrs: list[float], value: Callable[[float], float]) -> int:
    inside = [k for k, lr in enumerate(lrs) if value(lr) > -math.inf]
    return inside[-1] if inside else -1
