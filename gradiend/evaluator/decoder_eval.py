"""The decoder evaluation's flow: score ``θ + η·decoder(ff)`` along each direction, select a
point per class, cache the points and write the results file.

It is fed values, not a trainer: the model (``ModelWithGradiend``), a frozen ``DecoderTask``
(rows, target words, LMS texts, ignored words), a ``DecoderEvalConfig`` (grid or adaptive
search, budget, caps, preconditioning) and the run's ``RunLayout``. Files in the run folder:
``decoder_grid_cache.json`` (scored points under a key of everything that changes them; reused
with ``use_cache``) and ``decoder_results.json`` (every evaluated direction's summary and the
last grid; read by the rewrite when no results are passed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from gradiend import distributed as dist
from gradiend.data.fingerprint import data_hash
from gradiend.evaluator import decoder as dec
from gradiend.evaluator.decoder_checks import CheckContext, PointChecks, build_checker
from gradiend.evaluator.decoder_heldout import HeldoutConfig, TextSplit, split_texts
from gradiend.evaluator.decoder_objective import DecoderObjective
from gradiend.evaluator.decoder_plan import plan_for
from gradiend.evaluator.decoder_results import decoder_settings, save_results
from gradiend.evaluator.decoder_scoring import PointScorer, PointStore, screen_groups
from gradiend.evaluator.decoder_search import AdaptiveSearchConfig, initial_step, search_direction
from gradiend.lm import fisher as fisher_mod
from gradiend.lm.fisher import FisherConfig, as_fisher_config, texts_hash
from gradiend.lm.scoring import LMSScorer, RowTargets, TargetScorer
from gradiend.model.rewrite import gradiend_fingerprint
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.run_layout import RunLayout

logger = logging.getLogger(__name__)

SEARCHES = ("adaptive", "grid")
# The LMS budget is the relative change of the texts' likelihood, with a standard error over the
# texts: below 8 distinct texts that spread (and the screen's sample of them) means nothing, and
# below 20 distinct scored tokens a step can wreck the rest of the vocabulary while the few
# measured tokens stay likely (["."] * 40 passes any budget). The tiny test vocabulary's neutral
# sentences have over 30; any real neutral corpus has thousands.
MIN_DISTINCT_LMS_TEXTS = 8
MIN_DISTINCT_LMS_TOKENS = 20


@dataclass(frozen=True)
class DecoderTask:
    """What the decoder evaluation measures: held-out pair rows, the words of each class at
    their mask, the neutral texts of the LMS (and words it ignores), the Fisher's text pool."""

    target_classes: tuple[str, ...]
    rows: pd.DataFrame
    targets: tuple[RowTargets, ...]
    target_mode: str  # "static" (class word sets) or "label" (each row's own words)
    lms_texts: tuple[str, ...]
    ignore_words: tuple[str, ...] = ()
    neutral_pool: tuple[str, ...] = ()
    model_fingerprint: Any = None  # the training run's cache fingerprint (part of the cache key)
    # the specificity checks: every class's test rows, and the control pairs' sentences
    check_targets: tuple[RowTargets, ...] = ()
    check_row_classes: tuple[str, ...] = ()
    control_pairs: tuple[tuple[str, str, Any], ...] = ()
    control_targets: tuple[RowTargets, ...] = ()
    control_classes: tuple[str, ...] = ()
    control_owner: tuple[int, ...] = ()
    balance_targets: tuple[RowTargets, ...] = ()  # the sentences an objective balances on


@dataclass(frozen=True)
class DecoderEvalConfig:
    """How the decoder is evaluated. ``TrainingArguments.decoder_eval()`` gives the run's
    defaults; ``evaluate_decoder``'s keywords override them."""

    lrs: tuple[float, ...] | None = None  # a grid of step sizes (default: the adaptive search)
    feature_factors: tuple[float, ...] | None = None
    max_size_training_like: int | None = None
    max_size_neutral: int | None = None
    batch_size: int = 32
    seed: int = 0
    use_cache: bool = False
    part: str = "decoder"
    search: str = "adaptive"
    max_nll_increase: float | None = 0.01
    search_config: AdaptiveSearchConfig = field(default_factory=AdaptiveSearchConfig)
    precondition: FisherConfig | None = None
    heldout: HeldoutConfig | None = field(default_factory=HeldoutConfig)  # None: no split

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ValueError(f"search must be 'adaptive' or 'grid', not {self.search!r}")
        object.__setattr__(self, "precondition", as_fisher_config(self.precondition))

    @property
    def margin(self) -> float:
        """The share of the NLL budget the selection keeps back for the held-out check."""
        if self.heldout is None or self.max_nll_increase is None:
            return 0.0
        return self.heldout.margin


