"""The comparison figures of a suite or collection: the library's functions on its children.

Every method labels the children by their suite label and delegates to ``gradiend.evaluator``
(similarity, top-k overlap, cross-encoding); nothing is computed here.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class SuiteFigures:
    """Mixin: needs ``items()`` (``(id, trainer)`` pairs) and ``labels()`` (``{id: label}``)."""

    def _labelled_models(self) -> dict[str, Any]:
        self._attach_if_any()
        names = self.labels()
        return {names.get(cid, cid): child.get_model().gradiend for cid, child in self.items()}

    def _labelled_trainers(self) -> dict[str, Any]:
        self._attach_if_any()
        names = self.labels()
        return {names.get(cid, cid): child for cid, child in self.items()}

    def _attach_if_any(self) -> None:
        attach = getattr(self, "_attach", None)
        if attach is not None:
            attach()

    def compute_similarity_matrix(self, **kwargs: Any):
        """``gradiend.compute_similarity_matrix`` over the children's GRADIENDs."""
        # lazy: comparisons load only when a suite compares
        from gradiend.evaluator import compute_similarity_matrix

        return compute_similarity_matrix(self._labelled_models(), **kwargs)

    def plot_similarity_heatmap(self, **kwargs: Any):
        # lazy: comparisons load only when a suite compares
        from gradiend.evaluator.figures import plot_similarity_heatmap

        return plot_similarity_heatmap(self._labelled_models(), **kwargs)

    def plot_topk_overlap_heatmap(self, **kwargs: Any):
        # lazy: comparisons load only when a suite compares
        from gradiend.evaluator.figures import plot_topk_overlap_heatmap

        return plot_topk_overlap_heatmap(self._labelled_models(), **kwargs)

    def plot_topk_overlap_venn(self, **kwargs: Any):
        # lazy: comparisons load only when a suite compares
        from gradiend.evaluator.figures import plot_topk_overlap_venn

        return plot_topk_overlap_venn(self._labelled_models(), **kwargs)

    def compute_cross_encoding_matrix(self, **kwargs: Any):
        """``gradiend.compute_cross_encoding_matrix`` over the children (model i × pair j)."""
        # lazy: comparisons load only when a suite compares
        from gradiend.evaluator import compute_cross_encoding_matrix

        return compute_cross_encoding_matrix(self._labelled_trainers(), **kwargs)

    def plot_cross_encoding_heatmap(self, metric: str = "correlation", **kwargs: Any):
        """``gradiend.plot_cross_encoding_heatmap`` over the children (model i × pair j)."""
        # lazy: comparisons load only when a suite compares
        from gradiend.evaluator.cross_figures import plot_cross_encoding_heatmap

        return plot_cross_encoding_heatmap(self._labelled_trainers(), metric=metric, **kwargs)
