"""Heatmaps of comparison matrices: any labelled frame, square or not, signed or not.

``plot_comparison_heatmap`` draws a frame (rows × columns) with its numbers in the cells and,
when the frame carries a seed dispersion (``attrs["dispersion"]``, see
``gradiend.evaluator.cross_family``), ``mean ± dispersion`` in each cell. A frame with negative
cells gets a diverging scale centred on 0; transition columns (``a→b``) are labelled
``a → b``. The cross-encoding figures that take runs live in ``gradiend.evaluator``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from gradiend.visualizer._common import (
    DEFAULT_DPI,
    display_name,
    finish,
    format_transition_label,
    import_pyplot,
    layout,
    new_axes,
)

logger = logging.getLogger(__name__)

DEFAULT_NAME = "comparison_heatmap"


def _frame_of(comparison_data: Any) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The frame to draw and its dispersion (or None), from a frame, a ``{"matrix",
    "dispersion"}`` mapping or a value with a ``.frame``."""
    dispersion = None
    if isinstance(comparison_data, Mapping):
        if "matrix" not in comparison_data:
            raise ValueError("a mapping to draw needs a 'matrix' (and optionally 'dispersion')")
        frame, dispersion = comparison_data["matrix"], comparison_data.get("dispersion")
    else:
        frame = getattr(comparison_data, "frame", comparison_data)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"cannot draw a {type(frame).__name__}: pass a labelled DataFrame")
    if frame.empty:
        raise ValueError("the matrix to draw is empty")
    if dispersion is None and isinstance(frame.attrs.get("dispersion"), Mapping):
        dispersion = frame.attrs["dispersion"].get("values")
    if dispersion is not None:
        dispersion = np.asarray(getattr(dispersion, "values", dispersion), dtype=float)
        if dispersion.shape != frame.shape:
            raise ValueError(f"dispersion has shape {dispersion.shape}, the matrix {frame.shape}")
    return frame, dispersion


def _tick(label: Any, names: dict | None) -> str:
    text = str(label)
    if any(sep in text for sep in ("→", "->")):
        return format_transition_label(text, names=names)
    return display_name(label, names)


def _limits(matrix: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    finite = matrix[np.isfinite(matrix)]
    top = float(np.abs(finite).max()) if finite.size else 1.0
    top = top if top > 0 else 1.0
    if finite.size and finite.min() < 0:
        low, high = -top, top
    else:
        low, high = 0.0, 1.0 if top <= 1 else top
    return (low if vmin is None else vmin), (high if vmax is None else vmax)


def plot_comparison_heatmap(
    comparison_data: Any,
    *,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    annotate: bool = True,
    fmt: str = ".2f",
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    label_name_mapping: dict | None = None,
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    ax: Any = None,
) -> dict[str, Any]:
    """Heatmap of a comparison matrix (any rows × columns frame; see the module docstring).

    Returns ``{"path", "figure", "data": {"rows", "columns", "matrix", "dispersion", "title",
    "limits"}}``; ``label_name_mapping`` renames classes on the axes; ``ax``: a Matplotlib Axes to draw into.
    """
    frame, dispersion = _frame_of(comparison_data)
    plt = import_pyplot(show)
    matrix = frame.to_numpy(dtype=float)
    limits = _limits(matrix, vmin, vmax)
    diverging = limits[0] < 0
    rows = [_tick(r, label_name_mapping) for r in frame.index]
    cols = [_tick(c, label_name_mapping) for c in frame.columns]
    width = max(4.0, 0.8 * len(cols) + 3.0)
    fig, ax, owned = new_axes(plt, ax, figsize=(width, max(3.5, 0.6 * len(rows) + 2.0)))
    image = ax.imshow(
        matrix, cmap=cmap or ("RdBu_r" if diverging else "viridis"), vmin=limits[0],
        vmax=limits[1], aspect="auto",
    )  # fmt: skip
    measure = str(frame.attrs.get("measure", "value"))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=measure)
    if annotate:
        _annotate(ax, matrix, dispersion, fmt, limits, diverging)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel or str(frame.columns.name or ""))
    ax.set_ylabel(ylabel or str(frame.index.name or ""))
    title = title or measure.replace("_", " ")
    ax.set_title(title)
    layout(fig, owned)
    data = {"rows": [str(r) for r in frame.index], "columns": [str(c) for c in frame.columns]}
    data.update(matrix=matrix.tolist(), title=title, limits=list(limits))
    data["dispersion"] = None if dispersion is None else dispersion.tolist()
    name = measure if measure != "value" else DEFAULT_NAME
    return finish(fig, data, output_path, name, show, img_format, dpi, owned)


def _annotate(ax, matrix, dispersion, fmt, limits, diverging) -> None:
    """Each cell's value (``± dispersion``) in a colour readable on the cell."""
    fontsize = 9 if matrix.shape[1] <= 8 else 7
    low, high = limits
    for (i, j), v in np.ndenumerate(matrix):
        text = "–" if not np.isfinite(v) else format(v, fmt)
        if dispersion is not None and np.isfinite(dispersion[i, j]):
            text += f"\n±{format(dispersion[i, j], fmt)}"
        t = (v - low) / (high - low) if high > low and np.isfinite(v) else 0.0
        light = 0.2 < t < 0.8 if diverging else t > 0.5
        colour = "black" if light else "white"
        ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=fontsize)
