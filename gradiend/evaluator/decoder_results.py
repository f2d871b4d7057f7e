"""The decoder results files: one per evaluation (by a hash of its settings) and the run's
``decoder_results.json`` with the latest entry per class and an index of every evaluation.

A later ``evaluate_decoder`` with other settings writes its own file and never loses an earlier
one; the rewrite and older readers read ``decoder_results.json`` as before (a run folder written
before the index existed has only that file, and still reads).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from gradiend._io import read_json_cache, write_json
from gradiend.run_layout import RunLayout

logger = logging.getLogger(__name__)


def decoder_settings(cfg: Any, classes, strengthen, mode, selector, pre, task) -> dict:
    """What an evaluation's results depend on, beyond the run: its settings key hashes it, so
    a later call with other settings gets its own results file."""
    return {
        "classes": list(classes),
        "strengthen": bool(strengthen),
        "mode": mode,
        "lrs": list(cfg.lrs) if cfg.lrs else None,
        "feature_factors": list(cfg.feature_factors) if cfg.feature_factors else None,
        "max_size_training_like": cfg.max_size_training_like,
        "max_size_neutral": cfg.max_size_neutral,
        "part": cfg.part,
        "max_nll_increase": cfg.max_nll_increase,
        "selector": _describe_selector(selector),
        "precondition": None if pre is None else {k: pre[k] for k in ("method", "damping")},
        "heldout": None if cfg.heldout is None else dataclasses.asdict(cfg.heldout),
        "control_pairs": [[a, b] for a, b, _ in task.control_pairs],
        "search_config": dataclasses.asdict(cfg.search_config),
    }


def _describe_selector(selector: Any) -> str:
    """A selector's stable name (a policy's repr; a function's qualified name)."""
    if hasattr(selector, "__qualname__"):
        return f"{getattr(selector, '__module__', '')}.{selector.__qualname__}"
    return repr(selector)


def save_results(layout: RunLayout, results: dict, settings: dict | None = None) -> None:
    """Write ``results`` to its own file (``RunLayout.decoder_evaluation(settings key)``) and
    merge it into the run's ``decoder_results.json``: the latest entry per class (what the
    rewrite reads; other classes' entries stay), ``latest`` (the last evaluation's key) and
    ``evaluations`` (every evaluation's settings and file, oldest first)."""
    merged = read_json_cache(layout.decoder_results) or {}
    merged.update(results)
    keys = {e.get("settings_key") for e in results.values() if isinstance(e, dict)} - {None}
    if settings is not None and len(keys) == 1:
        key = keys.pop()
        path = layout.decoder_evaluation(key)
        write_json(path, {"settings_key": key, "settings": settings, **results})
        index = merged.get("evaluations") if isinstance(merged.get("evaluations"), dict) else {}
        index.pop(key, None)  # a repeated evaluation moves to the end
        index[key] = {
            "settings": settings,
            "summaries": [k for k, v in results.items() if isinstance(v, dict) and "id" in v],
            "file": str(path.relative_to(layout.run_dir)),
        }
        merged["evaluations"], merged["latest"] = index, key
    write_json(layout.decoder_results, merged)
