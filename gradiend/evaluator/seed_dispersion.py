"""The seed dispersion of a suite of runs: each run's saved seeds as one seed group.

``suite_dispersion`` compares the runs' seed groups by top-k overlap with matched seed pairing
(seed k of one run with seed k of the other, ``gradiend.evaluator.seed_groups``) and returns the
mean, the dispersion and the pair counts; ``plot_suite_dispersion_heatmap`` draws the std of
the overlap in % with its own colour scale. Runs are trainers (``TextPredictionTrainer``, a
suite's children), run folders, or lists of seed folders.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend._io import read_json_cache
from gradiend.evaluator.compare import compare
from gradiend.run_layout import FIG_SEED_DISPERSION, TRAINING, RunLayout
from gradiend.visualizer.seeds import plot_dispersion_heatmap

logger = logging.getLogger(__name__)

__all__ = ["plot_suite_dispersion_heatmap", "run_seed_group", "suite_dispersion"]


def run_seed_group(run: Any, converged_only: bool = True) -> list[Path]:
    """The saved seed folders of a run (a trainer, a run folder, or a list of seed folders,
    returned as given), in seed order; ``converged_only`` keeps the converged ones."""
    if isinstance(run, (list, tuple)):
        return [Path(p) for p in run]
    layout = getattr(run, "layout", None)
    if not isinstance(layout, RunLayout):
        if not isinstance(run, (str, os.PathLike)):
            raise TypeError(
                f"a run must be a trainer, a run folder or a list of seed folders; got "
                f"{type(run).__name__}"
            )
        layout = RunLayout.locate(run)
    folders = []
    for folder in layout.seed_runs():
        record = (read_json_cache(folder / TRAINING) or {}).get("record") or {}
        if record.get("converged") or not converged_only:
            folders.append((int(record.get("seed", 0)), folder))
    if not folders:
        what = "convergent seed folders" if converged_only else "seed folders"
        raise ValueError(
            f"run {layout.run_dir} has no saved {what}: train it with max_seeds ≥ 2 and "
            "analyze_seed_stability=True"
        )
    return [folder for _, folder in sorted(folders)]


def _run_label(run: Any, i: int) -> str:
    run_id = getattr(run, "run_id", None)
    if run_id:
        return str(run_id)
    if isinstance(run, (str, os.PathLike)):
        return Path(run).name
    return f"run {i}"


def suite_dispersion(
    runs: Mapping[str, Any] | Sequence[Any],
    topk: int | float = 1000,
    part: str | None = None,
    value: str = "intersection_frac",
    dispersion: str = "std",
    seed_pairing_mode: str = "matched",
    converged_only: bool = True,
    **kwargs: Any,
) -> dict[str, pd.DataFrame]:
    """``{"mean", "dispersion", "n"}`` run × run frames of the top-k overlap of the runs' seed
    groups (``compute_similarity_matrix``'s ``topk_overlap``), seeds paired as asked."""
    if isinstance(runs, Mapping):
        groups = {str(k): run_seed_group(v, converged_only) for k, v in runs.items()}
    else:
        groups = {_run_label(r, i): run_seed_group(r, converged_only) for i, r in enumerate(runs)}
    found = compare(
        groups, "topk_overlap", topk, part, value, "mean",
        dispersion=dispersion, seed_pairing_mode=seed_pairing_mode, **kwargs,
    )  # fmt: skip
    return {"mean": found.frame, "dispersion": found.dispersion, "n": found.n_matrix}


def plot_suite_dispersion_heatmap(
    runs: Mapping[str, Any] | Sequence[Any],
    topk: int | float = 1000,
    part: str | None = None,
    seed_pairing_mode: str = "matched",
    output: Any = None,
    show: bool | None = None,
    img_format: str = "png",
    ax: Any = None,
    **kwargs: Any,
) -> dict:
    """Heatmap of the std over seeds of the runs' top-k overlap, in %: its own colour scale
    (0 … the largest std) and one-decimal annotations (``visualizer.seeds``)."""
    frames = suite_dispersion(
        runs, topk, part, dispersion="std", seed_pairing_mode=seed_pairing_mode, **kwargs
    )
    if output is not None and Path(output).is_dir():
        output = Path(output) / f"{FIG_SEED_DISPERSION}.{img_format}"
    result = plot_dispersion_heatmap(
        frames["dispersion"], label=f"std of top-{topk} overlap over seeds (%)",
        output=output, show=show, img_format=img_format, n_matrix=frames["n"], ax=ax,
    )  # fmt: skip
    result["data"]["mean"] = frames["mean"]
    return result
