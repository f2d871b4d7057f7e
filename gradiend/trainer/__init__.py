"""Training: arguments, pruning configs and the TextPredictionTrainer facade."""

from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig, TrainingArguments
from gradiend.trainer.lr_search import LRSearchConfig, NoConvergentLearningRate, tune_learning_rate
from gradiend.trainer.text_trainer import TextPredictionTrainer

__all__ = [
    "LRSearchConfig",
    "NoConvergentLearningRate",
    "PostPruneConfig",
    "PrePruneConfig",
    "TextPredictionTrainer",
    "TrainingArguments",
    "tune_learning_rate",
]
