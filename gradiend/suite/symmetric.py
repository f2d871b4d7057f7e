"""SymmetricTrainerSuite: one child per unordered pair of classes, over one base model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from gradiend._kwargs import strict_kwargs
from gradiend.suite.base import TrainerSuite
from gradiend.suite.definitions import SuitePairDefinition, symmetric_definitions
from gradiend.suite.views import SuiteFigures

logger = logging.getLogger(__name__)


@strict_kwargs
class SymmetricTrainerSuite(SuiteFigures, TrainerSuite):
    """Every unordered pair of ``target_classes`` (child ids ``a__b``), or the pairs of
    ``target_pairs``, or ``pair_definitions``; the other keywords go to every child
    (``TextPredictionTrainer``'s: ``model``, ``data``, ``args``, ``eval_neutral_data``, …)."""

    def __init__(
        self,
        trainer_cls: type | None = None,
        *,
        model: Any,
        data: Any = None,
        target_classes: Sequence[str] | None = None,
        target_pairs: Sequence[Sequence[str]] | None = None,
        pair_definitions: Sequence[SuitePairDefinition] | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ):
        defs = symmetric_definitions(target_classes, target_pairs, pair_definitions)
        self.pair_definitions = defs
        super().__init__(
            trainer_cls, model=model, data=data, run_id=run_id, definitions=defs, **kwargs
        )

    @property
    def target_pairs(self) -> list[tuple[str, str]]:
        return [d.target_classes for d in self.pair_definitions]

    @property
    def target_classes(self) -> list[str]:
        return list(dict.fromkeys(c for d in self.pair_definitions for c in d.target_classes))