@dataclass
class _Run:
    """The pieces one evaluation shares between its steps."""

    mwg: ModelWithGradiend
    task: DecoderTask
    cfg: DecoderEvalConfig
    store: PointStore
    scorer: PointScorer
    key: dict
    progress: bool


def evaluate_decoder(
    mwg: ModelWithGradiend,
    task: DecoderTask,
    cfg: DecoderEvalConfig,
    layout: RunLayout,
    classes: list[str],
    strengthen: bool = True,
    selector: Any = None,
    progress: bool = True,
    memo: dict | None = None,
    on_written: Callable[[dict], None] | None = None,
    objective: DecoderObjective | None = None,
) -> dict[str, Any]:
    """Score the directions of ``classes`` and select a point per class, or one point over all
    directions for an ``objective`` (see ``TextPredictionTrainer.evaluate_decoder`` for the
    result). ``memo`` keeps the base model's scores between calls of a session; ``on_written``
    runs on rank 0 after the results file is written (the figure)."""
    t0 = time.perf_counter()
    tcs = list(task.target_classes)
    check_classes(classes, tcs)
    split = split_texts(task.lms_texts, cfg.heldout, MIN_DISTINCT_LMS_TEXTS)
    fisher_texts = fisher_mod.select_texts(  # neither the selection nor the held-out texts
        cfg.precondition, list(task.neutral_pool), list(task.lms_texts)
    )
    task = dataclasses.replace(task, lms_texts=split.selection)
    check_lms_texts(task, mwg)
    plan = plan_for(classes, strengthen, objective)
    ffs = list(cfg.feature_factors or plan.feature_factors(tcs))
    selector = dec.as_policy(selector)
    budget = dec.budget_for(selector, dec.selection_bound(cfg.max_nll_increase, cfg.margin))
    mode = "grid" if cfg.lrs or cfg.search == "grid" else "adaptive"
    if mode == "adaptive" and not budget.constrained:
        logger.info("no LMS or NLL bound to search the edge of; scoring the grid instead")
        mode = "grid"
    key, pre = _cache_key(mwg, task, cfg, fisher_texts)
    store = PointStore(layout.decoder_grid, key, cfg.use_cache)
    run = _Run(mwg, task, cfg, store, _point_scorer(mwg, task, cfg), key, progress)
    base = _base_point(run, {} if memo is None else memo)
    scale = _preconditioner(run, layout, fisher_texts, pre)
    with mwg.scaled_updates(scale):
        if mode == "grid":
            grid = _run_grid(run, dec.grid_points(ffs, list(cfg.lrs or dec.DEFAULT_LRS)))
        else:
            metrics = plan.metrics(tcs, ffs)
            grid = [base] + _run_search(run, ffs, base, budget, metrics, plan.search)
        results = plan.select(grid, tcs, ffs, selector, cfg.max_nll_increase, cfg.margin)
        plan.check(results, grid, ffs, _check_context(run, split, selector))
    dist.on_main(store.save, "writing the decoder cache")
    settings = decoder_settings(cfg, classes, strengthen, mode, selector, pre, task)
    settings.update(plan.settings())
    _finish(run, results, grid, mode, pre, _hash(settings)[:12])
    results["search"] = _search_info(mode, t0, run.scorer, results["grid"], task)
    results["search"]["split"] = _split_info(mwg, task, split, cfg)
    _write(layout, results, on_written, settings)
    return results


def _finish(run: _Run, results: dict, grid: list, mode: str, pre: dict | None, key: str) -> None:
    """Each summary's provenance, and the grid (points of a step back in their place)."""
    fingerprint = gradiend_fingerprint(run.mwg.gradiend)  # the rewrite checks its GRADIEND
    for entry in results.values():
        entry.update(part=run.cfg.part, search=mode, gradiend_fingerprint=fingerprint)
        entry["precondition"] = pre
        entry["settings_key"] = key
    results["grid"] = [grid[0], *sorted(grid[1:], key=lambda e: (dec.ff_of(e), dec.lr_of(e)))]


