"""GRADIEND: find where a language model stores a feature and rewrite it, from gradients."""

from gradiend.data import (
    SpacyTagSpec,
    TextFilterConfig,
    TextPredictionDataCreator,
    TextPreprocessConfig,
)
from gradiend.evaluator import (
    LMSThresholdPolicy,
    LMSTimesMetricPolicy,
    compute_cross_encoding_matrix,
    compute_similarity_matrix,
)
from gradiend.model import GradiendModel, ModelWithGradiend, ParamMappedGradiendModel
from gradiend.trainer import (
    PostPruneConfig,
    PrePruneConfig,
    TextPredictionTrainer,
    TrainingArguments,
)
from gradiend.visualizer import (
    plot_encoder_distributions,
    plot_probability_shifts,
    plot_similarity_heatmap,
    plot_topk_overlap_heatmap,
    plot_topk_overlap_venn,
    plot_training_convergence,
)

__version__ = "0.3.0"

__all__ = [
    "GradiendModel",
    "LMSThresholdPolicy",
    "LMSTimesMetricPolicy",
    "ModelWithGradiend",
    "ParamMappedGradiendModel",
    "PostPruneConfig",
    "PrePruneConfig",
    "SpacyTagSpec",
    "TextFilterConfig",
    "TextPredictionDataCreator",
    "TextPredictionTrainer",
    "TextPreprocessConfig",
    "TrainingArguments",
    "compute_cross_encoding_matrix",
    "compute_similarity_matrix",
    "plot_encoder_distributions",
    "plot_probability_shifts",
    "plot_similarity_heatmap",
    "plot_topk_overlap_heatmap",
    "plot_topk_overlap_venn",
    "plot_training_convergence",
]
