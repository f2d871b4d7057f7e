"""Adaptive decoder search: the largest step size along one direction that keeps the budget.

Along one direction ``θ + η · u`` the language-modelling cost and the target probability grow
nearly monotonically with η, so the best point inside a budget sits at the budget's edge. The
search finds that edge with few scoring passes:

1. **Start** at the η that changes the mapped weights by ``initial_relative_change`` of their
   norm (``η₀ = ρ₀ · ‖θ_S‖ / ‖u‖``), so the first point lands in the right decade.
2. **Bracket** by an exponential search: up while the point is inside the budget, down while it
   is outside. Each step extrapolates from the budget share used so far (``usage`` is about a
   power of η), clamped to a factor between ``1.25`` and ``growth²``.
3. **Refine** by bisection in log η, with a secant step on ``log usage`` where both ends have a
   positive share, until the bracket is within ``resolution`` or the inner end already spends
   ``tolerance`` of the budget.
4. **Probe** one point ``probe_factor`` beyond the edge, so the result can say what the budget
   cost (the best metric outside it).
5. **Confirm**: every point so far was scored on all target rows but on a screening subset of
   the LMS texts. The best point whose optimistic estimate (``z`` standard errors) may be
   inside the budget is scored on the full set. Where it is outside (the screen misjudged the
   cost), the edge is found again on the full set: from that point down by the power read off
   the screened points, then by secant steps, ``max_confirmations`` full passes in all.

The search only calls ``evaluate(lr, full)``; scoring, caching and the model live with the
caller (``gradiend.evaluator.decoder_eval``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from gradiend.evaluator.decoder import Budget, Entry, Metric, is_estimate

logger = logging.getLogger(__name__)


@dataclass
class AdaptiveSearchConfig:
    """Knobs of the adaptive decoder search (see the module doc)."""

    initial_relative_change: float = 0.01
    growth: float = 4.0
    max_expansions: int = 12
    resolution: float = 1.1
    tolerance: float = 0.85
    target_usage: float = 0.93
    max_refinements: int = 6
    probe_factor: float = 10.0
    screen_fraction: float = 0.25
    min_screen_texts: int = 16
    z: float = 2.0
    max_confirmations: int = 4


def initial_step(update_norm: float, weight_norm: float, relative_change: float) -> float:
    """``η₀`` with ``η₀ · ‖u‖ = relative_change · ‖θ_S‖`` (1.0 when a norm is zero)."""
    if update_norm <= 0 or weight_norm <= 0 or not math.isfinite(update_norm / weight_norm):
        return 1.0
    return relative_change * weight_norm / update_norm


@dataclass
class SearchTrace:
    """What one direction's search evaluated: step sizes screened and confirmed, in order."""

    screened: list[float]
    confirmed: list[float]
    edge_found: bool


def screener(evaluate, points: dict, trace: SearchTrace, budget: Budget, base: Entry):
    """``screen(lr) -> budget usage``: scores ``lr`` on the screening set into ``points`` and
    records it in ``trace``."""

    def screen(lr: float) -> float:
        points[lr] = evaluate(lr, False)
        trace.screened.append(lr)
        return budget.usage_of(points[lr], base)

    return screen


def search_direction(
    evaluate: Callable[[float, bool], Entry],
    base: Entry,
    budget: Budget,
    metric: Metric,
    eta0: float,
    cfg: AdaptiveSearchConfig | None = None,
) -> SearchTrace:
    """Run the search for one direction; ``evaluate(lr, full)`` scores a point (screen or
    full set) and returns its entry. Returns the trace; the entries stay with the caller."""
    cfg = cfg or AdaptiveSearchConfig()
    points: dict[float, Entry] = {}
    trace = SearchTrace([], [], False)
    screen = screener(evaluate, points, trace, budget, base)
    trace.edge_found = find_edge(screen, points, budget, base, eta0, cfg)
    probe_beyond(screen, points, budget, base, cfg)
    confirm_best(evaluate, points, budget, base, metric, cfg, trace)
    log_trace(trace)
    return trace


def find_edge(screen, points: dict, budget: Budget, base: Entry, eta0: float, cfg) -> bool:
    """Steps 2 and 3 (bracket, refine) with ``screen(lr) -> usage`` filling ``points``;
    returns whether the edge was found."""
    lo, hi = _bracket(screen, eta0, cfg)
    if lo is not None and hi is not None:
        _refine(screen, points, budget, base, lo, hi, cfg)
    return hi is not None or (lo is not None and budget.usage_of(points[lo], base) >= cfg.tolerance)


def probe_beyond(screen, points: dict, budget: Budget, base: Entry, cfg) -> None:
    """Step 4: one point ``probe_factor`` beyond the largest step size inside the budget."""
    inside = [lr for lr, e in points.items() if budget.usage_of(e, base) <= 1]
    if inside and cfg.probe_factor > 1:
        probe = max(inside) * cfg.probe_factor
        if not any(lr >= probe / 1.01 for lr in points):
            screen(probe)


