"""Per-component seed stitching: the best seed of each component of a split GRADIEND.

With several seeds (``TrainingArguments(max_seeds=…)``) each component of a
``GradiendSplit.by_tensor()`` GRADIEND may carry the feature in a different seed. The seed runs
(``seeds/seed_<n>/``) record each component's validation correlation at their best step
(``training.json``: ``record.components``); this picks, per component, the seed of the largest
|validation correlation| and stitches those components into one GRADIEND
(``gradiend.model.stitch``). A component whose chosen correlation is negative is flipped, so that
every stitched component is oriented like the run (``decoder(+1)`` strengthens
``target_classes[0]``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradiend._io import read_json
from gradiend._kwargs import strict_kwargs
from gradiend.model.gradiend import GradiendModel
from gradiend.model.stitch import require_components, stitch_components
from gradiend.run_layout import CONTEXT, MODEL_CONFIG, TRAINING, RunLayout

__all__ = [
    "STITCH_RECORD",
    "StitchedComponents",
    "pick_components",
    "saved_components",
    "stitch_seed_components",
]

logger = logging.getLogger(__name__)

STITCH_RECORD = "stitched_components.json"  # beside the saved stitched GRADIEND
SEEDS_HINT = (
    "train with TrainingArguments(max_seeds=3, analyze_seed_stability=True) (every seed trains "
    "and keeps its weights with saved_seed_runs='all_tried', the default)"
)


@strict_kwargs
@dataclass(frozen=True)
class StitchedComponents:
    """The stitched GRADIEND and, per component, where it came from: ``seed``, its validation
    ``correlation`` in that seed (signed, before ``flipped``), that seed's ``converged`` verdict
    for it, and ``candidates`` (seed → validation correlation of every seed run)."""

    gradiend: GradiendModel
    components: dict[str, dict]
    path: Path | None = None
    seeds: list[int] = field(default_factory=list)  # the seed runs read, in order

    @property
    def picked_seeds(self) -> dict[str, int]:
        """Component name → the seed it came from."""
        return {name: rec["seed"] for name, rec in self.components.items()}

    def to_json(self) -> dict:
        return {"seeds": self.seeds, "components": self.components}


def _as_layout(run: Any) -> RunLayout:
    """The ``RunLayout`` of a trainer (its ``layout``), of itself, or of a run folder."""
    if isinstance(run, RunLayout):
        return run
    if isinstance(getattr(run, "layout", None), RunLayout):
        return run.layout
    if isinstance(run, (str, Path)):
        return RunLayout.locate(run)
    raise TypeError(
        f"stitch_seed_components needs a trainer, a RunLayout or a run folder, got "
        f"{type(run).__name__}"
    )


def _seed_records(layout: RunLayout) -> list[tuple[Path, dict]]:
    """``(folder, record)`` of every saved seed run with per-component records (checked before
    any model is loaded)."""
    require_components(saved_components(layout), "stitch_seed_components")
    runs = layout.seed_runs()
    if len(runs) < 2:
        raise ValueError(
            f"stitching components needs at least two saved seed runs; {layout.seeds_dir} holds "
            f"{len(runs)}: {SEEDS_HINT}"
        )
    out = []
    for run in runs:
        record = (read_json(run / TRAINING) if (run / TRAINING).is_file() else {}).get("record")
        if not record or not record.get("components"):
            raise ValueError(
                f"the seed run {run} has no per-component record (training.json: "
                f"record.components): retrain it with this version ({SEEDS_HINT})"
            )
        out.append((run, record))
    return out


def saved_components(where: RunLayout | Path) -> int:
    """How many components the saved GRADIEND of a run (or a model folder) has, read from its
    ``config.json`` alone (0: not split), so a call that needs them is refused before loading."""
    folder = where.model_dir if isinstance(where, RunLayout) else Path(where)
    if not (folder / MODEL_CONFIG).is_file():
        return 0 if isinstance(where, Path) else _no_model(folder)
    cfg = read_json(folder / MODEL_CONFIG)
    split = (cfg.get("metadata") or {}).get("gradiend_split") or {}
    if split.get("kind", "none") == "none":
        return 0
    return int(cfg["architecture"]["latent_dim"])


def _no_model(folder: Path) -> int:
    raise RuntimeError(f"no trained GRADIEND in {folder}: call train() first")


def _score(comp: dict) -> float:
    r = comp.get("correlation")
    return -1.0 if r is None or not math.isfinite(r) else abs(r)


def pick_components(records: list[dict]) -> dict[str, dict]:
    """Component name → the record of its best seed (largest |validation correlation|; the
    earlier seed on a tie) with every seed's correlation under ``candidates``."""
    names = list(records[0]["components"])
    out = {}
    for name in names:
        comps = [(rec["seed"], rec["components"].get(name) or {}) for rec in records]
        best = max(range(len(comps)), key=lambda i: (_score(comps[i][1]), -i))
        seed, comp = comps[best]
        out[name] = {
            "seed": seed,
            "index": best,
            "correlation": comp.get("correlation"),
            "converged": comp.get("converged"),
            "flipped": (comp.get("correlation") or 0.0) < 0,
            "candidates": {str(s): c.get("correlation") for s, c in comps},
        }
    return out


def stitch_seed_components(
    run: Any, output_dir: str | Path | None = None, device: str | None = None
) -> StitchedComponents:
    """Stitch the saved seed runs of ``run`` (a trainer, a ``RunLayout`` or a run folder):
    each component from the seed with the best validation |r| for it (flipped when that r is
    negative). With ``output_dir`` the GRADIEND is saved there atomically, with
    ``stitched_components.json`` and the run's context beside it."""
    layout = _as_layout(run)
    seed_runs = _seed_records(layout)
    picks = pick_components([rec for _, rec in seed_runs])
    models = [GradiendModel.from_pretrained(run, device=device) for run, _ in seed_runs]
    if list(picks) != models[0].component_names:
        raise ValueError(
            f"the seed records name components {list(picks)[:4]}…, the saved models "
            f"{models[0].component_names[:4]}…: the seed folders are from different runs"
        )
    index = {name: rec.pop("index") for name, rec in picks.items()}
    flip = [name for name, rec in picks.items() if rec["flipped"]]
    model = stitch_components(models, index, flip=flip)
    seeds = [rec["seed"] for _, rec in seed_runs]
    result = StitchedComponents(gradiend=model, components=picks, seeds=seeds)
    for name, rec in picks.items():
        r = rec["correlation"]
        logger.info("component %s: seed %d (validation r %s%s)", name, rec["seed"],
                    "n/a" if r is None else f"{r:.3f}", ", flipped" if rec["flipped"] else "")  # fmt: skip
    if output_dir is None:
        return result
    extra = {STITCH_RECORD: result.to_json()}
    if layout.context.is_file():  # target classes and mask, for ModelWithGradiend and rewrites
        extra[CONTEXT] = read_json(layout.context)
    path = model.save_pretrained(output_dir, extra_files=extra)
    return StitchedComponents(gradiend=model, components=picks, path=path, seeds=seeds)
