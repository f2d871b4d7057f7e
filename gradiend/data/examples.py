"""The trainer's input: any accepted data format → one canonical table of examples.

Accepted: a per-class dict of DataFrames (``masked``, the class's word in a column named after
the class or ``label``, optional ``split``), a unified DataFrame (``masked``, ``label``,
``label_class``, ``split``, optional ``alternative``/``alternative_class``), a CSV/Parquet path,
a ``datasets`` object or a hub id. See ``docs/data-format.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend.data.heldout import vocabulary_split
from gradiend.data.hub import load_hub_data

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "eval": "validation",
}
_WORD_FALLBACKS = ("label", "token", "source", "target")


@dataclass
class ExampleTable:
    """Canonical rows plus the class bookkeeping the later stages need."""

    df: pd.DataFrame
    target_classes: list[str]
    all_classes: list[str]
    split_info: dict = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        """Rows of split ``name`` (falling back as the incumbent does when it is empty)."""
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
                return rows
        raise ValueError("the data has no rows in any split")


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
) -> ExampleTable:
    """Validate the data and build the canonical pair (and identity) rows. Cheap: no model use.

    ``split_col=None`` splits by held-out vocabulary (``gradiend.data.heldout``); a missing split
    column gives a seeded random split per class.
    """
    needed = None if target_classes is None or add_identity_for_other_classes else target_classes
    table = read_table(data, needed, hf_config, hf_split)
    if isinstance(table, dict):
        base = _from_per_class(table, masked_col, split_col)
    else:
        base = _from_unified(
            table,
            masked_col,
            split_col,
            label_col,
            label_class_col,
            alternative_col,
            alternative_class_col,
        )
    all_classes = list(dict.fromkeys(base["factual_class"]))
    targets = _resolve_targets(target_classes, all_classes)
    if split_col is None:
        base["split"], split_info = vocabulary_split(base, seed, split_ratios)
    elif "split" not in base.columns or base["split"].isna().all():
        logger.info("data has no split column: making a seeded %s split per class", split_ratios)
        base["split"] = _random_split(base, seed, split_ratios)
        split_info = {"mode": "random", "ratios": list(split_ratios), "seed": seed}
    else:
        base["split"] = base["split"].map(_norm_split)
        split_info = {"mode": "column", "column": split_col}
    rows = _pair_rows(base, targets, seed, by_split=split_col is None)
    if add_identity_for_other_classes:
        others = base[~base["factual_class"].isin(targets)]
        others = others.drop_duplicates(subset=["masked", "factual", "factual_class"]).copy()
        others["alternative"] = others["factual"]
        others["alternative_class"] = others["factual_class"]
        rows = pd.concat([rows, others], ignore_index=True)
    rows["transition"] = rows["factual_class"] + "→" + rows["alternative_class"]
    order = {f"{targets[0]}→{targets[1]}": 0, f"{targets[1]}→{targets[0]}": 1}
    for t in rows["transition"]:
        order.setdefault(t, len(order))
    rows["feature_class_id"] = rows["transition"].map(order).astype(int)
    return ExampleTable(rows.reset_index(drop=True), targets, all_classes, split_info)


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


def match_case(word: str, like: str) -> str:
    """``word`` with the casing pattern of ``like`` (lower, UPPER, Title, else unchanged)."""
    if like.islower():
        return word.lower()
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper() and like[1:].islower():
        return word[:1].upper() + word[1:].lower()
    return word


def _pair_rows(
    base: pd.DataFrame, targets: list[str], seed: int, by_split: bool = False
) -> pd.DataFrame:
    """A→B and B→A rows; alternatives given in the data or drawn from the other class's words
    (with ``by_split``, from its words of the row's split, so held-out words stay held out)."""
    rng = np.random.default_rng(seed)
    words = {
        c: base.loc[base["factual_class"] == c, "factual"].str.lower().value_counts(normalize=True)
        for c in targets
    }
    parts = []
    for cls, other in ((targets[0], targets[1]), (targets[1], targets[0])):
        rows = base[base["factual_class"] == cls].copy()
        if "alternative_class" in rows.columns:
            given = rows["alternative_class"] == other
            if given.any():
                parts.append(rows[given])
                continue
        drawn = np.empty(len(rows), dtype=object)
        groups = rows.groupby("split").indices if by_split else {None: np.arange(len(rows))}
        for split, pos in groups.items():
            dist = words[other]
            if split is not None:
                same = base[(base["factual_class"] == other) & (base["split"] == split)]
                if len(same):
                    dist = same["factual"].str.lower().value_counts(normalize=True)
            drawn[pos] = rng.choice(dist.index.to_numpy(), size=len(pos), p=dist.to_numpy())
        rows["alternative"] = [match_case(w, f) for w, f in zip(drawn, rows["factual"])]
        rows["alternative_class"] = other
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


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
