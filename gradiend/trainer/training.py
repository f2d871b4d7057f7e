"""The training flow behind ``TextPredictionTrainer.train``: gradients of the training rows
(pre-pruned, batched, cached), the validation callback, and the record saved with the model.

The trainer wires these steps; each step takes the values it needs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gradiend import distributed as dist
from gradiend.data.examples import ExampleTable, cap_per_group
from gradiend.lm.activations import ActivationComputer, build_site_map
from gradiend.lm.devices import resolve_dtype
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.items import build_items, check_rows
from gradiend.lm.loading import BaseLM
from gradiend.lm.objectives import Item, Objective
from gradiend.lm.params import ParamMap
from gradiend.lm.signals import as_signal
from gradiend.lm.topology import resolve_scope
from gradiend.run_layout import RunLayout
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.data_checks import check_against_model, check_objective
from gradiend.trainer.fingerprint import gradient_fingerprint
from gradiend.trainer.gradient_data import GradientBatches, schedule_batches, stable_hash
from gradiend.trainer.lr_search import search_evals
from gradiend.trainer.pruning import pre_prune, stratified_sample
from gradiend.trainer.supervised import loop_variant
from gradiend.trainer.validation_encodings import (
    SharedValidation,
    ValidationPlan,
    validation_evaluator,
)

logger = logging.getLogger(__name__)


@dataclass
class GradientSetup:
    """What training reads: the gradient computer, the rows and their items, the pre-pruned
    indices, the (cached) training batches and the validation callback."""

    computer: GradientComputer | ActivationComputer
    pmap: ParamMap
    train_df: pd.DataFrame
    val_df: pd.DataFrame
    train_items: list[Item]
    val_items: list[Item]
    indices: Any = None
    batches: GradientBatches | None = None
    evaluate: Any = None
    shared: SharedValidation | None = None
    timings: dict[str, float] = field(default_factory=dict)
    train_labels: Any = None  # the training rows' labels (the supervised baselines read them)
    variant: Any = None  # trainer.supervised.LoopVariant: criterion, evaluate_fn, baselines


def prepare(
    lm: BaseLM,
    objective: Objective,
    table: ExampleTable,
    args: TrainingArguments,
    patterns: list[str] | None,
    device,
    labels_of,
    progress: bool,
    started: float | None = None,
    computer_factory: Callable | None = None,
) -> GradientSetup:
    """Check the rows against the model and build the gradient computer and the items
    (``started``: when loading the base model began, for the timing record;
    ``computer_factory(lm, objective, pmap, device)``: another computer, e.g. a suite's
    shared gradient store)."""
    t0 = time.perf_counter() if started is None else started
    check_objective(lm.kind, objective)
    check_rows(table.df, objective, str(lm.source))
    signal = as_signal(args.signal)
    if signal.is_activation:  # activation sites instead of parameters (lm.activations)
        pmap = build_site_map(lm.model, signal, args.signal_scope)
        computer = ActivationComputer(lm, objective, pmap, device=device, signal=signal)
    else:
        pmap = ParamMap.from_model(lm.model, patterns)
        make = computer_factory or GradientComputer
        computer = make(lm, objective, pmap, device=device)
    train_df = table.split("train")
    val_df = cap_per_group(
        table.split("validation"),
        args.encoder_eval_train_max_size or args.encoder_eval_max_size,
        args.seed,
    )
    train_items, val_items = build_items(train_df, objective), build_items(val_df, objective)
    check_against_model(
        lm.kind,
        objective,
        pd.concat([train_df, val_df]),
        train_items + val_items,
        pmap.numel,
        args,
    )
    setup = GradientSetup(computer, pmap, train_df, val_df, train_items, val_items)
    setup.train_labels = np.asarray(labels_of(train_df))
    setup.timings["load_and_check"] = time.perf_counter() - t0
    if signal.is_activation:  # every training row's vector once, the centre and the scales
        t = time.perf_counter()
        computer.fit(train_items, setup.train_labels, progress)
        setup.timings["training_activations"] = time.perf_counter() - t
    t = time.perf_counter()
    if args.pre_prune_config is not None:
        setup.indices = _pre_prune(setup, args, labels_of, progress)
        computer.set_indices(setup.indices)
    setup.timings["pre_prune"] = time.perf_counter() - t
    return setup


def scope_patterns(args: TrainingArguments, model) -> list[str] | None:
    """The parameter patterns of a gradient signal's ``signal_scope`` (``None``: no scope,
    or one that means the default selection)."""
    if args.signal_scope is None or as_signal(args.signal).is_activation:
        return None
    return resolve_scope(model, args.signal_scope).params


def _pre_prune(setup: GradientSetup, args: TrainingArguments, labels_of, progress: bool):
    cfg = args.pre_prune_config
    seed = args.seed if cfg.seed is None else cfg.seed
    train_df = setup.train_df
    pos = stratified_sample(train_df.reset_index(drop=True), cfg.n_samples, seed)
    labels = labels_of(train_df)
    return pre_prune(
        setup.computer,
        [setup.train_items[i] for i in pos],
        [float(labels[i]) for i in pos],
        cfg,
        progress,
    )


def add_batches(
    setup: GradientSetup,
    args: TrainingArguments,
    layout: RunLayout,
    fingerprint: dict,
    progress: bool,
) -> None:
    """The training batches' gradients (cached on disk under a key with ``use_cache``)."""
    t = time.perf_counter()
    batches_idx = schedule_batches(
        setup.train_df.reset_index(drop=True),
        args.train_batch_size,
        args.seed,
        args.train_max_size,
    )
    needed = args.max_steps * (args.gradiend_batch_size or 1)
    if 0 < needed < len(batches_idx):  # a short run never visits every batch
        batches_idx = batches_idx[:needed]
    cache_dir = None
    if args.use_cache:
        indices = setup.indices
        key = stable_hash(
            gradient_fingerprint(fingerprint), indices if indices is not None else "all"
        )
        cache_dir = layout.gradient_cache(key)
    setup.batches = GradientBatches(
        setup.computer,
        setup.train_items,
        batches_idx,
        args.source,
        args.target,
        args.gradient_cache_max_gb * 1e9,
        cache_dir,
        progress,
        dtype=resolve_dtype(args.gradient_cache_dtype),
    )
    setup.timings["training_gradients"] = time.perf_counter() - t
    setup.variant = loop_variant(args, batches_idx, setup.train_labels)


