"""Evaluation: encoder metrics, decoder grid and policies, comparisons across runs."""

from gradiend.evaluator.compare import compute_similarity_matrix, topk_sets, venn_region_counts
from gradiend.evaluator.cross import compute_cross_encoding_matrix
from gradiend.evaluator.decoder import LMSThresholdPolicy, LMSTimesMetricPolicy
from gradiend.evaluator.decoder_heldout import HeldoutConfig
from gradiend.evaluator.encoder import encoder_metrics
from gradiend.lm.fisher import FisherConfig

__all__ = [
    "FisherConfig",
    "HeldoutConfig",
    "LMSThresholdPolicy",
    "LMSTimesMetricPolicy",
    "compute_cross_encoding_matrix",
    "compute_similarity_matrix",
    "encoder_metrics",
    "topk_sets",
    "venn_region_counts",
]
