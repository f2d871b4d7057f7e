"""Training: arguments, pruning configs and the TextPredictionTrainer facade."""

from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig, TrainingArguments
from gradiend.trainer.text_trainer import TextPredictionTrainer

__all__ = ["PostPruneConfig", "PrePruneConfig", "TextPredictionTrainer", "TrainingArguments"]
