"""The CAA baseline of an ACTIEND run, evaluated like the run itself: the same decoder task
(rows, neutral texts, budget, adaptive search), results kept in the run's ``caa`` sub-run."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from gradiend.model.caa import caa_model
from gradiend.run_layout import RunLayout

if TYPE_CHECKING:
    from gradiend.model.with_gradiend import ModelWithGradiend
    from gradiend.trainer.text_trainer import TextPredictionTrainer

logger = logging.getLogger(__name__)

CAA_RUN = "caa"  # the sub-run of a run folder that holds the baseline's decoder files


def evaluate_caa(
    trainer: TextPredictionTrainer, **decoder_kwargs: Any
) -> tuple[ModelWithGradiend, dict]:
    """``(caa, results)``: the CAA steering vector of the trainer's training split at its
    ACTIEND's sites, and ``evaluate_decoder(**decoder_kwargs)`` of it under the run's budget."""
    mwg = trainer.get_model()
    caa = caa_model(mwg, trainer.table.split("train"))
    layout = RunLayout.from_args(trainer.run_dir, CAA_RUN, None)
    evaluation = dataclasses.replace(trainer._evaluation(), get_model=lambda: caa, layout=layout)
    return caa, evaluation.evaluate_decoder(**decoder_kwargs)
