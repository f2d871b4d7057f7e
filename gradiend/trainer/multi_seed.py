"""The multi-seed view of a trained run: ``trainer.multi_seed(selection, aggregate, dispersion)``.

A run with ``max_seeds > 1`` saves every seed's GRADIEND in ``seeds/seed_<n>/`` (with
``analyze_seed_stability=True`` every one of ``max_seeds`` is trained). The view picks some of
them (``selection``), evaluates each one as a run of its own (its encoder and decoder results
are written into the seed's folder and cached there) on the trainer's base model, loaded once,
and aggregates the numbers: every numeric figure that all seeds report becomes
``aggregate`` over the seeds, and ``result["seeds"]["stats"]`` holds its mean, std (sample
standard deviation, 0 for one seed), min, max and n. Figures that differ in kind between seeds
(the decoder grid, texts) stay in ``per_seed`` only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gradiend._io import read_json, read_json_cache
from gradiend.model.gradiend import GradiendModel
from gradiend.run_layout import FIG_SEED_CONVERGENCE, FIG_SEED_ENCODER, TRAINING, RunLayout
from gradiend.trainer.evaluation import RunEvaluation
from gradiend.trainer.seed_stability import saved_seeds
from gradiend.visualizer.seeds import plot_encoder_by_target, plot_seed_convergence

if TYPE_CHECKING:
    from gradiend.model.with_gradiend import ModelWithGradiend

logger = logging.getLogger(__name__)

__all__ = [
    "AGGREGATES",
    "DISPERSIONS",
    "SELECTIONS",
    "MultiSeedTrainerView",
    "aggregate_results",
    "seed_stats",
]

SELECTIONS = ("best", "all_convergent", "all_tried")
DISPERSIONS = ("none", "std", "range", "minmax")
AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": np.mean,
    "median": np.median,
    "min": np.min,
    "max": np.max,
}


def check_view_args(selection: str, aggregate: str, dispersion: str | None) -> None:
    """Refuse unknown ``selection`` / ``aggregate`` / ``dispersion`` before any work."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {tuple(AGGREGATES)}, got {aggregate!r}")
    if (dispersion or "none") not in DISPERSIONS:
        raise ValueError(f"dispersion must be one of {DISPERSIONS} or None, got {dispersion!r}")


# --------------------------------------------------------------------------- statistics
def seed_stats(values) -> dict[str, float]:
    """``{mean, std, min, max, n}`` of one figure over the seeds (NaNs left out; std is the
    sample standard deviation, 0 for a single seed)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if len(x) == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "max": nan, "n": 0}
    std = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    return {
        "mean": float(np.mean(x)),
        "std": std,
        "min": float(np.min(x)),
        "max": float(np.max(x)),
        "n": len(x),
    }


def _dispersion(stats: dict, dispersion: str) -> Any:
    if dispersion == "std":
        return stats["std"]
    if dispersion == "range":
        return stats["max"] - stats["min"]
    return [stats["min"], stats["max"]]  # minmax


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _merge(values: list[Any], path: str, aggregate: str, stats: dict) -> Any:
    """One key over the seeds: numbers → aggregate (stats recorded), dicts → recursed, equal
    values → kept, anything else → ``_SKIP``."""
    if all(_is_number(v) for v in values):
        st = seed_stats(float(v) for v in values)
        stats[path] = st
        finite = np.asarray([v for v in values if not math.isnan(float(v))], dtype=np.float64)
        return float(AGGREGATES[aggregate](finite)) if len(finite) else float("nan")
    if all(isinstance(v, Mapping) for v in values):
        out = {}
        for key in values[0]:
            if all(key in v for v in values):
                merged = _merge([v[key] for v in values], f"{path}.{key}" if path else str(key),
                                aggregate, stats)  # fmt: skip
                if merged is not _SKIP:
                    out[key] = merged
        return out
    first = values[0]
    try:
        if all(v == first for v in values[1:]):
            return first
    except (TypeError, ValueError):  # e.g. frames or arrays: no single truth value
        pass
    return _SKIP


_SKIP = object()


def aggregate_results(
    per_seed: Mapping[int, Mapping],
    aggregate: str = "mean",
    dispersion: str | None = "std",
    return_per_seed: bool = False,
    selection: str | None = None,
) -> dict:
    """The seeds' result dicts as one: every numeric figure all seeds report is ``aggregate``
    over them; ``["seeds"]`` has the seeds, ``stats`` (dotted key → mean/std/min/max/n), the
    ``dispersion`` of each figure (unless ``"none"``) and, when asked, ``per_seed``."""
    check_view_args(selection or "all_tried", aggregate, dispersion)
    if not per_seed:
        raise ValueError("no seed results to aggregate")
    stats: dict[str, dict] = {}
    merged = _merge(list(per_seed.values()), "", aggregate, stats)
    info: dict[str, Any] = {
        "seeds": list(per_seed),
        "n": len(per_seed),
        "selection": selection,
        "aggregate": aggregate,
        "dispersion": dispersion or "none",
        "stats": stats,
    }
    if (dispersion or "none") != "none":
        info["dispersion_values"] = {k: _dispersion(st, dispersion) for k, st in stats.items()}
    if return_per_seed:
        info["per_seed"] = dict(per_seed)
    merged["seeds"] = info
    return merged


def mean_encoder_df(frames: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """The rows of the first seed with ``encoded`` the mean over seeds (every seed encodes the
    same rows in the same order) and ``encoded_std`` its spread."""
    first = next(iter(frames.values()))
    values = np.stack([f["encoded"].to_numpy(dtype=np.float64) for f in frames.values()])
    out = first.copy()
    out["encoded"] = values.mean(axis=0)
    out["encoded_std"] = values.std(axis=0, ddof=1) if len(values) > 1 else 0.0
    return out


def by_seed_df(frames: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """The seeds' encoder rows in one long frame with a ``seed`` column."""
    return pd.concat([f.assign(seed=s) for s, f in frames.items()], ignore_index=True)


