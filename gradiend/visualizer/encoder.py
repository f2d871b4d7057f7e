"""Encoder distributions: violins of encoded values per class and per neutral group.

A trained GRADIEND should put one target class near +1, the other near −1 and neutral inputs
near 0; this plot shows how well, and how widely, each group is separated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradiend.run_layout import FIG_ENCODER
from gradiend.visualizer._common import (
    DEFAULT_DPI,
    class_colours,
    display_name,
    finish,
    import_pyplot,
    layout,
    new_axes,
)

logger = logging.getLogger(__name__)

NEUTRAL_TYPES = ("neutral_training_masked", "neutral_dataset")


def plot_encoder_distributions(
    encoder_df: pd.DataFrame,
    output: str | os.PathLike | None = None,
    show: bool | None = None,
    label_name_mapping: Mapping[Any, str] | None = None,
    target_classes: Sequence[str] | None = None,
    only_target_and_neutral: bool = False,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    ax: Any = None,
) -> dict[str, Any]:
    """Violin per factual class (``type == "training"``) and per neutral row type.

    Target classes (given, or inferred as the classes labelled +1 and −1) come first; every
    class has its colour of every figure (``class_colours``), neutral groups are light grey.
    Each group is a violin (when it has two distinct values) with its rows as jittered points. Returns ``{"path",
    "figure", "data": {"groups", "display_names", "target_classes", "colours", "n", "mean",
    "median", "q1", "q3", "min", "max"}}``, the statistics keyed by group name. ``ax``: a
    Matplotlib Axes to draw into instead of a new figure.
    """
    plt = import_pyplot(show)  # fail early when the plot extra is missing
    _check_columns(encoder_df)
    frame = encoder_df.assign(group=_group_column(encoder_df))
    targets = list(target_classes) if target_classes else _infer_targets(frame)
    order = _group_order(frame, targets, only_target_and_neutral)
    values = {g: frame.loc[frame["group"] == g, "encoded"].astype(float).to_numpy() for g in order}
    data = _summary(values, targets, label_name_mapping)
    fig, ax, owned = new_axes(plt, ax, figsize=(max(6.0, 1.3 * len(order) + 2.0), 5.0))
    data["colours"] = class_colours(order, targets)
    _draw_violins(ax, values, [data["colours"][g] for g in order])
    for level in (-1.0, 0.0, 1.0):
        ax.axhline(level, color="grey", linewidth=0.6, linestyle=":", zorder=0)
    ax.set_xticks(range(len(order)), data["display_names"], rotation=20, ha="right")
    ax.set_ylabel("encoded value")
    ax.set_title("Encoder distributions")
    layout(fig, owned)
    return finish(fig, data, output, FIG_ENCODER, show, img_format, dpi, owned)


def _check_columns(df: pd.DataFrame) -> None:
    missing = {"encoded", "label", "type"} - set(df.columns)
    if missing:
        raise ValueError(
            f"encoder_df lacks column(s) {sorted(missing)}; expected encoded, label, type, "
            "factual_class (the rows of evaluate_encoder)"
        )


def _group_column(df: pd.DataFrame) -> pd.Series:
    """Training rows group by factual class; neutral rows (or rows without a class) by type."""
    cls = df["factual_class"] if "factual_class" in df.columns else pd.Series(None, index=df.index)
    is_class = (df["type"] == "training") & cls.notna()
    return cls.astype(object).where(is_class, df["type"]).astype(str)


def _infer_targets(frame: pd.DataFrame) -> list[str]:
    """The class labelled +1 first, then the class labelled −1 (the trained pair)."""
    training = frame[frame["type"] == "training"]
    targets = []
    for label in (1, -1):
        groups = training.loc[training["label"] == label, "group"]
        if not groups.empty:
            targets.append(str(groups.mode().iloc[0]))
    return targets


def _group_order(
    frame: pd.DataFrame, targets: list[str], only_target_and_neutral: bool
) -> list[str]:
    present = list(dict.fromkeys(frame["group"]))
    neutral = [t for t in NEUTRAL_TYPES if t in present]
    neutral += [g for g in present if g not in targets and g not in neutral and _is_type(frame, g)]
    first = [t for t in targets if t in present]
    others = sorted(g for g in present if g not in first and g not in neutral)
    order = first + ([] if only_target_and_neutral else others) + neutral
    if not order:
        raise ValueError("encoder_df has no rows to plot")
    return order


def _is_type(frame: pd.DataFrame, group: str) -> bool:
    """A group named after a row type (neutral rows, or training rows without a class)."""
    return group in set(frame["type"].astype(str))


def _summary(
    values: dict[str, np.ndarray], targets: list[str], mapping: Mapping[Any, str] | None
) -> dict[str, Any]:
    stat = {
        "n": lambda v: int(len(v)),
        "mean": lambda v: float(np.mean(v)),
        "median": lambda v: float(np.median(v)),
        "q1": lambda v: float(np.quantile(v, 0.25)),
        "q3": lambda v: float(np.quantile(v, 0.75)),
        "min": lambda v: float(np.min(v)),
        "max": lambda v: float(np.max(v)),
    }
    data: dict[str, Any] = {
        "groups": list(values),
        "display_names": [display_name(g, mapping) for g in values],
        "target_classes": targets,
    }
    for name, fn in stat.items():
        data[name] = {g: fn(v) for g, v in values.items() if len(v) or name == "n"}
    return data


def _draw_violins(ax: Any, values: dict[str, np.ndarray], colours: list[str]) -> None:
    for x, (v, colour) in enumerate(zip(values.values(), colours, strict=False)):
        if len(v) >= 2 and np.ptp(v) > 0:
            parts = ax.violinplot([v], positions=[x], showmedians=True, widths=0.8)
            for body in parts["bodies"]:
                body.set_facecolor(colour)
                body.set_edgecolor("black")
                body.set_alpha(0.8)
            for key in ("cbars", "cmins", "cmaxes", "cmedians"):
                if key in parts:
                    parts[key].set_color("black")
        if len(v):  # the rows themselves, so a class squeezed at ±1 still shows its colour
            jitter = np.random.default_rng(x).uniform(-0.12, 0.12, len(v))
            ax.scatter(x + jitter, v, s=12, color=colour, edgecolor="black", linewidth=0.3,
                       zorder=3)  # fmt: skip
