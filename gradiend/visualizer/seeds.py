"""Figures of several seeds of one run, and of the seed dispersion across runs.

* ``plot_encoder_by_target`` — the encodings per transition (and neutral type): one row of
  panels per seed (``plot_style="rows"``), or one panel with the seeds' group means and error
  bars (``plot_style="errorbar"``, ``error_stat`` std or sem, the seeds' own means as points).
* ``plot_seed_convergence`` — validation correlation and class means over the steps, one row
  per seed.
* ``plot_dispersion_heatmap`` — a run × run matrix of the seeds' spread (e.g. the std of the
  top-k overlap in %), its colour scale from 0 to its own maximum, cells annotated with one
  decimal.

They draw values they are given (``MultiSeedTrainerView`` and
``gradiend.evaluator.seed_groups`` compute them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradiend.run_layout import FIG_SEED_CONVERGENCE, FIG_SEED_DISPERSION, FIG_SEED_ENCODER
from gradiend.visualizer._common import (
    class_colours,
    figure_title,
    finish,
    import_pyplot,
    layout,
    new_axes,
)

logger = logging.getLogger(__name__)

__all__ = ["plot_dispersion_heatmap", "plot_encoder_by_target", "plot_seed_convergence"]

PLOT_STYLES = ("rows", "errorbar")
ERROR_STATS = ("std", "sem")


def _groups(df: pd.DataFrame) -> pd.Series:
    """A row's group: its transition (training rows), else its row type (neutral rows)."""
    if "transition" not in df.columns:
        return df["type"].astype(str)
    training = df["transition"].notna() & (df["transition"].astype(str) != "")
    return df["transition"].where(training, df["type"]).astype(str)


def group_means(by_seed: pd.DataFrame) -> pd.DataFrame:
    """Seed × group table of mean encodings (rows: seeds in order, columns: groups)."""
    frame = by_seed.assign(group=_groups(by_seed))
    table = frame.groupby(["seed", "group"], sort=False)["encoded"].mean().unstack("group")
    return table.reindex(columns=list(dict.fromkeys(frame["group"])))


def _check_choice(name: str, value: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def plot_encoder_by_target(
    encoder_df_by_seed: pd.DataFrame,
    plot_style: str = "rows",
    error_stat: str = "std",
    show_seed_points: bool = True,
    target_classes: Sequence[str] | None = None,
    output: Any = None,
    show: bool | None = None,
    img_format: str = "png",
    title: str | None = None,
    ax: Any = None,
) -> dict:
    """The seeds' encodings per group (see the module docstring); ``encoder_df_by_seed`` has
    the columns ``seed``, ``encoded`` and ``transition``/``type``; ``ax``: Matplotlib Axes to
    draw into (one per seed for ``"rows"``, one for ``"errorbar"``)."""
    _check_choice("plot_style", plot_style, PLOT_STYLES)
    _check_choice("error_stat", error_stat, ERROR_STATS)
    missing = {"seed", "encoded"} - set(encoder_df_by_seed.columns)
    if missing:
        raise ValueError(f"encoder_df_by_seed lacks the column(s) {sorted(missing)}")
    means = group_means(encoder_df_by_seed)
    seeds, groups = [int(s) for s in means.index], [str(g) for g in means.columns]
    colours = _group_colours(encoder_df_by_seed, groups, target_classes)
    plt = import_pyplot(show)
    data: dict[str, Any] = {
        "seeds": seeds,
        "groups": groups,
        "means": {s: means.loc[s].to_dict() for s in seeds},
        "plot_style": plot_style,
    }
    if plot_style == "rows":
        fig, axes, owned = new_axes(plt, ax, len(seeds), nrows=len(seeds),
                                    figsize=(6.4, 1.6 + 1.4 * len(seeds)), squeeze=False,
                                    sharex=True)  # fmt: skip
        axes = axes if len(seeds) > 1 else [axes]
        frame = encoder_df_by_seed.assign(group=_groups(encoder_df_by_seed))
        _draw_seed_rows(axes, frame, seeds, groups, colours)
        data["rows"] = len(seeds)
    else:
        fig, axes, owned = new_axes(plt, ax, figsize=(6.4, 4.0))
        ax = axes
        centre, error = _errorbars(means, error_stat)
        for i, g in enumerate(groups):
            ax.errorbar(i, centre[g], yerr=error[g], fmt="o", capsize=4, color=colours[g])
            if show_seed_points:
                ax.scatter(np.full(len(seeds), i + 0.15), means[g], s=10, color=colours[g],
                           alpha=0.5)  # fmt: skip
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
        ax.set_ylabel(f"mean encoding ± {error_stat} over {len(seeds)} seed(s)")
        ax.axhline(0, color="grey", lw=0.5)
        data.update(rows=1, centre=centre, error=error, error_stat=error_stat)
    figure_title(fig, axes, title or f"Encodings by transition, {len(seeds)} seed(s)", owned)
    layout(fig, owned)
    return finish(fig, data, output, FIG_SEED_ENCODER, show, img_format, owned=owned)


def _draw_seed_rows(axes: list, frame: pd.DataFrame, seeds: list, groups: list, colours) -> None:
    """One panel per seed: each group's encodings as jittered points."""
    for ax, seed in zip(axes, seeds, strict=True):
        rows = frame[frame["seed"] == seed]
        for i, g in enumerate(groups):
            vals = rows.loc[rows["group"] == g, "encoded"].to_numpy(dtype=float)
            jitter = np.linspace(-0.25, 0.25, len(vals)) if len(vals) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), vals, s=8, alpha=0.6, color=colours[g])
        ax.set_ylabel(f"seed {seed}")
        ax.set_ylim(-1.1, 1.1)
        ax.axhline(0, color="grey", lw=0.5)
    axes[-1].set_xticks(range(len(groups)), groups, rotation=30, ha="right")


