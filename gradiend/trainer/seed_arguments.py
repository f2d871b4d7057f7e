"""The multi-seed analysis fields of ``TrainingArguments`` (gradiend 0.2.3's names).

``SeedAnalysisArguments`` is a base dataclass of ``TrainingArguments``. Its fields decide
which seeds run (``analyze_seed_stability`` runs every one of ``max_seeds``), where they are
saved (``seed_runs_dir``), which seed folders keep their weights (``saved_seed_runs``), the
top-k stability summary written after training (``seed_stability_topk``/``_part``,
``trainer.seed_stability``) and how ``trainer.multi_seed(selection="best")`` picks its seed
(``seed_selection_eval_max_size``). ``SeedAnalysis`` is the frozen slice ``trainer.seeds``
reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gradiend.model.importance import PARTS

logger = logging.getLogger(__name__)

__all__ = [
    "RESPLIT_STRATEGIES",
    "SAVED_SEED_RUNS",
    "SeedAnalysis",
    "SeedAnalysisArguments",
    "NOT_FINGERPRINTED",
    "check_seed_analysis",
]

SAVED_SEED_RUNS = ("all_tried", "all_convergent", "best_only")
RESPLIT_STRATEGIES = ("random", "balanced_cycle")
# fields that never change a seed's GRADIEND (trainer.fingerprint ignores them)
NOT_FINGERPRINTED = (
    "seed_stability_topk",
    "seed_stability_part",
    "saved_seed_runs",
    "seed_runs_dir",
    "seed_selection_eval_max_size",
    "split_resplit_per_seed",
    "split_resplit_strategy",
)


@dataclass(frozen=True)
class SeedAnalysis:
    """What the seed runs do beyond training (``TrainingArguments.seed_analysis()``)."""

    run_all_seeds: bool = False  # analyze_seed_stability: no early stop
    stability: bool = False  # write the top-k stability summary (≥ 2 convergent seeds)
    topk: int | float = 1000
    part: str = "decoder-weight"
    saved_seed_runs: str = "all_tried"


@dataclass
class SeedAnalysisArguments:
    """Multi-seed analysis (docs/training.md "Multi-seed analysis").

    Attributes:
        analyze_seed_stability: Train every one of `max_seeds` seeds (no stop at
            `min_convergent_seeds`) so `trainer.multi_seed()` aggregates them, and write the
            top-k stability of the convergent seeds to `seeds/seed_stability.json`.
        seed_stability_topk: Top-k dimensions per seed in that summary (count or fraction).
        seed_stability_part: Importance the top-k ranks by (default `"decoder-weight"`).
        saved_seed_runs: Which seed folders keep their weights after training: `"all_tried"`
            (default here), `"all_convergent"` (0.2.3's default) or `"best_only"`.
        seed_runs_dir: Folder of the seed runs (default `<run>/seeds`).
        seed_selection_eval_max_size: Rows per class of the fresh validation encoding that
            `multi_seed(selection="best")` ranks the convergent seeds by (default: the seed
            training chose, by its recorded validation correlation).
        split_resplit_per_seed: Draw a new random split per seed. Refused here: every seed
            trains on one gradient cache of one split (see the error for the alternative).
        split_resplit_strategy: `"random"` or `"balanced_cycle"` (with the field above).
    """

    analyze_seed_stability: bool = False
    seed_stability_topk: int | float = 1000
    seed_stability_part: str = "decoder-weight"
    saved_seed_runs: str = "all_tried"
    seed_runs_dir: str | None = None
    seed_selection_eval_max_size: int | None = None
    split_resplit_per_seed: bool = False
    split_resplit_strategy: str = "random"

    def seed_analysis(self) -> SeedAnalysis:
        """The slice the seed runs read (``trainer.seeds.SeedJob.analysis``)."""
        many = getattr(self, "min_convergent_seeds", 1) > 1
        return SeedAnalysis(
            run_all_seeds=self.analyze_seed_stability,
            stability=self.analyze_seed_stability or many,
            topk=self.seed_stability_topk,
            part=self.seed_stability_part,
            saved_seed_runs=self.saved_seed_runs,
        )


def check_seed_analysis(args: Any) -> None:
    """Refuse bad values of the multi-seed fields, naming the field and the fix."""
    for name in ("analyze_seed_stability", "split_resplit_per_seed"):
        if not isinstance(getattr(args, name), bool):
            raise TypeError(f"{name} must be True or False, got {getattr(args, name)!r}")
    _choice("saved_seed_runs", args.saved_seed_runs, SAVED_SEED_RUNS)
    _choice("split_resplit_strategy", args.split_resplit_strategy, RESPLIT_STRATEGIES)
    _choice("seed_stability_part", args.seed_stability_part, PARTS)
    topk = args.seed_stability_topk
    ok_int = isinstance(topk, int) and not isinstance(topk, bool) and topk >= 1
    ok_frac = isinstance(topk, float) and 0.0 < topk <= 1.0
    if not (ok_int or ok_frac):
        raise ValueError(
            f"seed_stability_topk must be a count ≥ 1 or a fraction in (0, 1], got {topk!r}"
        )
    size = args.seed_selection_eval_max_size
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"seed_selection_eval_max_size must be an int ≥ 1 or None, got {size!r}")
    if args.seed_runs_dir is not None and not isinstance(args.seed_runs_dir, (str, bytes)):
        if not hasattr(args.seed_runs_dir, "__fspath__"):
            raise TypeError(f"seed_runs_dir must be a path or None, got {args.seed_runs_dir!r}")
    if args.split_resplit_per_seed:
        raise ValueError(
            "split_resplit_per_seed=True is not supported: every seed trains on one cache of "
            "the training gradients, computed once for one split. To measure how much the "
            "split matters, train one run per split seed instead (e.g. "
            "TrainingArguments(seed=s, max_seeds=1) with run_id=f'split_{s}' for s in 0..2) "
            "and compare them with compute_similarity_matrix"
        )


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
