"""``trainer.evaluate_bias``: a model's bias-suite scores (``gradiend.evaluator.bias``), beside
the base model's with their before/after comparison, saved in the run folder.

The base model's scores are cached per settings key (``RunLayout.bias_cache``), so comparing
several rewrites scores the base model once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from gradiend._io import read_json, write_json
from gradiend.evaluator.bias import SUITES, BiasConfig, compare_bias, evaluate_bias, load_suites
from gradiend.lm.loading import BaseLM
from gradiend.model.hub import is_repo_id
from gradiend.run_layout import RunLayout

logger = logging.getLogger(__name__)

AUTO = "auto"  # against: the base model when a model is given, nothing otherwise
BASE = "base"


@dataclasses.dataclass
class BiasJob:
    """What one ``evaluate_bias`` call scores: ``model`` (``None``: the base model) and
    ``against`` (``None``, ``"base"``, or a model or path of its own), with the suites' config."""

    config: BiasConfig
    model: Any = None
    against: Any = None


def check_source(source: Any, what: str) -> None:
    """A model to score: ``None``/``"base"``, a loaded model, an existing path or a hub id."""
    if source is None or isinstance(source, (nn.Module, BaseLM, tuple)):
        return
    if not isinstance(source, (str, Path)):
        raise TypeError(
            f"{what}: expected a model folder, a .gguf file, a hub id or a loaded model, got "
            f"{type(source).__name__}"
        )
    text = str(source)
    if text == BASE or Path(text).exists() or (is_repo_id(text) and not text.startswith(".")):
        return
    raise FileNotFoundError(
        f"{what}: no model at {text}; pass an existing folder (e.g. the output_dir of "
        "rewrite_base_model), a .gguf file, a hub id, or a loaded model"
    )


def make_job(model: Any, against: Any, suites: Any, kwargs: dict) -> BiasJob:
    """The checked job: suites, settings and model sources are refused before any work."""
    cfg = kwargs.pop("config", None)
    if cfg is not None and kwargs:
        raise TypeError(
            f"pass either config= or BiasConfig keywords, not both (got {sorted(kwargs)})"
        )
    cfg = cfg or BiasConfig(suites=suites, **kwargs)
    if model == BASE:
        model = None
    if against == AUTO:
        against = None if model is None else BASE
    check_source(model, "model")
    check_source(against, "against")
    if model is None and against == BASE:
        raise ValueError(
            "model and against are both the base model: pass model=<a rewritten model or its "
            "folder>, or against=None to score the base model alone"
        )
    return BiasJob(cfg, model, against)


def label_of(source: Any, base: BaseLM | None = None) -> str:
    """How a scored model is named in the results."""
    if source is None or source == BASE:
        return f"base ({base.source})" if base is not None and base.source else "base"
    if isinstance(source, (str, Path)):
        return str(source)
    module = source[0] if isinstance(source, tuple) else source
    module = module.model if isinstance(module, BaseLM) else module
    return getattr(getattr(module, "config", None), "_name_or_path", "") or type(module).__name__


def settings_key(lm: BaseLM, cfg: BiasConfig) -> str:
    """A hash of the model's fingerprint and every setting (data included) of the scores."""
    blob = json.dumps({"model": lm.fingerprint, "config": dataclasses.asdict(cfg)},
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def scores_of(lm: BaseLM, cfg: BiasConfig, layout: RunLayout | None, use_cache: bool) -> dict:
    """``evaluate_bias`` of ``lm``, read from (and written to) the run's bias cache."""
    path = layout.bias_cache(settings_key(lm, cfg)) if layout is not None and use_cache else None
    if path is not None and path.is_file():
        logger.info("bias scores of %s from the cache %s", lm.source, path)
        return read_json(path)
    result = evaluate_bias(lm.model, lm.tokenizer, config=cfg)
    if path is not None:
        write_json(path, result)
    return result


def bias_result(
    model: BaseLM,
    cfg: BiasConfig,
    labels: tuple[str, str | None],
    against: BaseLM | None = None,
    against_scores: dict | None = None,
) -> dict:
    """``{model, against, scores, against_scores, comparison}``: the model's scores and, with
    ``against`` (or its scores given), the other model's and ``compare_bias(against, model)``."""
    t0 = time.perf_counter()
    scores = evaluate_bias(model.model, model.tokenizer, config=cfg)
    if against_scores is None and against is not None:
        against_scores = evaluate_bias(against.model, against.tokenizer, config=cfg)
    comparison = compare_bias(against_scores, scores) if against_scores is not None else None
    return {
        "model": labels[0],
        "against": labels[1] if against_scores is not None else None,
        "scores": scores,
        "against_scores": against_scores,
        "comparison": comparison,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def run_job(
    job: BiasJob,
    base: Callable[[], BaseLM],
    load: Callable[..., BaseLM],
    layout: RunLayout,
    use_cache: bool,
) -> dict:
    """Score the job's models (the base model through ``base``, others through ``load``) and
    save the result in ``layout.bias_results`` (atomically)."""
    load_suites(job.config)  # missing data or SEAT word sets fail before a model loads
    t0 = time.perf_counter()

    def lm_of(source: Any) -> BaseLM:
        if source is None or source == BASE:
            return base()
        if isinstance(source, nn.Module):
            return load((source, base().tokenizer))
        return load(source)

    lm = lm_of(job.model)
    if job.against is None:
        labels, other = (label_of(job.model, base() if job.model is None else None), None), None
        result = bias_result(lm, job.config, labels)
    else:
        ref = lm_of(job.against)
        cached = isinstance(job.against, str) and job.against == BASE
        other = scores_of(ref, job.config, layout, use_cache) if cached else None
        labels = (label_of(job.model), label_of(job.against, ref if cached else None))
        result = bias_result(lm, job.config, labels, against=ref, against_scores=other)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(layout.bias_results, result)
    logger.info("bias results written to %s (%.1f s)", layout.bias_results, result["seconds"])
    return result


def evaluate_bias_of_trainer(
    trainer: Any,
    model: Any = None,
    suites: Any = SUITES,
    against: Any = AUTO,
    use_cache: bool | None = None,
    **kwargs: Any,
) -> dict:
    """Score ``model`` (default: the base model; a folder such as a rewrite's ``output_dir``, a
    hub id or a loaded model) on the bias suites (``gradiend.evaluator.bias``: CrowS-Pairs,
    StereoSet, WinoBias, SEAT, each score with a bootstrap 95 % interval). With ``against=
    "base"`` (the default when ``model`` is given; or another model) the other model is scored
    too and ``comparison`` holds ``compare_bias(against, model)``. Saved in
    ``<run>/bias_results.json``; keywords are ``BiasConfig`` fields (``max_items=``, ``data=``,
    ``bootstrap=``, ...). Bad suites, settings or paths are refused before any model loads."""
    job = make_job(model, against, suites, dict(kwargs))
    cache = bool(trainer.args.use_cache) if use_cache is None else use_cache
    placement = trainer.args.placement()
    return run_job(job, trainer._base, placement.load, trainer.layout, cache)
