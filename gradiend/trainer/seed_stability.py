"""After the seeds: how stable their important dimensions are, and which seed folders keep
their weights.

``stability_summary`` compares the top-k sets of several seeds pair by pair (|A∩B|,
|A∪B|, |A∩B| / min(|A|, |B|), Jaccard) and counts how many dimensions are in exactly k of the
n sets (presence). ``finish_seeds`` runs it on the saved convergent seeds of a run (when
``SeedAnalysis.stability`` and at least two converged), writes ``seeds/seed_stability.json``
and then applies ``saved_seed_runs``: ``all_convergent`` removes the weights of the seeds that
did not converge, ``best_only`` of every seed but the selected one, ``all_tried`` keeps all.
A seed whose weights are removed keeps its ``training.json`` (its record stays readable).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Mapping

import numpy as np

from gradiend._io import read_json_cache, write_json
from gradiend.evaluator.compare import topk_sets
from gradiend.run_layout import (
    MODEL_IMPORTANCE,
    MODEL_INDICES,
    MODEL_WEIGHTS,
    SEED_PREFIX,
    TRAINING,
    RunLayout,
)
from gradiend.trainer.seed_arguments import SeedAnalysis

logger = logging.getLogger(__name__)

__all__ = ["finish_seeds", "saved_seeds", "stability_summary"]


def stability_summary(sets: Mapping[str, set[int]]) -> dict:
    """Pairwise overlaps and presence counts of the seeds' top-k sets (label → indices)."""
    labels = list(sets)
    pairs = []
    for a, b in itertools.combinations(labels, 2):
        inter, union = len(sets[a] & sets[b]), len(sets[a] | sets[b])
        small = min(len(sets[a]), len(sets[b]))
        pairs.append(
            {
                "a": a,
                "b": b,
                "intersection": inter,
                "union": union,
                "intersection_frac": inter / small if small else float("nan"),
                "jaccard": inter / union if union else float("nan"),
            }
        )
    counts = Counter(dim for s in sets.values() for dim in s)
    presence = Counter(counts.values())
    n, total = len(labels), len(counts)
    return {
        "seeds": labels,
        "set_sizes": {label: len(s) for label, s in sets.items()},
        "pairs": pairs,
        "mean_intersection_frac": _mean(p["intersection_frac"] for p in pairs),
        "mean_jaccard": _mean(p["jaccard"] for p in pairs),
        "union_size": total,
        "in_all_seeds": presence.get(n, 0),
        "presence_counts": {str(k): presence.get(k, 0) for k in range(1, n + 1)},
        "presence_fractions": {
            str(k): presence.get(k, 0) / total if total else 0.0 for k in range(1, n + 1)
        },
    }


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def saved_seeds(layout: RunLayout) -> dict[int, dict]:
    """Seed → its saved record (``training.json``'s ``record``) for every seed folder that
    still holds a GRADIEND, in seed order."""
    found = {}
    for folder in layout.seed_runs():
        stats = read_json_cache(folder / TRAINING) or {}
        record = stats.get("record") or {}
        seed = record.get("seed")
        if seed is None:  # a folder saved without a record: its name says the seed
            seed = int(folder.name.removeprefix(SEED_PREFIX))
        found[int(seed)] = record
    return dict(sorted(found.items()))


def finish_seeds(analysis: SeedAnalysis | None, layout: RunLayout, best_seed: int) -> dict | None:
    """The stability summary (written to ``seeds/seed_stability.json``; ``None`` when it is
    not asked for or fewer than two seeds converged), then the ``saved_seed_runs`` policy."""
    if analysis is None:
        return None
    seeds = saved_seeds(layout)
    summary = None
    convergent = [s for s, r in seeds.items() if r.get("converged")]
    if analysis.stability and len(convergent) >= 2:
        runs = {f"{SEED_PREFIX}{s}": layout.seed_dir(s) for s in convergent}
        sets = topk_sets(runs, analysis.topk, analysis.part)
        summary = {"topk": analysis.topk, "part": analysis.part, **stability_summary(sets)}
        write_json(layout.seed_stability, summary)
        logger.info(
            "seed stability of %d convergent seeds: mean top-%s overlap %.3f (written to %s)",
            len(convergent), analysis.topk, summary["mean_intersection_frac"],
            layout.seed_stability,
        )  # fmt: skip
    elif analysis.stability:
        logger.info(
            "seed stability not computed: %d convergent seed(s) saved, 2 needed", len(convergent)
        )
    _retain(analysis.saved_seed_runs, layout, seeds, best_seed)
    return summary


def _retain(policy: str, layout: RunLayout, seeds: dict[int, dict], best_seed: int) -> None:
    """Remove the weights of the seeds ``policy`` does not keep (their records stay)."""
    if policy == "all_tried":
        return
    for seed, record in seeds.items():
        keep = seed == best_seed or (policy == "all_convergent" and record.get("converged"))
        if keep:
            continue
        folder = layout.seed_dir(seed)
        for name in (MODEL_WEIGHTS, MODEL_IMPORTANCE, MODEL_INDICES):
            (folder / name).unlink(missing_ok=True)
        logger.info("saved_seed_runs=%r: removed the weights of seed %d", policy, seed)
