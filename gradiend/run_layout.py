"""The run folder: every path and file name of a run, in one place.

A run folder is the contract between training, evaluation, comparison, the report and the CLI::

    <experiment_dir>/<run_id>/
        model/                      the GRADIEND (config.json, model.safetensors, training.json, …)
        seeds/seed_<n>/             each seed's GRADIEND (with more than one seed)
        seeds/seed_report.json      every tried seed and the winner
        seeds/seed_stability.json   top-k overlap of the convergent seeds (seed analysis)
        decoder_results.json        selected points of evaluate_decoder (read by the rewrite):
                                    the latest per class, and an index of every evaluation
        decoder_evaluations/<key>.json  each evaluate_decoder call's results (settings hash)
        decoder_grid_cache.json     scored decoder points, reused with use_cache
        decoder_fisher.safetensors  the neutral texts' Fisher (precondition="fisher")
        encoded_values_*.csv/.json  encoder evaluation (per split and size)
        cache/gradients/<key>/      cached training gradients (use_cache)
        decoder_mlm_head/           the MLM head of a decoder-only model (clm_mlm_head)
        gradiend_config.json        the resolved CLI config
        timings.json                wall time per stage
        lr_search.json              the learning-rate search's probes (learning_rate="auto")
        bias_results.json           trainer.evaluate_bias: the latest bias scores (and comparison)
        bias_cache/<key>.json       the base model's bias scores, reused with use_cache
        <class>_rewritten/          rewritten base models saved by the CLI
        *.png                       figures

This module imports nothing from the library; every stage asks it for paths.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# the GRADIEND artefact (a model folder)
MODEL_DIR = "model"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
MODEL_INDICES = "mapping_indices.safetensors"
MODEL_IMPORTANCE = "importance.safetensors"
TRAINING = "training.json"
CONTEXT = "gradiend_context.json"
CARD = "README.md"
# the run folder
SEEDS = "seeds"
SEED_PREFIX = "seed_"
SEED_REPORT = "seed_report.json"
SEED_STABILITY = "seed_stability.json"
DECODER_RESULTS = "decoder_results.json"
DECODER_GRID = "decoder_grid_cache.json"
DECODER_HISTORY = "decoder_evaluations"
FISHER = "decoder_fisher.safetensors"
ENCODED_PREFIX = "encoded_values"
CACHE = "cache"
GRADIENT_CACHE = "gradients"
MLM_HEAD = "decoder_mlm_head"
MLM_HEAD_CONFIG = "head.json"
MLM_HEAD_WEIGHTS = "head.safetensors"
RUN_CONFIG = "gradiend_config.json"
# a base model's Hugging Face folder (same name as a GRADIEND's config, another file)
HF_CONFIG = "config.json"
TIMINGS = "timings.json"
LR_SEARCH = "lr_search.json"
BIAS_RESULTS = "bias_results.json"
BIAS_CACHE = "bias_cache"
# periodic checkpoints, the runtime monitor's heartbeat and the trackers' logs (docs/training.md)
CHECKPOINTS = "checkpoints"
CHECKPOINT_PREFIX = "step_"
CHECKPOINT_STATE = "state.json"
CHECKPOINT_TENSORS = "state.safetensors"
RUNTIME_MONITOR = "runtime_monitor.jsonl"
TRACKING_LOGS = "logs"
REWRITTEN_SUFFIX = "_rewritten"
SIMILARITY_CSV = "similarity.csv"
# figure stems (``<stem>.<img_format>``)
FIG_ENCODER = "encoder_distributions"
FIG_IMPORTANCE = "importance_by_layer"
FIG_CONVERGENCE = "training_convergence"
FIG_SHIFTS = "decoder_probability_shifts"
FIG_TOPK_HEATMAP = "topk_heatmap"
FIG_SIMILARITY_HEATMAP = "similarity_heatmap"
FIG_VENN = "topk_venn"
FIG_SEED_ENCODER = "multi_seed_encoder_by_target"
FIG_SEED_CONVERGENCE = "multi_seed_training_convergence"
FIG_SEED_DISPERSION = "seed_dispersion_heatmap"
FIG_COMPONENTS = "encoder_components"  # a split GRADIEND's components


def is_model_dir(path: str | Path) -> bool:
    """A GRADIEND model folder: ``config.json`` beside ``model.safetensors``."""
    path = Path(path)
    return (path / MODEL_CONFIG).is_file() and (path / MODEL_WEIGHTS).is_file()


def find_model_dir(path: str | Path) -> Path:
    """The model folder of a run folder (``<run>/model``) or a model folder itself."""
    path = Path(path)
    if is_model_dir(path):
        return path
    if (path / MODEL_DIR / MODEL_CONFIG).is_file():
        return path / MODEL_DIR
    raise FileNotFoundError(
        f"no GRADIEND model in {path} (expected {MODEL_CONFIG} + {MODEL_WEIGHTS}, or a "
        f"{MODEL_DIR}/ folder holding them): pass a run folder or a model folder"
    )


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run: its folder and the folder its GRADIEND is saved in."""

    run_dir: Path
    model_dir: Path
    seeds_root: Path | None = None  # TrainingArguments.seed_runs_dir (default <run>/seeds)

    @classmethod
    def from_args(
        cls,
        experiment_dir: str | Path | None,
        run_id: str | None,
        output_dir: str | Path | None,
        seed_runs_dir: str | Path | None = None,
    ) -> RunLayout:
        """The layout ``TrainingArguments`` describe: ``experiment_dir/run_id`` (default
        ``runs``), the model in ``output_dir`` or ``<run>/model``, the seeds in
        ``seed_runs_dir`` or ``<run>/seeds``."""
        base = Path(experiment_dir or "runs")
        run_dir = base / run_id if run_id else base
        model_dir = Path(output_dir) if output_dir else run_dir / MODEL_DIR
        return cls(run_dir, model_dir, Path(seed_runs_dir) if seed_runs_dir else None)

    @classmethod
    def find(cls, path: str | Path) -> RunLayout:
        """The layout of a run folder or of a model folder (``<run>/model`` or a seed's)."""
        model_dir = find_model_dir(path)
        path = Path(path)
        if model_dir != path:
            return cls(path, model_dir)
        if path.name == MODEL_DIR:
            return cls(path.parent, path)
        return cls(path, path)  # a model folder of its own (a seed's, an output_dir)

    @classmethod
    def locate(cls, path: str | Path) -> RunLayout:
        """Like ``find``, but a folder without a model is taken as a run folder (the report
        shows what a partial run holds)."""
        try:
            return cls.find(path)
        except FileNotFoundError:
            path = Path(path)
            return cls(path, path / MODEL_DIR)

    # ------------------------------------------------------------------ the GRADIEND
    @property
    def training(self) -> Path:
        return self.model_dir / TRAINING

    @property
    def context(self) -> Path:
        return self.model_dir / CONTEXT

    @property
    def model_config(self) -> Path:
        return self.model_dir / MODEL_CONFIG

    @property
    def has_model(self) -> bool:
        return is_model_dir(self.model_dir)

    # ------------------------------------------------------------------ seeds
    @property
    def seeds_dir(self) -> Path:
        return self.seeds_root if self.seeds_root is not None else self.run_dir / SEEDS

    def seed_dir(self, seed: int) -> Path:
        return self.seeds_dir / f"{SEED_PREFIX}{seed}"

    @property
    def seed_report(self) -> Path:
        return self.seeds_dir / SEED_REPORT

    @property
    def seed_stability(self) -> Path:
        return self.seeds_dir / SEED_STABILITY

    def seed_layout(self, seed: int) -> RunLayout:
        """One seed's folder as a run of its own (its evaluations are written beside it)."""
        return RunLayout(self.seed_dir(seed), self.seed_dir(seed))

    def seed_runs(self) -> list[Path]:
        """Saved seed runs (``seeds/seed_*`` holding a GRADIEND), in name order."""
        return sorted(d for d in self.seeds_dir.glob(f"{SEED_PREFIX}*") if is_model_dir(d))

    # ------------------------------------------------------------------ evaluation
    @property
    def decoder_results(self) -> Path:
        return self.run_dir / DECODER_RESULTS

    def decoder_evaluation(self, key: str) -> Path:
        """The results of one ``evaluate_decoder`` settings key (kept when others follow)."""
        return self.run_dir / DECODER_HISTORY / f"{safe_name(key)}.json"

    @property
    def decoder_grid(self) -> Path:
        return self.run_dir / DECODER_GRID

    @property
    def fisher(self) -> Path:
        return self.run_dir / FISHER

    def encoder_files(self, split: str, max_size: int | None) -> tuple[Path, Path]:
        """``(csv, json)`` of an encoder evaluation of ``split`` capped at ``max_size``."""
        size = f"_max_size_{max_size}" if max_size else ""
        stem = self.run_dir / f"{ENCODED_PREFIX}{size}_split_{split}"
        return stem.with_suffix(".csv"), stem.with_suffix(".json")

    def encoder_results(self) -> list[Path]:
        """Saved encoder summaries, the test split's first (newest last within each)."""
        test = sorted(self.run_dir.glob(f"{ENCODED_PREFIX}*_split_test.json"))
        return test or sorted(self.run_dir.glob(f"{ENCODED_PREFIX}*.json"))

    # ------------------------------------------------------------------ caches and records
    def gradient_cache(self, key: str) -> Path:
        return self.run_dir / CACHE / GRADIENT_CACHE / key

    @property
    def mlm_head(self) -> Path:
        return self.run_dir / MLM_HEAD

    def checkpoint_dir(self, seed: int, key: str) -> Path:
        """The periodic checkpoints of one seed attempt (``key``: its fingerprint's hash)."""
        return self.run_dir / CHECKPOINTS / f"{SEED_PREFIX}{seed}-{key}"

    @property
    def checkpoints_dir(self) -> Path:
        return self.run_dir / CHECKPOINTS

    @property
    def runtime_monitor(self) -> Path:
        return self.run_dir / RUNTIME_MONITOR

    @property
    def tracking_logs(self) -> Path:
        """Where the trackers of ``report_to`` write by default (``logging_dir`` overrides)."""
        return self.run_dir / TRACKING_LOGS

    @property
    def run_config(self) -> Path:
        return self.run_dir / RUN_CONFIG

    @property
    def timings(self) -> Path:
        return self.run_dir / TIMINGS

    @property
    def lr_search(self) -> Path:
        return self.run_dir / LR_SEARCH

    @property
    def bias_results(self) -> Path:
        return self.run_dir / BIAS_RESULTS

    def bias_cache(self, key: str) -> Path:
        """A model's bias scores under one settings key (``trainer.evaluate_bias``)."""
        return self.run_dir / BIAS_CACHE / f"{safe_name(key)}.json"

    def rewritten_dir(self, target_class: str) -> Path:
        """``<run>/<class>_rewritten``, the class id made one safe folder name."""
        return self.run_dir / f"{safe_name(str(target_class))}{REWRITTEN_SUFFIX}"

    def figure(self, stem: str, img_format: str = "png", suffix: str = "") -> Path:
        """``<run>/<stem><suffix>.<img_format>``; the suffix (often a class id) made safe."""
        return self.run_dir / f"{stem}{safe_name(suffix) if suffix else ''}.{img_format}"

    def tidy_folders(self) -> Iterator[Path]:
        """Folders where an interrupted atomic write may have left an orphan."""
        yield from (self.run_dir, self.model_dir.parent, self.seeds_dir, self.run_dir / BIAS_CACHE)


