"""``DataCreator``, the base class of the data creators, and ``PairedTextFilterConfig``, the two
classes of one feature given together (gradiend 0.2.3's names).

A creator's ``feature_targets`` may hold ``PairedTextFilterConfig`` objects next to plain
``TextFilterConfig`` ones; ``DataCreator.expand_feature_targets`` replaces each pair by its two
configs, in order, before the creator reads them.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gradiend._kwargs import strict_kwargs
from gradiend.data.filters import TextFilterConfig
from gradiend.data.inputs import DataInputError, DataTypeError

logger = logging.getLogger(__name__)

__all__ = ["DataCreator", "PairedTextFilterConfig"]


@strict_kwargs
@dataclass
class PairedTextFilterConfig:
    """The two classes of one feature (e.g. ``he`` against ``she``), each a ``TextFilterConfig``
    or its target words (a word or a list, which become ``TextFilterConfig(targets=...)``).

    A creator's ``feature_targets`` accepts it in place of the two configs; iterating over it
    yields ``first`` then ``second``. The two classes need different ids.

    Args:
        first: The first class (the trainer's ``target_classes[0]`` when its id is named so).
        second: The second class.
    """

    first: TextFilterConfig | Sequence[str] | str
    second: TextFilterConfig | Sequence[str] | str

    def __post_init__(self) -> None:
        self.first = _as_filter(self.first, "first")
        self.second = _as_filter(self.second, "second")
        if self.first.id == self.second.id:
            raise DataInputError(
                "PairedTextFilterConfig",
                f"both classes have the id {self.first.id!r}",
                "give the two TextFilterConfig objects different id= (one per class)",
            )

    def __iter__(self) -> Iterator[TextFilterConfig]:
        return iter((self.first, self.second))

    @property
    def ids(self) -> tuple[str, str]:
        """The two class names, in order."""
        return str(self.first.id), str(self.second.id)


def _as_filter(value: Any, name: str) -> TextFilterConfig:
    if isinstance(value, TextFilterConfig):
        return value
    words = [value] if isinstance(value, str) else value
    if isinstance(words, (list, tuple)) and words and all(isinstance(w, str) for w in words):
        return TextFilterConfig(targets=list(words))
    raise DataTypeError(
        f"PairedTextFilterConfig.{name}",
        f"is a {type(value).__name__} ({value!r:.60}), not a TextFilterConfig or words",
        "pass TextFilterConfig(targets=[...], id=...) or a list of words",
    )


class DataCreator(ABC):
    """Base of the data creators: each builds training rows per class and neutral rows from a
    corpus (``TextPredictionDataCreator``: masked sentences for text prediction).

    A subclass implements ``generate_training_data`` and ``generate_neutral_data``; code that
    accepts "a data creator" can check ``isinstance(x, DataCreator)``.
    """

    @abstractmethod
    def generate_training_data(self, *args: Any, **kwargs: Any) -> Any:
        """The training rows per class (the creator's output format)."""

    @abstractmethod
    def generate_neutral_data(self, *args: Any, **kwargs: Any) -> Any:
        """Rows without any class's target words (for the language-model score)."""

    @staticmethod
    def expand_feature_targets(feature_targets: Any) -> Any:
        """``feature_targets`` with each ``PairedTextFilterConfig`` replaced by its two configs
        (anything else is passed on unchanged, for the creator's own checks)."""
        if isinstance(feature_targets, PairedTextFilterConfig):
            return list(feature_targets)
        if not isinstance(feature_targets, (list, tuple)):
            return feature_targets
        out: list[Any] = []
        for f in feature_targets:
            out.extend(f if isinstance(f, PairedTextFilterConfig) else [f])
        return out
