"""Runs as the comparison and report stages take them: a GradiendModel behind anything that names
one, and short unique labels for a list of runs.

A run is a ``GradiendModel``, anything with a ``.gradiend`` GradiendModel (``ModelWithGradiend``),
or a run folder / model folder path (found with ``run_layout.find_model_dir``). Loading a path
reads only the GRADIEND weights, never the base language model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradiend.model.gradiend import GradiendModel
from gradiend.run_layout import MODEL_DIR, find_model_dir

logger = logging.getLogger(__name__)

RunLike = GradiendModel | str | os.PathLike | Any


def load_gradiend(model: RunLike) -> GradiendModel:
    """The GradiendModel behind ``model``: itself, its ``.gradiend``, or loaded from a folder.

    A local path is a run folder (its ``model/`` is loaded) or a model folder; any other string
    goes to ``GradiendModel.from_pretrained`` as a hub id.
    """
    if isinstance(model, GradiendModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        return GradiendModel.from_pretrained(find_model_dir(path) if path.exists() else path)
    inner = getattr(model, "gradiend", None)
    if isinstance(inner, GradiendModel):
        return inner
    raise TypeError(
        f"cannot compare {type(model).__name__}: pass a GradiendModel, an object with a "
        "`.gradiend` GradiendModel (ModelWithGradiend), or a run folder path"
    )


def label_runs(runs: Mapping[str, Any] | Sequence[Any] | str | os.PathLike) -> dict[str, Any]:
    """Label → run: a mapping keeps its keys (as strings); a sequence is labelled by folder name
    (the run's name for a ``model/`` folder, the last two path parts where names repeat) and
    ``model <i>`` for runs that are not paths. Raises ``ValueError`` when there is no run."""
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if isinstance(runs, Mapping):
        out = {str(k): v for k, v in runs.items()}
    else:
        runs = list(runs)
        names = [_folder_name(run) for run in runs]
        out = {}
        for i, (run, name) in enumerate(zip(runs, names, strict=True)):
            if name is None:
                label = f"model {i}"
            elif names.count(name) == 1:
                label = name
            else:
                label = "/".join(Path(run).parts[-2:])
            out[label if label not in out else f"{label} ({i})"] = run
    if not out:
        raise ValueError("no models to compare")
    return out


def _folder_name(run: Any) -> str | None:
    """The name a path is known by (a ``model/`` folder by its run's name); None for objects."""
    if not isinstance(run, (str, os.PathLike)):
        return None
    path = Path(run)
    return path.parent.name if path.name == MODEL_DIR else path.name