def run_config_file(path: str | Path) -> Path:
    """A config path, or the saved config inside a run folder."""
    path = Path(path)
    return path / RUN_CONFIG if path.is_dir() else path


def similarity_csv(output_dir: str | Path) -> Path:
    return Path(output_dir) / SIMILARITY_CSV


# --------------------------------------------------------------------------- figures and reports
# the names the plot functions save under when given a folder (``<stem>.<img_format>``)
FIG_TOPK_OVERLAP_HEATMAP = "topk_overlap_heatmap"
FIG_TOPK_OVERLAP_VENN = "topk_overlap_venn"
FIG_SIMILARITY_PREFIX = "similarity_"
FIG_LOCATION = "rewrite_location"
REPORT = "report.html"


def figure_file(folder: str | Path, stem: str, img_format: str = "png") -> Path:
    """``<folder>/<stem>.<img_format>``: a figure written outside a run folder (``compare``)."""
    return Path(folder) / f"{stem}.{img_format}"


def report_file(folder: str | Path) -> Path:
    """The HTML report of a run folder, or of a comparison written into ``folder``."""
    return Path(folder) / REPORT


def encoder_table(summary: str | Path) -> Path:
    """The per-row CSV written beside an encoder summary (``encoder_files``)."""
    return Path(summary).with_suffix(".csv")


# --------------------------------------------------------------------------- rewritten models
# written into every folder a rewrite saves: only a folder carrying it is ever replaced
REWRITE_MANIFEST = "gradiend_rewrite.json"


# --------------------------------------------------------------------------- names from data
_UNSAFE = re.compile(r"[/\\\x00]|\.\.")  # path separators, NUL and ".." (a parent folder)


def safe_name(name: str) -> str:
    """``name`` (a class id from the data) as one path component: separators, NUL and ``..``
    become ``_``, so a file named after it stays in its folder; a change is logged."""
    safe = _UNSAFE.sub("_", name)
    if safe != name:
        logger.warning("the name %r is not a safe file name; using %r", name, safe)
    return safe
