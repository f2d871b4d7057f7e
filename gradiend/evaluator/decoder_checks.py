"""Checks of the selected decoder points: held-out NLL (with the step back) and specificity.

After the selection, each selected point and the budget-cost table's points (``best_inside``,
``best_outside``) are scored once more, in one batched pass each: the held-out neutral texts
(``decoder_heldout``; the selection texts when there is no held-out part), the test rows of
every class and the control sentences (``decoder_specificity``). The raw scores are kept in the
point store (and its cache file) under a key of those inputs, so a repeated call scores nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gradiend.evaluator import decoder as dec
from gradiend.evaluator import decoder_specificity as spec
from gradiend.evaluator.decoder_heldout import HeldoutConfig, heldout_increase, step_back
from gradiend.evaluator.decoder_scoring import PointStore
from gradiend.lm.scoring import LMSScorer, TargetScorer, lms_summary
from gradiend.model.rewrite import summary_key

logger = logging.getLogger(__name__)


@dataclass
class Checker:
    """Scores a model for the checks: ``lms`` on the held-out texts with the probability of
    each class's ``id_sets`` at every scored token, ``rows`` (every class's test rows) and
    ``controls`` (the control sentences); either scorer may be ``None``."""

    lms: LMSScorer
    id_sets: list[list[int]]
    rows: TargetScorer | None
    controls: TargetScorer | None

    def raw(self, model) -> dict[str, Any]:
        stats, sums = self.lms.with_token_probs(model, self.id_sets)
        summary = lms_summary(self.lms.kind, stats)
        return {
            "heldout": summary,
            "neutral": sums.tolist(),
            "n_tokens": summary["n_tokens"],
            "rows": self.rows(model).tolist() if self.rows is not None else [],
            "controls": self.controls(model).tolist() if self.controls is not None else [],
        }


def build_checker(
    mwg, task: Any, texts: Sequence[str], ignore: Sequence[int], batch_size: int
) -> Checker:
    """The checker of one evaluation: ``texts`` (held-out, else the selection texts), the
    first token of each class's words, every class's test rows and the control sentences."""
    obj, lm = mwg.objective.scorer(), mwg.lm
    device = next(lm.model.parameters()).device
    tcs = list(task.target_classes)
    lms = LMSScorer(lm.tokenizer, lm.kind, list(texts), sorted(ignore), batch_size, seed=42,
                    max_length=obj.max_length, device=device)  # fmt: skip
    words = {c: {w for t in (*task.targets, *task.check_targets) for w in t.words.get(c, [])}
             for c in tcs}  # fmt: skip
    id_sets = [sorted({_first_id(obj, w) for w in sorted(words[c])} - {None}) for c in tcs]
    rows = TargetScorer(obj, list(task.check_targets), tcs, batch_size, device)
    controls = None
    if task.control_targets:
        controls = TargetScorer(obj, list(task.control_targets), list(task.control_classes),
                                batch_size, device)  # fmt: skip
    return Checker(lms, id_sets, rows if task.check_targets else None, controls)


def _first_id(obj, word: str) -> int | None:
    """The word's first token in running text (``None`` when it is the unknown token)."""
    ids = obj.word_ids(word)
    unk = obj.tokenizer.unk_token_id
    return None if not ids or ids[0] == unk else int(ids[0])


class PointChecks:
    """``checks(ff, lr)``: the raw checks of one point (cached in the store), the update
    applied in place and undone as in the search."""

    def __init__(self, mwg, part: str, checker: Checker, store: PointStore):
        self.mwg, self.part, self.checker, self.store = mwg, part, checker, store
        self.updates: dict[float, Any] = {}

    def __call__(self, ff: float, lr: float) -> dict:
        pk = dec.point_key(ff, lr)
        if pk in self.store.checks:
            return self.store.checks[pk]
        if lr == 0:
            return self.store.put_check(pk, self.checker.raw(self.mwg.base_model))
        if ff not in self.updates:
            self.updates[ff] = self.mwg.get_update_vector(ff, self.part)
        with self.mwg.applied(lr, ff, self.part, update=self.updates[ff]) as model:
            return self.store.put_check(pk, self.checker.raw(model))


@dataclass
class CheckContext:
    """What the checks of one evaluation share."""

    checks: PointChecks
    new_point: Callable[[float, float], dict]  # (ff, lr) → a fully scored grid entry
    target_classes: list[str]
    row_classes: list[str]
    pairs: Sequence[tuple[str, str, Any]]
    control_owner: Sequence[int]
    heldout: HeldoutConfig | None
    has_heldout: bool
    selector: Any
    max_nll_increase: float | None
    margin: float


