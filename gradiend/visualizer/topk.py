"""Top-k overlap across runs, drawn from values: a heatmap of a similarity frame and a Venn (or
UpSet) diagram of top-k sets.

The numbers come from ``gradiend.evaluator.compare`` (a ``RunComparison``); the functions that
take runs, compare and then draw live in ``gradiend.evaluator.figures`` and are the public
``gradiend.visualizer.plot_topk_overlap_heatmap`` / ``plot_topk_overlap_venn`` /
``plot_similarity_heatmap``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from gradiend.run_layout import (
    FIG_SIMILARITY_PREFIX,
    FIG_TOPK_OVERLAP_HEATMAP,
    FIG_TOPK_OVERLAP_VENN,
)
from gradiend.visualizer._common import (
    DEFAULT_DPI,
    figure_title,
    finish,
    import_pyplot,
    import_venn,
    layout,
    new_axes,
)

logger = logging.getLogger(__name__)

MAX_UPSET_REGIONS = 40


def draw_topk_heatmap(
    frame: pd.DataFrame,
    topk: int | float | None,
    value: str = "intersection",
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    ax: Any = None,
) -> dict[str, Any]:
    """Heatmap of a frame of pairwise top-k overlaps (|S_i ∩ S_j| or the fraction of the smaller
    set; ``RunComparison.overlap(value)``), into ``ax`` (a Matplotlib Axes) when given.

    Returns ``{"path", "figure", "data": {"labels", "matrix" (list of rows), "topk", "part",
    "value"}}``.
    """
    plt = import_pyplot(show)
    matrix = frame.to_numpy()
    fig, owned = _draw_matrix(
        plt,
        ax,
        frame,
        title=f"Top-{topk} overlap ({_ranking(frame.attrs.get('part'), frame.attrs.get('region'))})",
        colour_label=_value_label(value, topk),
        limits=(0.0, _colour_max(matrix, value)),
        integer=value == "intersection",
    )
    data = {
        "labels": [str(label) for label in frame.index],
        "matrix": matrix.tolist(),
        "topk": topk,
        "part": frame.attrs.get("part"),  # the ranking used (each run's default when not asked)
        "value": value,
        "region": frame.attrs.get("region"),
    }
    return finish(fig, data, output_path, FIG_TOPK_OVERLAP_HEATMAP, show, img_format, dpi, owned)


def _ranking(part: str | None, region: str | None) -> str:
    """``part`` and, when known, the region of dimensions it ranked (e.g. ``snr, rest``)."""
    part = part or "each run by its default ranking"
    return f"{part}, {region}" if region else part


def _colour_max(matrix: np.ndarray, value: str) -> float:
    """Top of the colour scale: 1 for fractions; for counts the largest off-diagonal overlap,
    so that the diagonal (each run's own k) saturates instead of washing out the pairs."""
    if value == "intersection_frac":
        return 1.0
    off = matrix[~np.eye(len(matrix), dtype=bool)]
    off = off[np.isfinite(off)]
    if off.size and off.max() > 0:
        return float(off.max())
    return float(np.nanmax(matrix)) if np.isfinite(matrix).any() else 1.0


def _value_label(value: str, topk: int | float) -> str:
    if value == "intersection":
        return f"|S_i ∩ S_j| (top-{topk})"
    return "|S_i ∩ S_j| / min(|S_i|, |S_j|)"


def draw_similarity_heatmap(
    frame: pd.DataFrame,
    measure: str = "cosine",
    part: str | None = None,
    topk: int | float | None = None,
    value: str = "intersection_frac",
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    ax: Any = None,
) -> dict[str, Any]:
    """Heatmap of a similarity frame (``compute_similarity_matrix``); its ``attrs`` override the
    ``measure``/``part``/``topk``/``value`` given; ``ax``: a Matplotlib Axes to draw into.

    Signed measures (``cosine_signed``, ``spearman_signed``) use a diverging −1…1 scale; the
    others 0…1 (or 0…max for top-k counts). Returns ``{"path", "figure", "data": {"labels",
    "matrix", "measure", "part", "topk", "value"}}``.
    """
    plt = import_pyplot(show)
    attrs = {"measure": measure, "part": part, "topk": topk, "value": value, **frame.attrs}
    matrix = frame.to_numpy(dtype=float)
    counts = attrs["measure"] == "topk_overlap" and attrs["value"] == "intersection"
    if str(attrs["measure"]).endswith("_signed"):
        limits = (-1.0, 1.0)
    else:
        limits = (0.0, _colour_max(matrix, "intersection") if counts else 1.0)
    title = f"{attrs['measure']} ({_ranking(attrs['part'], attrs.get('region'))})"
    fig, owned = _draw_matrix(plt, ax, frame, title, str(attrs["measure"]), limits, counts)
    data = {"labels": [str(x) for x in frame.index], "matrix": matrix.tolist()}
    data.update({k: attrs[k] for k in ("measure", "part", "topk", "value")})
    name = f"{FIG_SIMILARITY_PREFIX}{attrs['measure']}"
    return finish(fig, data, output_path, name, show, img_format, dpi, owned)


def _draw_matrix(
    plt: Any,
    ax: Any,
    frame: pd.DataFrame,
    title: str,
    colour_label: str,
    limits: tuple[float, float],
    integer: bool,
) -> tuple[Any, bool]:
    """A labelled, annotated square heatmap (diverging colours when the scale is −1…1):
    ``(figure, owned)``."""
    labels = [str(label) for label in frame.index]
    matrix = frame.to_numpy(dtype=float)
    diverging = limits[0] < 0
    side = max(4.0, 0.7 * len(labels) + 2.5)
    fig, ax, owned = new_axes(plt, ax, figsize=(side + 1.0, side))
    cmap = "RdBu_r" if diverging else "viridis"
    image = ax.imshow(matrix, cmap=cmap, vmin=limits[0], vmax=limits[1])
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=colour_label)
    _annotate_cells(ax, matrix, integer, limits, diverging)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_title(title)
    layout(fig, owned)
    return fig, owned


