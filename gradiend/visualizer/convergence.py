"""Training convergence: loss, mean encoding per class and correlation over training steps.

Shows whether and when the encoder separated the two target classes (means near +1 and −1)
and which step was kept as the best checkpoint, and — when the run was post-pruned — the
validation figures of the saved, post-pruned model beside them (``training.json``'s
``post_prune``: after slicing, and after the encoder re-fit).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradiend.run_layout import FIG_CONVERGENCE, MODEL_DIR, TRAINING
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

CLASS_SPREADS = ("minmax", "iqr", "ci")
_Z95 = 1.959963984540054


def load_training_stats(source: Mapping[str, Any] | str | os.PathLike) -> Mapping[str, Any]:
    """Training stats from a dict, a ``training.json`` file, or a run/model folder holding one.

    A file written by the trainer may nest the stats under ``"training_stats"``.
    """
    if isinstance(source, Mapping):
        stats = source
    else:
        path = Path(source)
        for candidate in (path, path / TRAINING, path / MODEL_DIR / TRAINING):
            if candidate.is_file():
                stats = json.loads(candidate.read_text())
                break
        else:
            raise FileNotFoundError(f"no {TRAINING} at {path}")
    if "evals" not in stats and isinstance(stats.get("training_stats"), Mapping):
        return stats["training_stats"]
    return stats


def plot_training_convergence(
    training_stats: Mapping[str, Any] | str | os.PathLike,
    output: str | os.PathLike | None = None,
    show: bool | None = None,
    label_name_mapping: Mapping[Any, str] | None = None,
    class_spread: str | None = None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    target_classes: list[str] | None = None,
    ax: Any = None,
) -> dict[str, Any]:
    """Three stacked panels — loss, mean encoding per class (optional band), correlation.

    The loss is drawn on a log scale with its moving average (the raw per-step losses of a
    small batch are noise around a slow decline); each class has its colour of every figure
    (``target_classes``, default: the ones recorded in the stats).

    ``class_spread`` draws a band around each class mean: ``"minmax"`` (min to max),
    ``"iqr"`` (q1 to q3) or ``"ci"`` (95 % normal interval of the mean, ±1.96·std/√n).
    The best step is a dashed vertical line in every panel. A post-pruned run's own validation
    figures are drawn right of the last step: hollow markers after slicing, filled diamonds after
    the encoder re-fit (the saved model). Returns ``{"path", "figure", "data": {"steps",
    "losses", "correlation", "mean_by_class", "band_by_class", "best_step", "post_prune",
    "colours", "unconverged"}}`` (``unconverged``: the title's note on a run that did not
    converge, else ``None``). ``ax``: three Matplotlib Axes to draw into instead of a new figure.
    """
    plt = import_pyplot(show)  # fail early when the plot extra is missing
    if class_spread is not None and class_spread not in CLASS_SPREADS:
        raise ValueError(
            f"class_spread must be None or one of {CLASS_SPREADS}, got {class_spread!r}"
        )
    stats = load_training_stats(training_stats)
    data = _convergence_data(stats, class_spread)
    targets = target_classes or stats.get("target_classes")
    data["colours"] = class_colours(list(data["mean_by_class"]), targets)
    fig, panels, owned = new_axes(plt, ax, 3, nrows=3, figsize=(8.0, 9.0), sharex=True)
    ax_loss, ax_mean, ax_corr = panels
    _draw_loss(ax_loss, data)
    _draw_means(ax_mean, data, label_name_mapping)
    _draw_correlation(ax_corr, data)
    _draw_post_prune(ax_mean, ax_corr, data, label_name_mapping)
    if data["best_step"] is not None:
        for panel in panels:
            panel.axvline(
                data["best_step"], color="red", linestyle="--", linewidth=1, label="_best"
            )
        ax_corr.plot([], [], color="red", linestyle="--", label=f"best step {data['best_step']}")
        ax_corr.legend(loc="lower right", fontsize=8)
    ax_corr.set_xlabel("training step")
    data["unconverged"] = unconverged_note(stats)
    if data["unconverged"]:  # a run that did not converge is marked on its figure
        ax_loss.set_title(f"NOT CONVERGED: {data['unconverged']}", color="#b00020", fontsize=10)
    layout(fig, owned)
    return finish(fig, data, output, FIG_CONVERGENCE, show, img_format, dpi, owned)


def unconverged_note(stats: Mapping[str, Any]) -> str | None:
    """What the figure's title says of a run that did not converge (``None``: it converged or
    the stats do not say)."""
    info = stats.get("convergence_info") or {}
    if info.get("converged", True):
        return None
    note = str(stats.get("convergence_status") or "not_converged").replace("_", " ")
    collapse = stats.get("collapse")
    if collapse:
        note += f" at step {collapse.get('step')}: {collapse.get('reason')}"
    return note + f"; best step {stats.get('best_step')}"


def _convergence_data(stats: Mapping[str, Any], class_spread: str | None) -> dict[str, Any]:
    """Plain lists of the numbers drawn, in step order."""
    evals = sorted(stats.get("evals", []), key=lambda e: e["step"])
    losses = sorted(stats.get("losses", []), key=lambda e: e["step"])
    classes: list[Any] = []
    for entry in evals:
        classes += [c for c in entry.get("mean_by_class", {}) if c not in classes]
    means = {c: [_get(e, "mean_by_class", c) for e in evals] for c in classes}
    bands = {c: [_band(e, c, class_spread) for e in evals] for c in classes} if class_spread else {}
    return {
        "steps": [int(e["step"]) for e in evals],
        "losses": {
            "steps": [int(e["step"]) for e in losses],
            "loss": [float(e["loss"]) for e in losses],
            "smoothed": moving_average([float(e["loss"]) for e in losses]),
        },
        "correlation": [float(e.get("correlation", math.nan)) for e in evals],
        "mean_by_class": means,
        "band_by_class": bands,
        "class_spread": class_spread,
        "best_step": stats.get("best_step"),
        "post_prune": _post_prune_data(stats.get("post_prune"), evals),
    }


def _post_prune_data(record: Mapping[str, Any] | None, evals: list) -> dict[str, Any] | None:
    """Where and what to draw for the post-pruned model: x right of the last step, the sliced
    and re-fitted models' correlation and class means."""
    if not record:
        return None
    last = int(evals[-1]["step"]) if evals else 0
    span = last - (int(evals[0]["step"]) if evals else 0)
    out: dict[str, Any] = {"x": last + max(1, round(0.06 * span)), "dims": record.get("dims_after")}
    for stage in ("sliced", "after"):
        summary = record.get(stage)
        if summary:
            out[stage] = {
                "correlation": float(summary.get("correlation", math.nan)),
                "mean_by_class": {c: float(v) for c, v in summary.get("mean_by_class", {}).items()},
            }
    return out