def check_selections(
    results: dict, grid: list[dict], classes: list[str], strengthen: bool, ctx: CheckContext
) -> None:
    """Held-out check (with the step back) and specificity of every summary in ``results``;
    points scored for a step back are appended to ``grid``."""
    base = next(e for e in grid if dec.lr_of(e) == 0)
    base_check = ctx.checks(0.0, 0.0)
    for cls in classes:
        key = summary_key(cls, strengthen)
        summary = results[key]
        ff, metric = summary["feature_factor"], dec.metric_for(cls, strengthen)
        points = dec.direction_points(grid, ff)
        entry = next(e for e in points if e["id"] == summary["id"])
        trail, ok = None, None
        if ctx.has_heldout and ctx.max_nll_increase is not None:
            entry, trail, ok = _step_back(entry, points, grid, base, base_check, ff, ctx)
            if entry["id"] != summary["id"] or not ok:
                passed = summary["passed"] and bool(ok)
                summary = dec.summarize(dec.Selection(entry, passed), points, metric, base,
                                        ctx.selector, ctx.max_nll_increase, ctx.margin)  # fmt: skip
                summary["strengthen"] = strengthen
            if not ok:
                logger.warning(
                    "%s: the held-out neutral NLL exceeds the budget (+%.2f %% > +%g %%) even "
                    "after %d step backs; passed=False (learning rate %g)",
                    key, 100 * trail[-1]["heldout_nll_increase"], 100 * ctx.max_nll_increase,
                    len(trail) - 1, dec.lr_of(entry),
                )  # fmt: skip
        target = cls if strengthen else next(c for c in ctx.target_classes if c != cls)
        _add_checks(summary, ctx.checks(ff, dec.lr_of(entry)), base_check, target, ctx)
        for side in ("best_inside", "best_outside"):
            if summary.get(side):
                check = ctx.checks(ff, summary[side]["learning_rate"])
                _add_checks(summary[side], check, base_check, target, ctx)
        summary["heldout"] = _heldout_record(base_check, trail, ok, ctx)
        results[key] = summary


def check_objective(
    results: dict,
    key: str,
    grid: list[dict],
    resummarize: Callable[[dict, bool], dict],
    target_of: Callable[[dict], str],
    ctx: CheckContext,
) -> None:
    """``check_selections`` for the one summary of an objective (``key``): the held-out check
    with the step back along the chosen direction (none for the base model, which costs
    nothing), ``resummarize(entry, passed)`` after a step back, and the specificity of each
    reported point for the class it promotes (``target_of(grid entry)``)."""
    base = next(e for e in grid if dec.lr_of(e) == 0)
    base_check = ctx.checks(0.0, 0.0)
    summary = results[key]
    ff = summary["feature_factor"]
    trail, ok = None, None
    if summary["learning_rate"] != 0 and ctx.has_heldout and ctx.max_nll_increase is not None:
        points = dec.direction_points(grid, ff)
        entry = next(e for e in points if e["id"] == summary["id"])
        entry, trail, ok = _step_back(entry, points, grid, base, base_check, ff, ctx)
        if entry["id"] != summary["id"] or not ok:
            summary = resummarize(entry, summary["passed"] and bool(ok))
        if not ok:
            logger.warning("%s: the held-out neutral NLL exceeds the budget even after %d step "
                           "backs; passed=False", key, len(trail) - 1)  # fmt: skip
    elif ctx.has_heldout and ctx.max_nll_increase is not None:
        trail, ok = [{"learning_rate": 0.0, "nll_increase": 0.0, "heldout_nll_increase": 0.0}], True
    for report in (summary, summary.get("best_inside"), summary.get("best_outside")):
        if report:
            point = dec.point_id(report["feature_factor"], report["learning_rate"])
            entry = next(e for e in grid if e["id"] == point)
            check = ctx.checks(point["feature_factor"], point["learning_rate"])
            _add_checks(report, check, base_check, target_of(entry), ctx)
    summary["heldout"] = _heldout_record(base_check, trail, ok, ctx)
    results[key] = summary


def _step_back(entry, points, grid, base, base_check, ff, ctx: CheckContext):
    bound = dec.selection_bound(ctx.max_nll_increase, ctx.margin)
    selection = dec.budget_for(dec.as_policy(ctx.selector), bound)

    def new(lr: float) -> dict:
        point = ctx.new_point(ff, lr)
        grid.append(point)
        points.append(point)
        points.sort(key=dec.lr_of)
        return point

    def increase(e: dict) -> float:
        return heldout_increase(ctx.checks(ff, dec.lr_of(e)), base_check)

    return step_back(
        entry, points, base, selection, ctx.max_nll_increase, increase, new, ctx.heldout
    )


def _add_checks(report: dict, check: dict, base_check: dict, target: str, ctx) -> None:
    """``heldout_nll_increase``/``heldout_nll``/``heldout_lms`` (``None`` without a held-out
    part) and the ``specificity`` record on a summary or budget-cost entry."""
    held = ctx.has_heldout
    report["heldout_nll_increase"] = heldout_increase(check, base_check) if held else None
    report["heldout_nll"] = check["heldout"]["nll"] if held else None
    report["heldout_lms"] = check["heldout"]["lms"] if held else None
    report["specificity"] = spec.record(
        target, ctx.target_classes, ctx.row_classes, base_check, check, ctx.pairs,
        ctx.control_owner,
    )  # fmt: skip
    report["specificity"]["neutral"]["texts"] = "heldout" if held else "selection"


def _heldout_record(base_check: dict, trail, ok, ctx: CheckContext) -> dict | None:
    if not ctx.has_heldout:
        return None
    base = base_check["heldout"]
    return {
        "base_nll": base["nll"],
        "base_lms": base["lms"],
        "n_texts": base["n_texts"],
        "n_tokens": base["n_tokens"],
        "checked": [] if trail is None else trail,  # the selected point first, then each step back
        "step_backs": 0 if trail is None else len(trail) - 1,
        "within_budget": ok,
    }
