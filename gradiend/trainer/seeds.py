"""Multi-seed training on one shared gradient cache; the best convergent seed wins.

Seeds ``seed, seed+1, …`` run one after another until ``min_convergent_seeds`` converged (at
most ``max_seeds``). Each is oriented so that ``decoder(+1)`` strengthens ``target_classes[0]``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError

from gradiend._io import read_json_cache, write_json
from gradiend.distributed import DistributedError
from gradiend.evaluator.encoder import ConvergenceRule
from gradiend.evaluator.encoder_components import component_record
from gradiend.model.gradiend import GradiendModel
from gradiend.run_layout import TRAINING, RunLayout
from gradiend.trainer.callbacks import CallbackError
from gradiend.trainer.collapse import CollapseMonitor
from gradiend.trainer.fingerprint import diff_fingerprint
from gradiend.trainer.loop import Architecture, LoopConfig, SeedPlan, orient_stats, train_loop
from gradiend.trainer.optim import decoder_rate, split_norms
from gradiend.trainer.post_prune import post_prune
from gradiend.trainer.remedy import Attempt, RemedyPlan, RemedyRun, Variant, advice, status
from gradiend.trainer.seed_arguments import SeedAnalysis
from gradiend.trainer.seed_stability import finish_seeds
from gradiend.trainer.supervised import LoopVariant

if TYPE_CHECKING:
    from gradiend.trainer.arguments import PostPruneConfig
    from gradiend.trainer.run_hooks import RunHooks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedJob:
    """Everything the seed runs read: the loop, the seed plan, the convergence rule, the
    post-pruning, where seeds are saved and where the GRADIEND lives."""

    loop: LoopConfig
    plan: SeedPlan
    convergence: ConvergenceRule
    architecture: Architecture
    layout: RunLayout
    target_classes: tuple[str, ...]
    device: torch.device
    post_prune: PostPruneConfig | None = None
    use_cache: bool | str = False
    training_args: dict | None = None  # recorded in training.json
    neutral_scale: torch.Tensor | None = None  # the snr ranking's F (None: decoder-fit)
    progress: bool = True
    remedy: RemedyPlan = RemedyPlan()  # collapse detection and the automatic remedies
    analysis: SeedAnalysis | None = None  # stability, saved seeds, no early stop (seed_stability)
    hooks: RunHooks | None = None  # callbacks and periodic checkpoints (trainer.run_hooks)
    variant: LoopVariant | None = None  # criterion, evaluate_fn, baselines (trainer.supervised)


def train_one_seed(job: SeedJob, pmap, indices, batches, evaluate, meta, seed, key=None):
    """Train, keep the best step, orient; return the model and its record (``key``: the
    attempt's fingerprint, under which its checkpoints are written and resumed)."""
    model = job.architecture.build(pmap, indices, meta, seed).to(job.device)
    loop = job.loop
    steps = loop.steps(len(batches))
    rule = job.remedy.rule
    monitor = CollapseMonitor(rule, job.target_classes) if rule.patience > 0 else None
    hooks = job.hooks.for_seed(seed, key, loop.learning_rate) if job.hooks else None
    lr_dec = decoder_rate(loop.learning_rate_decoder, loop.learning_rate, batches, steps)
    fit = train_loop if job.variant is None else job.variant.fit
    res = fit(
        model, batches, evaluate, steps=steps, eval_steps=loop.eval_steps,
        learning_rate=loop.learning_rate, weight_decay=loop.weight_decay,
        adam_epsilon=loop.adam_epsilon, optim=loop.optim,
        gradiend_batch_size=loop.gradiend_batch_size, seed=seed, progress=job.progress,
        monitor=monitor, learning_rate_decoder=lr_dec, hooks=hooks,
        best_by="loss" if job.convergence.metric == "loss" else "correlation",
    )  # fmt: skip
    flipped = res.best["correlation"] < 0
    evals, best = res.evals, res.best
    if flipped:
        model.flip_sign()
        evals = [orient_stats(e) for e in evals]
        best = orient_stats(best)
    model.fit_importance(batches)  # the decoder-fit ranking (after orientation)
    model.set_neutral_scale(job.neutral_scale)  # the snr ranking
    converged = job.convergence.is_convergent(best, res.best_step, list(job.target_classes))
    record = {
        "seed": seed,
        "best_step": res.best_step,
        "correlation": best["correlation"],
        "mean_by_class": best["mean_by_class"],
        "converged": converged,
        "flipped": flipped,
        "steps": steps,
        "seconds": res.seconds,
        "collapse": res.collapse,
        "source": meta.get("source"),
        "learning_rate": loop.learning_rate,
        "learning_rate_decoder": lr_dec,
    }
    if best.get("components"):  # a split GRADIEND: each component's verdict
        record["components"] = component_record(
            best, job.convergence, res.best_step, job.target_classes
        )
    if res.collapse is not None:
        logger.warning(
            "seed %d collapsed at step %d of %d: %s; stopped early",
            seed, res.collapse["step"], steps, res.collapse["reason"],
        )  # fmt: skip
    losses, norms = split_norms(res.losses)  # per-step encoder/decoder gradient norms
    stats = {"evals": evals, "losses": losses, "best_step": res.best_step, "best": best, **norms}
    if hooks is not None:
        hooks.seed_end(record, stats)
    return model, record, stats


def run_seeds(
    job: SeedJob,
    pmap,
    indices,
    batches,
    evaluate,
    meta,
    fingerprint,
    variant: Variant | None = None,
):
    """Run the seeds, post-prune the winner and return ``(model, training stats)``.

    A seed that raises (e.g. diverges into an error) is recorded as failed and the next seed
    runs; only when every seed failed is the last error re-raised. A seed that collapses is
    stopped early and, with ``job.remedy.enabled``, retried with the remedies of
    ``trainer.remedy`` (``variant(source)``: the batches and validation callback of another
    source; ``None``: only the learning-rate remedy).
    """
    t0 = time.perf_counter()
    base = Attempt(meta.get("source", "alternative"), job.loop.learning_rate)
    run = RemedyRun(job.remedy, base, (batches, evaluate), variant)
    records, best, inputs = _try_seeds(job, pmap, indices, run, meta, fingerprint)
    plan = job.plan
    n_conv = sum(r["converged"] for r in records)
    stability = None
    if plan.max_seeds > 1:
        write_json(job.layout.seed_report, _report(job, records, best[1], n_conv))
        stability = finish_seeds(job.analysis, job.layout, best[1]["seed"])
    _check_count(job, records, run, n_conv)
    model, record, stats = best
    if job.post_prune is not None:
        cfg = job.post_prune
        stats["post_prune"] = post_prune(
            model, cfg, inputs[0], inputs[1], refit=cfg.refit_encoder, before=stats["best"]
        )
    stats.update(_summary(job, record, n_conv, run, stability))
    stats.update(seeds=records, cache_fingerprint=fingerprint)
    stats["timings"] = {"seeds": time.perf_counter() - t0}
    if status(record) != "converged":
        stats["advice"] = advice(records, job.remedy, run.tried)
    return model, stats


def _summary(job: SeedJob, record: dict, n_conv: int, run: RemedyRun, stability) -> dict:
    """The selected seed's part of ``training.json``: its checkpoint, convergence and remedies."""
    rule = job.convergence
    return {
        "best_score_checkpoint": {
            "correlation": record["correlation"],
            "global_step": record["best_step"],
        },
        "convergence_info": {
            "converged": record["converged"],
            "convergent_count": n_conv,
            "min_convergent_seeds": job.plan.min_convergent_seeds,
            "convergence_metric": rule.metric,
            "threshold": rule.score_threshold,
            **({"components": record["components"]} if "components" in record else {}),
        },
        "convergence_status": status(record),
        "collapse": record.get("collapse"),
        "remedies": run.summary(),
        "seed": record["seed"],
        "seed_stability": stability,
        "training_args": job.training_args,
    }


def _check_count(job: SeedJob, records: list[dict], run: RemedyRun, n_conv: int) -> None:
    """Warn (or raise, with ``fail_on_non_convergence``) when too few seeds converged, with
    the advice that fits what the attempts showed (``trainer.remedy.advice``)."""
    plan, rule = job.plan, job.convergence
    if n_conv >= plan.min_convergent_seeds:
        return
    extra = f" (including {len(run.tried)} remedy attempt(s))" if run.tried else ""
    msg = (
        f"{n_conv} of {len(records)} seed(s){extra} converged, {plan.min_convergent_seeds} "
        f"required ({rule.describe()}); {advice(records, job.remedy, run.tried)}"
    )
    if plan.fail_on_non_convergence:
        raise RuntimeError(msg)
    logger.warning(msg)


def _try_seeds(job: SeedJob, pmap, indices, run: RemedyRun, meta, fingerprint):
    """``(records, best, inputs)``: the seeds' attempts in order until enough converged;
    ``best`` is ``(model, record, stats)`` of the winner (an error when every attempt failed)
    and ``inputs`` its ``(batches, evaluate)``."""
    records, best, error = [], None, None
    for seed in job.plan.seeds():
        for attempt in run.attempts(seed):
            try:
                inputs = run.inputs(attempt)
                model, record, stats = _seed_run(
                    job, pmap, indices, inputs, meta, fingerprint, seed, attempt
                )
            except (DistributedError, CallbackError):
                raise  # another rank is gone, or a callback stopped the run
            except Exception as err:  # noqa: BLE001 - one failing seed must not stop the run
                logger.warning(
                    "seed %d failed (%s: %s); trying the next seed", seed, type(err).__name__, err
                )
                records.append(_failed_record(seed, err))
                run.observe(records[-1])
                error = err
                continue
            _log_seed(seed, record, attempt)
            records.append(record)
            run.observe(record)
            if best is None or _better(record, best[1]):
                best = (model, record, stats, inputs)
        run_all = job.analysis is not None and job.analysis.run_all_seeds
        if not run_all and sum(r["converged"] for r in records) >= job.plan.min_convergent_seeds:
            break
    if best is None:
        raise RuntimeError(
            f"all {len(records)} seed(s) failed; the last one with {type(error).__name__}: "
            f"{error} (its traceback follows as the cause)"
        ) from error
    return records, best[:3], best[3]


def _log_seed(seed: int, record: dict, attempt: Attempt) -> None:
    how = f" with {attempt.remedy}" if attempt.remedy else ""
    logger.info(
        "seed %d%s: correlation %.3f at step %d, converged=%s",
        seed, how, record["correlation"], record["best_step"], record["converged"],
    )  # fmt: skip
    for name, comp in record.get("components", {}).items():
        logger.info(
            "seed %d component %s: correlation %.3f, class means %s, converged=%s",
            seed, name, comp["correlation"], comp["mean_by_class"], comp["converged"],
        )  # fmt: skip


def _seed_run(job: SeedJob, pmap, indices, inputs, meta, fingerprint, seed, attempt: Attempt):
    """One attempt of a seed: reuse its finished run when cached, else train it (and save it).
    A remedy attempt trains with its source and learning rate; its fingerprint names it."""
    batches, evaluate = inputs
    seed_dir = job.layout.seed_dir(seed)
    key = {**fingerprint, "seed": seed}
    if attempt.remedy is not None:
        key["remedy"] = attempt.record()
        loop = dataclasses.replace(job.loop, learning_rate=attempt.learning_rate)
        job, meta = dataclasses.replace(job, loop=loop), {**meta, "source": attempt.source}
    if job.use_cache:
        done = _load_seed(job, seed_dir, key, seed)
        if done is not None:
            logger.info("seed %d: reusing the finished run in %s", seed, seed_dir)
            if done[0].decoder_fit is None:
                done[0].fit_importance(batches)
            if done[0].neutral_fisher is None:
                done[0].set_neutral_scale(job.neutral_scale)
            return done
    model, record, stats = train_one_seed(job, pmap, indices, batches, evaluate, meta, seed, key)
    record["remedy"] = attempt.remedy
    if job.plan.max_seeds > 1:
        model.save_pretrained(
            seed_dir,
            extra_files={TRAINING: {**stats, "record": record, "cache_fingerprint": key}},
        )
    return model, record, stats


def _failed_record(seed: int, err: Exception) -> dict:
    return {
        "seed": seed,
        "best_step": 0,
        "correlation": None,
        "mean_by_class": {},
        "converged": False,
        "failed": True,
        "error": f"{type(err).__name__}: {err}",
    }


def _report(job: SeedJob, records: list[dict], best: dict, n_conv: int) -> dict:
    """``seeds/seed_report.json``: every tried seed, the winner and the criterion."""
    plan, rule = job.plan, job.convergence
    return {
        "seeds": records,
        "tried": [r["seed"] for r in records],
        "best_seed": best["seed"],
        "best_correlation": best["correlation"],
        "convergent_count": n_conv,
        "convergent_seeds": [r["seed"] for r in records if r["converged"]],
        "failed_seeds": [r["seed"] for r in records if r.get("failed")],
        "max_seeds": plan.max_seeds,
        "min_convergent_seeds": plan.min_convergent_seeds,
        "convergence_metric": rule.metric,
        "threshold": rule.score_threshold,
        "mean_by_class_threshold": rule.mean_threshold,
        "selection": "converged first, then the largest |validation correlation|",
    }


def _better(a: dict, b: dict) -> bool:
    if a["converged"] != b["converged"]:
        return a["converged"]
    return abs(a["correlation"]) > abs(b["correlation"])


def _load_seed(job: SeedJob, seed_dir, key, seed):
    stats = read_json_cache(seed_dir / TRAINING)
    if stats is None:
        return None
    differ = diff_fingerprint(stats.get("cache_fingerprint"), key)
    if differ:
        logger.info("seed %d: cached run in %s not used: %s differ(s)", seed, seed_dir, differ)
        return None
    try:
        record = stats.pop("record")
        return GradiendModel.from_pretrained(seed_dir, device=job.device), record, stats
    except (KeyError, OSError, ValueError, SafetensorError) as err:
        logger.warning(
            "seed %d: cached run in %s is unreadable (%s); retraining", seed, seed_dir, err
        )
        return None
