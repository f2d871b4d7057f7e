"""Every bad input refused before the first base-model pass, each error naming its fix.

The checks run as early as what they need is known, and all before any gradient:

- ``check_arguments`` / ``check_prune_config``: values of the dataclasses, at construction
  (zero or negative sizes, fractions outside (0, 1], strings where lists are expected, …);
- ``check_trainer_inputs``: the trainer's arguments, the file system and the raw data, when the
  trainer is built (no model yet);
- ``check_table``: the canonical example table (masks, duplicates across splits, one-class
  evaluation splits);
- ``check_against_model``: what needs the tokenizer and the parameter map, in ``train()`` right
  after loading the base model (unknown words, objective vs model kind, class words whose targets
  coincide, pruning sizes).

Results that would be meaningless but are not certainly wrong give a ``MeaninglessResultWarning``.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gradiend._warn import MeaninglessResultWarning  # noqa: F401 - re-exported for users
from gradiend._warn import warn as _warn

if TYPE_CHECKING:
    from gradiend.lm.objectives import Item, Objective
    from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig, TrainingArguments

logger = logging.getLogger(__name__)


def warn(message: str) -> None:
    """Log and raise a ``MeaninglessResultWarning`` (visible in scripts and notebooks), pointing
    at the user's call (check → stage → trainer method → user)."""
    _warn(logger, message, stacklevel=6)


