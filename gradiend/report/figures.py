"""Figures of a report as embedded PNGs (``data:`` URIs), drawn with ``gradiend.visualizer``.

A figure that cannot be drawn (a stage's results in a shape this version does not know, a
missing extra) becomes a note in the report instead of failing the whole page.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from gradiend.evaluator.compare import RunComparison, compare
from gradiend.evaluator.figures import plot_topk_overlap_heatmap, plot_topk_overlap_venn
from gradiend.model.localise import region_summary
from gradiend.report.collect import RunFiles
from gradiend.visualizer.convergence import plot_training_convergence
from gradiend.visualizer.decoder import plot_probability_shifts
from gradiend.visualizer.encoder import plot_encoder_distributions
from gradiend.visualizer.importance import plot_importance_by_layer

logger = logging.getLogger(__name__)

Drawn = tuple[str | None, str | None]  # (data URI, None) or (None, why the figure is missing)


def to_data_uri(fig: Any, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def draw(name: str, make: Callable[[], dict]) -> Drawn:
    """``(data URI, None)`` or ``(None, reason)``; ``make`` returns a visualizer result."""
    try:
        result = make()
    except Exception as err:  # noqa: BLE001 - one figure must not take down the report
        logger.warning("report: figure %s left out: %s: %s", name, type(err).__name__, err)
        return None, f"{type(err).__name__}: {err}"
    return to_data_uri(result["figure"]), None


def convergence(run: RunFiles) -> Drawn:
    """Loss, class means and correlation over the steps of the run's training record."""
    targets = run.target_classes or None
    return draw(
        "convergence",
        lambda: plot_training_convergence(run.training, show=False, target_classes=targets),
    )


def encoder(run: RunFiles) -> Drawn:
    """The encoded values per class and neutral type of the run's saved encoder evaluation."""

    def make() -> dict:
        df = pd.read_csv(run.encoder_csv)
        return plot_encoder_distributions(df, target_classes=run.target_classes or None, show=False)

    return draw("encoder distributions", make)


def decoder(run: RunFiles) -> Drawn:
    """Class probabilities and LMS against η of the run's decoder grid, selected points starred."""
    targets = run.target_classes or None
    return draw(
        "decoder",
        lambda: plot_probability_shifts(run.decoder, show=False, target_classes=targets),
    )


def overlap(
    models: dict[str, str], topk: int | float, allow_unconverged: bool = False
) -> dict[str, Drawn]:
    """The top-k heatmap and Venn diagram of the runs, both drawn from one comparison (each run
    loaded once; an unconverged run marked when allowed); when the runs cannot be compared, both
    figures carry the reason."""
    try:
        found: RunComparison = compare(
            models, "topk_overlap", topk, allow_unconverged=allow_unconverged
        )
    except Exception as err:  # noqa: BLE001 - the comparison must not take down the report
        logger.warning("report: overlap figures left out: %s: %s", type(err).__name__, err)
        reason = (None, f"{type(err).__name__}: {err}")
        return {"heatmap": reason, "venn": reason}
    return {
        "heatmap": draw("top-k heatmap", lambda: plot_topk_overlap_heatmap(found, show=False)),
        "venn": draw("top-k venn", lambda: plot_topk_overlap_venn(found, show=False)),
    }


def location(model: Any, topk: int | float) -> Drawn:
    """The importance heatmap (layer × module type) of the run's default ranking and region,
    the same numbers as ``location_rows``."""
    return draw(
        "importance by layer", lambda: plot_importance_by_layer(model, topk=topk, show=False)
    )


def location_rows(model: Any, topk: int | float) -> tuple[list[dict], dict]:
    """Where the feature lives, by the ranking itself (``GradiendModel.importance_by_module``,
    default region ``rest``): per tensor, largest importance mass first; and how much of the
    ranking over every dimension the feature words' own rows take (``region_summary``)."""
    if model.param_map is None:
        return [], {}
    frame = model.importance_by_module(topk=topk)
    return frame.to_dict("records"), region_summary(model, topk=topk)