def _errorbars(means: pd.DataFrame, error_stat: str) -> tuple[dict, dict]:
    """Per group: the mean of the seeds' means, and their std (ddof 1) or standard error."""
    centre, error = {}, {}
    for g in means.columns:
        vals = means[g].dropna().to_numpy(dtype=float)
        centre[str(g)] = float(vals.mean()) if len(vals) else math.nan
        std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        error[str(g)] = std / math.sqrt(len(vals)) if error_stat == "sem" and len(vals) else std
    return centre, error


def _group_colours(df: pd.DataFrame, groups: list[str], target_classes) -> dict[str, str]:
    """A transition takes its factual class's colour; neutral groups grey."""
    frame = df.assign(group=_groups(df))
    owner = {}
    for g in groups:
        sub = frame[frame["group"] == g]
        cls = sub["factual_class"].iloc[0] if "factual_class" in sub and len(sub) else g
        owner[g] = str(g) if str(g).startswith("neutral") else str(cls)
    colours = class_colours(list(owner.values()), target_classes)
    return {g: colours[owner[g]] for g in groups}


def plot_seed_convergence(
    stats_by_seed: Mapping[int, Mapping],
    target_classes: Sequence[str] | None = None,
    output: Any = None,
    show: bool | None = None,
    img_format: str = "png",
    ax: Any = None,
) -> dict:
    """Validation correlation (black) and class means over the steps, one row per seed;
    ``stats_by_seed`` maps a seed to its ``training.json`` (``evals``: step, correlation,
    mean_by_class); ``ax``: Matplotlib Axes to draw into, one per seed."""
    if not stats_by_seed:
        raise ValueError("no seeds to plot")
    plt = import_pyplot(show)
    seeds = list(stats_by_seed)
    fig, axes, owned = new_axes(plt, ax, len(seeds), nrows=len(seeds),
                                figsize=(6.4, 1.6 + 1.6 * len(seeds)), squeeze=False,
                                sharex=True)  # fmt: skip
    axes = axes if len(seeds) > 1 else [axes]
    data: dict[str, Any] = {"seeds": seeds, "rows": len(seeds), "correlation": {}}
    for ax, seed in zip(axes, seeds, strict=True):
        evals = list(stats_by_seed[seed].get("evals") or [])
        steps = [e.get("step", i) for i, e in enumerate(evals)]
        corr = [e.get("correlation", math.nan) for e in evals]
        data["correlation"][seed] = corr
        ax.plot(steps, corr, color="black", label="correlation")
        classes = list((evals[-1].get("mean_by_class") or {}) if evals else {})
        colours = class_colours(classes, target_classes)
        for cls in classes:
            ys = [(e.get("mean_by_class") or {}).get(cls, math.nan) for e in evals]
            ax.plot(steps, ys, color=colours[cls], lw=1, label=f"mean {cls}")
        ax.set_ylabel(f"seed {seed}")
        ax.set_ylim(-1.1, 1.1)
    axes[0].legend(fontsize="small", loc="lower right")
    axes[-1].set_xlabel("step")
    figure_title(fig, axes, f"Training convergence, {len(seeds)} seed(s)", owned)
    layout(fig, owned)
    return finish(fig, data, output, FIG_SEED_CONVERGENCE, show, img_format, owned=owned)


def plot_dispersion_heatmap(
    dispersion: pd.DataFrame,
    label: str = "std of top-k overlap (%)",
    scale: float = 100.0,
    output: Any = None,
    show: bool | None = None,
    img_format: str = "png",
    title: str | None = None,
    n_matrix: pd.DataFrame | None = None,
    ax: Any = None,
) -> dict:
    """Heatmap of ``dispersion × scale`` (run × run), colour scale 0 … its own maximum, every
    cell annotated with one decimal (``n_matrix``: the number of seed pairs behind it; ``ax``:
    a Matplotlib Axes to draw into)."""
    values = dispersion.to_numpy(dtype=float) * scale
    finite = values[np.isfinite(values)]
    vmax = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    plt = import_pyplot(show)
    n = len(dispersion)
    fig, ax, owned = new_axes(plt, ax, figsize=(2.0 + 0.8 * n, 1.6 + 0.7 * n))
    image = ax.imshow(values, cmap="Oranges", vmin=0.0, vmax=vmax)
    labels = [str(x) for x in dispersion.index]
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    annotations = []
    for i in range(n):
        for j in range(n):
            text = "–" if not np.isfinite(values[i, j]) else f"{values[i, j]:.1f}"
            annotations.append(text)
            colour = "white" if np.isfinite(values[i, j]) and values[i, j] > vmax / 2 else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize="small")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title or "Seed dispersion")
    layout(fig, owned)
    data = {"values": values.tolist(), "labels": labels, "vmax": vmax,
            "annotations": annotations}  # fmt: skip
    if n_matrix is not None:
        data["n_matrix"] = n_matrix.to_numpy().tolist()
    return finish(fig, data, output, FIG_SEED_DISPERSION, show, img_format, owned=owned)
