"""Training: arguments, pruning configs and the TextPredictionTrainer facade."""

from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig, TrainingArguments
from gradiend.trainer.lr_search import LRSearchConfig, NoConvergentLearningRate, tune_learning_rate
from gradiend.trainer.seed_stitch import StitchedComponents, stitch_seed_components
from gradiend.trainer.text_trainer import TextPredictionTrainer

__all__ = [
    "LRSearchConfig",
    "NoConvergentLearningRate",
    "PostPruneConfig",
    "PrePruneConfig",
    "StitchedComponents",
    "TextPredictionTrainer",
    "TrainingArguments",
    "stitch_seed_components",
    "tune_learning_rate",
]
