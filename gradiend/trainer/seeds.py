"""Multi-seed training on one shared gradient cache; the best convergent seed wins.

Seeds ``seed, seed+1, …`` run one after another until ``min_convergent_seeds`` converged (at
most ``max_seeds``). Each is oriented so that ``decoder(+1)`` strengthens ``target_classes[0]``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError

from gradiend._io import read_json_cache, write_json
from gradiend.distributed import DistributedError
from gradiend.evaluator.encoder import is_convergent
from gradiend.lm.devices import resolve_dtype
from gradiend.lm.params import ParamMap
from gradiend.model.gradiend import GradiendModel
from gradiend.trainer.fingerprint import diff_fingerprint
from gradiend.trainer.loop import orient_stats, train_loop
from gradiend.trainer.post_prune import post_prune

if TYPE_CHECKING:
    from gradiend.trainer.text_trainer import TextPredictionTrainer

logger = logging.getLogger(__name__)


def _new_model(args, pmap: ParamMap, indices, meta: dict, seed: int) -> GradiendModel:
    torch.manual_seed(seed)  # initialised on the CPU: the same weights on every device
    dim = pmap.numel if indices is None else len(indices)
    return GradiendModel(
        dim,
        latent_dim=args.latent_dim or 1,
        activation_encoder=args.activation_encoder or "tanh",
        activation_decoder=args.activation_decoder or "id",
        bias_decoder=True if args.bias_decoder is None else args.bias_decoder,
        torch_dtype=resolve_dtype(args.gradiend_dtype),
        param_map=pmap,
        indices=indices,
        **meta,
    )


def train_one_seed(trainer: TextPredictionTrainer, pmap, indices, batches, evaluate, meta, seed):
    """Train, keep the best step, orient; return the model and its record."""
    args = trainer.args
    model = _new_model(args, pmap, indices, meta, seed).to(trainer.gradiend_device)
    steps = args.max_steps if args.max_steps > 0 else args.num_train_epochs * len(batches)
    res = train_loop(
        model,
        batches,
        evaluate,
        steps=steps,
        eval_steps=args.eval_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        adam_epsilon=args.adam_epsilon,
        optim=args.optim,
        gradiend_batch_size=args.gradiend_batch_size or 1,
        seed=seed,
        progress=trainer.progress,
    )
    flipped = res.best["correlation"] < 0
    evals, best = res.evals, res.best
    if flipped:
        model.flip_sign()
        evals = [orient_stats(e) for e in evals]
        best = orient_stats(best)
    model.fit_importance(batches)  # the decoder-fit ranking (after orientation)
    model.set_neutral_scale(getattr(trainer, "_scale", None))  # the snr ranking
    converged = is_convergent(best, res.best_step, trainer.target_classes, args)
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


def run_seeds(trainer, pmap, indices, batches, evaluate, meta, fingerprint):
    """Run the seeds, post-prune the winner and return ``(model, training stats)``.

    A seed that raises (e.g. diverges into an error) is recorded as failed and the next seed
    runs; only when every seed failed is the last error re-raised.
    """
    args = trainer.args
    seeds_dir = trainer.run_dir / "seeds"
    records, best, error = [], None, None
    t0 = time.perf_counter()
    for i in range(max(1, args.max_seeds)):
        seed = args.seed + i
        try:
            model, record, stats = _seed_run(
                trainer,
                pmap,
                indices,
                batches,
                evaluate,
                meta,
                fingerprint,
                seeds_dir / f"seed_{seed}",
                seed,
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
        if sum(r["converged"] for r in records) >= args.min_convergent_seeds:
            break
    if best is None:
        raise RuntimeError(
            f"all {len(records)} seed(s) failed; the last one with {type(error).__name__}: "
            f"{error} (its traceback follows as the cause)"
        ) from error
    n_conv = sum(r["converged"] for r in records)
    if args.max_seeds > 1:
        write_json(seeds_dir / "seed_report.json", _report(args, records, best[1], n_conv))
    if n_conv < args.min_convergent_seeds:
        msg = (
            f"{n_conv} of {len(records)} seed(s) converged, {args.min_convergent_seeds} "
            f"required (|correlation| ≥ {args.score_threshold}, class means ≥ "
            f"{args.mean_threshold}); try a larger learning_rate or more steps"
        )
        if args.fail_on_non_convergence:
            raise RuntimeError(msg)
        logger.warning(msg)
    model, record, stats = best
    if args.post_prune_config is not None:
        cfg = args.post_prune_config
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
                "min_convergent_seeds": args.min_convergent_seeds,
                "convergence_metric": args.convergence_metric,
                "threshold": args.score_threshold,
            },
            "seed": record["seed"],
            "seeds": records,
            "training_args": args.to_dict(),
            "cache_fingerprint": fingerprint,
            "timings": {"seeds": time.perf_counter() - t0},
        }
    )
    return model, stats


def _seed_run(trainer, pmap, indices, batches, evaluate, meta, fingerprint, seed_dir, seed):
    """One seed: reuse its finished run when cached, else train it (and save it)."""
    args = trainer.args
    if args.use_cache:
        done = _load_seed(trainer, seed_dir, fingerprint, seed)
        if done is not None:
            logger.info("seed %d: reusing the finished run in %s", seed, seed_dir)
            if done[0].decoder_fit is None:
                done[0].fit_importance(batches)
            if done[0].neutral_fisher is None:
                done[0].set_neutral_scale(getattr(trainer, "_scale", None))
            return done
    model, record, stats = train_one_seed(trainer, pmap, indices, batches, evaluate, meta, seed)
    if args.max_seeds > 1:
        model.save_pretrained(
            seed_dir,
            extra_files={
                "training.json": {
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


def _report(args, records: list[dict], best: dict, n_conv: int) -> dict:
    """``seeds/seed_report.json``: every tried seed, the winner and the criterion."""
    return {
        "seeds": records,
        "tried": [r["seed"] for r in records],
        "best_seed": best["seed"],
        "best_correlation": best["correlation"],
        "convergent_count": n_conv,
        "convergent_seeds": [r["seed"] for r in records if r["converged"]],
        "failed_seeds": [r["seed"] for r in records if r.get("failed")],
        "max_seeds": args.max_seeds,
        "min_convergent_seeds": args.min_convergent_seeds,
        "convergence_metric": args.convergence_metric,
        "threshold": args.score_threshold,
        "mean_by_class_threshold": args.mean_threshold,
        "selection": "converged first, then the largest |validation correlation|",
    }


def _better(a: dict, b: dict) -> bool:
    if a["converged"] != b["converged"]:
        return a["converged"]
    return abs(a["correlation"]) > abs(b["correlation"])


def _load_seed(trainer, seed_dir, fingerprint, seed):
    stats = read_json_cache(seed_dir / "training.json")
    if stats is None:
        return None
    differ = diff_fingerprint(stats.get("cache_fingerprint"), {**fingerprint, "seed": seed})
    if differ:
        logger.info("seed %d: cached run in %s not used: %s differ(s)", seed, seed_dir, differ)
        return None
    try:
        record = stats.pop("record")
        return (
            GradiendModel.from_pretrained(seed_dir, device=trainer.gradiend_device),
            record,
            stats,
        )
    except (KeyError, OSError, ValueError, SafetensorError) as err:
        logger.warning(
            "seed %d: cached run in %s is unreadable (%s); retraining", seed, seed_dir, err
        )
        return None
