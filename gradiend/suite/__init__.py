"""Trainer suites: many GRADIENDs over one base model, each gradient computed once per suite.

``SymmetricTrainerSuite`` (one child per pair of classes), ``PositiveTrainerSuite`` (a positive
class against one or several negative classes), ``TrainerCollection`` (trainers and suites
together); ``GradientStore`` is the shared per-(sentence, word) gradient store.
"""

from gradiend.suite.base import TrainerSuite
from gradiend.suite.collection import TrainerCollection
from gradiend.suite.definitions import PositiveFeatureDefinition, SuitePairDefinition
from gradiend.suite.positive import PositiveTrainerSuite, merge_classes
from gradiend.suite.store import GradientStore, SharedGradientComputer
from gradiend.suite.symmetric import SymmetricTrainerSuite

__all__ = [
    "GradientStore",
    "PositiveFeatureDefinition",
    "PositiveTrainerSuite",
    "SharedGradientComputer",
    "SuitePairDefinition",
    "SymmetricTrainerSuite",
    "TrainerCollection",
    "TrainerSuite",
    "merge_classes",
]