# --------------------------------------------------------------------------- the view
class MultiSeedTrainerView:
    """The selected seeds of a trained run, evaluated one by one and aggregated.

    ``selection``: ``"all_convergent"`` (default: every saved seed that converged),
    ``"all_tried"`` (every saved seed) or ``"best"`` (one seed: the one training chose, or with
    ``seed_selection_eval_max_size`` the convergent seed with the largest |correlation| on a
    fresh validation encoding of that many rows per class). ``aggregate``: mean, median, min or
    max over the seeds; ``dispersion``: std, range, minmax or none.
    """

    def __init__(
        self,
        trainer: Any,
        selection: str = "all_convergent",
        aggregate: str = "mean",
        dispersion: str | None = "std",
        return_per_seed: bool = False,
    ):
        check_view_args(selection, aggregate, dispersion)
        self.trainer = trainer
        self.selection, self.aggregate = selection, aggregate
        self.dispersion, self.return_per_seed = dispersion or "none", return_per_seed
        self._loaded: tuple[RunLayout, ModelWithGradiend] | None = None
        self.layouts: dict[int, RunLayout] = self._select()
        logger.info("multi-seed view (%s): seeds %s", selection, self.seeds)

    # ------------------------------------------------------------------ which seeds
    @property
    def seeds(self) -> list[int]:
        return list(self.layouts)

    @property
    def seed_dirs(self) -> list[Path]:
        """The selected seeds' model folders: a seed group for ``compute_similarity_matrix``."""
        return [layout.model_dir for layout in self.layouts.values()]

    def seed_records(self) -> dict[int, dict]:
        """Seed → its training record (correlation, convergence, best step, …)."""
        return {s: self._stats(layout).get("record", {}) for s, layout in self.layouts.items()}

    def _select(self) -> dict[int, RunLayout]:
        layout = self.trainer.layout
        saved = saved_seeds(layout)
        if not saved:  # one seed only (max_seeds=1): the run's own model is that seed
            if not layout.has_model:
                raise RuntimeError("no trained model yet: call train() first")
            stats = read_json_cache(layout.training) or {}
            return {int(stats.get("seed", self.trainer.args.seed)): layout}
        if self.selection == "all_tried":
            chosen = list(saved)
        elif self.selection == "all_convergent":
            chosen = [s for s, r in saved.items() if r.get("converged")]
            if not chosen:
                raise ValueError(
                    f"none of the saved seeds {list(saved)} converged: train more seeds "
                    "(max_seeds, analyze_seed_stability=True) or pass selection='all_tried' "
                    "(figures of unconverged seeds describe no learned feature)"
                )
        else:
            chosen = [self._best(saved)]
        return {s: layout.seed_layout(s) for s in chosen}

    def _best(self, saved: dict[int, dict]) -> int:
        pool = [s for s, r in saved.items() if r.get("converged")] or list(saved)
        size = self.trainer.args.seed_selection_eval_max_size
        if size is None:
            report = read_json_cache(self.trainer.layout.seed_report) or {}
            if report.get("best_seed") in pool:
                return int(report["best_seed"])
            return max(pool, key=lambda s: abs(saved[s].get("correlation") or 0.0))
        scores = {}
        for seed in pool:
            run = self._evaluation(self.trainer.layout.seed_layout(seed))
            result = run.evaluate_encoder(
                split="validation", max_size=size, neutral=False, allow_unconverged=True
            )
            scores[seed] = abs(result.get("correlation", float("nan")))
        logger.info("seed selection on validation (max_size=%d): %s", size, scores)
        return max(pool, key=lambda s: -1.0 if math.isnan(scores[s]) else scores[s])

    # ------------------------------------------------------------------ one seed as a run
    def _stats(self, layout: RunLayout) -> dict:
        return read_json_cache(layout.model_dir / TRAINING) or {}

    def _model(self, layout: RunLayout) -> ModelWithGradiend:
        """The seed's GRADIEND on the trainer's base model (one seed in memory at a time)."""
        if layout == self.trainer.layout:
            return self.trainer.get_model()
        if self._loaded is None or self._loaded[0] != layout:
            device = self.trainer.gradiend_device
            gradiend = GradiendModel.from_pretrained(layout.model_dir, device=device)
            self._loaded = (layout, self.trainer._wrap(gradiend))
        return self._loaded[1]

    def _evaluation(self, layout: RunLayout) -> RunEvaluation:
        base = self.trainer._evaluation()
        return dataclasses.replace(base, get_model=lambda: self._model(layout), layout=layout)

    def _aggregate(self, per_seed: dict[int, dict]) -> dict:
        return aggregate_results(
            per_seed, self.aggregate, self.dispersion, self.return_per_seed, self.selection
        )

    # ------------------------------------------------------------------ evaluations
    def evaluate_encoder(self, return_df: bool = False, plot: bool = False, **kwargs) -> dict:
        """``evaluate_encoder`` of every selected seed (same keywords), aggregated; with
        ``return_df`` the mean rows (``encoder_df``) and every seed's (``encoder_df_by_seed``)."""
        per_seed, frames = {}, {}
        for seed, layout in self.layouts.items():
            result = self._evaluation(layout).evaluate_encoder(return_df=True, **kwargs)
            frames[seed] = result.pop("encoder_df")
            per_seed[seed] = result
        out = self._aggregate(per_seed)
        if return_df:
            out["encoder_df"] = mean_encoder_df(frames)
            out["encoder_df_by_seed"] = by_seed_df(frames)
        if plot:
            out["plot"] = self.plot_encoder_by_target(encoder_df_by_seed=by_seed_df(frames))
        return out

    def evaluate_decoder(self, **kwargs) -> dict:
        """``evaluate_decoder`` of every selected seed (same keywords), aggregated per class;
        each seed's grid stays in its folder (and in ``per_seed`` with ``return_per_seed``)."""
        per_seed = {
            seed: self._evaluation(layout).evaluate_decoder(**kwargs)
            for seed, layout in self.layouts.items()
        }
        return self._aggregate(per_seed)

    def evaluate(self, encoder: dict | None = None, decoder: dict | None = None) -> dict:
        """Both evaluations (keyword dicts for each): ``{"encoder": …, "decoder": …}``."""
        return {
            "encoder": self.evaluate_encoder(**(encoder or {})),
            "decoder": self.evaluate_decoder(**(decoder or {})),
        }

    # ------------------------------------------------------------------ models
    def seed_models(self) -> dict[int, GradiendModel]:
        """Seed → its GRADIEND (weights only; no base model)."""
        return {
            s: GradiendModel.from_pretrained(layout.model_dir) for s, layout in self.layouts.items()
        }

    def get_model(self, gradiend_only: bool = True) -> list:
        """The selected seeds' GRADIENDs, or with ``gradiend_only=False`` each on the shared
        base model (``ModelWithGradiend``; all of them in memory)."""
        if gradiend_only:
            return list(self.seed_models().values())
        return [self.trainer._wrap(m) for m in self.seed_models().values()]

    # ------------------------------------------------------------------ figures
    def plot_encoder_by_target(self, encoder_df_by_seed=None, output=None, **kwargs) -> dict:
        """Encodings per transition, one row per seed (``plot_style="rows"``) or seed means
        with error bars (``plot_style="errorbar"``, ``error_stat`` std or sem); keywords of
        ``visualizer.seeds.plot_encoder_by_target``. Saved in the run folder by default."""
        if encoder_df_by_seed is None:
            encoder_df_by_seed = self.evaluate_encoder(return_df=True)["encoder_df_by_seed"]
        img_format = kwargs.setdefault("img_format", self.trainer.img_format)
        kwargs.setdefault("target_classes", list(self.trainer.target_classes))
        output = output or self.trainer.layout.figure(FIG_SEED_ENCODER, img_format)
        return plot_encoder_by_target(encoder_df_by_seed, output=output, **kwargs)

    def plot_training_convergence(self, output=None, **kwargs) -> dict:
        """Validation correlation and class means over the steps, one row per seed."""
        stats = {s: self._stats(layout) for s, layout in self.layouts.items()}
        img_format = kwargs.setdefault("img_format", self.trainer.img_format)
        kwargs.setdefault("target_classes", list(self.trainer.target_classes))
        output = output or self.trainer.layout.figure(FIG_SEED_CONVERGENCE, img_format)
        return plot_seed_convergence(stats, output=output, **kwargs)

    def stability(self) -> dict | None:
        """The run's seed stability summary (``seeds/seed_stability.json``), if written."""
        path = self.trainer.layout.seed_stability
        return read_json(path) if path.exists() else None