def _check_context(run: _Run, split: TextSplit, selector: Any) -> CheckContext:
    """The held-out/specificity checks of this evaluation (see ``decoder_checks``)."""
    task, cfg, store = run.task, run.cfg, run.store
    texts = split.heldout or split.selection
    ignore = _ignored_ids(run.mwg, task)
    checker = build_checker(run.mwg, task, texts, ignore, cfg.batch_size)
    store.load_checks(_hash([run.key, texts, [(t.text, t.words) for t in task.check_targets],
                             [(t.text, t.words) for t in task.control_targets],
                             checker.id_sets]))  # fmt: skip
    updates: dict[float, Any] = {}
    base_stats = store.stats[dec.point_key(0, 0)]
    base = store.entries[dec.point_key(0, 0)]
    bar = tqdm(disable=True)

    def new_point(ff: float, lr: float) -> dict:
        if ff not in updates:
            updates[ff] = run.mwg.get_update_vector(ff, cfg.part)
        return _point_evaluator(run, ff, updates[ff], base, base_stats, bar)(lr, True)

    return CheckContext(
        checks=PointChecks(run.mwg, cfg.part, checker, store),
        new_point=new_point,
        target_classes=list(task.target_classes),
        row_classes=list(task.check_row_classes),
        pairs=task.control_pairs,
        control_owner=task.control_owner,
        heldout=cfg.heldout,
        has_heldout=bool(split.heldout),
        selector=selector,
        max_nll_increase=cfg.max_nll_increase,
        margin=cfg.margin,
    )


def _split_info(mwg, task: DecoderTask, split: TextSplit, cfg: DecoderEvalConfig) -> dict:
    """How the neutral texts were split, and how many distinct tokens each part scored."""
    h = cfg.heldout
    return {
        "selection_texts": len(split.selection),
        "heldout_texts": len(split.heldout),
        "selection_distinct_tokens": _distinct_tokens(mwg, task, split.selection),
        "heldout_distinct_tokens": _distinct_tokens(mwg, task, split.heldout),
        "fraction": None if h is None else h.fraction,
        "min_texts": None if h is None else h.min_texts,
        "seed": None if h is None else h.seed,
        "margin": cfg.margin,
        "fallback": split.fallback,
    }


def _preconditioner(run: _Run, layout: RunLayout, texts: list[str], pre: dict | None):
    """The per-dimension factor of the update vector: ``1 / (F + λ)`` of the neutral texts'
    Fisher (computed once and stored in the run folder), or ``None`` without it."""
    if pre is None:
        return None
    fisher = fisher_mod.load_or_compute(  # every rank the same; rank 0 writes
        layout.run_dir, run.mwg, texts, pre["key"], run.cfg.use_cache, run.progress, dist.is_main()
    )
    return fisher_mod.scale_vector(fisher, run.cfg.precondition.damping)


def _write(layout: RunLayout, results: dict, on_written, settings: dict | None = None) -> None:
    def write() -> None:  # rank 0 writes; the others see the files after it
        save_results(layout, results, settings)
        if on_written is not None:
            on_written(results)

    dist.on_main(write, "writing the decoder results")


def check_classes(classes: list[str], target_classes: list[str]) -> None:
    """Every requested class is one of the run's two target classes (an error names them)."""
    for c in classes:
        dec.feature_factor(c, target_classes)