def _get(entry: Mapping[str, Any], key: str, cls: Any) -> float:
    value = entry.get(key, {}).get(cls)
    return math.nan if value is None else float(value)


def _band(entry: Mapping[str, Any], cls: Any, spread: str) -> tuple[float, float]:
    if spread == "minmax":
        return _get(entry, "min_by_class", cls), _get(entry, "max_by_class", cls)
    if spread == "iqr":
        return _get(entry, "q1_by_class", cls), _get(entry, "q3_by_class", cls)
    mean, std, n = (_get(entry, k, cls) for k in ("mean_by_class", "std_by_class", "n_by_class"))
    half = _Z95 * std / math.sqrt(n) if n and n > 0 else math.nan
    return mean - half, mean + half


def moving_average(values: list[float], window: int | None = None) -> list[float]:
    """Trailing mean over ``window`` values (default: a tenth of the run, at least 1)."""
    if not values:
        return []
    window = window or max(1, len(values) // 10)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _draw_loss(ax: Any, data: dict[str, Any]) -> None:
    steps, loss = data["losses"]["steps"], data["losses"]["loss"]
    if steps:
        ax.plot(steps, loss, color="#bbbbbb", linewidth=0.8, label="per step")
        ax.plot(steps, data["losses"]["smoothed"], color="black", linewidth=1.5, label="mean")
        if min(loss) > 0:
            ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no losses recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("loss (MSE)")
    ax.set_title("Training convergence")


def _draw_means(ax: Any, data: dict[str, Any], mapping: Mapping[Any, str] | None) -> None:
    steps = data["steps"]
    for cls, means in data["mean_by_class"].items():
        colour = data["colours"][str(cls)]
        ax.plot(
            steps, means, marker="o", markersize=3, color=colour, label=display_name(cls, mapping)
        )
        band = data["band_by_class"].get(cls)
        if band:
            ax.fill_between(
                steps, [b[0] for b in band], [b[1] for b in band], color=colour, alpha=0.2
            )
    for level in (-1.0, 0.0, 1.0):
        ax.axhline(level, color="grey", linewidth=0.6, linestyle=":")
    ax.set_ylabel("mean encoding")
    if data["mean_by_class"]:
        ax.legend(loc="best", fontsize=8)


def _draw_post_prune(
    ax_mean: Any, ax_corr: Any, data: dict[str, Any], mapping: Mapping[Any, str] | None
) -> None:
    """Markers right of the curves: hollow = sliced only, filled diamond = re-fitted (saved)."""
    post = data["post_prune"]
    if not post:
        return
    x = post["x"]
    dims = f", {post['dims']:,} dims" if post.get("dims") else ""
    for stage, style in (("sliced", {"marker": "o", "facecolors": "none"}), ("after", {})):
        summary = post.get(stage)
        if not summary:
            continue
        label = "post-pruned, sliced" if stage == "sliced" else f"post-pruned, re-fitted{dims}"
        for cls, mean in summary["mean_by_class"].items():
            colour = data["colours"].get(str(cls), "black")
            kw = {"marker": "D", "color": colour} if stage == "after" else {"edgecolors": colour}
            ax_mean.scatter([x], [mean], s=36, zorder=3, **{**style, **kw})
        kw = {"marker": "D", "color": "black"} if stage == "after" else {"edgecolors": "black"}
        ax_corr.scatter([x], [summary["correlation"]], s=36, zorder=3, label=label, **style, **kw)
    ax_mean.axvline(x, color="grey", linewidth=0.5, linestyle="-", alpha=0.4)
    ax_corr.axvline(x, color="grey", linewidth=0.5, linestyle="-", alpha=0.4)
    ax_mean.set_xlim(right=x + max(1, 0.04 * x))


def _draw_correlation(ax: Any, data: dict[str, Any]) -> None:
    ax.plot(data["steps"], data["correlation"], marker="o", markersize=3, color="black")
    ax.axhline(0.0, color="grey", linewidth=0.6, linestyle=":")
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("correlation")
