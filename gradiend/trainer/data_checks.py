"""The trainer's inputs, its data and its folders, checked before the first base-model pass.

``check_trainer_inputs`` / ``check_raw_data`` / ``check_neutral`` / ``check_output_dirs`` run when
the trainer is built (no model loaded), ``check_table`` on the canonical example table, and
``check_objective`` / ``check_against_model`` in ``train()`` right after loading the base model.
Argument values are checked earlier, in ``gradiend.trainer.argument_checks``.

Results that would be meaningless but are not certainly wrong give a ``MeaninglessResultWarning``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gradiend._io import check_replaceable
from gradiend._warn import MeaninglessResultWarning
from gradiend._warn import warn as _warn
from gradiend.data.examples import _WORD_FALLBACKS
from gradiend.lm.checks import check_model_arg
from gradiend.model.gradiend import is_gradiend_config, owned_files
from gradiend.trainer.argument_checks import check_int

if TYPE_CHECKING:
    from gradiend.lm.objectives import Item, Objective
    from gradiend.trainer.arguments import TrainingArguments

__all__ = [
    "MeaninglessResultWarning",
    "check_against_model",
    "check_neutral",
    "check_objective",
    "check_output_dirs",
    "check_raw_data",
    "check_table",
    "check_trainer_inputs",
    "warn",
]

from gradiend.run_layout import HF_CONFIG, MODEL_DIR

logger = logging.getLogger(__name__)


def warn(message: str) -> None:
    """Log and raise a ``MeaninglessResultWarning`` (visible in scripts and notebooks), pointing
    at the user's call (check → stage → trainer method → user)."""
    _warn(logger, message)


# --------------------------------------------------------------------------- trainer inputs
def check_trainer_inputs(
    model: Any,
    data: Any,
    target_classes: Any,
    run_id: Any,
    eval_neutral_max_rows: Any,
) -> None:
    """The trainer's own arguments, before the data is read (no model is loaded)."""
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
    check_run_id(run_id)
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


def check_run_id(run_id: str | None) -> None:
    """A run_id names a folder inside experiment_dir (sub-folders like "a/b" are fine): an
    absolute path or a ".." part would write the run somewhere else."""
    if not isinstance(run_id, str):  # None (no sub-folder); other types: check_trainer_inputs
        return
    parts = run_id.replace("\\", "/").split("/")
    if Path(run_id).is_absolute() or run_id.startswith(("/", "\\")) or ".." in parts:
        raise ValueError(
            f"run_id {run_id!r} points outside experiment_dir (an absolute path or a '..' "
            "part): pass a relative folder name such as 'he_she' or 'suite/he_she', and set "
            "TrainingArguments(experiment_dir=...) to choose where runs are written"
        )


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
    frames = table.values() if isinstance(table, dict) else [table]
    named = (None, "split", "heldout", "random")  # "heldout"/"random" name a split mode
    if split_col not in named and not any(split_col in df.columns for df in frames):
        raise ValueError(
            f"split_col={split_col!r} is not a column of the data: name the column that holds "
            "train/validation/test, or pass split_col=None or 'heldout' (held-out vocabulary) or "
            "split_col='random' (a seeded split per class)"
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
            f"unset (the model goes to {run_dir / MODEL_DIR}) or pass a folder of its own."
        )
    _check_model_dir(model_dir, run_dir)


def _check_model_dir(model_dir: Path, run_dir: Path) -> None:
    """The model folder is new, empty or an earlier GRADIEND save: training replaces it whole,
    so a model (or any file) the user put there would be lost."""
    if model_dir.is_dir() and (model_dir / HF_CONFIG).is_file():
        if not is_gradiend_config(model_dir / HF_CONFIG):
            raise FileExistsError(
                f"refusing to save the GRADIEND to {model_dir}: the folder holds a model that is "
                f"not a GRADIEND (its {HF_CONFIG} is not a GRADIEND config, e.g. a model saved "
                "with save_pretrained), which training would replace. Pass another output_dir "
                f"(a new or empty folder), or leave it unset (the model goes to "
                f"{run_dir / MODEL_DIR})."
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
_OBJECTIVE_KIND = {
    "mlm_mask_token": "mlm",
    "clm_next_token": "clm",
    "clm_mlm_head": "clm",
    "seq2seq_encoder_mlm": "seq2seq",
}
_KIND_NAME = {"mlm": "a masked LM", "clm": "a causal LM", "seq2seq": "an encoder-decoder model"}


def check_objective(kind: str, objective: Objective) -> None:
    """The prediction objective fits the model kind (right after loading the model)."""
    want = _OBJECTIVE_KIND.get(objective.name)
    if want is not None and want != kind:
        raise ValueError(
            f"prediction_objective={objective.name!r} needs {_KIND_NAME[want]}, but the base "
            f"model is {_KIND_NAME.get(kind, kind)}: use prediction_objective='auto'"
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