# --------------------------------------------------------------------------- cache key
def _cache_key(mwg, task: DecoderTask, cfg: DecoderEvalConfig, fisher_texts: list[str]):
    """The grid cache's key (everything that changes a point's scores) and the
    preconditioning record of the results (``None`` without it)."""
    screen = cfg.search_config
    key = {
        "model": _hash(task.model_fingerprint),
        "gradiend": gradiend_fingerprint(mwg.gradiend),
        "part": cfg.part,
        "rows": data_hash(task.rows),
        "mode": task.target_mode,
        "targets": _hash([(t.text, t.words) for t in task.targets]),
        "lms_texts": _hash(list(task.lms_texts)),
        "n_rows": len(task.rows),
        "n_lms_texts": len(task.lms_texts),
        "screen": [screen.screen_fraction, screen.min_screen_texts, screen.z],
        "seed": cfg.seed,
        "version": 2,
    }
    if task.balance_targets:  # only then: the key of today's evaluations stays as it was
        key["balance"] = _hash([(t.text, t.words) for t in task.balance_targets])
        key["balance_record"] = 2  # the record holds "parity" since version 2
    pre = None
    if cfg.precondition is not None:
        fkey = _hash([key["model"], key["gradiend"], texts_hash(fisher_texts)])
        pre = {"method": "fisher", "damping": cfg.precondition.damping, "key": fkey}
        pre["n_texts"] = len(fisher_texts)
        key["precondition"] = pre
    return key, pre


# --------------------------------------------------------------------------- scoring
def _point_scorer(mwg, task: DecoderTask, cfg: DecoderEvalConfig) -> PointScorer:
    obj, lm = mwg.objective.scorer(), mwg.lm  # clm_mlm_head: the causal LM's own objective
    tcs = list(task.target_classes)
    device = next(lm.model.parameters()).device
    ignore = _ignored_ids(mwg, task)
    screen = cfg.search_config
    groups = screen_groups(len(task.lms_texts), screen.screen_fraction, screen.min_screen_texts, 42)
    lms = LMSScorer(
        lm.tokenizer,
        lm.kind,
        list(task.lms_texts),
        sorted(ignore),
        cfg.batch_size,
        seed=42,
        max_length=obj.max_length,
        device=device,
        groups=groups,
    )
    row_classes = task.rows["factual_class"].astype(str).tolist()
    target_scorer = TargetScorer(obj, list(task.targets), tcs, cfg.batch_size, device)
    lms.split = target_scorer.split = True  # under torch.distributed: batches over ranks
    balance = target_scorer if task.balance_targets == task.targets else None  # scored once
    if task.balance_targets and balance is None:
        balance = TargetScorer(obj, list(task.balance_targets), tcs, cfg.batch_size, device)
        balance.split = True
    return PointScorer(target_scorer, lms, row_classes, tcs, screen.z, balance)


def _ignored_ids(mwg, task: DecoderTask) -> set[int]:
    """Token ids the LMS does not score (the target words when it scores the rows)."""
    obj = mwg.objective.scorer()
    return {i for w in task.ignore_words for i in obj.word_ids(w)}


def _distinct_tokens(mwg, task: DecoderTask, texts) -> int:
    """Distinct token ids the LMS scores in ``texts`` (special and ignored ids aside)."""
    texts = list(dict.fromkeys(texts))
    tok = mwg.lm.tokenizer
    rows = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    skip = _ignored_ids(mwg, task) | set(tok.all_special_ids)
    return len({i for row in rows for i in row} - skip)


def check_lms_texts(task: DecoderTask, mwg) -> tuple[int, int]:
    """``(distinct texts, distinct scored tokens)`` of the LMS texts; too few to measure the
    budget (see ``MIN_DISTINCT_LMS_TEXTS``) logs a warning with the numbers and the fix."""
    texts = list(dict.fromkeys(task.lms_texts))
    n_tokens = _distinct_tokens(mwg, task, texts)
    too_few = len(texts) < MIN_DISTINCT_LMS_TEXTS or n_tokens < MIN_DISTINCT_LMS_TOKENS
    if too_few and dist.is_main():
        logger.warning(
            "the decoder's LMS texts cannot measure the language-modelling budget: %d texts, "
            "%d distinct, %d distinct scored tokens (need >= %d texts and >= %d tokens), so a "
            "destructive step may be selected with passed=True. Fix: pass varied neutral "
            "sentences as eval_neutral_data (and a max_size_neutral that keeps enough of them)",
            len(task.lms_texts),
            len(texts),
            n_tokens,
            MIN_DISTINCT_LMS_TEXTS,
            MIN_DISTINCT_LMS_TOKENS,
        )
    return len(texts), n_tokens