def add_validation(
    setup: GradientSetup, args: TrainingArguments, labels: np.ndarray, progress: bool
) -> None:
    """The validation callback (and the passes the other ranks serve, if any)."""
    t = time.perf_counter()
    plan = ValidationPlan(
        source=args.source,
        batch_size=args.eval_batch_size,
        cache_dtype=args.gradient_cache_dtype,
        cache_max_gb=args.gradient_cache_max_gb,
        max_steps=args.max_steps,
        eval_steps=args.eval_steps,
        progress=progress,
        runs=max(1, args.max_seeds),
        extra_evals=search_evals(args.learning_rate, args.lr_search_config, args.max_steps),
    )
    classes = setup.val_df["factual_class"].to_numpy()
    setup.evaluate, setup.shared = validation_evaluator(
        setup.computer, setup.val_items, labels, classes, plan
    )
    setup.timings["validation_gradients"] = time.perf_counter() - t


def source_variant(
    setup: GradientSetup,
    args: TrainingArguments,
    layout: RunLayout,
    fingerprint: dict,
    labels: np.ndarray,
    progress: bool,
) -> Callable[[str], tuple] | None:
    """``source -> (batches, evaluate)``: the training gradients and the validation callback
    that a remedy reading another source needs (``trainer.remedy``), computed when first asked
    for; ``None`` under torch.distributed, where the other ranks serve one source only."""
    if dist.is_distributed():
        return None

    def build(source: str) -> tuple:
        logger.info("computing the source=%r gradients for the automatic remedy", source)
        other_args = dataclasses.replace(args, source=source)
        other = dataclasses.replace(setup, batches=None, evaluate=None, shared=None, timings={})
        add_batches(other, other_args, layout, {**fingerprint, "source": source}, progress)
        add_validation(other, other_args, labels, progress)
        return other.batches, other.evaluate

    return build
