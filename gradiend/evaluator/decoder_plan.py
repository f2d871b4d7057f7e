"""What one decoder evaluation selects, and how it searches for it: a summary per class
(strengthen or weaken; the default) or one summary over every direction for an objective
(``decoder_objective``: balance, prefer one class), found by the interior search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gradiend.evaluator import decoder as dec
from gradiend.evaluator.decoder_checks import CheckContext, check_objective, check_selections
from gradiend.evaluator.decoder_interior import search_interior
from gradiend.evaluator.decoder_objective import (
    OBJECTIVE_FEATURE_FACTORS,
    DecoderObjective,
    objective_points,
    promoted_class,
    select_objective,
    summarize_objective,
)
from gradiend.evaluator.decoder_search import search_direction


@dataclass(frozen=True)
class ClassPlan:
    """Today's selection: per class, the best point of its direction by its metric."""

    classes: tuple[str, ...]
    strengthen: bool

    search = staticmethod(search_direction)

    def feature_factors(self, tcs: Sequence[str]) -> list[float]:
        return dec.default_feature_factors(self.classes, tcs, self.strengthen)

    def metrics(self, tcs: Sequence[str], ffs: Sequence[float]) -> dict[float, dec.Metric]:
        return {
            dec.direction_factor(c, tcs, self.strengthen): dec.metric_for(c, self.strengthen)
            for c in self.classes
        }

    def select(self, grid, tcs, ffs, selector, max_nll_increase, margin) -> dict:
        return dec.select(grid, list(self.classes), tcs, self.strengthen, selector,
                          max_nll_increase, margin)  # fmt: skip

    def check(self, results: dict, grid: list, ffs, ctx: CheckContext) -> None:
        check_selections(results, grid, list(self.classes), self.strengthen, ctx)

    def settings(self) -> dict[str, Any]:
        return {}  # the settings key of today's evaluations stays as it was


@dataclass(frozen=True)
class ObjectivePlan:
    """An objective's selection: the best point over all directions (``ff`` = ±1 and the
    decoder's bias alone, ``ff`` = 0) and the base model, by ``score · LMS``."""

    goal: DecoderObjective

    search = staticmethod(search_interior)

    def feature_factors(self, tcs: Sequence[str]) -> list[float]:
        return list(OBJECTIVE_FEATURE_FACTORS)

    def metrics(self, tcs: Sequence[str], ffs: Sequence[float]) -> dict[float, dec.Metric]:
        return {float(ff): self.goal.metric() for ff in ffs}

    def select(self, grid, tcs, ffs, selector, max_nll_increase, margin) -> dict:
        return select_objective(grid, self.goal, ffs, selector, max_nll_increase, margin)

    def check(self, results: dict, grid: list, ffs, ctx: CheckContext) -> None:
        base = next(e for e in grid if dec.lr_of(e) == 0)

        def resummarize(entry: dict, passed: bool) -> dict:
            points = objective_points(grid, self.goal, ffs)
            return summarize_objective(dec.Selection(entry, passed), points, self.goal, base,
                                       ctx.selector, ctx.max_nll_increase, ctx.margin)  # fmt: skip

        def target_of(entry: dict) -> str:
            return promoted_class(entry, base, self.goal.target_classes)

        check_objective(results, self.goal.key, grid, resummarize, target_of, ctx)

    def settings(self) -> dict[str, Any]:
        return {"objective": self.goal.label}


def plan_for(
    classes: Sequence[str], strengthen: bool, goal: DecoderObjective | None
) -> ClassPlan | ObjectivePlan:
    return ClassPlan(tuple(classes), strengthen) if goal is None else ObjectivePlan(goal)