def _base_point(run: _Run, memo: dict) -> dict:
    """The unmodified model's full scores (from the store, this session's memo, or scored)."""
    pk, store = dec.point_key(0, 0), run.store
    # the base model's scores do not depend on how the update vector is preconditioned
    mk = _hash({k: v for k, v in run.key.items() if k != "precondition"})
    if store.get(pk, True) is None or pk not in store.stats:
        if mk in memo:
            entry, stats = memo[mk]
            store.put(pk, {**entry, "_stats": stats})
        else:
            entry = run.scorer.full(run.mwg.base_model)
            entry["id"] = dec.point_id(0, 0)
            store.put(pk, entry)
    memo[mk] = (store.entries[pk], store.stats[pk])
    return store.entries[pk]


def _run_grid(run: _Run, points: list[tuple[float, float]]) -> list:
    store = run.store
    todo = [p for p in points if store.get(dec.point_key(*p), True) is None]
    if todo:
        t0 = time.perf_counter()
        done = dec.run_grid(run.mwg, todo, run.scorer.full, run.cfg.part, run.progress)
        for pk, entry in done.items():
            store.put(pk, entry)
        logger.info("decoder grid: %d points in %.1f s", len(todo), time.perf_counter() - t0)
    return [store.entries[dec.point_key(*p)] for p in points]


def _run_search(run: _Run, ffs, base, budget, metrics, search=search_direction) -> list:
    """The adaptive search (or ``search``) along each direction; returns its points in
    (ff, η) order. A direction whose update is zero (``ff`` = 0 without a decoder bias) is
    skipped."""
    mwg, store, cfg = run.mwg, run.store, run.cfg.search_config
    base_stats = store.stats[dec.point_key(0, 0)]
    weight_norm = _reference_norm(mwg.grads)
    bar = tqdm(desc="decoder search", unit="point", disable=not run.progress)
    found: list[tuple[float, float]] = []
    for ff in ffs:
        update = mwg.get_update_vector(ff, run.cfg.part)
        if ff == 0 and not float(update.norm()) > 0:
            logger.info("the decoder has no bias: the direction h = 0 changes nothing; skipped")
            continue
        eta0 = initial_step(float(update.norm()), weight_norm, cfg.initial_relative_change)
        evaluate = _point_evaluator(run, ff, update, base, base_stats, bar)
        metric = metrics.get(ff, dec.lr_of)
        trace = search(evaluate, base, budget, metric, eta0, cfg)
        found += [(ff, lr) for lr in trace.screened + trace.confirmed]
    bar.close()
    return [store.entries[dec.point_key(*p)] for p in sorted(set(found))]


def _reference_norm(grads) -> float:
    """``‖θ_S‖`` of a weight rewrite; for hooks (an activation signal) the typical norm of
    the activations the update is added to."""
    if hasattr(grads, "reference_norm"):
        return grads.reference_norm()
    return math.sqrt(sum(float(t.float().pow(2).sum()) for t in grads.snapshot()))


def _point_evaluator(run: _Run, ff: float, update, base: dict, base_stats, bar):
    """``evaluate(lr, full)`` of one direction for the search: cached, screened or full."""
    store, scorer = run.store, run.scorer

    def evaluate(lr: float, full: bool) -> dict:
        pk = dec.point_key(ff, lr)
        have = store.get(pk, full)
        if have is not None:
            return have
        screened = store.entries.get(pk)
        with run.mwg.applied(lr, ff, run.cfg.part, update=update) as model:
            if full and screened is not None:
                entry = scorer.confirm(model, screened, store.stats[pk])
            elif full:
                entry = scorer.full(model)
            else:
                entry = scorer.screen(model, base, base_stats)
        entry["id"] = dec.point_id(ff, lr)
        bar.update(1)
        return store.put(pk, entry)

    return evaluate


def _search_info(mode: str, t0: float, scorer: PointScorer, grid, task: DecoderTask) -> dict:
    """What the evaluation cost: wall time, full-pass equivalents and the points scored."""
    info = {
        "mode": mode,
        "seconds": time.perf_counter() - t0,
        "full_pass_equivalents": scorer.work,
        "n_points": len(grid),
        "n_screened": sum(e.get("scored") == "screen" for e in grid),
        "n_lms_texts": len(task.lms_texts),
        "n_rows": len(task.rows),
    }
    logger.info(
        "decoder %s: %d points, %.1f full-pass equivalents, %.1f s",
        mode,
        len(grid),
        scorer.work,
        info["seconds"],
    )
    return info


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
