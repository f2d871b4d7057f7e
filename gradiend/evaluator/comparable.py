"""Are runs comparable? Their input dimensions must index the same base-model parameters.

Base-global indices mean the same parameter only within one base-model layout. Runs whose
parameter maps disagree (another architecture or vocabulary) are refused; runs of different
base-model weights with the same layout are compared with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradiend._io import read_json
from gradiend._warn import warn
from gradiend.model.runs import load_gradiend
from gradiend.run_layout import MODEL_CONFIG, find_model_dir

logger = logging.getLogger(__name__)


def _identity(model: Any) -> tuple[dict | None, dict | None]:
    """``(param map JSON, base-model fingerprint)`` of a run, reading only its config for paths."""
    if isinstance(model, (str, os.PathLike)):
        cfg = read_json(find_model_dir(Path(model)) / MODEL_CONFIG)
        return (cfg.get("mapping") or {}).get("param_map"), cfg.get("metadata", {})
    gradiend = load_gradiend(model)
    pmap = gradiend.param_map.to_json() if gradiend.param_map is not None else None
    return pmap, gradiend.metadata


def _layout(pmap: dict) -> tuple[int, dict[str, tuple]]:
    return pmap["total_numel"], {
        p["name"]: (int(p["offset"]), tuple(p["shape"])) for p in pmap["params"]
    }


def check_comparable(models: Mapping[str, list[Any]]) -> None:
    """Raise when two runs' dimensions index different parameters; warn on different bases."""
    ref_label, ref_layout, ref_base = None, None, None
    for label, members in models.items():
        for model in members:
            pmap, meta = _identity(model)
            if pmap is None:
                continue
            total, specs = _layout(pmap)
            base = (meta or {}).get("base_model_fingerprint") or (meta or {}).get("base_model")
            if ref_layout is None:
                ref_label, ref_layout, ref_base = label, (total, specs), base
                continue
            shared = set(specs) & set(ref_layout[1])
            if total != ref_layout[0] or any(specs[n] != ref_layout[1][n] for n in shared):
                raise ValueError(
                    f"runs {ref_label!r} and {label!r} were trained on base models with different "
                    "parameter layouts: their dimensions index different parameters, so a "
                    "similarity between them means nothing. Compare runs of one base model."
                )
            if base is not None and ref_base is not None and base != ref_base:
                msg = (
                    f"runs {ref_label!r} and {label!r} come from different base models "
                    f"({_name(ref_base)} vs {_name(base)}) of the same layout: the same index "
                    "is the same parameter, but of different weights"
                )
                warn(logger, msg)
                ref_base = base  # warn once per change


def _name(fingerprint: Any) -> str:
    if isinstance(fingerprint, Mapping):
        return str(fingerprint.get("model"))
    return str(fingerprint)
