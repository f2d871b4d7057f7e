"""A saved run's evaluations without a trainer: what ``gradiend evaluate`` and ``gradiend
rewrite`` use.

From the run's trainer settings it reads only what the evaluations need: the data table (for the
held-out split and the class words), the neutral texts, the GRADIEND and, on first use, the base
model. Nothing is trained, no training gradient is computed, no MLM head is fitted.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradiend.lm.placement import Placement
from gradiend.model.with_gradiend import ModelWithGradiend
from gradiend.run_layout import RunLayout
from gradiend.trainer.arguments import TrainingArguments
from gradiend.trainer.data_checks import check_neutral, check_run_id
from gradiend.trainer.eval_data import EvalData, read_examples, read_neutral
from gradiend.trainer.evaluation import RunEvaluation
from gradiend.trainer.text_trainer import TextPredictionTrainer

logger = logging.getLogger(__name__)

# the trainer's keyword defaults: a saved run's settings mean what they meant in training
_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(TextPredictionTrainer.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}
_COLUMNS = (
    "masked_col",
    "split_col",
    "label_col",
    "label_class_col",
    "alternative_col",
    "alternative_class_col",
)


@dataclass
class SavedModel:
    """Loads the run's GRADIEND with its base model once, when an evaluation first needs it."""

    layout: RunLayout
    model: Any
    tokenizer: Any
    placement: Placement
    _loaded: ModelWithGradiend | None = None

    def __call__(self) -> ModelWithGradiend:
        if self._loaded is None:
            lm = self.placement.load(self.model, self.tokenizer)
            self._loaded = ModelWithGradiend.from_pretrained(
                self.layout.model_dir,
                base_model=lm,
                device=self.placement.gradiend_device(lm.model),
            )
        return self._loaded


def saved_run(
    trainer_kwargs: Mapping[str, Any],
    args: TrainingArguments,
    progress: bool = True,
    with_data: bool = True,
) -> RunEvaluation:
    """The ``RunEvaluation`` of a trained run described by the trainer's keyword arguments
    (a config's ``trainer`` section) and its ``TrainingArguments``; ``with_data=False`` (a
    rewrite) reads no data at all."""
    kw = {**_DEFAULTS, **trainer_kwargs}
    check_run_id(kw.get("run_id"))  # a saved run's folder stays inside experiment_dir
    layout = RunLayout.from_args(args.experiment_dir, kw.get("run_id"), args.output_dir)
    if not layout.model_config.exists():
        raise FileNotFoundError(
            f"no trained GRADIEND in {layout.model_dir}: train the run first (gradiend train "
            "-c CONFIG), or pass the config saved in its run folder"
        )
    model = SavedModel(layout, kw.get("model"), kw["tokenizer"], args.placement())
    return RunEvaluation(
        get_model=model,
        data=_eval_data(kw, args) if with_data else None,
        layout=layout,
        decoder=args.decoder_eval(),
        encoder_max_size=args.encoder_eval_max_size,
        use_cache=bool(args.use_cache),
        img_format=kw["img_format"],
        progress=progress,
    )


def _eval_data(kw: dict, args: TrainingArguments) -> EvalData:
    """The run's table (held-out splits, class words) and neutral texts."""
    check_neutral(kw["eval_neutral_data"], "text")
    columns = {name: kw[name] for name in _COLUMNS}
    table = read_examples(
        kw.get("data"), kw.get("target_classes"), columns, args, kw["hf_config"], kw["hf_split"]
    )
    return EvalData(
        table=table,
        neutral=read_neutral(kw["eval_neutral_data"], kw["eval_neutral_max_rows"], args.seed),
        target=args.target,
        seed=args.seed,
        extra_excluded=frozenset(
            w.lower() for w in kw["eval_neutral_additional_excluded_words"] or []
        ),
        decoder_eval_targets=kw["decoder_eval_targets"],
    )
