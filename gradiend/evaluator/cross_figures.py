"""The cross-encoding figures that take runs: compute the matrix (``cross_family``), then draw
it with ``gradiend.visualizer.cross_heatmaps.plot_comparison_heatmap``.

Each takes the runs (trainers, a suite), an ``encoder_summary=`` built once with
``build_cross_task_encoder_summary`` (so several figures share one encoding pass), or a frame
already computed; keyword arguments other than the drawing options (``output_path``, ``show``, ``ax``, …) go to
the matrix function.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pandas as pd

from gradiend.evaluator import cross_family as fam
from gradiend.visualizer._common import DEFAULT_DPI, import_pyplot
from gradiend.visualizer.cross_heatmaps import plot_comparison_heatmap

logger = logging.getLogger(__name__)


def _draw(
    compute: Any,
    trainers: Any,
    matrix_kwargs: dict,
    labels: tuple[str, str],
    output_path: str | os.PathLike | None,
    show: bool | None,
    img_format: str,
    dpi: int,
    title: str | None,
    label_name_mapping: dict | None,
    ax: Any = None,
) -> dict[str, Any]:
    import_pyplot(show)  # fail early, before any run is encoded, when the plot extra is missing
    if isinstance(trainers, pd.DataFrame):
        frame = trainers
    else:
        frame = compute(trainers, **matrix_kwargs)
    return plot_comparison_heatmap(
        frame,
        title=title,
        ylabel=labels[0],
        xlabel=labels[1],
        label_name_mapping=label_name_mapping,
        output_path=output_path,
        show=show,
        img_format=img_format,
        dpi=dpi,
        ax=ax,
    )


def plot_gradiend_transition_cross_encoding_heatmap(
    trainers: Any = None,
    *,
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    title: str | None = None,
    label_name_mapping: dict | None = None,
    ax: Any = None,
    **matrix_kwargs: Any,
) -> dict[str, Any]:
    """GRADIEND × directed transition heatmap (``compute_gradiend_transition_cross_encoding_
    matrix``; ``trainers`` may be that frame)."""
    title = title or "mean encoding per transition"
    return _draw(
        fam.compute_gradiend_transition_cross_encoding_matrix, trainers, matrix_kwargs,
        ("GRADIEND", "transition (factual → counterfactual)"), output_path, show, img_format,
        dpi, title, label_name_mapping, ax,
    )  # fmt: skip


def plot_gradiend_feature_cross_encoding_heatmap(
    trainers: Any = None,
    *,
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    title: str | None = None,
    label_name_mapping: dict | None = None,
    ax: Any = None,
    **matrix_kwargs: Any,
) -> dict[str, Any]:
    """GRADIEND × feature class heatmap (``compute_gradiend_feature_cross_encoding_matrix``;
    ``trainers`` may be that frame)."""
    alignment = matrix_kwargs.get("alignment", "factual")
    title = title or "mean encoding per feature class"
    return _draw(
        fam.compute_gradiend_feature_cross_encoding_matrix, trainers, matrix_kwargs,
        ("GRADIEND", f"feature class ({alignment})"), output_path, show, img_format, dpi,
        title, label_name_mapping, ax,
    )  # fmt: skip


def plot_cross_encoding_heatmap(
    trainers: Any = None,
    feature_classes: list[str] | None = None,
    alignment: str | None = None,
    encoder_summary: Any = None,
    metric: str = "positive_mean",
    normalize: bool = False,
    *,
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    title: str | None = None,
    label_name_mapping: dict | None = None,
    ax: Any = None,
    **matrix_kwargs: Any,
) -> dict[str, Any]:
    """The cross-encoding heatmap of many runs.

    With ``feature_classes`` or ``alignment``: the anchor-aligned feature × feature matrix
    (``compute_anchor_aligned_encoding_matrix``); otherwise the run × run matrix of ``metric``
    (``compute_trainer_pair_encoding_matrix``, rows divided by the diagonal with
    ``normalize``). ``trainers`` may be a computed frame."""
    matrix_kwargs["encoder_summary"] = encoder_summary
    if feature_classes is not None or alignment is not None:
        compute = fam.compute_anchor_aligned_encoding_matrix
        matrix_kwargs.update(feature_classes=feature_classes, alignment=alignment or "factual")
        axes = ("anchor class (sign-aligned)", f"feature class ({alignment or 'factual'})")
        title = title or "anchor-aligned mean encoding"
    else:
        compute = fam.compute_trainer_pair_encoding_matrix
        matrix_kwargs.update(metric=metric, normalize=normalize)
        axes = ("GRADIEND", "data of run")
        title = title or f"{metric.replace('_', ' ')}" + (" (÷ diagonal)" if normalize else "")
    return _draw(
        compute, trainers, matrix_kwargs, axes, output_path, show, img_format, dpi, title,
        label_name_mapping, ax,
    )  # fmt: skip
