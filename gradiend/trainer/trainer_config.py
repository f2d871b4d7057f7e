"""``TrainerConfig`` and ``TextPredictionConfig``: the trainer's construction keywords as one
object (gradiend 0.2.3's ``TextPredictionTrainer(model, config=TextPredictionConfig(...))``).

A config holds what ``TextPredictionTrainer(...)`` otherwise takes as keywords (not the
``TrainingArguments``, which stay ``args=``). ``trainer_kwargs`` is the class decorator that
makes the trainer accept ``config=``: the config's fields fill every keyword the call does not
give, so an explicit keyword wins. Each field's default is the trainer's own (a test compares
them), so a config that sets nothing builds the trainer that no keywords build.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from gradiend._kwargs import strict_kwargs

logger = logging.getLogger(__name__)

__all__ = ["TextPredictionConfig", "TrainerConfig", "trainer_kwargs"]

T = TypeVar("T", bound=type)


@strict_kwargs
@dataclass
class TrainerConfig:
    """The keywords of a trainer that do not depend on its task: the run and its output.

    Args:
        run_id: Name of the run; its folder is ``experiment_dir/run_id``.
        img_format: File format of the figures (``"png"``, ``"pdf"``, ...).
        progress: Show progress bars.
        mask: The mask string of the data (default: ``TrainingArguments.mask_placeholder``).
        tokenizer: The tokenizer when the model is given as a loaded module.
    """

    run_id: str | None = None
    img_format: str = "png"
    progress: bool = True
    mask: str = "[MASK]"
    tokenizer: Any = None


@strict_kwargs
@dataclass
class TextPredictionConfig(TrainerConfig):
    """The keywords of ``TextPredictionTrainer``: the data, its columns and classes, the neutral
    texts and the decoder's word sets (each field means what the trainer's keyword means).

    Args:
        data: Training rows: a per-class dict of frames, one merged frame, a file or a hub id.
        target_classes: The two classes of the feature (inferred when the data has two).
        masked_col: Column of the masked sentences.
        split_col: Column of train/validation/test, ``"heldout"``/``None`` or ``"random"``.
        label_col: Column of the factual word (merged frames).
        label_class_col: Column of the factual class (merged frames).
        alternative_col: Column of the alternative word (merged frames).
        alternative_class_col: Column of the alternative class (merged frames).
        eval_neutral_data: Neutral texts for the decoder's language-model score.
        eval_neutral_additional_excluded_words: Words never re-masked in neutral texts.
        eval_neutral_max_rows: Cap on the neutral texts.
        decoder_eval_targets: The decoder's word sets per class (``None``: inferred).
        hf_config: Hub dataset configuration of ``data``.
        hf_split: Hub dataset split(s) of ``data``.
        all_classes: The classes the data is restricted to.
        class_merge_map: Merged classes: ``{new_class: [old classes]}``.
        class_merge_transition_groups: Groups of merged classes whose transitions are trained.
        transition_selection: Which transitions are trained (``TransitionSpec``, ``pair``, ...).
        max_counterfactuals_per_sentence: Alternatives drawn per sentence and other class.
        random_state: Seed of those draws (default: the training seed).
        split_ratios: Train/validation/test fractions of a random split.
    """

    data: Any = None
    target_classes: list[str] | None = None
    masked_col: str = "masked"
    split_col: str | None = "split"
    label_col: str = "label"
    label_class_col: str = "label_class"
    alternative_col: str = "alternative"
    alternative_class_col: str = "alternative_class"
    eval_neutral_data: Any = None
    eval_neutral_additional_excluded_words: list[str] | None = None
    eval_neutral_max_rows: int | None = None
    decoder_eval_targets: dict | str | None = None
    hf_config: str | None = None
    hf_split: str | list[str] | None = None
    all_classes: list[str] | None = None
    class_merge_map: dict[str, list[str]] | None = None
    class_merge_transition_groups: list[list[str]] | None = None
    transition_selection: Any = None
    max_counterfactuals_per_sentence: int = 1
    random_state: int | None = None
    split_ratios: Any = (0.8, 0.1, 0.1)


def trainer_kwargs(cls: T) -> T:
    """``strict_kwargs`` (a typo gets a "did you mean") plus ``config=``: a ``TrainerConfig``
    whose fields fill the keywords the call leaves out (an explicit keyword wins)."""
    cls = strict_kwargs(cls)
    init = cls.__init__
    sig = inspect.signature(init)
    positional = [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][1:]  # without self

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, config: TrainerConfig | None = None, **kwargs: Any) -> None:
        if config is not None:
            kwargs = merge_config(cls.__name__, config, positional[: len(args)], kwargs)
        init(self, *args, **kwargs)

    config_param = inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="TrainerConfig | None"
    )
    __init__.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*sig.parameters.values(), config_param]
    )
    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


def merge_config(
    owner: str, config: Any, given_positional: list[str], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``kwargs`` completed by ``config``'s fields (those neither passed positionally nor as a
    keyword); a ``config`` that is no ``TrainerConfig`` is refused."""
    if not isinstance(config, TrainerConfig):
        raise TypeError(
            f"{owner}(config=...) takes a TextPredictionConfig (or a TrainerConfig), got a "
            f"{type(config).__name__}; build one with TextPredictionConfig(data=..., "
            "target_classes=[...]) or pass the keywords directly"
        )
    given = set(given_positional) | set(kwargs)
    merged = dict(kwargs)
    for f in dataclasses.fields(config):
        if f.name not in given:
            merged[f.name] = getattr(config, f.name)
    return merged
