"""``compare_methods``: GRADIEND (gradient signal), ACTIEND (activation at the prediction
position, the best of the given layers by validation |r|) and CAA (difference of class means at
that ACTIEND's sites) on the same data, classes and decoder budget, side by side.

Each method is a run of ``<experiment_dir>/<run_id>/`` (``gradiend``, ``actiend_layer_<i>``;
CAA in the chosen ACTIEND's ``caa`` sub-run). Its selected point is saved as a model
(``save_pretrained`` of the rewrite, ``save_pretrained_modified`` of the hooks), reloaded, and
the effect recomputed from the reloaded model on the same held-out rows; the table reports both
and their relative difference. The table is written to ``method_comparison.json`` there.

A GRADIEND or ACTIEND that does not converge does not stop the comparison: it is evaluated with
``allow_unconverged=True``, a warning names it, and its row says ``converged: False`` (the
markdown table marks it, ``best()`` prefers the converged methods).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from gradiend.evaluator.decoder import point_entry
from gradiend.evaluator.methods_table import MethodComparison
from gradiend.lm.scoring import TargetScorer
from gradiend.lm.signals import Signal, SignalScope
from gradiend.model.caa import caa_model
from gradiend.model.modified import HookedModel, load_modified_model
from gradiend.run_layout import RunLayout
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.caa import CAA_RUN
from gradiend.trainer.convergence_check import convergence_of
from gradiend.trainer.decoder_task import build_decoder_task
from gradiend.trainer.text_trainer import TextPredictionTrainer

logger = logging.getLogger(__name__)

METHODS = ("gradiend", "actiend", "caa")


def check_methods(methods: Sequence[str], target_classes: Any, layers: Sequence[int]) -> list:
    """The requested methods, checked before any work (unknown names, two classes, layers)."""
    if isinstance(methods, str):
        methods = [methods]
    methods = list(dict.fromkeys(str(m).lower() for m in methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(
            f"unknown method(s) {unknown or methods}: choose from {list(METHODS)}, "
            "e.g. methods=('gradiend', 'actiend', 'caa')"
        )
    if target_classes is None or len(list(target_classes)) != 2:
        raise ValueError(
            f"compare_methods compares two classes, got {target_classes!r}: pass "
            "target_classes=['a', 'b']"
        )
    if len(set(map(str, target_classes))) != 2:
        raise ValueError(f"the two target classes must differ, got {list(target_classes)}")
    if {"actiend", "caa"} & set(methods) and not list(layers):
        raise ValueError("ACTIEND and CAA need at least one layer: pass actiend_layers=[-1]")
    return methods


@contextmanager
def measured(record: dict):
    """Wall seconds and peak memory of the block (CUDA max allocated on GPU, else the
    process's resident memory above its level at the start, sampled every 20 ms)."""
    cuda = torch.cuda.is_available()
    stop, peak = threading.Event(), [0]
    proc = None if cuda else _process()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        start_mem = torch.cuda.memory_allocated()
    elif proc is not None:
        start_mem = proc.memory_info().rss

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                stop.wait(0.02)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
    t0 = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = time.perf_counter() - t0
        if cuda:
            used, kind = torch.cuda.max_memory_allocated() - start_mem, "cuda max allocated"
        elif proc is not None:
            stop.set()
            thread.join()
            used, kind = max(peak[0], proc.memory_info().rss) - start_mem, "rss above start"
        else:
            used, kind = math.nan, "unavailable on CPU without psutil (pip install psutil)"
        record["peak_memory_mb"] = max(used, 0) / 2**20 if used == used else math.nan
        record["memory_kind"] = kind


def _process():
    """This process for the CPU memory figure, or None where psutil (optional) is missing."""
    try:
        import psutil  # reason: an optional dependency of the memory figure only
    except ImportError:
        logger.info("psutil is not installed: the methods' CPU peak memory is not measured")
        return None
    return psutil.Process()


def recompute_probability(trainer, model, cls: str, max_rows: int | None) -> float:
    """P(``cls``) on the other class's held-out rows under ``model`` (a reloaded model),
    scored from scratch as the decoder evaluation scores them."""
    mwg = trainer.get_model()
    task = build_decoder_task(trainer.eval_data, mwg.objective, [cls], True, max_rows, None)
    tcs = list(trainer.target_classes)
    device = next(model.parameters()).device
    scorer = TargetScorer(mwg.objective.scorer(), list(task.targets), tcs, 32, device)
    classes = task.rows["factual_class"].astype(str).tolist()
    return float(point_entry(scorer(model), classes, tcs, tcs, {})["probs"][cls])


def save_and_reload(modified, folder: Path, base_model) -> Any:
    """The modified model written to ``folder`` and read back (hooks or a checkpoint)."""
    if isinstance(modified, HookedModel):
        modified.save_pretrained_modified(folder)
        return load_modified_model(folder, model_loader=lambda ref: copy.deepcopy(base_model))
    modified.save_pretrained(folder)
    again = type(modified).from_pretrained(folder)
    return again.to(next(modified.parameters()).device).eval()


def effect_row(trainer, modify: Callable, results: dict, cls: str, max_rows, folder) -> dict:
    """The selected point's effect and cost, and its recompute from the reloaded model."""
    e = results[cls]
    base = float(e["base_value"])
    row = {
        "base_probability": base,
        "probability": float(e["value"]),
        "effect_ratio": float(e["value"]) / base if base > 0 else math.nan,
        "learning_rate": float(e["learning_rate"]),
        "nll_increase": float(e["nll_increase"]),
        "heldout_nll_increase": _float(e.get("heldout_nll_increase")),
        "lms_change": float(e["lms"]) / float(e["base_lms"]) - 1.0 if e["base_lms"] else math.nan,
        "passed": bool(e.get("passed")),
    }
    reloaded = save_and_reload(modify(results, cls), Path(folder), trainer.get_model().base_model)
    again = recompute_probability(trainer, reloaded, cls, max_rows)
    row["recomputed_probability"] = again
    row["recompute_rel_diff"] = again / row["probability"] - 1.0 if row["probability"] else 0.0
    return row


def convergence_row(trainer, method: str) -> dict:
    """Whether the method's run converged (a warning naming it when not: it is still compared)."""
    converged, what = convergence_of(trainer.get_training_stats())
    if not converged:
        logger.warning(
            "compare_methods: %s did not converge (%s); it is evaluated anyway and its row is "
            "marked not converged: retrain it (docs/training.md) before trusting its numbers",
            method, what,
        )  # fmt: skip
    return {"converged": converged, "convergence": what}


def encoder_row(trainer) -> dict:
    enc = trainer.evaluate_encoder(allow_unconverged=True)  # the row records convergence
    neutral = enc.get("neutral_mean_by_type") or {}
    values = [float(v) for v in neutral.values()]
    return {
        "encoder_test_abs_r": abs(float(enc["correlation"])),
        "encoder_neutral_mean": sum(values) / len(values) if values else math.nan,
    }


def validation_r(trainer) -> float:
    """|r| of the run's best validation evaluation (``training.json``'s ``best``), used to pick
    ACTIEND's layer without touching the test rows; NaN when the run recorded none."""
    best = trainer.get_training_stats().get("best") or {}
    r = best.get("correlation")
    return abs(float(r)) if r is not None else math.nan


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def compare_methods(
    model: Any,
    data: Any,
    target_classes: Sequence[str],
    args: TrainingArguments | None = None,
    methods: Sequence[str] = METHODS,
    actiend_layers: Sequence[int] = (-1,),
    actiend_learning_rate: float | str = 3e-2,
    target_class: str | None = None,
    eval_neutral_data: Any = None,
    eval_neutral_max_rows: int | None = None,
    max_nll_increase: float | None = 0.01,
    max_size_training_like: int | None = None,
    experiment_dir: str | Path | None = None,
    run_id: str = "methods",
    progress: bool = False,
    **trainer_kwargs: Any,
) -> MethodComparison:
    """GRADIEND, ACTIEND (best of ``actiend_layers`` by validation |r|) and CAA on the same
    data, classes and budget: a ``MethodComparison`` (``.table``, ``.to_markdown()``), saved to
    ``<experiment_dir>/<run_id>/method_comparison.json``. ``args`` trains the GRADIEND; the
    ACTIENDs take it with ``Signal.activation(scale="running_rms")`` at one layer each and
    ``actiend_learning_rate``. The effect is P(``target_class``, default the second class) on
    the other class's held-out sentences."""
    methods = check_methods(methods, target_classes, actiend_layers)
    tcs, cls = _target(target_classes, target_class)
    args = args or TrainingArguments()
    root = Path(experiment_dir or args.experiment_dir or "runs") / run_id
    common = dict(data=data, target_classes=tcs, eval_neutral_data=eval_neutral_data,
                  eval_neutral_max_rows=eval_neutral_max_rows, progress=progress,
                  **trainer_kwargs)  # fmt: skip
    decoder = dict(target_class=cls, max_nll_increase=max_nll_increase,
                   max_size_training_like=max_size_training_like)  # fmt: skip
    job = _Job(model, common, decoder, root, cls, max_size_training_like)
    rows: list[dict] = []
    if "gradiend" in methods:
        rows.append(job.gradiend(args))
    if {"actiend", "caa"} & set(methods):
        act_args = dataclasses.replace(
            args,
            learning_rate=actiend_learning_rate,
            params=None,
            pre_prune_config=None,
            signal=Signal.activation(scale="running_rms"),
        )  # the GRADIEND's parameter selection and pre-pruning do not apply to activations
        best, tried = job.best_actiend(act_args, actiend_layers)
        if "actiend" in methods:
            rows.append(job.actiend_row(best, tried))
        if "caa" in methods:
            rows.append(job.caa(best))
    _relative_costs(rows)
    settings = {"methods": methods, "actiend_layers": list(actiend_layers),
                "max_nll_increase": max_nll_increase, "target_class": cls,
                "max_size_training_like": max_size_training_like,
                "device": "cuda" if torch.cuda.is_available() else "cpu"}  # fmt: skip
    result = MethodComparison(rows, tcs, cls, settings)
    path = result.save(root)
    logger.info("method comparison written to %s", path)
    return result


def _target(target_classes: Sequence[str], target_class: str | None) -> tuple[list[str], str]:
    """The two classes and the strengthened one (default the second), checked."""
    tcs = [str(c) for c in target_classes]
    cls = tcs[1] if target_class is None else str(target_class)
    if cls not in tcs:
        raise ValueError(f"target_class {cls!r} is not one of the target classes {tcs}")
    return tcs, cls


def _relative_costs(rows: list[dict]) -> None:
    """Each row's training time relative to GRADIEND's ``train()`` (when it ran)."""
    ref = next((r["train_seconds"] for r in rows if r["method"] == "gradiend"), None)
    for r in rows:
        t = r.get("train_seconds")
        r["train_cost_vs_gradiend"] = t / ref if ref and t is not None else None


@dataclasses.dataclass
class _Job:
    """What every method of one comparison shares: the model, data, budget and folder."""

    model: Any
    common: dict
    decoder: dict
    root: Path
    cls: str
    max_rows: int | None

    def trainer(self, run_id: str, args: TrainingArguments) -> TextPredictionTrainer:
        args = dataclasses.replace(args, experiment_dir=str(self.root))
        return TextPredictionTrainer(model=self.model, run_id=run_id, args=args, **self.common)

    def evaluate(self, trainer, row: dict, modify: Callable, folder: Path, evaluate) -> dict:
        with measured({}) as cost:
            results = evaluate()
        row["decoder_seconds"] = cost["seconds"]
        row.update(effect_row(trainer, modify, results, self.cls, self.max_rows, folder))
        row["seconds"] = row.get("train_seconds", 0.0) + cost["seconds"]
        row["peak_memory_mb"] = max(row.get("peak_memory_mb", 0.0), cost["peak_memory_mb"])
        row["memory_kind"] = cost["memory_kind"]
        return row

    def gradiend(self, args: TrainingArguments) -> dict:
        trainer = self.trainer("gradiend", args)
        with measured({}) as cost:
            trainer.train()
        row = {"method": "gradiend", "signal": "gradient", "sites": "parameters",
               "train_seconds": cost["seconds"], "peak_memory_mb": cost["peak_memory_mb"],
               "run_dir": str(trainer.run_dir), **convergence_row(trainer, "gradiend"),
               **encoder_row(trainer)}  # fmt: skip
        return self.trained(trainer, row)

    def trained(self, trainer, row: dict) -> dict:
        """A trained method's decoder row (allowed unconverged: ``row`` records convergence)."""
        folder = trainer.run_dir / f"{self.cls}_modified"
        modify = lambda results, c: trainer.modify_model(results, c, allow_unconverged=True)  # noqa: E731
        return self.evaluate(trainer, row, modify, folder, lambda: trainer.evaluate_decoder(
            **self.decoder, allow_unconverged=True))  # fmt: skip

    def best_actiend(self, args: TrainingArguments, layers: Sequence[int]):
        """The ACTIEND of the layer with the highest validation |r| (each layer trained)."""
        tried = []
        for layer in layers:
            layer_args = dataclasses.replace(args, signal_scope=SignalScope.layer(int(layer)))
            trainer = self.trainer(f"actiend_layer_{layer}", layer_args)
            with measured({}) as cost:
                trainer.train()
            tried.append((validation_r(trainer), layer, trainer, cost))
            logger.info("ACTIEND layer %s: validation |r| %.4f", layer, tried[-1][0])
        best = max(tried, key=lambda t: -1.0 if math.isnan(t[0]) else t[0])
        return best, [(layer, r) for r, layer, _, _ in tried]

    def actiend_row(self, best, tried) -> dict:
        r, layer, trainer, cost = best
        row = {"method": "actiend", "signal": "activation (prediction position)",
               "sites": ", ".join(trainer.get_model().param_map.sites),
               "train_seconds": cost["seconds"], "peak_memory_mb": cost["peak_memory_mb"],
               "validation_abs_r_by_layer": {str(k): v for k, v in tried},
               "run_dir": str(trainer.run_dir), **convergence_row(trainer, "actiend"),
               **encoder_row(trainer)}  # fmt: skip
        return self.trained(trainer, row)

    def caa(self, best) -> dict:
        _, _, trainer, _ = best
        mwg = trainer.get_model()
        with measured({}) as cost:
            caa = caa_model(mwg, trainer.table.split("train"))
        layout = RunLayout.from_args(trainer.run_dir, CAA_RUN, None)
        evaluation = dataclasses.replace(trainer._evaluation(), get_model=lambda: caa,
                                         layout=layout)  # fmt: skip
        row = {"method": "caa", "signal": "class-mean difference", "sites": ", ".join(
               mwg.param_map.sites), "encoder_test_abs_r": math.nan,
               "encoder_neutral_mean": math.nan, "train_seconds": cost["seconds"],
               "peak_memory_mb": cost["peak_memory_mb"], "run_dir": str(layout.run_dir),
               "converged": True, "convergence": "no training (class means)"}  # fmt: skip
        folder = layout.run_dir / f"{self.cls}_modified"
        modify = lambda results, c: caa.modify_model(results, c)  # noqa: E731
        return self.evaluate(trainer, row, modify, folder,
                             lambda: evaluation.evaluate_decoder(**self.decoder))  # fmt: skip
