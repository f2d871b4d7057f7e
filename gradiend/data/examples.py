"""The trainer's input: any accepted data format → one canonical table of examples.

Accepted: a per-class dict of DataFrames (``masked``, the class's word in a column named after
the class or ``label``, optional ``split``), a unified DataFrame (``masked``, ``label``,
``label_class``, ``split``, optional ``alternative``/``alternative_class``), a CSV/Parquet path,
a ``datasets`` object or a hub id. See ``docs/data-format.md``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend._warn import _user_level
from gradiend.data.heldout import vocabulary_split
from gradiend.data.hub import load_hub_data
from gradiend.data.pairing import (
    ClassOptions,
    draw_transitions,
    fill_paired_classes,
    match_case,
    merge_classes,
    pre_paired,
    restrict_classes,
)
from gradiend.data.transitions import resolve_selection, transition_id

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "eval": "validation",
}
_WORD_FALLBACKS = ("label", "token", "source", "target")
HELDOUT, RANDOM = "heldout", "random"  # split_col values that name a split instead of a column
SPLIT_MODES = (HELDOUT, RANDOM)


@dataclass
class ExampleTable:
    """Canonical rows plus the class bookkeeping the later stages need."""

    df: pd.DataFrame
    target_classes: list[str]
    all_classes: list[str]
    split_info: dict = field(default_factory=dict)
    transitions: list[str] = field(default_factory=list)  # the trained ones, as "a→b"
    base: pd.DataFrame | None = field(default=None, repr=False)  # split sentences, for others
    draw: tuple | None = field(default=None, repr=False)  # (options, seed, by_split)
    _others: pd.DataFrame | None = field(default=None, repr=False)

    def split(self, name: str, include_other: bool = False) -> pd.DataFrame:
        """Rows of split ``name`` (falling back as the incumbent does when it is empty);
        ``include_other``: with the rows of every untrained transition (``other_rows``)."""
        order = {
            "train": SPLITS,
            "validation": ("validation", "test", "train"),
            "test": ("test", "validation", "train"),
        }[name]
        for s in order:
            rows = self.df[self.df["split"] == s]
            if len(rows):
                if s != name:
                    logger.warning("no %s rows; using the %s split instead", name, s)
                if include_other:
                    other = self.other_rows()
                    rows = pd.concat([rows, other[other["split"] == s]], ignore_index=True)
                return rows
        raise ValueError("the data has no rows in any split")

    def other_rows(self) -> pd.DataFrame:
        """Rows of every transition between the classes that is not trained (evaluation only,
        ``include_other_classes``); drawn once, with their own seeded generator."""
        if self._others is None:
            if self.base is None or self.draw is None:
                return self.df.iloc[:0]
            options, seed, by_split = self.draw
            done = set(self.transitions)
            todo = [(a, b) for a in self.all_classes for b in self.all_classes
                    if a != b and transition_id(a, b) not in done]  # fmt: skip
            rows = draw_transitions(self.base, todo, options, seed + 7919, by_split)
            rows["transition"] = rows["factual_class"] + "→" + rows["alternative_class"]
            start = int(self.df["feature_class_id"].max()) + 1 if len(self.df) else 0
            ids = {t: start + i for i, t in enumerate(dict.fromkeys(rows["transition"]))}
            rows["feature_class_id"] = rows["transition"].map(ids).astype(int)
            self._others = rows.reset_index(drop=True)
        return self._others


def read_table(
    data: Any,
    classes: list[str] | None = None,
    hf_config: str | None = None,
    hf_split: str | list[str] | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Turn a path, hub id or ``datasets`` object into a DataFrame (or keep a per-class dict).

    A hub id or dataset folder is read by ``gradiend.data.hub`` (``classes``: the classes the
    run needs, when its configs are classes).
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping) and all(isinstance(v, pd.DataFrame) for v in data.values()):
        return dict(data)
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.suffix == ".csv" and path.is_file():
            return pd.read_csv(path, keep_default_na=False)
        if path.suffix == ".parquet" and path.is_file():
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".parquet"):
            raise FileNotFoundError(f"data file {path} does not exist")
        return load_hub_data(data, classes, hf_config, hf_split)
    return _from_datasets(data)


def _from_datasets(data: Any) -> pd.DataFrame:
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    if isinstance(data, Mapping):  # DatasetDict: the split names become the split column
        frames = []
        for name, ds in data.items():
            df = ds.to_pandas()
            if "split" not in df.columns:
                df["split"] = name
            frames.append(df)
        return pd.concat(frames, ignore_index=True)
    raise TypeError(
        f"unsupported data type {type(data).__name__}: pass a dict of DataFrames, a DataFrame, "
        "a .csv/.parquet path, a datasets object or a hub id"
    )


def build_examples(
    data: Any,
    target_classes: list[str] | None = None,
    *,
    masked_col: str = "masked",
    split_col: str | None = "split",
    label_col: str = "label",
    label_class_col: str = "label_class",
    alternative_col: str = "alternative",
    alternative_class_col: str = "alternative_class",
    add_identity_for_other_classes: bool = False,
    seed: int = 0,
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    hf_config: str | None = None,
    hf_split: str | list[str] | None = None,
    options: ClassOptions | None = None,
) -> ExampleTable:
    """Validate the data and build the canonical transition rows. Cheap: no model use.

    ``split_col``: a column of train/validation/test; ``"heldout"`` (or ``None``) splits by
    held-out vocabulary (``gradiend.data.heldout``); ``"random"`` a seeded random split per
    class. A missing split column also gives the random split. ``options``: merged classes,
    ``all_classes``, counterfactuals per sentence, ratios and the trained transitions
    (``gradiend.data.pairing.ClassOptions``).
    """
    options = options or ClassOptions(split_ratios=split_ratios)
    table = read_table(data, _needed(target_classes, options, add_identity_for_other_classes),
                       hf_config, hf_split)  # fmt: skip
    if isinstance(table, dict):
        base = _from_per_class(table, masked_col, split_col)
    else:
        cols = (label_col, label_class_col, alternative_col, alternative_class_col)
        base = _from_unified(table, masked_col, split_col, *cols)
    base = restrict_classes(merge_classes(base, options), options)
    all_classes = list(dict.fromkeys(base["factual_class"]))
    targets = _resolve_targets(target_classes, all_classes)
    fill_paired_classes(base, targets, all_classes)
    base["split"], split_info, by_split = _assign_splits(base, split_col, seed, options)
    transitions = resolve_selection(options.transition_selection, all_classes, targets)
    if add_identity_for_other_classes:
        transitions += [(c, c) for c in all_classes if c not in targets]
    transitions = list(dict.fromkeys(transitions))
    rows = draw_transitions(base, transitions, options, options.seed(seed), by_split)
    rows["transition"] = rows["factual_class"] + "→" + rows["alternative_class"]
    order = {f"{targets[0]}→{targets[1]}": 0, f"{targets[1]}→{targets[0]}": 1}
    for t in rows["transition"]:
        order.setdefault(t, len(order))
    rows["feature_class_id"] = rows["transition"].map(order).astype(int)
    ids = [transition_id(a, b) for a, b in transitions]
    draw = (options, options.seed(seed), by_split)
    return ExampleTable(rows.reset_index(drop=True), targets, all_classes, split_info, ids,
                        base, draw)  # fmt: skip


def _needed(targets, options: ClassOptions, identity: bool) -> list[str] | None:
    """The raw classes (hub configs) the run reads; None: all of them."""
    if options.all_classes is not None:
        wanted = [str(c) for c in options.all_classes]
    elif targets is None or identity or options.transition_selection is not None:
        return None
    else:
        wanted = [str(c) for c in targets]
    merge = options.class_merge_map or {}
    return [str(m) for c in wanted for m in merge.get(c, [c])]


def _assign_splits(base: pd.DataFrame, split_col, seed: int, options: ClassOptions):
    """The ``split`` of every base row, the record saved with the run, and whether the
    split holds words out (then alternatives are drawn from the row's own split)."""
    ratios = options.split_ratios
    if split_col is None or split_col == HELDOUT:
        if split_col is None:
            message = (
                "split_col=None splits by held-out vocabulary here (as gradiend 0.2.3 does); "
                "later incumbent versions read it as a random row split. Pass "
                "split_col='heldout' to ask for the held-out split by name (and silence this), "
                "or split_col='random' for the random split"
            )
            logger.warning(message)
            warnings.warn(message, UserWarning, stacklevel=_user_level())
        split, info = vocabulary_split(base, seed, ratios)
        return split, info, True
    if split_col == RANDOM or "split" not in base.columns or base["split"].isna().all():
        if split_col != RANDOM:
            logger.info("data has no split column: making a seeded %s split per class", ratios)
        info = {"mode": "random", "ratios": list(ratios), "seed": seed}
        return _random_split(base, seed, ratios), info, False
    return base["split"].map(_norm_split), {"mode": "column", "column": split_col}, False


def _from_per_class(frames: dict[str, pd.DataFrame], masked_col: str, split_col: str | None):
    parts = []
    for cls, df in frames.items():
        if len(df) == 0:
            raise ValueError(f"class {cls!r} has no rows; remove it from data or add examples")
        if masked_col not in df.columns:
            raise ValueError(
                f"class {cls!r}: no column {masked_col!r}; columns are {list(df.columns)}. "
                "Pass masked_col= to name the column with the masked text."
            )
        if cls not in df.columns and {"source", "target"} <= set(df.columns):
            parts.append(pre_paired(df, masked_col, split_col, df.get("source_id", cls),
                                     df.get("target_id")))  # fmt: skip
            continue
        word_col = (
            cls
            if cls in df.columns
            else next((c for c in _WORD_FALLBACKS if c in df.columns), None)
        )
        if word_col is None:
            raise ValueError(
                f"class {cls!r}: no column with its words (looked for {cls!r}, "
                f"{', '.join(_WORD_FALLBACKS)}); columns are {list(df.columns)}"
            )
        part = pd.DataFrame(
            {
                "masked": df[masked_col].astype(str).values,
                "factual": df[word_col].astype(str).values,
                "factual_class": str(cls),
            }
        )
        if "mask_labels" in df.columns:
            part["mask_labels"] = df["mask_labels"].values
        if split_col and split_col in df.columns:
            part["split"] = df[split_col].values
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _from_unified(df, masked_col, split_col, label_col, label_class_col, alt_col, alt_class_col):
    if label_col not in df.columns and {"source", "target"} <= set(df.columns):
        cls = df["source_id"] if "source_id" in df.columns else df.get(label_class_col)
        if cls is None:
            raise ValueError(
                "pre-paired rows (source/target columns) need a source_id (or "
                f"{label_class_col!r}) column naming each source word's class"
            )
        alt_cls = df["target_id"] if "target_id" in df.columns else df.get(alt_class_col)
        return pre_paired(df, masked_col, split_col, cls, alt_cls)
    missing = [c for c in (masked_col, label_col, label_class_col) if c not in df.columns]
    if missing:
        raise ValueError(
            f"data is missing column(s) {missing}; columns are {list(df.columns)}. A unified table "
            f"needs {masked_col!r}, {label_col!r} and {label_class_col!r} (or pass a per-class dict)."
        )
    out = pd.DataFrame(
        {
            "masked": df[masked_col].astype(str).values,
            "factual": df[label_col].astype(str).values,
            "factual_class": df[label_class_col].astype(str).values,
        }
    )
    if alt_col in df.columns and alt_class_col in df.columns:
        out["alternative"] = df[alt_col].astype(str).values
        out["alternative_class"] = df[alt_class_col].astype(str).values
    if "mask_labels" in df.columns:
        out["mask_labels"] = df["mask_labels"].values
    if split_col and split_col in df.columns:
        out["split"] = df[split_col].values
    # a unified table lists each sentence once per other class: keep one base row per sentence
    keys = [c for c in ("masked", "factual", "factual_class", "split") if c in out.columns]
    if "alternative" in out.columns:
        return out
    return out.drop_duplicates(subset=keys).reset_index(drop=True)


def _resolve_targets(target_classes: list[str] | None, all_classes: list[str]) -> list[str]:
    if target_classes is None:
        if len(all_classes) != 2:
            raise ValueError(
                f"the data has {len(all_classes)} classes {all_classes}: "
                "pass target_classes=[A, B] to choose the pair"
            )
        return list(all_classes)
    targets = [str(c) for c in target_classes]
    if len(targets) != 2 or targets[0] == targets[1]:
        raise ValueError(f"target_classes must be two different classes, got {target_classes}")
    for c in targets:
        if c not in all_classes:
            raise ValueError(
                f"target class {c!r} has no rows in the data; classes are {all_classes}"
            )
    return targets


def _norm_split(value: Any) -> str:
    v = str(value).strip().lower()
    v = _SPLIT_ALIASES.get(v, v)
    if v not in SPLITS:
        raise ValueError(f"unknown split value {value!r}; use train, validation or test")
    return v


def _random_split(df: pd.DataFrame, seed: int, ratios: tuple[float, float, float]) -> pd.Series:
    out = pd.Series("train", index=df.index, dtype=object)
    rng = np.random.default_rng(seed)
    for _, idx in df.groupby("factual_class", sort=False).groups.items():
        idx = rng.permutation(np.asarray(idx))
        n = len(idx)
        n_test = max(1, round(ratios[2] * n)) if n >= 3 else 0
        n_val = max(1, round(ratios[1] * n)) if n >= 3 else 0
        out[idx[:n_val]] = "validation"
        out[idx[n_val : n_val + n_test]] = "test"
    return out


def row_words(row: Mapping) -> tuple[list[str], list[str]]:
    """Factual and alternative word for each mask of a row (each mask keeps its own word)."""
    labels = row.get("mask_labels")
    factual = str(labels).split("|") if isinstance(labels, str) and labels else [row["factual"]]
    alt = row["alternative"]
    if row["alternative"] == row["factual"]:
        return factual, factual
    return factual, [match_case(alt, f) for f in factual]


def cap_per_group(df: pd.DataFrame, max_size: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_size`` rows per transition (seeded sample)."""
    if max_size is None:
        return df
    return df.groupby("feature_class_id", group_keys=False, sort=True).apply(
        lambda g: g.sample(n=min(len(g), max_size), random_state=seed)
    )
