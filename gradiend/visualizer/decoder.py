"""Decoder probability shifts: how rewriting the model with η·decoder(ff) moves class probabilities.

One panel per class: the mean probability of the class's words against the step size η (log
axis), one line per feature factor, the unmodified base model as a dashed reference. A last
panel shows the language-modelling score (LMS) with the acceptance threshold
``lms_ratio · LMS(base)``. The point chosen by the selection policy is starred.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from gradiend.visualizer._common import DEFAULT_DPI, finish, import_pyplot

logger = logging.getLogger(__name__)

_WEAKEN_SUFFIX = "_weaken"


def plot_probability_shifts(
    decoder_results: Mapping[str, Any],
    output: str | os.PathLike | None = None,
    show: bool | None = None,
    target_class: str | None = None,
    img_format: str = "png",
    lms_ratio: float = 0.99,
    dpi: int = DEFAULT_DPI,
) -> dict[str, Any]:
    """Probability of each class's words and LMS against η, per feature factor.

    ``decoder_results`` is the output of decoder evaluation: summary entries per class (with
    ``feature_factor`` and ``learning_rate`` of the selected point) plus ``"grid"``, whose entry
    with ``feature_factor == 0`` and ``learning_rate == 0`` is the base model. ``target_class``
    restricts the starred selections to that class (default: every summary entry).
    Returns ``{"path", "figure", "data": {"classes", "feature_factors", "learning_rates",
    "probs" {class: {ff: [p per η]}}, "lms" {ff: [...]}, "base_probs", "base_lms",
    "lms_threshold", "selected"}}``.
    """
    plt = import_pyplot(show)  # fail early when the plot extra is missing
    data = _shift_data(decoder_results, target_class, lms_ratio)
    n = len(data["classes"]) + 1
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.0), squeeze=False)
    for ax, cls in zip(axes[0], data["classes"], strict=False):
        _draw_class_panel(ax, cls, data)
    _draw_lms_panel(axes[0][-1], data)
    fig.tight_layout()
    name = "decoder_probability_shifts" + (f"_{target_class}" if target_class else "")
    return finish(fig, data, output, name, show, img_format, dpi)


# --------------------------------------------------------------------------- numbers
def _shift_data(results: Mapping[str, Any], target_class: str | None, lms_ratio: float) -> dict:
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
        "selected": _selected(results, lookup, target_class),
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
            "passed": entry.get("passed"),
        }
    return chosen


# --------------------------------------------------------------------------- drawing
def _draw_class_panel(ax: Any, cls: str, data: dict[str, Any]) -> None:
    lrs = data["learning_rates"]
    for i, ff in enumerate(data["feature_factors"]):
        ax.plot(
            lrs,
            _nan(data["probs"][cls][ff]),
            marker="o",
            markersize=3,
            color=f"C{i}",
            label=f"ff = {ff:g}",
        )
    base = data["base_probs"].get(cls)
    if base is not None:
        ax.axhline(base, color="black", linestyle="--", linewidth=1, label="base model")
    for sel in data["selected"].values():
        if sel["class"] == cls and sel["prob"] is not None:
            ax.scatter(
                [sel["learning_rate"]],
                [sel["prob"]],
                marker="*",
                s=220,
                color="gold",
                edgecolor="black",
                zorder=5,
                label=f"selected (η = {sel['learning_rate']:g})",
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel(f"P({cls} words)")
    ax.set_title(f"Class {cls}")
    ax.legend(fontsize=8)


def _draw_lms_panel(ax: Any, data: dict[str, Any]) -> None:
    lrs = data["learning_rates"]
    for i, ff in enumerate(data["feature_factors"]):
        ax.plot(
            lrs,
            _nan(data["lms"][ff]),
            marker="o",
            markersize=3,
            color=f"C{i}",
            label=f"ff = {ff:g}",
        )
    if data["base_lms"] is not None:
        ax.axhline(data["base_lms"], color="black", linestyle="--", linewidth=1, label="base model")
        ax.axhline(
            data["lms_threshold"], color="red", linestyle=":", linewidth=1, label="threshold"
        )
    for sel in data["selected"].values():
        if sel["lms"] is not None:
            ax.scatter(
                [sel["learning_rate"]],
                [sel["lms"]],
                marker="*",
                s=220,
                color="gold",
                edgecolor="black",
                zorder=5,
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("LMS")
    ax.set_title("Language modelling score")
    ax.legend(fontsize=8)


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]
