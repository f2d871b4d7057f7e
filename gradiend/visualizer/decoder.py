"""Decoder probability shifts: how rewriting the model with η·decoder(ff) moves class probabilities.

One panel per class: the mean probability of the class's words against the step size η (log
axis), one line per feature factor through every evaluated point (an adaptive search scores
different step sizes per direction), the unmodified base model as a dashed reference. Then the
language-modelling score (LMS) with the acceptance threshold ``lms_ratio · LMS(base)`` and, when
the points carry a neutral NLL, its relative increase with the ``max_nll_increase`` bound.
Points scored on the screening subset only (estimated LMS/NLL) are drawn hollow. The point
chosen by the selection policy is starred.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from gradiend.run_layout import FIG_SHIFTS, safe_name
from gradiend.visualizer._common import (
    DEFAULT_DPI,
    SERIES_COLOURS,
    class_colours,
    finish,
    import_pyplot,
    layout,
    new_axes,
)

logger = logging.getLogger(__name__)

_WEAKEN_SUFFIX = "_weaken"


def plot_probability_shifts(
    decoder_results: Mapping[str, Any],
    output: str | os.PathLike | None = None,
    show: bool | None = None,
    target_class: str | None = None,
    img_format: str = "png",
    lms_ratio: float | None = None,
    dpi: int = DEFAULT_DPI,
    target_classes: list[str] | None = None,
    ax: Any = None,
) -> dict[str, Any]:
    """Probability of each class's words and LMS against η, per feature factor.

    Each class panel's title and axis are in the class's colour of every figure
    (``target_classes``, default: the classes in the grid's order); the feature-factor lines use
    colours that are not class colours.

    ``decoder_results`` is the output of decoder evaluation: summary entries per class (with
    ``feature_factor`` and ``learning_rate`` of the selected point) plus ``"grid"``, whose entry
    with ``feature_factor == 0`` and ``learning_rate == 0`` is the base model. ``target_class``
    restricts the starred selections to that class (default: every summary entry).
    ``lms_ratio`` defaults to the ratio recorded in the summaries' budget, else 0.99. ``ax``:
    Matplotlib Axes to draw into, one per class, one for LMS and (when recorded) one for NLL.
    Returns ``{"path", "figure", "data": {"classes", "feature_factors", "learning_rates",
    "probs" {class: {ff: [p per η]}}, "lms" {ff: [...]}, "points" {ff: {"learning_rates",
    "probs" {class: [...]}, "lms", "nll_increase", "estimated"}}, "base_probs", "base_lms",
    "lms_threshold", "max_nll_increase", "selected", "colours"}}``.
    """
    plt = import_pyplot(show)  # fail early when the plot extra is missing
    data = _shift_data(decoder_results, target_class, lms_ratio)
    data["colours"] = class_colours(data["classes"], target_classes)
    with_nll = any(v is not None for p in data["points"].values() for v in p["nll_increase"])
    n = len(data["classes"]) + 1 + with_nll
    fig, axes, owned = new_axes(plt, ax, n, ncols=n, figsize=(4.5 * n, 4.0), squeeze=False)
    axes = axes if n > 1 else [axes]
    for panel, cls in zip(axes, data["classes"], strict=False):
        _draw_class_panel(panel, cls, data)
    _draw_lms_panel(axes[len(data["classes"])], data)
    if with_nll:
        _draw_nll_panel(axes[-1], data)
    layout(fig, owned)
    name = FIG_SHIFTS + (f"_{safe_name(target_class)}" if target_class else "")
    return finish(fig, data, output, name, show, img_format, dpi, owned)


# --------------------------------------------------------------------------- numbers
def _shift_data(
    results: Mapping[str, Any], target_class: str | None, lms_ratio: float | None
) -> dict:
    grid = list(results.get("grid", []))
    if not grid:
        raise ValueError("decoder_results has no 'grid' entries to plot")
    base = next((g for g in grid if _ff(g) == 0 and _lr(g) == 0), None)
    points = [g for g in grid if g is not base and _lr(g) != 0]
    classes = list(dict.fromkeys(c for g in grid for c in g.get("probs", {})))
    ffs = sorted({_ff(g) for g in points}, reverse=True)
    lrs = sorted({_lr(g) for g in points})
    lookup = {(_ff(g), _lr(g)): g for g in points}
    base_lms = _lms(base) if base is not None else _summary_base_lms(results)
    budget = _summary_budget(results)
    if lms_ratio is None:
        lms_ratio = budget.get("lms_ratio") or 0.99
    base_nll = _nll(base)

    def series(fn) -> dict[float, list[float | None]]:
        return {
            ff: [fn(lookup[(ff, lr)]) if (ff, lr) in lookup else None for lr in lrs] for ff in ffs
        }

    return {
        "classes": classes,
        "feature_factors": ffs,
        "learning_rates": lrs,
        "probs": {c: series(lambda g, c=c: _prob(g, c)) for c in classes},
        "lms": series(_lms),
        "base_probs": {c: _prob(base, c) for c in classes} if base is not None else {},
        "base_lms": base_lms,
        "lms_threshold": None if base_lms is None else lms_ratio * base_lms,
        "max_nll_increase": budget.get("max_nll_increase"),
        "points": {ff: _direction(points, ff, classes, base_nll) for ff in ffs},
        "selected": _selected(results, lookup, target_class),
    }


def _direction(points: list, ff: float, classes: list[str], base_nll: float | None) -> dict:
    """The evaluated points of one feature factor, by step size."""
    own = sorted((g for g in points if _ff(g) == ff), key=_lr)

    def rel(g) -> float | None:
        nll = _nll(g)
        return None if nll is None or not base_nll else nll / base_nll - 1.0

    return {
        "learning_rates": [_lr(g) for g in own],
        "probs": {c: [_prob(g, c) for g in own] for c in classes},
        "lms": [_lms(g) for g in own],
        "nll_increase": [rel(g) for g in own],
        "estimated": [g.get("scored") == "screen" for g in own],
    }


def _ff(entry: Mapping[str, Any]) -> float:
    return float(entry["id"]["feature_factor"])


def _lr(entry: Mapping[str, Any]) -> float:
    return float(entry["id"]["learning_rate"])


def _prob(entry: Mapping[str, Any] | None, cls: str) -> float | None:
    value = None if entry is None else entry.get("probs", {}).get(cls)
    return None if value is None else float(value)


def _lms(entry: Mapping[str, Any] | None) -> float | None:
    value = None if entry is None else entry.get("lms")
    if isinstance(value, Mapping):
        value = value.get("lms")
    return None if value is None else float(value)


def _nll(entry: Mapping[str, Any] | None) -> float | None:
    value = None if entry is None else entry.get("lms")
    value = value.get("nll") if isinstance(value, Mapping) else None
    return None if value is None else float(value)


def _summaries(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        e
        for k, e in results.items()
        if k != "grid" and isinstance(e, Mapping) and "learning_rate" in e
    ]


def _summary_budget(results: Mapping[str, Any]) -> dict:
    for entry in _summaries(results):
        if isinstance(entry.get("budget"), Mapping):
            return dict(entry["budget"])
    return {}


def _summary_base_lms(results: Mapping[str, Any]) -> float | None:
    for key, entry in results.items():
        if key != "grid" and isinstance(entry, Mapping) and entry.get("base_lms") is not None:
            return float(entry["base_lms"])
    return None


def _selected(
    results: Mapping[str, Any], lookup: dict, target_class: str | None
) -> dict[str, dict]:
    """The chosen (ff, η) per summary entry, with the class probability and LMS drawn there."""
    chosen = {}
    for key, entry in results.items():
        if key == "grid" or not isinstance(entry, Mapping) or "learning_rate" not in entry:
            continue
        cls = key[: -len(_WEAKEN_SUFFIX)] if key.endswith(_WEAKEN_SUFFIX) else key
        if target_class is not None and cls != target_class:
            continue
        ff, lr = float(entry["feature_factor"]), float(entry["learning_rate"])
        point = lookup.get((ff, lr))
        chosen[key] = {
            "class": cls,
            "feature_factor": ff,
            "learning_rate": lr,
            "prob": _prob(point, cls),
            "lms": _lms(point) if point is not None else entry.get("lms"),
            "nll_increase": entry.get("nll_increase"),
            "passed": entry.get("passed"),
        }
    return chosen


# --------------------------------------------------------------------------- drawing
def _draw_series(ax: Any, data: dict[str, Any], values) -> None:
    """One line per feature factor through its evaluated points; estimated points hollow."""
    for i, ff in enumerate(data["feature_factors"]):
        pts = data["points"][ff]
        xy = [
            (lr, v, est)
            for lr, v, est in zip(pts["learning_rates"], values(pts), pts["estimated"], strict=True)
            if v is not None
        ]
        if not xy:
            continue
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ax.plot([p[0] for p in xy], [p[1] for p in xy], color=colour, label=f"ff = {ff:g}")
        for hollow in (False, True):
            sub = [p for p in xy if p[2] == hollow]
            if sub:
                ax.scatter(
                    [p[0] for p in sub],
                    [p[1] for p in sub],
                    s=14,
                    color="white" if hollow else colour,
                    edgecolor=colour,
                    zorder=3,
                    label="screened (estimate)" if hollow and i == 0 else None,
                )


def _star(ax: Any, x: float, y: float, label: str | None = None) -> None:
    ax.scatter([x], [y], marker="*", s=220, color="gold", edgecolor="black", zorder=5, label=label)


def _draw_class_panel(ax: Any, cls: str, data: dict[str, Any]) -> None:
    _draw_series(ax, data, lambda p: p["probs"][cls])
    base = data["base_probs"].get(cls)
    if base is not None:
        ax.axhline(base, color="black", linestyle="--", linewidth=1, label="base model")
    for sel in data["selected"].values():
        if sel["class"] == cls and sel["prob"] is not None:
            _star(
                ax, sel["learning_rate"], sel["prob"], f"selected (η = {sel['learning_rate']:.3g})"
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate η")
    colour = data["colours"].get(cls, "black")
    ax.set_ylabel(f"P({cls} words)", color=colour)
    ax.set_title(f"Class {cls}", color=colour, fontweight="bold")
    for side in ("left", "top"):
        ax.spines[side].set_color(colour)
    ax.legend(fontsize=8)


def _draw_lms_panel(ax: Any, data: dict[str, Any]) -> None:
    _draw_series(ax, data, lambda p: p["lms"])
    if data["base_lms"] is not None:
        ax.axhline(data["base_lms"], color="black", linestyle="--", linewidth=1, label="base model")
        ax.axhline(
            data["lms_threshold"], color="red", linestyle=":", linewidth=1, label="threshold"
        )
    for sel in data["selected"].values():
        if sel["lms"] is not None:
            _star(ax, sel["learning_rate"], sel["lms"])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("LMS")
    ax.set_title("Language modelling score")
    ax.legend(fontsize=8)


def _draw_nll_panel(ax: Any, data: dict[str, Any]) -> None:
    _draw_series(ax, data, lambda p: [None if v is None else 100 * v for v in p["nll_increase"]])
    ax.axhline(0, color="black", linestyle="--", linewidth=1, label="base model")
    if data["max_nll_increase"] is not None:
        ax.axhline(
            100 * data["max_nll_increase"], color="red", linestyle=":", linewidth=1, label="budget"
        )
    for sel in data["selected"].values():
        if sel.get("nll_increase") is not None:
            _star(ax, sel["learning_rate"], 100 * sel["nll_increase"])
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("neutral NLL change (%)")
    ax.set_title("Neutral NLL")
    ax.legend(fontsize=8)
