"""What a report shows, read from a run folder: every file is optional and read defensively
(a run that skipped a stage, or wrote results with more fields than this reader knows, still
gets a report of what is there)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradiend.evaluator.methods_table import METHODS_RESULTS
from gradiend.run_layout import MODEL_CONFIG, RunLayout, encoder_table

logger = logging.getLogger(__name__)


@dataclass
class RunFiles:
    """The parsed files of one run folder (``None``/empty where a stage did not run)."""

    run_dir: Path
    name: str
    model_dir: Path | None = None
    config: dict = field(default_factory=dict)  # the GRADIEND's config (RunLayout.model_config)
    training: dict = field(default_factory=dict)  # RunLayout.training
    run_config: dict = field(default_factory=dict)  # RunLayout.run_config
    encoder_metrics: dict = field(default_factory=dict)  # newest of RunLayout.encoder_results()
    encoder_csv: Path | None = None
    decoder: dict = field(default_factory=dict)  # RunLayout.decoder_results
    decoder_evaluations: dict = field(default_factory=dict)  # RunLayout.decoder_evaluation(key)
    seed_report: dict = field(default_factory=dict)  # RunLayout.seed_report
    seed_dirs: list[Path] = field(default_factory=list)  # RunLayout.seed_runs()
    timings: dict = field(default_factory=dict)  # RunLayout.timings
    lr_search: dict = field(default_factory=dict)  # RunLayout.lr_search (the probes' trace)
    bias: dict = field(default_factory=dict)  # RunLayout.bias_results (trainer.evaluate_bias)
    methods: dict = field(default_factory=dict)  # compare_methods' table, here or one level up
    rewritten: list[Path] = field(default_factory=list)

    @property
    def metadata(self) -> dict:
        return self.config.get("metadata", {}) if isinstance(self.config, dict) else {}

    @property
    def target_classes(self) -> list[str]:
        return [str(c) for c in self.metadata.get("target_classes") or []]


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logger.warning("report: cannot read %s (%s); that section is left out", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def find_run_dir(path: str | Path) -> tuple[Path, Path | None]:
    """``(run folder, model folder)`` for a run folder or a model folder inside one; the model
    folder is None when there is no GRADIEND (a partial run)."""
    try:
        layout = RunLayout.find(path)
    except FileNotFoundError:
        return RunLayout.locate(path).run_dir, None
    return layout.run_dir, layout.model_dir


def collect_run(path: str | Path) -> RunFiles:
    """Every file of the run at ``path`` that a report shows, each read through its layout."""
    run_dir, model_dir = find_run_dir(path)
    if model_dir is None and not run_dir.is_dir():
        raise FileNotFoundError(f"{path} is not a run folder (no GRADIEND model in it)")
    layout = RunLayout(run_dir, model_dir if model_dir is not None else run_dir)
    run = RunFiles(run_dir=run_dir, name=run_dir.name, model_dir=model_dir)
    if model_dir is not None:
        run.config = _json(layout.model_config)
        run.training = _json(layout.training)
    run.run_config = _json(layout.run_config)
    run.decoder = _json(layout.decoder_results)
    index = run.decoder.get("evaluations")
    for key in index if isinstance(index, dict) else {}:
        run.decoder_evaluations[key] = _json(layout.decoder_evaluation(str(key)))
    run.seed_report = _json(layout.seed_report)
    run.seed_dirs = layout.seed_runs()
    run.timings = _json(layout.timings)
    run.lr_search = _json(layout.lr_search)
    run.bias = _json(layout.bias_results)
    run.methods = _json(run_dir / METHODS_RESULTS) or _json(run_dir.parent / METHODS_RESULTS)
    encoded = layout.encoder_results()
    if encoded:
        newest = max(encoded, key=lambda p: p.stat().st_mtime)
        run.encoder_metrics = _json(newest)
        csv = encoder_table(newest)
        run.encoder_csv = csv if csv.is_file() else None
    subdirs = [d for d in run_dir.iterdir() if d.is_dir()] if run_dir.is_dir() else []
    # a rewritten base model is a saved transformers checkpoint (its config names a model_type)
    run.rewritten = sorted(d for d in subdirs if "model_type" in _json(d / MODEL_CONFIG))
    return run


def get(d: Any, *keys: str, default: Any = None) -> Any:
    """``d[k1][k2]…`` or ``default`` when any level is missing or not a mapping."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d
