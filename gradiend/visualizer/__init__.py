"""Figures of GRADIEND results (the ``plot`` extra: ``pip install gradiend[plot]``).

Importing this package does not import matplotlib; each plot function imports it when called.
Every plot function returns ``{"path": str | None, "data": {...}, "figure": Figure}``.
"""

from gradiend.visualizer.convergence import load_training_stats, plot_training_convergence
from gradiend.visualizer.decoder import plot_probability_shifts
from gradiend.visualizer.encoder import plot_encoder_distributions
from gradiend.visualizer.topk import (
    plot_similarity_heatmap,
    plot_topk_overlap_heatmap,
    plot_topk_overlap_venn,
)

__all__ = [
    "load_training_stats",
    "plot_encoder_distributions",
    "plot_probability_shifts",
    "plot_similarity_heatmap",
    "plot_topk_overlap_heatmap",
    "plot_topk_overlap_venn",
    "plot_training_convergence",
]
