"""Component plots of a split GRADIEND: which parameter tensors (or sites) carry the feature.

The top panel shows each component's encoder |r| on the evaluated rows (green: the component
converged in training, grey: it did not, hatched: no verdict); the bottom panel shows the
distribution of each component's encodings per class and per neutral row type, side by side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradiend.run_layout import FIG_COMPONENTS
from gradiend.visualizer._common import (
    DEFAULT_DPI,
    class_colours,
    display_name,
    finish,
    import_pyplot,
    layout,
    new_axes,
)

__all__ = ["plot_components"]

logger = logging.getLogger(__name__)

COMPONENT_PREFIX = "encoded:"  # evaluate_encoder's column per component
CONVERGED_COLOURS = {True: "#2ca02c", False: "#9e9e9e", None: "#d9d9d9"}


def plot_components(
    encoder_df: pd.DataFrame,
    components: Mapping[str, Mapping[str, Any]],
    output: str | os.PathLike | None = None,
    show: bool | None = None,
    target_classes: Sequence[str] | None = None,
    label_name_mapping: Mapping[Any, str] | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    ax: Any = None,
) -> dict[str, Any]:
    """|r| per component and its encodings per class / neutral type.

    ``encoder_df``: ``evaluate_encoder(return_df=True)["encoder_df"]`` (an ``encoded:<name>``
    column per component); ``components``: its ``["components"]`` (name → ``correlation``,
    ``converged``). Returns ``{"path", "figure", "data": {"components", "correlation",
    "abs_correlation", "converged", "groups", "display_names", "colours", "n", "mean",
    "median"}}``, ``mean`` and ``median`` keyed by component, then group. ``ax``: two Axes.
    """
    plt = import_pyplot(show)  # fail early when the plot extra is missing
    names = _check(encoder_df, components)
    groups = _groups(encoder_df)
    order = _order(groups, target_classes)
    values = {
        n: {g: encoder_df.loc[groups == g, f"{COMPONENT_PREFIX}{n}"].astype(float).to_numpy()
            for g in order}
        for n in names
    }  # fmt: skip
    data = _data(names, components, values, order, label_name_mapping)
    data["colours"] = class_colours(order, list(target_classes or order[:2]))
    width = max(6.0, min(40.0, 2.0 + 0.35 * len(names) * max(2, len(order))))
    fig, axes, owned = new_axes(plt, ax, n=2, nrows=2, figsize=(width, 7.5), sharex=True)
    _draw_correlations(axes[0], names, data)
    _draw_distributions(axes[1], names, values, data["colours"])
    axes[1].set_xticks(range(len(names)), names, rotation=30, ha="right")
    handles = [plt.Rectangle((0, 0), 1, 1, color=data["colours"][g]) for g in order]
    axes[1].legend(handles, data["display_names"], fontsize="small", loc="best")
    layout(fig, owned)
    return finish(fig, data, output, FIG_COMPONENTS, show, img_format, dpi, owned)


def _check(df: pd.DataFrame, components: Mapping[str, Any]) -> list[str]:
    """The component names (at least two, each with its column); else a clear error."""
    names = [str(n) for n in components]
    if len(names) < 2:
        raise ValueError(
            "plot_components needs the metrics of a GRADIEND split into components (at least "
            "two); train with TrainingArguments(gradiend_split=GradiendSplit.by_tensor())"
        )
    missing = {"label", "type"} - set(df.columns)
    missing |= {f"{COMPONENT_PREFIX}{n}" for n in names} - set(df.columns)
    if missing:
        raise ValueError(
            f"encoder_df lacks column(s) {sorted(missing)[:5]}: pass the encoder_df of the same "
            "evaluate_encoder(return_df=True) call as the components"
        )
    return names


def _groups(df: pd.DataFrame) -> pd.Series:
    """Training rows group by factual class; neutral rows by their row type."""
    cls = df["factual_class"] if "factual_class" in df.columns else pd.Series(None, index=df.index)
    is_class = (df["type"] == "training") & cls.notna()
    return cls.astype(object).where(is_class, df["type"]).astype(str)


def _order(groups: pd.Series, targets: Sequence[str] | None) -> list[str]:
    """Target classes first, then the other classes, then the neutral groups."""
    present = list(dict.fromkeys(groups))
    first = [str(t) for t in targets or () if str(t) in present]
    neutral = [g for g in present if g.startswith("neutral")]
    rest = sorted(g for g in present if g not in first and g not in neutral)
    return first + rest + neutral


def _data(names, components, values, order, mapping) -> dict[str, Any]:
    corr = {n: _float(components[n].get("correlation")) for n in names}
    return {
        "components": names,
        "correlation": corr,
        "abs_correlation": {n: abs(r) for n, r in corr.items()},
        "converged": {n: components[n].get("converged") for n in names},
        "groups": order,
        "display_names": [display_name(g, mapping) for g in order],
        "n": {g: int(len(values[names[0]][g])) for g in order},
        "mean": {n: {g: float(np.mean(v)) for g, v in values[n].items() if len(v)} for n in names},
        "median": {
            n: {g: float(np.median(v)) for g, v in values[n].items() if len(v)} for n in names
        },
    }


def _float(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _draw_correlations(ax: Any, names: list[str], data: dict) -> None:
    for x, name in enumerate(names):
        verdict = data["converged"][name]
        ax.bar(x, data["abs_correlation"][name], color=CONVERGED_COLOURS[verdict],
               edgecolor="black", hatch="//" if verdict is None else None)  # fmt: skip
        r = data["correlation"][name]
        ax.text(x, min(abs(r), 1.0) + 0.02 if r == r else 0.02, f"{r:+.2f}", ha="center",
                va="bottom", fontsize="small")  # fmt: skip
    ax.set_ylim(0.0, 1.12)
    ax.set_ylabel("encoder |r|")
    ax.set_title("Components: encoder correlation (green: converged in training)")


def _draw_distributions(ax: Any, names: list[str], values: dict, colours: dict) -> None:
    groups = list(colours)
    width = 0.8 / max(1, len(groups))
    for x, name in enumerate(names):
        for j, g in enumerate(groups):
            v = values[name][g]
            pos = x - 0.4 + width * (j + 0.5)
            if len(v) >= 2 and np.ptp(v) > 0:
                parts = ax.violinplot([v], positions=[pos], widths=width, showmedians=True)
                for body in parts["bodies"]:
                    body.set_facecolor(colours[g])
                    body.set_alpha(0.7)
            elif len(v):
                ax.scatter([pos] * len(v), v, s=10, color=colours[g], edgecolor="black")
    for level in (-1.0, 0.0, 1.0):
        ax.axhline(level, color="grey", linewidth=0.6, linestyle=":", zorder=0)
    ax.set_ylabel("component encoding")
