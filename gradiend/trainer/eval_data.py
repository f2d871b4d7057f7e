"""What the evaluations read from a run's data, as one frozen value.

The trainer builds it from its table; ``gradiend evaluate`` builds the same value from the run's
config without a trainer. The encoder and decoder evaluations, the task builder and the
cross-encoding matrix read only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend.data.examples import ExampleTable, build_examples, read_table
from gradiend.data.pairing import ClassOptions
from gradiend.data.transitions import transition_label
from gradiend.lm.scoring import case_variants
from gradiend.trainer.data_checks import check_raw_data


def encoding_labels(df: pd.DataFrame, targets: list[str], target: str) -> np.ndarray:
    """+1 for rows whose decoder target pushes the model towards ``targets[0]``, −1 towards
    ``targets[1]``, 0 for identity rows. This is the one sign convention of the library:
    after orientation ``decoder(+1)`` strengthens ``targets[0]``."""
    return np.array(
        [
            transition_label(f, a, targets, target)
            for f, a in zip(df["factual_class"], df["alternative_class"], strict=True)
        ],
        dtype=float,
    )


@dataclass(frozen=True)
class EvalData:
    """The example table, the neutral texts and the settings that say how rows are labelled."""

    table: ExampleTable
    neutral: pd.DataFrame | None = None
    target: str = "diff"  # what the GRADIEND's decoder reconstructs (sets the labels' sign)
    seed: int = 0
    extra_excluded: frozenset[str] = frozenset()  # eval_neutral_additional_excluded_words
    decoder_eval_targets: dict | str | None = None
    include_other_classes: bool = False  # encoder rows: also every untrained transition

    @property
    def target_classes(self) -> list[str]:
        return list(self.table.target_classes)

    def split(self, name: str) -> pd.DataFrame:
        return self.table.split(name)

    def encoder_split(self, name: str, include_other: bool | None = None) -> pd.DataFrame:
        """The rows ``evaluate_encoder`` encodes: the trained transitions, plus every other
        transition with ``include_other_classes``."""
        other = self.include_other_classes if include_other is None else include_other
        return self.table.split(name, include_other=other)

    def labels(self, df: pd.DataFrame) -> np.ndarray:
        return encoding_labels(df, self.target_classes, self.target)

    def neutral_texts(self) -> list[str]:
        return [] if self.neutral is None else self.neutral["text"].astype(str).tolist()

    def excluded_words(self) -> set[str]:
        """Words a neutral re-masking never masks: every class word and the user's extras."""
        df = self.table.df
        words = {w.lower() for w in pd.concat([df["factual"], df["alternative"]]).astype(str)}
        return words | set(self.extra_excluded)

    def class_words(self) -> dict[str, list[str]]:
        """Each target class's words (with case variants) over every row of the table."""
        df = self.table.df
        sets: dict[str, list[str]] = {c: [] for c in self.target_classes}
        for col, cls_col in (("factual", "factual_class"), ("alternative", "alternative_class")):
            for word, cls in zip(df[col].astype(str), df[cls_col], strict=True):
                if cls in sets:
                    sets[cls] += case_variants(word)
        return {c: list(dict.fromkeys(ws)) for c, ws in sets.items()}


def read_examples(
    data, target_classes, columns: dict, args, hf_config, hf_split, options=None
) -> ExampleTable:
    """The example table of the trainer's data (every class with training rows);
    ``options``: a ``ClassOptions`` (merged classes, transitions, counterfactuals, ratios)."""
    raw = read_table(data)
    check_raw_data(raw, *columns.values())
    table = build_examples(
        raw,
        target_classes,
        **columns,
        add_identity_for_other_classes=args.add_identity_for_other_classes,
        seed=args.seed,
        hf_config=hf_config,
        hf_split=hf_split,
        options=options if options is not None else ClassOptions(),
    )
    counts = table.df[table.df["split"] == "train"]["factual_class"].value_counts()
    for c in table.target_classes:
        if counts.get(c, 0) == 0:
            raise ValueError(f"class {c!r} has no rows in the train split")
    return table


def read_neutral(data: Any, max_rows: int | None, seed: int) -> pd.DataFrame | None:
    """``eval_neutral_data`` as a ``text`` frame (a list, a frame, a file or a hub id)."""
    if data is None:
        return None
    if isinstance(data, (list, tuple)):
        df = pd.DataFrame({"text": [str(t) for t in data]})
    elif isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, (str, Path)) and Path(data).suffix not in (".csv", ".parquet"):
        from gradiend.data.hub import load_neutral_hub_data  # optional extra: datasets

        df = load_neutral_hub_data(data)
    else:
        df = read_table(data)
    col = "text" if "text" in df.columns else "masked" if "masked" in df.columns else None
    if col is None:
        raise ValueError(f"eval_neutral_data needs a 'text' column; columns are {list(df.columns)}")
    df = pd.DataFrame({"text": df[col].astype(str)})
    if max_rows is not None:
        df = df.sample(n=min(max_rows, len(df)), random_state=seed)
    return df.reset_index(drop=True)