def _annotate_cells(
    ax: Any, matrix: np.ndarray, integer: bool, limits: tuple[float, float], diverging: bool
) -> None:
    """Write each cell's number in a colour readable on its cell (dark cells get white text)."""
    fontsize = 9 if len(matrix) <= 8 else 7
    low, high = limits
    for (i, j), v in np.ndenumerate(matrix):
        text = f"{int(v)}" if integer and np.isfinite(v) else f"{v:.2f}"
        t = (v - low) / (high - low) if high > low and np.isfinite(v) else 0.0
        light = 0.2 < t < 0.8 if diverging else t > 0.5
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            color="black" if light else "white",
            fontsize=fontsize,
        )


def draw_topk_venn(
    sets: Mapping[str, set[int]],
    regions: Mapping[tuple[str, ...], int],
    topk: int | float | None,
    part: str | None = None,
    output_path: str | os.PathLike | None = None,
    show: bool | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    region: str | None = None,
    ax: Any = None,
) -> dict[str, Any]:
    """Venn diagram of top-k sets and their regions (``RunComparison.topk_sets``/``regions``):
    matplotlib-venn for 2–3 runs, UpSet bars for 4–6. Identical sets are drawn once, as one
    circle named after all of them (``A = B``), so identical runs look identical.

    Returns ``{"path", "figure", "data": {"labels", "set_sizes", "regions", "topk", "part",
    "region", "identical"}}`` where ``regions`` maps the tuple of labels of the sets a region
    lies in (exactly those) to its element count and ``identical`` lists the groups of labels
    whose sets are equal (drawn as one). ``ax``: a Matplotlib Axes to draw into (two, bars
    above dots, for the UpSet chart of 4–6 runs).
    """
    plt = import_pyplot(show)
    if not 2 <= len(sets) <= 6:
        raise ValueError(f"a Venn diagram compares 2 to 6 runs, got {len(sets)}")
    regions = dict(regions)
    merged = merge_identical(sets)
    if len(sets) <= 3:
        fig, axes, owned = new_axes(plt, ax, figsize=(6.0, 5.0))
        _draw_venn(plt, axes, merged)
    else:
        fig, axes, owned = new_axes(plt, ax, 2, nrows=2, figsize=(10.0, 6.0), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1.6]})  # fmt: skip
        _draw_upset(axes, sets, regions)
    figure_title(fig, axes, f"Top-{topk} overlap ({_ranking(part, region)})", owned)
    layout(fig, owned)
    data = {
        "labels": list(sets),
        "set_sizes": {label: len(s) for label, s in sets.items()},
        "regions": regions,
        "topk": topk,
        "part": part,
        "region": region,
        "identical": [label.split(" = ") for label in merged if " = " in label],
    }
    return finish(fig, data, output_path, FIG_TOPK_OVERLAP_VENN, show, img_format, dpi, owned)


