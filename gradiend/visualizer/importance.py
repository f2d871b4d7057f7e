"""Where the feature lives: a heatmap of importance share per layer (rows) and module type
(columns), one panel per run, drawn from (layer, module) importance tables
(``GradiendModel.importance_by_layer(by_module_type=True)``, by default of the ``rest`` region:
every dimension but the feature words' own embedding rows).

Every layer from the first to the last gets a labelled row (a layer without selected
parameters is an empty row, not a gap), parameters outside the layer stack are the ``other``
row, and the colour scale is logarithmic by default, so shares of 0.001 and 0.5 are both
visible; empty cells stay blank.

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
from gradiend.visualizer._common import DEFAULT_DPI, finish, import_pyplot, new_axes

logger = logging.getLogger(__name__)

VALUES = ("mass_share", "topk_share")
SCALES = ("log", "linear")
LOG_RANGE = 1e4  # a log scale spans four decades below its largest share
Tables = Mapping[str, Any] | Sequence[Any] | Any


def importance_tables(
    runs: Tables, part: str | None = None, topk: int | float = 1000, region: str = "rest"
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
    return {label: _table(run, part, topk, region) for label, run in labelled.items()}


def _table(run: Any, part: str | None, topk: int | float, region: str) -> pd.DataFrame:
    if isinstance(run, pd.DataFrame):
        return run
    source = run if hasattr(run, "importance_by_layer") else getattr(run, "gradiend", None)
    if not hasattr(source, "importance_by_layer"):
        raise TypeError(
            f"cannot draw {type(run).__name__}: pass an importance table or a GradiendModel; "
            "gradiend.visualizer.plot_importance_by_layer also loads run folders"
        )
    return source.importance_by_layer(part, topk, by_module_type=True, region=region)


def importance_grid(
    runs: Tables,
    part: str | None = None,
    topk: int | float = 1000,
    value: str = "mass_share",
    region: str = "rest",
) -> dict[str, Any]:
    """The numbers of the figure: shared ``layers`` (every layer from the first to the last,
    then ``other``) and ``modules`` axes and per run a matrix ``[layer][module]`` of ``value``
    (0 where a run has no dimension there)."""
    if value not in VALUES:
        raise ValueError(f"value must be one of {VALUES}, got {value!r}")
    tables = importance_tables(runs, part, topk, region)
    layers = _all_layers({_layer_label(x) for t in tables.values() for x in t["layer"]})
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


def _all_layers(found: set[str]) -> list[str]:
    """Every layer number from the smallest to the largest found (no gaps), then ``other``."""
    numbers = sorted(int(x) for x in found if x != "other")
    layers = [str(i) for i in range(numbers[0], numbers[-1] + 1)] if numbers else []
    return layers + (["other"] if "other" in found else [])


def plot_importance_by_layer(
    models: Tables,
    part: str | None = None,
    topk: int | float = 1000,
    value: str = "mass_share",
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    region: str = "rest",
    scale: str = "log",
    ax: Any = None,
) -> dict[str, Any]:
    """Heatmap of each run's importance share (``mass_share`` or ``topk_share`` of the top-k
    dimensions) of ``region`` per layer × module type; several runs side by side on one colour
    scale (``log`` by default, or ``linear``).

    ``models`` is one run or several: importance tables, or GradiendModels (or anything with a
    ``.gradiend`` one) that compute theirs. Returns ``{"path", "figure", "data":
    importance_grid}``. ``ax``: Matplotlib Axes to draw into, one per run.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    plt = import_pyplot(show)  # fail early when the plot extra is missing
    data = importance_grid(models, part, topk, value, region)
    data.update(part=part, topk=topk, region=region, scale=scale)
    labels, layers, modules = list(data["matrices"]), data["layers"], data["modules"]
    width = max(3.5, 0.5 * len(modules) + 2.0)
    height = max(3.5, 0.3 * len(layers) + 0.12 * max(map(len, modules), default=0) + 1.5)
    fig, axes, owned = new_axes(
        plt, ax, len(labels), ncols=len(labels), figsize=(width * len(labels) + 1.5, height),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    axes = axes if len(labels) > 1 else [axes]
    norm = _norm(data["matrices"], scale)
    image = None
    for panel, label in zip(axes, labels, strict=True):
        grid = np.asarray(data["matrices"][label], dtype=float)
        shown = np.ma.masked_less_equal(grid, 0.0)  # empty cells stay blank
        image = panel.imshow(shown, cmap="magma_r", norm=norm, aspect="auto")
        if len(layers) * len(modules) <= 120:
            _annotate(panel, grid, norm)
        panel.set_xticks(range(len(modules)), modules, rotation=60, ha="right", fontsize=8)
        panel.set_yticks(range(len(layers)), layers, fontsize=8 if len(layers) <= 40 else 6)
        panel.set_title(label if len(labels) > 1 else f"Importance by layer and module ({region})")
        panel.set_xlabel("module type")
    axes[0].set_ylabel("layer")
    what = "importance mass" if value == "mass_share" else f"top-{topk} dimensions"
    colour_label = f"share of {what}" + (" (log scale)" if scale == "log" else "")
    fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label=colour_label)
    return finish(fig, data, output_path, FIG_IMPORTANCE, show, img_format, dpi, owned)


def _norm(matrices: dict[str, list], scale: str) -> Any:
    """One colour normalisation for every panel: log over ``LOG_RANGE`` below the largest share
    (or down to the smallest positive one), else linear from 0."""
    from matplotlib import colors  # the optional plot extra, imported with pyplot above

    values = np.concatenate([np.ravel(np.asarray(m, dtype=float)) for m in matrices.values()])
    positive = values[values > 0]
    vmax = float(positive.max()) if positive.size else 1.0
    if scale == "linear":
        return colors.Normalize(vmin=0.0, vmax=vmax)
    smallest = float(positive.min()) / 2 if positive.size else vmax  # the smallest stays tinted
    vmin = max(smallest, vmax / LOG_RANGE)
    return colors.LogNorm(vmin=min(vmin, vmax / 10), vmax=vmax)


def _annotate(ax: Any, grid: np.ndarray, norm: Any) -> None:
    """The share in each non-empty cell, white on dark cells."""
    for (i, j), v in np.ndenumerate(grid):
        if v <= 0:
            continue
        colour = "white" if float(norm(max(v, norm.vmin))) > 0.6 else "black"
        text = f"{v:.2f}" if v >= 0.01 else f"{v:.0e}"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
