"""Multi-seed training on one shared gradient cache; the best convergent seed wins.

Seeds ``seed, seed+1, …`` run one after another until ``min_convergent_seeds`` converged (at
most ``max_seeds``). Each is oriented so that ``decoder(+1)`` strengthens ``target_classes[0]``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError

from gradiend._io import read_json_cache, write_json
from gradiend.distributed import DistributedError
from gradiend.evaluator.encoder import ConvergenceRule
from gradiend.model.gradiend import GradiendModel
from gradiend.run_layout import TRAINING, RunLayout
from gradiend.trainer.fingerprint import diff_fingerprint
from gradiend.trainer.loop import Architecture, LoopConfig, SeedPlan, orient_stats, train_loop
from gradiend.trainer.post_prune import post_prune

if TYPE_CHECKING:
    from gradiend.trainer.arguments import PostPruneConfig

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


def train_one_seed(job: SeedJob, pmap, indices, batches, evaluate, meta, seed):
    """Train, keep the best step, orient; return the model and its record."""
    model = job.architecture.build(pmap, indices, meta, seed).to(job.device)
    loop = job.loop
    steps = loop.steps(len(batches))
    res = train_loop(
        model,
        batches,
        evaluate,
        steps=steps,
        eval_steps=loop.eval_steps,
        learning_rate=loop.learning_rate,
        weight_decay=loop.weight_decay,
        adam_epsilon=loop.adam_epsilon,
        optim=loop.optim,
        gradiend_batch_size=loop.gradiend_batch_size,
        seed=seed,
        progress=job.progress,
    )
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
    }
    stats = {"evals": evals, "losses": res.losses, "best_step": res.best_step, "best": best}
    return model, record, stats


def run_seeds(job: SeedJob, pmap, indices, batches, evaluate, meta, fingerprint):
    """Run the seeds, post-prune the winner and return ``(model, training stats)``.

    A seed that raises (e.g. diverges into an error) is recorded as failed and the next seed
    runs; only when every seed failed is the last error re-raised.
    """
    t0 = time.perf_counter()
    records, best = _try_seeds(job, pmap, indices, batches, evaluate, meta, fingerprint)
    plan, rule = job.plan, job.convergence
    n_conv = sum(r["converged"] for r in records)
    if plan.max_seeds > 1:
        write_json(job.layout.seed_report, _report(job, records, best[1], n_conv))
    if n_conv < plan.min_convergent_seeds:
        msg = (
            f"{n_conv} of {len(records)} seed(s) converged, {plan.min_convergent_seeds} "
            f"required (|correlation| ≥ {rule.score_threshold}, class means ≥ "
            f"{rule.mean_threshold}); try a larger learning_rate or more steps"
        )
        if plan.fail_on_non_convergence:
            raise RuntimeError(msg)
        logger.warning(msg)
    model, record, stats = best
    if job.post_prune is not None:
        cfg = job.post_prune
        stats["post_prune"] = post_prune(
            model, cfg, batches, evaluate, refit=cfg.refit_encoder, before=stats["best"]
        )
    stats.update(
        {
            "best_score_checkpoint": {
                "correlation": record["correlation"],
                "global_step": record["best_step"],
            },
            "convergence_info": {
                "converged": record["converged"],
                "convergent_count": n_conv,
                "min_convergent_seeds": plan.min_convergent_seeds,
                "convergence_metric": rule.metric,
                "threshold": rule.score_threshold,
            },
            "seed": record["seed"],
            "seeds": records,
            "training_args": job.training_args,
            "cache_fingerprint": fingerprint,
            "timings": {"seeds": time.perf_counter() - t0},
        }
    )
    return model, stats


def _try_seeds(job: SeedJob, pmap, indices, batches, evaluate, meta, fingerprint):
    """``(records, best)``: the seeds in order until enough converged; ``best`` is
    ``(model, record, stats)`` of the winner (an error when every seed failed)."""
    records, best, error = [], None, None
    for seed in job.plan.seeds():
        try:
            model, record, stats = _seed_run(
                job, pmap, indices, batches, evaluate, meta, fingerprint, seed
            )
        except DistributedError:
            raise  # another rank is gone: the next seed would fail the same way
        except Exception as err:  # noqa: BLE001 - one failing seed must not stop the run
            logger.warning(
                "seed %d failed (%s: %s); trying the next seed", seed, type(err).__name__, err
            )
            records.append(_failed_record(seed, err))
            error = err
            continue
        logger.info(
            "seed %d: correlation %.3f at step %d, converged=%s",
            seed,
            record["correlation"],
            record["best_step"],
            record["converged"],
        )
        records.append(record)
        if best is None or _better(record, best[1]):
            best = (model, record, stats)
        if sum(r["converged"] for r in records) >= job.plan.min_convergent_seeds:
            break
    if best is None:
        raise RuntimeError(
            f"all {len(records)} seed(s) failed; the last one with {type(error).__name__}: "
            f"{error} (its traceback follows as the cause)"
        ) from error
    return records, best


def _seed_run(job: SeedJob, pmap, indices, batches, evaluate, meta, fingerprint, seed):
    """One seed: reuse its finished run when cached, else train it (and save it)."""
    seed_dir = job.layout.seed_dir(seed)
    if job.use_cache:
        done = _load_seed(job, seed_dir, fingerprint, seed)
        if done is not None:
            logger.info("seed %d: reusing the finished run in %s", seed, seed_dir)
            if done[0].decoder_fit is None:
                done[0].fit_importance(batches)
            if done[0].neutral_fisher is None:
                done[0].set_neutral_scale(job.neutral_scale)
            return done
    model, record, stats = train_one_seed(job, pmap, indices, batches, evaluate, meta, seed)
    if job.plan.max_seeds > 1:
        model.save_pretrained(
            seed_dir,
            extra_files={
                TRAINING: {
                    **stats,
                    "record": record,
                    "cache_fingerprint": {**fingerprint, "seed": seed},
                }
            },
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


def _load_seed(job: SeedJob, seed_dir, fingerprint, seed):
    stats = read_json_cache(seed_dir / TRAINING)
    if stats is None:
        return None
    differ = diff_fingerprint(stats.get("cache_fingerprint"), {**fingerprint, "seed": seed})
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