def log_trace(trace: SearchTrace) -> None:
    logger.info(
        "decoder search: %d screened, %d confirmed, edge %s",
        len(trace.screened),
        len(trace.confirmed),
        "found" if trace.edge_found else "not reached",
    )


def _bracket(
    screen: Callable[[float], float], eta0: float, cfg: AdaptiveSearchConfig
) -> tuple[float | None, float | None]:
    """``(lo, hi)``: lo inside, hi outside, adjacent in the search (None where not reached)."""
    lr, used = eta0, screen(eta0)
    lo, hi = (lr, None) if used <= 1 else (None, lr)
    for _ in range(cfg.max_expansions):
        if lo is not None and hi is not None:
            break
        if hi is None:
            if used >= cfg.tolerance:
                break  # close enough to the edge from below
            lr = lr * _factor(used, cfg, up=True)
        else:
            lr = lr / _factor(used, cfg, up=False)
        used = screen(lr)
        if used <= 1:
            lo = lr if lo is None or lr > lo else lo
        else:
            hi = lr if hi is None or lr < hi else hi
    return lo, hi


def _factor(used: float, cfg: AdaptiveSearchConfig, up: bool) -> float:
    """Step factor towards the edge, assuming usage ∝ η (clamped to [1.25, growth²])."""
    if not math.isfinite(used) or used <= 0:
        return cfg.growth if up else cfg.growth**2
    guess = cfg.target_usage / used if up else used / cfg.target_usage
    return min(max(guess, 1.25), cfg.growth**2)


def _refine(screen, points, budget, base, lo, hi, cfg) -> None:
    for _ in range(cfg.max_refinements):
        u_lo = budget.usage_of(points[lo], base)
        u_hi = budget.usage_of(points[hi], base)
        if hi / lo <= cfg.resolution or u_lo >= cfg.tolerance:
            return
        t = 0.5
        if u_lo > 0 and math.isfinite(u_hi):
            t = (math.log(cfg.target_usage) - math.log(u_lo)) / (math.log(u_hi) - math.log(u_lo))
            t = min(max(t, 0.15), 0.85)
        mid = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
        if screen(mid) <= 1:
            lo = mid
        else:
            hi = mid


def confirm_best(evaluate, points, budget, base, metric, cfg, trace) -> None:
    """Score the best screened candidate on the full set; where the screen misjudged the
    budget, find the edge again on the full set (secant in log usage, at most
    ``max_confirmations`` full passes in all)."""
    could = [lr for lr, e in points.items() if budget.usage_of(e, base, optimistic=True) <= 1]
    order = sorted(could, key=lambda lr: (metric(points[lr]), lr), reverse=True)
    power = _power(points, budget, base)

    def full(lr: float) -> float:
        points[lr] = evaluate(lr, True)
        trace.confirmed.append(lr)
        return budget.usage_of(points[lr], base)

    if order and full(order[0]) <= 1:
        return
    while order and len(trace.confirmed) < cfg.max_confirmations:
        used = {lr: budget.usage_of(points[lr], base) for lr in trace.confirmed}
        ins = [lr for lr in used if used[lr] <= 1]
        hi = min(lr for lr in used if used[lr] > 1)
        lo = max(ins) if ins else None
        if lo is not None and (hi / lo <= cfg.resolution or used[lo] >= cfg.tolerance):
            break
        if lo is None or used[lo] <= 0:  # extrapolate down from hi: usage ≈ c·η^power
            guess = hi * (cfg.target_usage / used[hi]) ** (1 / power)
            if lo is not None:
                guess = max(guess, math.sqrt(lo * hi))
        else:
            t = (math.log(cfg.target_usage) - math.log(used[lo])) / (
                math.log(used[hi]) - math.log(used[lo])
            )
            t = min(max(t, 0.15), 0.85)
            guess = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
        if not math.isfinite(guess) or guess in used:
            break
        full(guess)
    if not any(budget.inside(points[lr], base) for lr in trace.confirmed):
        smallest = min(points)  # nothing confirmed inside: the fallback point
        if is_estimate(points[smallest]):
            full(smallest)


def _power(points, budget, base) -> float:
    """Slope of log usage over log η among the screened points (usage ≈ c·η^power),
    clamped to [1, 4]; 2 (a quadratic cost) when it cannot be read off."""
    pts = sorted(
        (math.log(lr), math.log(u))
        for lr, e in points.items()
        if lr > 0 and 0 < (u := budget.usage_of(e, base)) < math.inf
    )
    if len(pts) < 2 or pts[-1][0] - pts[0][0] <= 0:
        return 2.0
    slope = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    return min(max(slope, 1.0), 4.0) if math.isfinite(slope) else 2.0
