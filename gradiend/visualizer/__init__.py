"""Figures of GRADIEND results (the ``plot`` extra: ``pip install gradiend[plot]``).

Importing this package does not import matplotlib; each plot function imports it when called.
Every plot function returns ``{"path": str | None, "data": {...}, "figure": Figure}``.

The modules of this package draw values only; the cross-run figures that take runs (models or
folders) compare them first and are re-exported here from ``gradiend.evaluator.figures`` and
``gradiend.evaluator.cross_figures`` — this
file is the only one of the package that imports the rest of the library.
"""

from gradiend.evaluator.cross_figures import (
    plot_cross_encoding_heatmap,
    plot_gradiend_feature_cross_encoding_heatmap,
    plot_gradiend_transition_cross_encoding_heatmap,
)
from gradiend.evaluator.figures import (
    plot_importance_by_layer,
    plot_similarity_heatmap,
    plot_topk_overlap_heatmap,
    plot_topk_overlap_venn,
)
from gradiend.visualizer.components import plot_components
from gradiend.visualizer.convergence import load_training_stats, plot_training_convergence
from gradiend.visualizer.cross_heatmaps import plot_comparison_heatmap
from gradiend.visualizer.decoder import plot_probability_shifts
from gradiend.visualizer.encoder import plot_encoder_distributions
from gradiend.visualizer.transition_labels import (
    format_transition_label,
    transition_bidi_arrow,
    transition_directed_arrow,
)

__all__ = [
    "format_transition_label",
    "load_training_stats",
    "plot_comparison_heatmap",
    "plot_components",
    "plot_cross_encoding_heatmap",
    "plot_encoder_distributions",
    "plot_gradiend_feature_cross_encoding_heatmap",
    "plot_gradiend_transition_cross_encoding_heatmap",
    "plot_importance_by_layer",
    "plot_probability_shifts",
    "plot_similarity_heatmap",
    "plot_topk_overlap_heatmap",
    "plot_topk_overlap_venn",
    "plot_training_convergence",
    "transition_bidi_arrow",
    "transition_directed_arrow",
]
