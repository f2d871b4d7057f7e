"""GRADIEND: find where a language model stores a feature and rewrite it, from gradients."""

from gradiend.model import GradiendModel, ModelWithGradiend, ParamMappedGradiendModel
from gradiend.trainer import (
    PostPruneConfig,
    PrePruneConfig,
    TextPredictionTrainer,
    TrainingArguments,
)

__version__ = "0.3.0"

__all__ = [
    "GradiendModel",
    "ModelWithGradiend",
    "ParamMappedGradiendModel",
    "PostPruneConfig",
    "PrePruneConfig",
    "TextPredictionTrainer",
    "TrainingArguments",
]
