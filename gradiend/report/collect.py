"""What a report shows, read from a run folder: every file is optional and read defensively
(a run that skipped a stage, or wrote results with more fields than this reader knows, still
gets a report of what is there)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class RunFiles:
    """The parsed files of one run folder (``None``/empty where a stage did not run)."""

    run_dir: Path
    name: str
    model_dir: Path | None = None
    config: dict = field(default_factory=dict)  # model/config.json
    training: dict = field(default_factory=dict)  # model/training.json
    run_config: dict = field(default_factory=dict)  # gradiend_config.json
    encoder_metrics: dict = field(default_factory=dict)  # encoded_values*.json
    encoder_csv: Path | None = None
    decoder: dict = field(default_factory=dict)  # decoder_results.json
    seed_report: dict = field(default_factory=dict)  # seeds/seed_report.json
    seed_dirs: list[Path] = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # timings.json
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
    """``(run folder, model folder)`` for a run folder or a model folder inside one."""
    path = Path(path)
    if (path / "model" / "config.json").is_file():
        return path, path / "model"
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        parent = path.parent
        return (parent if path.name == "model" else path), path
    return path, None


def collect_run(path: str | Path) -> RunFiles:
    run_dir, model_dir = find_run_dir(path)
    if model_dir is None and not run_dir.is_dir():
        raise FileNotFoundError(f"{path} is not a run folder (no model/config.json)")
    run = RunFiles(run_dir=run_dir, name=run_dir.name, model_dir=model_dir)
    if model_dir is not None:
        run.config = _json(model_dir / "config.json")
        run.training = _json(model_dir / "training.json")
    run.run_config = _json(run_dir / "gradiend_config.json")
    run.decoder = _json(run_dir / "decoder_results.json")
    run.seed_report = _json(run_dir / "seeds" / "seed_report.json")
    run.seed_dirs = sorted(d for d in run_dir.glob("seeds/seed_*") if (d / "config.json").is_file())
    run.timings = _json(run_dir / "timings.json")
    encoded = sorted(run_dir.glob("encoded_values*_split_test.json")) or sorted(
        run_dir.glob("encoded_values*.json")
    )
    if encoded:
        newest = max(encoded, key=lambda p: p.stat().st_mtime)
        run.encoder_metrics = _json(newest)
        csv = newest.with_suffix(".csv")
        run.encoder_csv = csv if csv.is_file() else None
    subdirs = [d for d in run_dir.iterdir() if d.is_dir()] if run_dir.is_dir() else []
    run.rewritten = sorted(d for d in subdirs if "model_type" in _json(d / "config.json"))
    return run


def get(d: Any, *keys: str, default: Any = None) -> Any:
    """``d[k1][k2]…`` or ``default`` when any level is missing or not a mapping."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d
