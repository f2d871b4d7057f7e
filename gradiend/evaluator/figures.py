"""The cross-run figures that take runs: compare them once (``compare``), then draw the value.

These are the public ``gradiend.visualizer.plot_topk_overlap_heatmap``,
``plot_topk_overlap_venn``, ``plot_similarity_heatmap`` and ``plot_importance_by_layer``; the
drawing itself is in ``gradiend.visualizer`` and sees only values (``ax=`` draws into the
caller's Axes, as there). Each accepts a
``RunComparison`` in place of the runs, so one comparison can feed several figures. A run
that did not converge is refused unless ``allow_unconverged=True``; its label then carries
``" (NOT CONVERGED)"`` on every axis, legend and Venn circle.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from gradiend.evaluator.compare import ModelLike, RunComparison, compare
from gradiend.model.gradiend import DEFAULT_PART
from gradiend.model.localise import by_layer
from gradiend.model.runs import label_runs, load_gradiend
from gradiend.model.word_rows import DEFAULT_REGION
from gradiend.visualizer._common import DEFAULT_DPI, import_pyplot
from gradiend.visualizer.importance import plot_importance_by_layer as draw_importance_by_layer
from gradiend.visualizer.topk import draw_similarity_heatmap, draw_topk_heatmap, draw_topk_venn

logger = logging.getLogger(__name__)

Runs = Mapping[str, ModelLike] | Sequence[ModelLike] | RunComparison


def plot_topk_overlap_heatmap(
    models: Runs,
    topk: int | float = 1000,
    part: str | None = DEFAULT_PART,
    value: str = "intersection",
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
    ax: Any = None,
) -> dict[str, Any]:
    """Heatmap of pairwise top-k overlaps (|S_i ∩ S_j| or the fraction of the smaller set) of
    the runs' top-k sets in ``region`` (default ``rest``: all but the feature words' rows).

    ``models`` are runs (see ``compute_similarity_matrix``) or a ``RunComparison``, drawn with
    its own ``topk``, ranking and region. Returns ``{"path", "figure", "data": {"labels",
    "matrix" (list of rows), "topk", "part", "value", "region"}}``.
    """
    import_pyplot(show)  # fail early, before any run is loaded, when the plot extra is missing
    found = _comparison(models, topk, part, value, region, allow_unconverged)
    return draw_topk_heatmap(
        found.overlap(value), found.topk, value, output_path, show, img_format, dpi, ax=ax
    )


def plot_topk_overlap_venn(
    models: Runs,
    topk: int | float = 1000,
    part: str | None = DEFAULT_PART,
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
    ax: Any = None,
) -> dict[str, Any]:
    """Venn diagram of the runs' top-k sets in ``region``: matplotlib-venn for 2–3 runs, UpSet
    bars for 4–6; identical sets are drawn as one circle named after all of them.

    ``models`` are runs or a ``RunComparison`` (its own ``topk``, ranking and region). Returns
    ``{"path", "figure", "data": {"labels", "set_sizes", "regions", "topk", "part", "region",
    "identical"}}`` where ``regions`` maps the tuple of labels of the sets a region lies in
    (exactly those) to its element count.
    """
    import_pyplot(show)  # fail early, before any run is loaded, when the plot extra is missing
    found = _comparison(models, topk, part, region=region, allow_unconverged=allow_unconverged)
    if found.topk_sets is None or found.regions is None:
        raise ValueError("a Venn diagram needs the top-k sets of single runs (not seed groups)")
    return draw_topk_venn(
        found.topk_sets,
        found.regions,
        found.topk,
        found.requested_part,
        output_path,
        show,
        img_format,
        dpi,
        region=found.region,
        ax=ax,
    )


def plot_similarity_heatmap(
    models: Mapping[str, Any] | Sequence[ModelLike] | pd.DataFrame | RunComparison,
    measure: str = "cosine",
    part: str | None = None,
    topk: int | float | None = None,
    value: str = "intersection_frac",
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
    ax: Any = None,
) -> dict[str, Any]:
    """Heatmap of any ``compute_similarity_matrix`` measure (over ``region``), of a ready
    similarity DataFrame, or of a ``RunComparison``'s frame.

    Signed measures (``cosine_signed``, ``spearman_signed``) use a diverging −1…1 scale; the
    others 0…1 (or 0…max for top-k counts). Returns ``{"path", "figure", "data": {"labels",
    "matrix", "measure", "part", "topk", "value"}}``.
    """
    import_pyplot(show)  # fail early, before any run is loaded, when the plot extra is missing
    if isinstance(models, pd.DataFrame):
        frame = models
    elif isinstance(models, RunComparison):
        frame = models.frame
    else:
        sets_topk = topk if measure == "topk_overlap" else None
        found = compare(models, measure, sets_topk, part, value, vector_topk=topk, region=region,
                        allow_unconverged=allow_unconverged)  # fmt: skip
        frame = found.frame
    args = (measure, part, topk, value, output_path, show, img_format, dpi)
    return draw_similarity_heatmap(frame, *args, ax=ax)


def plot_importance_by_layer(
    models: Mapping[str, ModelLike] | Sequence[ModelLike] | ModelLike,
    part: str | None = None,
    topk: int | float = 1000,
    value: str = "mass_share",
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    region: str = DEFAULT_REGION,
    scale: str = "log",
    ax: Any = None,
) -> dict[str, Any]:
    """Heatmap of each run's importance share (``mass_share`` or ``topk_share`` of the top-k
    dimensions) of ``region`` (default ``rest``: all but the feature words' own embedding rows)
    per layer × module type; several runs side by side on one (``log`` or ``linear``) scale.

    ``models`` is one run or several, as for ``compute_similarity_matrix`` (GradiendModel,
    ModelWithGradiend or run folder), or ready importance tables. Returns ``{"path",
    "figure", "data": importance_grid}``.
    """
    import_pyplot(show)  # fail early, before any run is loaded, when the plot extra is missing
    if not isinstance(models, (Mapping, list, tuple)):
        models = [models]
    tables = {
        label: run
        if isinstance(run, pd.DataFrame)
        else by_layer(load_gradiend(run), part, topk, by_module_type=True, region=region)
        for label, run in label_runs(models).items()
    }
    args = (part, topk, value, output_path, show, img_format, dpi)
    return draw_importance_by_layer(tables, *args, region=region, scale=scale, ax=ax)


def _comparison(
    models: Runs,
    topk: int | float,
    part: str | None,
    value: str = "intersection_frac",
    region: str = DEFAULT_REGION,
    allow_unconverged: bool = False,
) -> RunComparison:
    """The comparison to draw: ``models`` itself, or the top-k comparison of the runs (an
    unconverged run refused unless ``allow_unconverged``; its label is marked then)."""
    if isinstance(models, RunComparison):
        return models
    return compare(
        models, "topk_overlap", topk, part, value, region=region,
        allow_unconverged=allow_unconverged,
    )  # fmt: skip
