"""Evaluation: encoder metrics, decoder grid and policies, comparisons across runs."""

from gradiend.evaluator.bias import compare_bias, evaluate_bias
from gradiend.evaluator.compare import compute_similarity_matrix, topk_sets, venn_region_counts
from gradiend.evaluator.cross import compute_cross_encoding_matrix
from gradiend.evaluator.cross_family import (
    compute_anchor_aligned_encoding_matrix,
    compute_gradiend_feature_cross_encoding_matrix,
    compute_gradiend_transition_cross_encoding_matrix,
    compute_trainer_pair_encoding_matrix,
)
from gradiend.evaluator.cross_pool import CrossEncoderSummary, build_cross_task_encoder_summary
from gradiend.evaluator.decoder import LMSThresholdPolicy, LMSTimesMetricPolicy
from gradiend.evaluator.decoder_heldout import HeldoutConfig
from gradiend.evaluator.encoder import encoder_metrics
from gradiend.evaluator.grouped import compute_grouped_similarity_matrices
from gradiend.lm.fisher import FisherConfig

__all__ = [
    "CrossEncoderSummary",
    "FisherConfig",
    "HeldoutConfig",
    "LMSThresholdPolicy",
    "LMSTimesMetricPolicy",
    "build_cross_task_encoder_summary",
    "compare_bias",
    "compute_anchor_aligned_encoding_matrix",
    "compute_cross_encoding_matrix",
    "compute_gradiend_feature_cross_encoding_matrix",
    "compute_gradiend_transition_cross_encoding_matrix",
    "compute_grouped_similarity_matrices",
    "compute_similarity_matrix",
    "compute_trainer_pair_encoding_matrix",
    "encoder_metrics",
    "evaluate_bias",
    "topk_sets",
    "venn_region_counts",
]
