"""Where the feature lives: a heatmap of importance share per layer (rows) and module type
(columns), one panel per run, drawn from (layer, module) importance tables
(``GradiendModel.importance_by_layer(by_module_type=True)``).

Runs given as folders are loaded by the public ``gradiend.visualizer.plot_importance_by_layer``
(``gradiend.evaluator.figures``); this module draws tables, and asks an object that computes its
own table (a GradiendModel, or anything with a ``.gradiend`` one) for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradiend.run_layout import FIG_IMPORTANCE
from gradiend.visualizer._common import DEFAULT_DPI, finish, import_pyplot

logger = logging.getLogger(__name__)

VALUES = ("mass_share", "topk_share")
Tables = Mapping[str, Any] | Sequence[Any] | Any


def importance_tables(
    runs: Tables, part: str | None = None, topk: int | float = 1000
) -> dict[str, pd.DataFrame]:
    """Label → (layer, module) table of one run or several (a mapping keeps its labels, others
    are ``model <i>``): a table is taken as it is, any other run is asked for its table."""
    if isinstance(runs, Mapping):
        labelled = {str(k): v for k, v in runs.items()}
    else:
        runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
        labelled = {f"model {i}": run for i, run in enumerate(runs)}
    if not labelled:
        raise ValueError("no runs to draw")
    return {label: _table(run, part, topk) for label, run in labelled.items()}


def _table(run: Any, part: str | None, topk: int | float) -> pd.DataFrame:
    if isinstance(run, pd.DataFrame):
        return run
    source = run if hasattr(run, "importance_by_layer") else getattr(run, "gradiend", None)
    if not hasattr(source, "importance_by_layer"):
        raise TypeError(
            f"cannot draw {type(run).__name__}: pass an importance table or a GradiendModel; "
            "gradiend.visualizer.plot_importance_by_layer also loads run folders"
        )
    return source.importance_by_layer(part, topk, by_module_type=True)


def importance_grid(
    runs: Tables,
    part: str | None = None,
    topk: int | float = 1000,
    value: str = "mass_share",
) -> dict[str, Any]:
    """The numbers of the figure: shared ``layers`` and ``modules`` axes and per run a matrix
    ``[layer][module]`` of ``value`` (0 where a run has no dimension there)."""
    if value not in VALUES:
        raise ValueError(f"value must be one of {VALUES}, got {value!r}")
    tables = importance_tables(runs, part, topk)
    layers = sorted({_layer_label(x) for t in tables.values() for x in t["layer"]}, key=_order)
    modules = sorted({m for t in tables.values() for m in t["module"]})
    matrices = {}
    for label, table in tables.items():
        grid = np.zeros((len(layers), len(modules)))
        for row in table.itertuples():
            grid[layers.index(_layer_label(row.layer)), modules.index(row.module)] += getattr(
                row, value
            )
        matrices[label] = grid.tolist()
    return {"layers": layers, "modules": modules, "matrices": matrices, "value": value}


def _layer_label(layer: Any) -> str:
    return "other" if layer is None or layer is np.nan or str(layer) == "<NA>" else str(layer)


def _order(label: str) -> tuple[int, int]:
    return (1, 0) if label == "other" else (0, int(label))


def plot_importance_by_layer(
    models: Tables,
    part: str | None = None,
    topk: int | float = 1000,
    value: str = "mass_share",
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
) -> dict[str, Any]:
    """Heatmap of each run's importance share (``mass_share`` or ``topk_share`` of the top-k
    dimensions) per layer × module type; several runs side by side on one colour scale.

    ``models`` is one run or several: importance tables, or GradiendModels (or anything with a
    ``.gradiend`` one) that compute theirs. Returns ``{"path", "figure", "data":
    importance_grid}``.
    """
    plt = import_pyplot(show)  # fail early when the plot extra is missing
    data = importance_grid(models, part, topk, value)
    data.update(part=part, topk=topk)
    labels, layers, modules = list(data["matrices"]), data["layers"], data["modules"]
    width = max(3.0, 0.45 * len(modules) + 1.5)
    height = max(3.0, 0.28 * len(layers) + 2.0)
    fig, axes = plt.subplots(
        1, len(labels), figsize=(width * len(labels) + 1.2, height), squeeze=False
    )
    vmax = max((max(map(max, m)) for m in data["matrices"].values() if m), default=1.0) or 1.0
    image = None
    for ax, label in zip(axes[0], labels, strict=True):
        grid = np.asarray(data["matrices"][label])
        image = ax.imshow(grid, cmap="magma_r", vmin=0.0, vmax=vmax, aspect="auto")
        if len(layers) * len(modules) <= 120:
            for (i, j), v in np.ndenumerate(grid):
                if v >= 0.005:
                    colour = "white" if v > 0.55 * vmax else "black"
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(modules)), modules, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(layers)), layers, fontsize=8)
        ax.set_title(label if len(labels) > 1 else "Importance by layer and module", fontsize=9)
        ax.set_xlabel("module type")
    axes[0][0].set_ylabel("layer")
    what = "importance mass" if value == "mass_share" else f"top-{topk} dimensions"
    fig.colorbar(image, ax=list(axes[0]), fraction=0.046, pad=0.04, label=f"share of {what}")
    return finish(fig, data, output_path, FIG_IMPORTANCE, show, img_format, dpi)