# --------------------------------------------------------------------------- plain values
def check_int(name: str, value: Any, minimum: int = 1, optional: bool = False, hint: str = ""):
    """``value`` is an integer ≥ ``minimum`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    none = " or None" if optional else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        example = max(minimum, 1)
        if isinstance(value, float) and value.is_integer() and value >= minimum:
            example = int(value)
        raise TypeError(
            f"{name} must be an integer ≥ {minimum}{none}, got {value!r} "
            f"({type(value).__name__}); pass e.g. {name}={example}"
        )
    if value < minimum:
        fix = hint or f"pass an integer ≥ {minimum}{none}"
        raise ValueError(f"{name}={value!r} is not allowed: {fix}")


def check_number(
    name: str, value: Any, low: float | None = None, strict: bool = True, optional: bool = False
):
    """``value`` is a finite real number above ``low`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not finite; pass a finite number")
    if low is not None and (value <= low if strict else value < low):
        op = ">" if strict else "≥"
        raise ValueError(f"{name}={value!r} is not allowed: pass a number {op} {low}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be True or False, got {value!r} ({type(value).__name__}); "
            "a string such as 'False' would count as true"
        )


def check_topk(name: str, value: Any, optional: bool = True) -> None:
    """A count (int ≥ 1) or a fraction (float in (0, 1])."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a count (int ≥ 1) or a fraction (float in (0, 1]), got {value!r}"
        )
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ValueError(
                f"{name}={value!r} would keep no dimension: pass a count ≥ 1 or a fraction "
                "in (0, 1] (e.g. 0.01 for the top 1 %)"
            )
        return
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(
            f"{name}={value!r} is not a fraction in (0, 1]: pass e.g. 0.01 for the top 1 %, "
            "or an int for a count of dimensions"
        )


def check_str_list(name: str, value: Any, optional: bool = True, example: str = "x") -> None:
    """A list of strings, never a bare string (which would be read letter by letter)."""
    if value is None and optional:
        return
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list, got the string {value!r}: pass {name}=[{value!r}]")
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(
            f"{name} must be a non-empty list, e.g. {name}=[{example!r}]; got {value!r}"
        )
    bad = [v for v in value if not isinstance(v, str) or not v]
    if bad:
        raise TypeError(f"{name} must hold non-empty strings; {bad[0]!r} is not one")


def check_number_list(name: str, value: Any, positive: bool = False, optional: bool = True):
    """A list of finite numbers (positive ones when ``positive``), never a string or scalar."""
    if value is None and optional:
        return
    if isinstance(value, (str, numbers.Number)):
        try:
            example = repr(float(value))
        except ValueError:
            example = "1.0"
        raise TypeError(f"{name} must be a list of numbers, got {value!r}: pass {name}=[{example}]")
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"{name} must be a non-empty list of numbers, got {value!r}")
    for v in value:
        check_number(f"an entry of {name}", v, low=0.0 if positive else None)


def check_path(name: str, value: Any, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise TypeError(f"{name} must be a folder path (str or Path), got {value!r}")


# --------------------------------------------------------------------------- dataclasses
_SIZES = {  # field: (minimum, optional, what the value means)
    "train_batch_size": (1, False, "rows per training gradient batch"),
    "eval_batch_size": (1, False, "rows per evaluation forward pass"),
    "eval_steps": (1, False, "steps between in-training evaluations"),
    "num_train_epochs": (1, False, "passes over the training batches"),
    "max_seeds": (1, False, "seeds to try"),
    "min_convergent_seeds": (1, False, "convergent seeds to require"),
    "gradiend_batch_size": (1, True, "gradient batches per optimiser step"),
    "train_max_size": (1, True, "training rows per transition (None: all)"),
    "encoder_eval_max_size": (1, True, "evaluation rows per transition (None: all)"),
    "encoder_eval_train_max_size": (1, True, "validation rows per transition (None: all)"),
    "decoder_eval_max_size_training_like": (1, True, "decoder rows per class (None: all)"),
    "decoder_eval_max_size_neutral": (1, True, "neutral texts for the LMS (None: all)"),
    "latent_dim": (1, True, "latent units"),
    "seed": (0, False, "the random seed"),
}


def check_arguments(args: TrainingArguments) -> None:
    """Values of ``TrainingArguments`` that cannot be right (called at construction)."""
    for name, (low, optional, what) in _SIZES.items():
        value = getattr(args, name)
        none = ", or None" if optional else ""
        check_int(name, value, low, optional, f"{name} is the number of {what}: pass ≥ {low}{none}")
    check_int("max_steps", args.max_steps, -1)
    if args.max_steps == 0:
        raise ValueError(
            "max_steps=0 would train nothing: pass max_steps ≥ 1, or -1 to train for "
            "num_train_epochs epochs"
        )
    check_number("learning_rate", args.learning_rate, 0.0)
    check_number("weight_decay", args.weight_decay, 0.0, strict=False)
    check_number("adam_epsilon", args.adam_epsilon, 0.0)
    check_number("gradient_cache_max_gb", args.gradient_cache_max_gb, 0.0, strict=False)
    for name in ("convergent_score_threshold", "convergent_mean_by_class_threshold"):
        check_number(name, getattr(args, name), 0.0, strict=False, optional=True)
    if args.convergence_metric == "correlation":
        for name in ("convergent_score_threshold", "convergent_mean_by_class_threshold"):
            if (getattr(args, name) or 0) > 1:
                raise ValueError(
                    f"{name}={getattr(args, name)} can never be reached (correlations and "
                    "encodings lie in [-1, 1]): pass a value in [0, 1]"
                )
    if args.min_convergent_seeds > args.max_seeds:
        raise ValueError(
            f"min_convergent_seeds={args.min_convergent_seeds} > max_seeds={args.max_seeds} can "
            "never be met: raise max_seeds or lower min_convergent_seeds"
        )
    for name in ("add_identity_for_other_classes", "do_eval", "fail_on_non_convergence"):
        check_bool(name, getattr(args, name))
    check_bool("trust_remote_code", args.trust_remote_code)
    check_str_list("params", args.params, example="bert.encoder.layer.11.*")
    check_number_list("decoder_eval_lrs", args.decoder_eval_lrs, positive=True)
    check_number_list("decoder_eval_feature_factors", args.decoder_eval_feature_factors)
    check_path("experiment_dir", args.experiment_dir)
    check_path("output_dir", args.output_dir)
    _check_names(args)
    _check_prune_types(args)


def _check_names(args: TrainingArguments) -> None:
    from gradiend.lm.objectives import OBJECTIVES
    from gradiend.model.gradiend import _ACTIVATIONS

    if args.prediction_objective != "auto" and args.prediction_objective not in OBJECTIVES:
        raise ValueError(
            f"unknown prediction_objective {args.prediction_objective!r}; choose 'auto' or one "
            f"of {list(OBJECTIVES)}"
        )
    for name in ("activation_encoder", "activation_decoder"):
        value = getattr(args, name)
        if value is not None and value not in _ACTIVATIONS:
            raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(_ACTIVATIONS)}")


def _check_prune_types(args: TrainingArguments) -> None:
    from gradiend.trainer.arguments import PostPruneConfig, PrePruneConfig

    for name, cls in (("pre_prune_config", PrePruneConfig), ("post_prune_config", PostPruneConfig)):
        value = getattr(args, name)
        if value is not None and not isinstance(value, cls):
            raise TypeError(
                f"{name} must be a {cls.__name__} (e.g. {cls.__name__}(topk=0.01)), a dict of "
                f"its fields, or None; got {value!r}"
            )


def check_prune_config(cfg: PrePruneConfig | PostPruneConfig) -> None:
    """Values of a pre- or post-pruning config (called at construction)."""
    name = type(cfg).__name__
    check_topk(f"{name}.topk", cfg.topk)
    check_number(f"{name}.threshold", cfg.threshold, optional=True)
    if hasattr(cfg, "n_samples"):
        check_int(f"{name}.n_samples", cfg.n_samples, 1)
        check_int(f"{name}.batch_size", cfg.batch_size, 1)
        check_int(f"{name}.seed", cfg.seed, 0, optional=True)
    if hasattr(cfg, "part"):
        from gradiend.model.gradiend import PARTS

        if cfg.part not in PARTS:
            raise ValueError(f"unknown {name}.part {cfg.part!r}; choose one of {PARTS}")


# --------------------------------------------------------------------------- trainer inputs
def check_trainer_inputs(
    model: Any,
    data: Any,
    target_classes: Any,
    run_id: Any,
    eval_neutral_max_rows: Any,
) -> None:
    """The trainer's own arguments, before the data is read (no model is loaded)."""
    from gradiend.lm.checks import check_model_arg

    if model is None:
        raise ValueError(
            "TextPredictionTrainer needs model=: a hub id, a model folder, a .gguf file or "
            "(model, tokenizer)"
        )
    if data is None:
        raise ValueError("TextPredictionTrainer needs data= (see docs/data-format.md)")
    check_model_arg(model)
    if run_id is not None and not isinstance(run_id, str):
        raise TypeError(f"run_id must be a string (a folder name) or None, got {run_id!r}")
    if isinstance(target_classes, str):
        raise TypeError(
            f"target_classes must be a list of two class ids, got the string {target_classes!r}: "
            f"pass target_classes=[{target_classes!r}, <the other class>]"
        )
    if target_classes is not None and (
        not isinstance(target_classes, (list, tuple)) or len(target_classes) != 2
    ):
        raise ValueError(
            f"target_classes must be two class ids, e.g. ['he', 'she']; got {target_classes!r}"
        )
    check_int("eval_neutral_max_rows", eval_neutral_max_rows, 1, optional=True)
    _check_data_arg(data)


def _check_data_arg(data: Any) -> None:
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("data is an empty dict: map each class id to a DataFrame of its rows")
        for cls, frame in data.items():
            if not isinstance(frame, pd.DataFrame):
                raise TypeError(
                    f"data[{cls!r}] is a {type(frame).__name__}, not a DataFrame. A per-class dict "
                    f"maps each class to a DataFrame with the masked texts and the class's words, "
                    f"e.g. {{{cls!r}: pd.DataFrame({{'masked': texts, {cls!r}: words}})}} "
                    "(see docs/data-format.md)"
                )
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_file() and path.suffix not in (".csv", ".parquet"):
            raise ValueError(
                f"data file {path} has the unsupported type {path.suffix!r}: the trainer reads "
                ".csv or .parquet tables of masked rows (raw text goes to "
                "TextPredictionDataCreator first)"
            )
        if not path.exists() and _looks_like_path(str(data)):
            raise FileNotFoundError(
                f"data file {path} does not exist; check the path (a hub dataset id looks like "
                "'org/name')"
            )


def _looks_like_path(s: str) -> bool:
    return (
        s.startswith((".", "/", "~"))
        or "\\" in s
        or s.count("/") > 1
        or Path(s).suffix.lower() in (".csv", ".parquet", ".txt", ".json", ".tsv", ".gguf")
    )


def check_raw_data(
    table: pd.DataFrame | dict[str, pd.DataFrame],
    masked_col: str,
    split_col: str | None,
    label_col: str,
    label_class_col: str,
    alternative_col: str,
    alternative_class_col: str,
) -> None:
    """Missing (None/NaN) or empty texts, words and classes, named by column and row."""
    from gradiend.data.examples import _WORD_FALLBACKS

    frames = table.values() if isinstance(table, dict) else [table]
    if split_col not in (None, "split") and not any(split_col in df.columns for df in frames):
        raise ValueError(
            f"split_col={split_col!r} is not a column of the data: name the column that holds "
            "train/validation/test, or pass split_col=None for a seeded split per class"
        )
    if isinstance(table, dict):
        for cls, df in table.items():
            word = cls if cls in df.columns else next((c for c in _WORD_FALLBACKS if c in df), None)
            _check_cells(df, [masked_col, word], [split_col], f"data[{cls!r}]")
        return
    cols = [masked_col, label_col, label_class_col]
    if alternative_col in table.columns and alternative_class_col in table.columns:
        cols += [alternative_col, alternative_class_col]
    _check_cells(table, cols, [split_col], "data")


def _check_cells(df: pd.DataFrame, required: list, optional: list, where: str) -> None:
    for col in [c for c in required + optional if c is not None and c in df.columns]:
        values = df[col]
        missing = values.isna()
        if col in required and not pd.api.types.is_numeric_dtype(values):
            blank = values.map(lambda v: isinstance(v, str) and not v.strip(), na_action="ignore")
            missing |= blank.fillna(False).astype(bool)
        if missing.any() and (col in required or not missing.all()):
            first = df.index[missing.to_numpy()][0]
            raise ValueError(
                f"{where}: {int(missing.sum())} row(s) have no value in column {col!r} (first: "
                f"row {first!r}); drop them (e.g. df.dropna(subset=[{col!r}])) or fill them in"
            )


def check_neutral(data: Any, column: str | None = None) -> None:
    """Neutral texts without missing values."""
    if data is None:
        return
    if isinstance(data, str):
        if Path(data).suffix in (".csv", ".parquet") and not Path(data).is_file():
            raise FileNotFoundError(f"eval_neutral_data file {data} does not exist")
        return
    values = list(data) if isinstance(data, (list, tuple)) else None
    if isinstance(data, pd.DataFrame) and column in data.columns:
        values = data[column].tolist()
    if values is None:
        return
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(
            f"eval_neutral_data: {len(bad)} text(s) are missing or not strings (first: index "
            f"{bad[0]}, {values[bad[0]]!r}); drop them before passing the texts"
        )


def check_output_dirs(run_dir: Path, model_dir: Path, experiment_dir: Path) -> None:
    """The run folder can be made, and saving the model there deletes nothing of the user's."""
    from gradiend._io import check_replaceable
    from gradiend.model.gradiend import owned_files

    for name, path in (("experiment_dir", experiment_dir), ("the run folder", run_dir)):
        for p in (path, *path.parents):
            if p.is_file():
                raise NotADirectoryError(
                    f"{name} {path} cannot be a folder: {p} is a file. Pass a folder path."
                )
    for path in (run_dir, model_dir):
        existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
        if existing.exists() and not os.access(existing, os.W_OK):
            raise PermissionError(
                f"cannot write into {existing} (for {path}): pass an experiment_dir / "
                "output_dir you can write to"
            )
    run, model = run_dir.resolve(), model_dir.resolve()
    if model == run or model in run.parents:
        raise ValueError(
            f"output_dir={model_dir} is the run folder {run_dir} (or holds it): saving the model "
            "replaces that folder and would delete the run's caches and results. Leave output_dir "
            f"unset (the model goes to {run_dir / 'model'}) or pass a folder of its own."
        )
    check_replaceable(model_dir, owned_files(model_dir), "GRADIEND model")


# --------------------------------------------------------------------------- the example table
def check_table(df: pd.DataFrame, targets: list[str], mask: str) -> None:
    """The canonical table: every row masked, evaluation splits usable, no leaked duplicates."""
    if not isinstance(mask, str) or not mask.strip():
        raise ValueError(
            f"mask must be the placeholder string in the texts (e.g. '[MASK]'), got {mask!r}"
        )
    no_mask = df[~df["masked"].astype(str).str.contains(mask, regex=False)]
    if len(no_mask):
        raise ValueError(
            f"{len(no_mask)} row(s) have no {mask} (first of class "
            f"{no_mask['factual_class'].iloc[0]!r}: {str(no_mask['masked'].iloc[0])[:80]!r}); "
            "mask the target word, set masked_col= or pass mask= with your placeholder"
        )
    _check_eval_split(df, targets)
    _warn_duplicates(df)


def _check_eval_split(df: pd.DataFrame, targets: list[str]) -> None:
    pairs = df[df["factual_class"] != df["alternative_class"]]
    for split in ("validation", "test", "train"):  # the in-training evaluation's fallback order
        rows = pairs[pairs["split"] == split]
        if len(rows):
            missing = [c for c in targets if c not in set(rows["factual_class"])]
            if missing:
                raise ValueError(
                    f"the {split} split, used to evaluate the encoder during training, has no "
                    f"rows of class {missing[0]!r}: the correlation would be undefined. Give "
                    f"{missing[0]!r} rows in that split, or drop the split column for a seeded "
                    "split per class"
                )
            return


def _warn_duplicates(df: pd.DataFrame) -> None:
    cols = ["masked", "factual"]
    rows = df[[*cols, "split"]].drop_duplicates()
    leaked = rows.loc[rows.duplicated(subset=cols, keep=False), cols].drop_duplicates()
    if len(leaked):
        example = str(leaked["masked"].iloc[0])[:80]
        warn(
            f"{len(leaked)} sentence(s) appear in more than one split (e.g. {example!r}): "
            "held-out scores on them measure memorisation. Deduplicate the data before "
            "splitting (e.g. df.drop_duplicates(subset=['masked']))"
        )


# --------------------------------------------------------------------------- with the model
_OBJECTIVE_KIND = {"mlm_mask_token": "mlm", "clm_next_token": "clm"}


def check_objective(kind: str, objective: Objective) -> None:
    """The prediction objective fits the model kind (right after loading the model)."""
    want = _OBJECTIVE_KIND.get(objective.name)
    if want is not None and want != kind:
        fix = "a masked LM" if want == "mlm" else "a causal LM"
        raise ValueError(
            f"prediction_objective={objective.name!r} needs {fix}, but the base model is a "
            f"{'masked' if kind == 'mlm' else 'causal'} LM: use prediction_objective='auto'"
        )


def check_against_model(
    kind: str,
    objective: Objective,
    df: pd.DataFrame,
    items: Sequence[Item],
    dim: int,
    args: TrainingArguments,
) -> None:
    """Checks that need the tokenizer and the parameter map (after loading, before any pass).

    ``df`` and ``items`` are the training and validation rows and their items, in order.
    """
    _check_distinct_targets(objective, df, items)
    _check_prune_sizes(args, dim)


def _check_distinct_targets(objective: Objective, df: pd.DataFrame, items: Sequence[Item]):
    """Rows whose two words are the same input to the model get identical gradients."""
    pair = (df["factual_class"] != df["alternative_class"]).to_numpy()
    same = [
        i
        for i, item in enumerate(items)
        if pair[i]
        and item.factual.input_ids == item.alternative.input_ids
        and item.factual.positions == item.alternative.positions
        and item.factual.targets == item.alternative.targets
    ]
    if not same:
        return
    row = df.iloc[same[0]]
    token = objective.tokenizer.convert_ids_to_tokens(items[same[0]].factual.targets[:1])
    msg = (
        f"for {len(same)} of {int(pair.sum())} row(s) the words of the two classes give the same "
        f"target under {objective.name} (e.g. {row['factual']!r} vs {row['alternative']!r} → "
        f"token {token[0]!r}): their gradients are identical, so the GRADIEND cannot tell the "
        "classes apart there."
    )
    fix = (
        " Use words whose first tokens differ (for a causal LM, move the shared start of the "
        "words into the text before the mask)."
    )
    if len(same) == int(pair.sum()) or len(same) > 0.5 * pair.sum():
        raise ValueError(msg + fix)
    warn(msg + fix + " Those rows carry no signal.")


def _check_prune_sizes(args: TrainingArguments, dim: int) -> None:
    pre, post = args.pre_prune_config, args.post_prune_config
    kept = dim
    if pre is not None and isinstance(pre.topk, int):
        if pre.topk >= dim:
            warn(
                f"pre_prune_config.topk={pre.topk} keeps all {dim} selected dimensions: "
                "pre-pruning does nothing; pass a smaller count or a fraction"
            )
        kept = min(kept, pre.topk)
    if post is not None and isinstance(post.topk, int) and post.topk >= kept:
        warn(
            f"post_prune_config.topk={post.topk} keeps all {kept} dimensions: post-pruning does "
            "nothing; pass a smaller count or a fraction"
        )


# --------------------------------------------------------------------------- evaluation calls
def check_eval_call(split: str | None = None, max_size: Any = None, name: str = "max_size"):
    """Arguments of ``evaluate_encoder`` / ``evaluate_decoder``."""
    from gradiend.data.examples import SPLITS

    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_int(name, max_size, 1, optional=True, hint=f"pass {name} ≥ 1, or None for all rows")


def check_decoder_call(lrs: Any, feature_factors: Any, max_rows: Any, max_neutral: Any) -> None:
    """Arguments of ``evaluate_decoder``."""
    check_number_list("lrs", lrs, positive=True)
    check_number_list("feature_factors", feature_factors)
    check_int("max_size_training_like", max_rows, 1, optional=True)
    check_int("max_size_neutral", max_neutral, 1, optional=True)


def check_results_match(results: Mapping, fingerprint: str) -> None:
    """Decoder results carry the fingerprint of the GRADIEND they were selected for; applying
    them to another GRADIEND would use a step size chosen for a different direction."""
    if not isinstance(results, Mapping):
        raise TypeError(
            f"decoder_results must be the dict returned by evaluate_decoder(), got "
            f"{type(results).__name__}"
        )
    for key, entry in results.items():
        theirs = entry.get("gradiend_fingerprint") if isinstance(entry, Mapping) else None
        if theirs is not None and theirs != fingerprint:
            raise ValueError(
                f"decoder_results[{key!r}] was selected for another GRADIEND (fingerprint "
                f"{theirs}, this one is {fingerprint}): its learning rate does not fit this "
                "model. Call evaluate_decoder() on this trainer and pass its results."
            )


def check_save_dir(path: str | os.PathLike) -> None:
    """A folder for a rewritten Hugging Face model: new, empty, or an earlier model folder."""
    check_path("output_dir", path, optional=False)
    path = Path(path)
    if path.is_file():
        raise FileExistsError(f"output_dir {path} is a file: pass a folder path")
    if path.is_dir() and any(path.iterdir()) and not (path / "config.json").is_file():
        raise FileExistsError(
            f"refusing to save the rewritten model into {path}: the folder holds files that are "
            "not a model's. Pass a new or empty folder."
        )