def merge_identical(sets: Mapping[str, set[int]]) -> dict[str, set[int]]:
    """The distinct sets, each labelled by every label that has it (``"A = B"``), in order."""
    merged: dict[str, set[int]] = {}
    for label, members in sets.items():
        same = next((k for k, v in merged.items() if v == members), None)
        if same is None:
            merged[label] = members
        else:
            merged[f"{same} = {label}"] = merged.pop(same)
    return merged


def _draw_venn(plt: Any, ax: Any, sets: Mapping[str, set[int]]) -> None:
    """A Venn diagram of 1–3 distinct sets; a single set (every run identical) is one circle."""
    if len(sets) == 1:
        ((label, members),) = sets.items()
        ax.add_patch(plt.Circle((0.0, 0.0), 1.0, color="#3b6ea8", alpha=0.5))
        ax.text(0.0, 0.0, str(len(members)), ha="center", va="center", fontsize=14)
        ax.text(0.0, -1.15, f"{label} (identical sets)", ha="center", va="top", fontsize=11)
        ax.set_xlim(-1.4, 1.4)
        ax.set_ylim(-1.5, 1.2)
        ax.set_aspect("equal")
        ax.axis("off")
        return
    venn = import_venn()
    draw = venn.venn2 if len(sets) == 2 else venn.venn3
    draw(list(sets.values()), set_labels=list(sets), ax=ax)


def _draw_upset(
    axes: list, sets: Mapping[str, set[int]], regions: dict[tuple[str, ...], int]
) -> None:
    """UpSet-style chart: bars of region sizes above a dot matrix naming each region's sets.

    Clearer than a 4–6 set Venn: every region's size is a bar, largest first; empty regions are
    left out and at most ``MAX_UPSET_REGIONS`` bars are drawn.
    """
    labels = list(sets)
    shown = sorted(
        ((k, n) for k, n in regions.items() if n > 0), key=lambda kv: (-kv[1], len(kv[0]))
    )
    if len(shown) > MAX_UPSET_REGIONS:
        logger.info("UpSet chart shows the %d largest of %d regions", MAX_UPSET_REGIONS, len(shown))
        shown = shown[:MAX_UPSET_REGIONS]
    bars, dots = axes
    x = np.arange(len(shown))
    bars.bar(x, [n for _, n in shown], color="#3b6ea8")
    for xi, (_, n) in zip(x, shown, strict=False):
        bars.text(xi, n, str(n), ha="center", va="bottom", fontsize=8)
    bars.set_ylim(0, 1.12 * max(n for _, n in shown))
    bars.set_ylabel("elements in exactly these sets")
    for row, label in enumerate(labels):
        member = [label in key for key, _ in shown]
        dots.scatter(x, [row] * len(x), c=["black" if m else "#d9d9d9" for m in member], s=40)
    for xi, (key, _) in zip(x, shown, strict=False):
        rows = [labels.index(label) for label in key]
        dots.plot([xi, xi], [min(rows), max(rows)], color="black", linewidth=1.5)
    dots.set_yticks(range(len(labels)), [f"{lab} ({len(sets[lab])})" for lab in labels])
    dots.set_ylim(-0.5, len(labels) - 0.5)
    dots.invert_yaxis()
    dots.set_xticks([])
