"""GRADIEND: find where a language model stores a feature and rewrite it, from gradients.

Every name ``gradiend`` 0.2.3 exported from here is exported too, with its meaning
(docs/arguments.md "Coming from 0.2.3"); importing the package loads no spaCy, ``datasets`` or
matplotlib.
"""

from gradiend._kwargs import strict_kwargs
from gradiend.data import (
    SpacyTagSpec,
    TextFilterConfig,
    TextPredictionDataCreator,
    TextPreprocessConfig,
    preprocess_texts,
    resolve_base_data,
)
from gradiend.data.creator_base import DataCreator, PairedTextFilterConfig
from gradiend.data.transitions import TransitionSpec, identity, pair
from gradiend.evaluator import (
    LMSThresholdPolicy,
    LMSTimesMetricPolicy,
    compute_cross_encoding_matrix,
    compute_similarity_matrix,
)
from gradiend.evaluator.cross_family import (
    compute_anchor_aligned_encoding_matrix,
    compute_gradiend_feature_cross_encoding_matrix,
    compute_gradiend_transition_cross_encoding_matrix,
    compute_trainer_pair_encoding_matrix,
)
from gradiend.evaluator.cross_figures import (
    plot_cross_encoding_heatmap,
    plot_gradiend_feature_cross_encoding_heatmap,
    plot_gradiend_transition_cross_encoding_heatmap,
)
from gradiend.evaluator.cross_pool import build_cross_task_encoder_summary
from gradiend.evaluator.grouped import compute_grouped_similarity_matrices
from gradiend.evaluator.methods_table import MethodComparison
from gradiend.lm.signals import Signal, SignalScope
from gradiend.model import GradiendModel, ModelWithGradiend, ParamMappedGradiendModel
from gradiend.model.create import create_model_with_gradiend
from gradiend.model.modified import HookedModel, load_modified_model
from gradiend.model.split import GradiendSplit
from gradiend.runtime import get_logger, set_seed, setup_logging
from gradiend.suite import (
    PositiveFeatureDefinition,
    PositiveTrainerSuite,
    SuitePairDefinition,
    SymmetricTrainerSuite,
    TrainerCollection,
    TrainerSuite,
)
from gradiend.trainer import (
    LRSearchConfig,
    PostPruneConfig,
    PrePruneConfig,
    TextPredictionTrainer,
    TrainingArguments,
)
from gradiend.trainer.gradient_datasets import GradientTrainingDataset, TextGradientTrainingDataset
from gradiend.trainer.methods import compare_methods
from gradiend.trainer.signal_trainer import SignalTrainer
from gradiend.trainer.trainer_config import TextPredictionConfig, TrainerConfig
from gradiend.visualizer import (
    load_training_stats,
    plot_encoder_distributions,
    plot_probability_shifts,
    plot_similarity_heatmap,
    plot_topk_overlap_heatmap,
    plot_topk_overlap_venn,
    plot_training_convergence,
)
from gradiend.visualizer.cross_heatmaps import plot_comparison_heatmap
from gradiend.visualizer.style import (
    PlotStyleConfig,
    PlotStyleStatus,
    check_plot_environment,
    configure_plot_style,
)
from gradiend.visualizer.transition_labels import (
    format_transition_label,
    transition_bidi_arrow,
    transition_directed_arrow,
)

__version__ = "0.3.0"

# Every public constructor answers a keyword typo with a "did you mean" (gradiend._kwargs). These
# classes are defined without the wrapper (the visualizer's modules import no library helper):
# it is added here, once, unless the class already has one.
for _cls in (PlotStyleConfig, PlotStyleStatus, TransitionSpec, TrainerCollection):
    if not hasattr(_cls.__init__, "__wrapped__"):
        strict_kwargs(_cls)
del _cls

__all__ = [
    "DataCreator",
    "GradiendSplit",
    "GradientTrainingDataset",
    "GradiendModel",
    "HookedModel",
    "LMSThresholdPolicy",
    "LMSTimesMetricPolicy",
    "LRSearchConfig",
    "ModelWithGradiend",
    "PairedTextFilterConfig",
    "ParamMappedGradiendModel",
    "PlotStyleConfig",
    "PlotStyleStatus",
    "PositiveFeatureDefinition",
    "PositiveTrainerSuite",
    "PostPruneConfig",
    "PrePruneConfig",
    "Signal",
    "SignalScope",
    "SignalTrainer",
    "MethodComparison",
    "compare_methods",
    "SpacyTagSpec",
    "SuitePairDefinition",
    "SymmetricTrainerSuite",
    "TextFilterConfig",
    "TextGradientTrainingDataset",
    "TextPredictionConfig",
    "TextPredictionDataCreator",
    "TextPredictionTrainer",
    "TextPreprocessConfig",
    "TrainerCollection",
    "TrainerConfig",
    "TrainerSuite",
    "TrainingArguments",
    "TransitionSpec",
    "build_cross_task_encoder_summary",
    "check_plot_environment",
    "compute_anchor_aligned_encoding_matrix",
    "compute_cross_encoding_matrix",
    "compute_gradiend_feature_cross_encoding_matrix",
    "compute_gradiend_transition_cross_encoding_matrix",
    "compute_grouped_similarity_matrices",
    "compute_similarity_matrix",
    "compute_trainer_pair_encoding_matrix",
    "configure_plot_style",
    "create_model_with_gradiend",
    "format_transition_label",
    "get_logger",
    "identity",
    "load_modified_model",
    "load_training_stats",
    "pair",
    "plot_comparison_heatmap",
    "plot_cross_encoding_heatmap",
    "plot_encoder_distributions",
    "plot_gradiend_feature_cross_encoding_heatmap",
    "plot_gradiend_transition_cross_encoding_heatmap",
    "plot_probability_shifts",
    "plot_similarity_heatmap",
    "plot_topk_overlap_heatmap",
    "plot_topk_overlap_venn",
    "plot_training_convergence",
    "preprocess_texts",
    "resolve_base_data",
    "set_seed",
    "setup_logging",
    "transition_bidi_arrow",
    "transition_directed_arrow",
]
