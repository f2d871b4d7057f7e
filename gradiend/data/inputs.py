"""Checks of the data creator's arguments, run at construction or at the start of a call, so a
bad value is refused with its name and the fix before any text is read."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd


class DataInputError(ValueError):
    """A bad argument of the data creator. ``argument`` names it (``section`` says whose it is:
    ``creator``, ``generate_training_data`` or ``generate_neutral_data``, as in a run config);
    the message says the problem and the fix. The command line exits with code 2 on it."""

    def __init__(self, argument: str, problem: str, fix: str, section: str = "creator") -> None:
        self.argument, self.problem, self.fix, self.section = argument, problem, fix, section
        super().__init__(f"{argument}: {problem}. Fix: {fix}")


class DataTypeError(DataInputError, TypeError):
    """A data creator argument of the wrong type (a ``TypeError`` and a ``DataInputError``)."""


def check_size(
    argument: str, value: Any, section: str = "creator", minimum: int = 1, optional: bool = True
) -> None:
    """``value`` is an int ``>= minimum`` (or None when ``optional``); bools and floats are not."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        none = " or None" if optional else ""
        raise DataTypeError(
            argument,
            f"must be an int{none}, got {value!r} ({type(value).__name__})",
            f"pass a whole number such as {max(minimum, 1) * 100}{none}",
            section,
        )
    if value < minimum:
        fix = f"pass {minimum} or more" + (" (None for no limit)" if optional else "")
        raise DataInputError(argument, f"must be >= {minimum}, got {value}", fix, section)


def check_word_list(argument: str, value: Any, section: str) -> list[str]:
    """A list of non-empty strings (a lone string would be split into its characters)."""
    if value is None:
        return []
    if isinstance(value, str):
        raise DataTypeError(
            argument,
            f"got the string {value!r}, which would exclude its single characters",
            f"pass a list: [{value!r}]",
            section,
        )
    words = list(value)
    bad = [w for w in words if not isinstance(w, str) or not w.strip()]
    if bad:
        raise DataTypeError(
            argument, f"holds {bad[0]!r}, not a word", "pass a list of non-empty strings", section
        )
    return words


def check_texts(base_data: Any, text_column: str) -> None:
    """In-memory texts must be strings (missing values, None or NaN, are skipped): an int or a
    list among them would otherwise be turned into a text silently."""
    if isinstance(base_data, pd.DataFrame):
        if text_column not in base_data.columns:
            return  # the source resolver names the missing column with the columns it has
        values: Sequence[Any] = base_data[text_column].tolist()
        where = f"base_data[{text_column!r}]"
    elif isinstance(base_data, pd.Series):
        values, where = base_data.tolist(), "base_data"
    elif isinstance(base_data, (list, tuple)):
        values, where = base_data, "base_data"
    else:
        if isinstance(base_data, str) and _looks_like_a_sentence(base_data):
            raise DataInputError(
                "base_data",
                f"{base_data[:60]!r} is neither a file nor a Hugging Face dataset id",
                "pass the texts as a list, e.g. base_data=[" + repr(base_data[:30]) + ", ...]",
            )
        return
    for i, v in enumerate(values):
        if isinstance(v, str) or v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        raise DataTypeError(
            where,
            f"item {i} is {v!r} ({type(v).__name__}), not a text",
            "pass strings only (convert with str() if the value really is a text)",
        )


def check_creator_args(creator: Any, feature_targets: list[Any]) -> None:
    """The creator's own arguments (the sources check the data itself); ``feature_targets``
    are ``TextFilterConfig``s."""
    ids = [str(f.id) for f in feature_targets]
    dupes = sorted(i for i, c in Counter(ids).items() if c > 1)
    if dupes:
        raise DataInputError(
            "feature_targets",
            f"duplicate ids {dupes}: two filters would write to one class",
            "give each filter its own id=",
        )
    _check_shared_words(feature_targets)
    check_size("min_left_context_words", creator.min_left_context_words, minimum=0, optional=False)
    check_size("batch_size", creator.batch_size, optional=False)
    check_size("base_max_size", creator.base_max_size)
    check_size("seed", creator.seed, minimum=0)
    check_size("tag_sample_size", creator.tag_sample_size, minimum=0, optional=False)
    if not isinstance(creator.text_column, str) or not creator.text_column:
        raise DataTypeError(
            "text_column", f"must be a column name, got {creator.text_column!r}", "pass a str"
        )
    for name in ("training_basename", "neutral_basename"):
        value = getattr(creator, name)
        if not isinstance(value, str) or not value.strip() or any(c in value for c in "/\\"):
            raise DataInputError(
                name, f"{value!r} is not a file name", "pass a plain name such as 'training'"
            )


def _check_shared_words(feature_targets: list[Any]) -> None:
    """A word of two classes without spacy_tags on either gives both classes the same rows."""
    owner: dict[str, str] = {}
    for f in feature_targets:
        if f.needs_spacy:
            continue
        for word in {w.lower() for w in f.words}:
            if word in owner:
                raise DataInputError(
                    "feature_targets",
                    f"the word {word!r} is a target of class {owner[word]!r} and of class "
                    f"{f.id!r}, and neither has spacy_tags: both would get the same rows",
                    "give the word to one class, or spacy_tags that tell the uses apart",
                )
            owner[word] = str(f.id)


def check_training_args(
    max_size_per_class: Any, min_rows_per_class_for_split: Any, min_rows_per_target: Any
) -> None:
    """The sizes of ``generate_training_data``."""
    section = "generate_training_data"
    check_size("max_size_per_class", max_size_per_class, section)
    check_size("min_rows_per_class_for_split", min_rows_per_class_for_split, section, 1, False)
    check_size("min_rows_per_target_for_balance", min_rows_per_target, section, 1, False)


def _looks_like_a_sentence(value: str) -> bool:
    """Not a file (no such path, no data suffix) and not a hub id (those have no spaces)."""
    path = Path(value)
    if path.exists() or path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq", ".txt"):
        return False
    return any(c.isspace() for c in value.strip())
